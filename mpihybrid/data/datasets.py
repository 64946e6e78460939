"""Data sets that need no download: generated or bundled ones, and loaders for files a user has.

Every loader returns a `Dataset` of float32 inputs shaped (N, C, ...) and int64 labels. Where a
data set has no fixed test split, one is drawn from the config seed.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from mpihybrid.config import DataConfig
from mpihybrid.errors import ConfigError
from mpihybrid.seeding import numpy_rng


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    # Natural owner of each sample (Synthetic's users); None where the data has no owners.
    owner_train: np.ndarray | None = None
    owner_test: np.ndarray | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    order = numpy_rng(seed, "data", "test-split").permutation(len(y))
    n_test = max(1, int(round(test_fraction * len(y))))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def digits(cfg: DataConfig, seed: int) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images), as (N, 1, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    return Dataset(*_split(x, d.target.astype(np.int64), cfg.test_fraction, seed), num_classes=10)


def mnist1d(cfg: DataConfig, seed: int) -> Dataset:
    """MNIST-1D generated offline by the mnist1d package, as (N, 1, 40)."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = cfg.num_samples
    args.train_split = 1.0 - cfg.test_fraction
    args.seed = seed
    d = make_dataset(args)  # seeds numpy's global generator itself; the checkpoint saves that state
    return Dataset(
        d["x"].astype(np.float32)[:, None],
        d["y"].astype(np.int64),
        d["x_test"].astype(np.float32)[:, None],
        d["y_test"].astype(np.int64),
        num_classes=10,
    )


def synthetic(cfg: DataConfig, seed: int, num_users: int = 100) -> Dataset:
    """pFedMe's Synthetic(alpha, beta): users with their own softmax model and input mean.

    User k: u_k ~ N(0, alpha), W_k, b_k ~ N(u_k, 1); B_k ~ N(0, beta), v_k ~ N(B_k, 1),
    x ~ N(v_k, diag(j^-1.2)), y = argmax(x W_k + b_k). Sizes ~ (lognormal(4, 2) + 50) * 5 are
    rescaled to ``num_samples`` in total; each user splits its samples train/test.
    """
    rng = numpy_rng(seed, "data", "synthetic")
    d, c = cfg.synthetic_dim, cfg.synthetic_classes
    sizes = (rng.lognormal(4, 2, num_users).astype(int) + 50) * 5
    sizes = np.maximum(2, np.round(sizes / sizes.sum() * cfg.num_samples)).astype(int)
    cov = np.array([(j + 1) ** -1.2 for j in range(d)])
    parts = {"x_train": [], "y_train": [], "x_test": [], "y_test": [], "owner_train": [], "owner_test": []}
    for k, n in enumerate(sizes):
        u = rng.normal(0, np.sqrt(cfg.synthetic_alpha))
        w, b = rng.normal(u, 1, (d, c)), rng.normal(u, 1, c)
        v = rng.normal(rng.normal(0, np.sqrt(cfg.synthetic_beta)), 1, d)
        x = rng.normal(v, np.sqrt(cov), (n, d)).astype(np.float32)
        y = np.argmax(x @ w + b, axis=1).astype(np.int64)
        n_test = max(1, int(round(cfg.test_fraction * n)))
        for split, sl in (("test", slice(0, n_test)), ("train", slice(n_test, None))):
            parts[f"x_{split}"].append(x[sl])
            parts[f"y_{split}"].append(y[sl])
            parts[f"owner_{split}"].append(np.full(len(y[sl]), k, dtype=np.int64))
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    return Dataset(num_classes=c, **cat)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ConfigError("data.path", f"'{path}' is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ConfigError(
            "data.path", f"'{path}' is truncated: expected {int(np.prod(shape))} values, found {data.size}"
        )
    return data.reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).exists():
            return directory / name
    raise ConfigError("data.path", f"no '{stem}[.gz]' in '{directory}'")


def mnist_idx(cfg: DataConfig, seed: int) -> Dataset:
    """MNIST (or Fashion-MNIST) in the original IDX files, gzipped or not, in ``data.path``."""
    root = Path(cfg.path)
    arrays = [
        _read_idx(_find(root, s))
        for s in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    ]
    xtr, ytr, xte, yte = arrays
    return Dataset(
        (xtr / 255.0).astype(np.float32)[:, None],
        ytr.astype(np.int64),
        (xte / 255.0).astype(np.float32)[:, None],
        yte.astype(np.int64),
        num_classes=10,
    )


