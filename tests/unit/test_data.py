import gzip
import re

import h5py
import numpy as np
import pytest
import torch

from mpihybrid.config import COMMON_SECTIONS, build_config
from mpihybrid.data import load_dataset, partition
from mpihybrid.errors import ConfigError
from mpihybrid.models import build_model


def data_cfg(**kw):
    return build_config({"data": kw}, COMMON_SECTIONS).data


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "shards"])
@pytest.mark.parametrize("clients", [1, 7, 50])
def test_partition_assigns_every_sample_once_and_is_deterministic(scheme, clients):
    labels = np.random.default_rng(0).integers(0, 10, 1000)
    parts = partition(labels, clients, 3, scheme, alpha=0.5, shards_per_client=2)
    assert len(parts) == clients
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(1000))
    again = partition(labels, clients, 3, scheme, alpha=0.5, shards_per_client=2)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = partition(labels, clients, 4, scheme, alpha=0.5, shards_per_client=2)
    assert clients == 1 or any(not np.array_equal(a, b) for a, b in zip(parts, other))


def test_shards_give_few_labels_per_client():
    labels = np.repeat(np.arange(10), 100)
    parts = partition(labels, 10, 0, "shards", shards_per_client=2)
    assert max(len(np.unique(labels[p])) for p in parts) <= 2


def test_dirichlet_small_alpha_is_skewed():
    labels = np.repeat(np.arange(10), 200)
    skewed = partition(labels, 10, 0, "dirichlet", alpha=0.05)
    even = partition(labels, 10, 0, "dirichlet", alpha=1000.0)
    classes = lambda parts: np.mean([len(np.unique(labels[p])) for p in parts if len(p)])  # noqa: E731
    assert classes(skewed) < 5 < classes(even)


def test_too_many_clients_is_a_config_error():
    with pytest.raises(ConfigError):
        partition(np.zeros(5, int), 6, 0, "iid")


def test_bundled_and_generated_sets():
    d = load_dataset(data_cfg(name="digits"), 0)
    assert d.x_train.shape[1:] == (1, 8, 8) and len(d.y_train) + len(d.y_test) == 1797
    assert abs(float(d.x_train.mean())) < 1e-3
    m = load_dataset(data_cfg(name="mnist1d", num_samples=500), 0)
    assert m.x_train.shape == (400, 1, 40) and m.num_classes == 10
    s = load_dataset(data_cfg(name="synthetic", num_samples=2000), 0)
    assert s.x_train.shape[1] == 60 and set(np.unique(s.owner_train)) <= set(range(100))
    assert len(s.y_train) + len(s.y_test) >= 2000 * 0.9
    s2 = load_dataset(data_cfg(name="synthetic", num_samples=2000), 0)
    assert np.array_equal(s.x_train, s2.x_train)


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_file_loaders(tmp_path):
    rng = np.random.default_rng(0)
    imgs, labels = rng.integers(0, 256, (20, 28, 28)), rng.integers(0, 10, 20)
    idx = tmp_path / "mnist"
    idx.mkdir()
    for prefix in ("train", "t10k"):
        (idx / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(imgs)))
        (idx / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx(labels))
    d = load_dataset(data_cfg(name="mnist-idx", path=str(idx), standardize=False), 0)
    assert d.x_train.shape == (20, 1, 28, 28) and np.array_equal(d.y_test, labels)
    assert np.allclose(d.x_train[3, 0], imgs[3] / 255.0)

    cifar = tmp_path / "cifar"
    cifar.mkdir()
    rec = np.concatenate([labels[:, None], rng.integers(0, 256, (20, 3072))], axis=1).astype(np.uint8)
    for name in ("data_batch_1.bin", "data_batch_2.bin", "test_batch.bin"):
        rec.tofile(cifar / name)
    c = load_dataset(data_cfg(name="cifar10", path=str(cifar), standardize=False), 0)
    assert c.x_train.shape == (40, 3, 32, 32) and np.array_equal(c.y_test, labels)
    assert np.allclose(c.x_test[1].reshape(-1), rec[1, 1:] / 255.0)

    x, y = rng.normal(size=(30, 5)).astype(np.float32), rng.integers(0, 3, 30)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    n = load_dataset(data_cfg(name="npz", path=str(tmp_path / "d.npz"), standardize=False), 0)
    assert len(n.y_train) + len(n.y_test) == 30 and n.input_shape == (1, 5)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x_train"], f["y_train"], f["x_test"], f["y_test"] = x, y, x[:4], y[:4]
    h = load_dataset(data_cfg(name="hdf5", path=str(tmp_path / "d.h5"), standardize=False), 0)
    assert np.array_equal(h.x_train[:, 0], x) and np.array_equal(h.y_test, y[:4])


@pytest.mark.parametrize(
    "spoil, words",
    [
        (lambda a: a["x_train"].__setitem__((7, 2), np.nan), r"x_train\[7, 2\] is nan \(not finite\)"),
        (lambda a: a["x_test"].__setitem__((1, 4), np.inf), r"x_test\[1, 4\] is inf"),
        (lambda a: a["y_train"].__setitem__(3, -1), r"y_train\[3\] = -1 is not an integer >= 0"),
    ],
)
def test_bad_arrays_are_named_with_their_first_bad_index(tmp_path, spoil, words):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.normal(size=(30, 5)), "y_train": rng.integers(0, 3, 30)}
    arrays |= {"x_test": arrays["x_train"][:5].copy(), "y_test": arrays["y_train"][:5].copy()}
    spoil(arrays)
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(ConfigError, match="data.path") as info:
        load_dataset(data_cfg(name="npz", path=str(tmp_path / "d.npz")), 0)
    assert re.search(words, str(info.value)), info.value


def test_fractional_labels_are_refused(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((4, 2)), y_train=np.array([0.0, 1.0, 1.5, 0.0]))
    with pytest.raises(ConfigError, match=r"y_train\[2\] = 1.5 is not an integer >= 0"):
        load_dataset(data_cfg(name="npz", path=str(tmp_path / "d.npz")), 0)


def test_truncated_idx_is_reported(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx(np.zeros((5, 4, 4)))[:-10])
    for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(_idx(np.zeros(5)))
    with pytest.raises(ConfigError, match="truncated"):
        load_dataset(data_cfg(name="mnist-idx", path=str(tmp_path)), 0)


@pytest.mark.parametrize(
    "name, data, shape",
    [
        ("mlp", "digits", (1, 8, 8)),
        ("cnn2d", "digits", (1, 8, 8)),
        ("cnn2d", "mnist", (1, 28, 28)),
        ("cnn1d", "mnist1d", (1, 40)),
    ],
)
def test_models_build_identically_from_the_seed(name, data, shape):
    cfg = build_config({"model": {"name": name}}, COMMON_SECTIONS).model
    a, b = build_model(cfg, shape, 10, seed=5), build_model(cfg, shape, 10, seed=5)
    state = torch.get_rng_state()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert torch.equal(torch.get_rng_state(), state)
    assert a(torch.zeros(2, *shape)).shape == (2, 10)


def test_cnn_on_flat_data_is_a_config_error():
    cfg = build_config({"model": {"name": "cnn2d"}}, COMMON_SECTIONS).model
    with pytest.raises(ConfigError, match="model.name"):
        build_model(cfg, (60,), 10, seed=0)