def cifar10(cfg: DataConfig, seed: int) -> Dataset:
    """CIFAR-10 binary batches (data_batch_1..5.bin, test_batch.bin) in ``data.path``."""
    root = Path(cfg.path)

    def read(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for name in names:
            path = root / name
            if not path.exists():
                raise ConfigError("data.path", f"no '{name}' in '{root}'")
            raw = np.fromfile(path, dtype=np.uint8)
            if raw.size % 3073:
                raise ConfigError("data.path", f"'{path}' is not a whole number of 3073-byte CIFAR-10 records")
            rec = raw.reshape(-1, 3073)
            ys.append(rec[:, 0].astype(np.int64))
            xs.append((rec[:, 1:].reshape(-1, 3, 32, 32) / 255.0).astype(np.float32))
        return np.concatenate(xs), np.concatenate(ys)

    train_names = sorted(p.name for p in root.glob("data_batch_*.bin"))
    if not train_names:
        raise ConfigError("data.path", f"no data_batch_*.bin in '{root}'")
    xtr, ytr = read(train_names)
    xte, yte = read(["test_batch.bin"])
    return Dataset(xtr, ytr, xte, yte, num_classes=10)


def _arrays_file(cfg: DataConfig, seed: int, arrays: dict[str, np.ndarray]) -> Dataset:
    """x_train/y_train (+ x_test/y_test, else split off) from an NPZ or HDF5 file."""
    for key in ("x_train", "y_train"):
        if key not in arrays:
            raise ConfigError("data.path", f"'{cfg.path}' has no array '{key}' (found: {', '.join(arrays)})")
    check_arrays({k: arrays[k] for k in ("x_train", "y_train", "x_test", "y_test") if k in arrays}, None, cfg)
    x, y = arrays["x_train"].astype(np.float32), arrays["y_train"].astype(np.int64)
    if x.ndim == 2:
        x = x[:, None]
    if "x_test" in arrays and "y_test" in arrays:
        xte, yte = arrays["x_test"].astype(np.float32), arrays["y_test"].astype(np.int64)
        parts = (x, y, xte[:, None] if xte.ndim == 2 else xte, yte)
    else:
        parts = _split(x, y, cfg.test_fraction, seed)
    return Dataset(*parts, num_classes=max(int(max(parts[1].max(), parts[3].max())) + 1, 1))


def npz(cfg: DataConfig, seed: int) -> Dataset:
    with np.load(cfg.path) as f:
        return _arrays_file(cfg, seed, {k: f[k] for k in f.files})


def hdf5(cfg: DataConfig, seed: int) -> Dataset:
    try:
        with h5py.File(cfg.path, "r") as f:
            arrays = {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}
    except OSError as exc:
        raise ConfigError("data.path", f"'{cfg.path}' is not a readable HDF5 file: {exc}") from None
    return _arrays_file(cfg, seed, arrays)


LOADERS = {
    "digits": digits,
    "mnist1d": mnist1d,
    "synthetic": synthetic,
    "mnist-idx": mnist_idx,
    "cifar10": cifar10,
    "npz": npz,
    "hdf5": hdf5,
}


def check_arrays(arrays: dict[str, np.ndarray], num_classes: int | None, cfg: DataConfig) -> None:
    """Bad data is bad input: name the array and its first bad index, before any training.
    Inputs must be finite; labels integers in [0, num_classes) (only >= 0 when num_classes is None)."""
    source = f"'{cfg.path}'" if cfg.path else f"data set '{cfg.name}'"
    key = "data.path" if cfg.path else "data.name"
    for name, a in arrays.items():
        if name.startswith("x"):
            bad = np.argwhere(~np.isfinite(a))
            if len(bad):
                index = tuple(int(i) for i in bad[0])
                raise ConfigError(key, f"{source}: {name}{list(index)} is {a[index]} (not finite)")
            continue
        high = np.inf if num_classes is None else num_classes
        bad = np.flatnonzero((a < 0) | (a >= high) | (a != np.round(a)))
        if len(bad):
            allowed = "an integer >= 0" if num_classes is None else f"a class label in [0, {num_classes})"
            raise ConfigError(key, f"{source}: {name}[{bad[0]}] = {a[bad[0]]} is not {allowed}")


def load_dataset(cfg: DataConfig, seed: int) -> Dataset:
    """Load ``cfg.name``, check it, and standardize it with training statistics if asked."""
    data = LOADERS[cfg.name](cfg, seed)
    arrays = {name: getattr(data, name) for name in ("x_train", "y_train", "x_test", "y_test")}
    check_arrays(arrays, data.num_classes, cfg)
    if cfg.standardize:
        mean = data.x_train.mean(axis=0, keepdims=True)
        std = data.x_train.std(axis=0, keepdims=True) + 1e-6
        data.x_train = ((data.x_train - mean) / std).astype(np.float32)
        data.x_test = ((data.x_test - mean) / std).astype(np.float32)
    return data
