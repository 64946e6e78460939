"""HDF5 checkpoints that resume bitwise: gather to rank 0, write atomically, verify on read.

A checkpoint holds a `State`: two trees of arrays, ``shared`` (identical on every rank, written
once by rank 0: parameters of a data-parallel model, server history, ...) and ``local`` (one per
rank: shards, virtual clients, RNG states). Every dataset carries a SHA-256 of its bytes; the root
carries the format version, step, world size, algorithm and config hash. Restore checks all of
them and raises CheckpointError with the reason, so a bad file never starts a run.

The local trees travel in one Gatherv of raw bytes (plus a pickled gather of their layout).
Parallel HDF5 (the mpio driver) is not used: the h5py wheel has none (docs/hpc.md, "HDF5 without parallel HDF5").
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from mpihybrid import __version__
from mpihybrid.comm import Comm
from mpihybrid.errors import CheckpointError
from mpihybrid.io.h5util import atomic_h5
from mpihybrid.io.state import Tree

FORMAT_VERSION = 1
_NAME = re.compile(r"^checkpoint-(\d{9})\.h5$")


@dataclass
class State:
    """What an algorithm checkpoints: ``shared`` is identical on every rank (rank 0 writes it
    once), ``local`` is this rank's own (shards, virtual clients; the harness adds RNG states)."""

    shared: Tree = field(default_factory=dict)
    local: Tree = field(default_factory=dict)


@dataclass
class Restored:
    """A verified checkpoint as one rank reads it: the step it was written after, and the state."""

    path: Path
    step: int
    state: State


def _contiguous(array: np.ndarray) -> np.ndarray:
    # Not np.ascontiguousarray: it turns 0-d arrays (an optimizer's step) into shape (1,).
    return array if array.flags.c_contiguous else array.copy()


def _to_array(value: Any) -> tuple[np.ndarray, str]:
    """Encode a leaf as an array plus its kind, so strings and scalars come back as they went."""
    if isinstance(value, str):
        return np.frombuffer(value.encode(), dtype=np.uint8), "str"
    if isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16:  # numpy has no bfloat16: keep the bits
        return _contiguous(value.detach().cpu().view(torch.int16).numpy()), "bfloat16"
    if isinstance(value, torch.Tensor):
        return _contiguous(value.detach().cpu().numpy()), "tensor"
    if isinstance(value, (bool, int, float, np.integer, np.floating)):
        return np.asarray(value), "scalar"
    if isinstance(value, np.ndarray):
        return _contiguous(value), "array"
    raise TypeError(f"cannot checkpoint a {type(value).__name__}")


def _from_array(array: np.ndarray, kind: str) -> Any:
    if kind == "str":
        return array.tobytes().decode()
    if kind == "tensor":
        return torch.from_numpy(array)
    if kind == "bfloat16":
        return torch.from_numpy(array).view(torch.bfloat16)
    if kind == "scalar":
        return array.item()
    return array


def _digest(array: np.ndarray) -> str:
    h = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    h.update(array.tobytes())
    return h.hexdigest()


def global_rng_state() -> Tree:
    """Python's, numpy's and torch's global generator states (libraries may use them)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "rng/python": json.dumps(random.getstate()),
        "rng/numpy_keys": keys,
        "rng/numpy_rest": json.dumps([kind, int(pos), int(has_gauss), float(cached)]),
        "rng/torch": torch.get_rng_state(),
    }


def restore_global_rng(tree: Tree) -> None:
    version, internal, gauss = json.loads(tree["rng/python"])
    random.setstate((version, tuple(internal), gauss))
    kind, pos, has_gauss, cached = json.loads(tree["rng/numpy_rest"])
    np.random.set_state((kind, tree["rng/numpy_keys"], pos, has_gauss, cached))
    torch.set_rng_state(tree["rng/torch"])


def _write_tree(group: h5py.Group, tree: Tree) -> None:
    for name, value in tree.items():
        array, kind = _to_array(value)
        ds = group.create_dataset(name, data=array)
        ds.attrs["kind"] = kind
        ds.attrs["sha256"] = _digest(array)


def _read_tree(group: h5py.Group, path: Path) -> Tree:
    tree: Tree = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            array = obj[()]
            array = np.asarray(array)
            if _digest(array) != obj.attrs.get("sha256"):
                raise CheckpointError(f"checkpoint '{path}': checksum mismatch in dataset '{obj.name}'")
            tree[name] = _from_array(array, obj.attrs["kind"])

    group.visititems(visit)
    return tree


@dataclass
class CheckpointInfo:
    path: Path
    step: int
    world_size: int
    algorithm: str
    config_hash: str


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"checkpoint-{step:09d}.h5"


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoint files in ``directory``, oldest first (temp files of torn writes excluded)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _NAME.match(p.name))


def save_checkpoint(
    directory: str | Path,
    comm: Comm,
    *,
    step: int,
    algorithm: str,
    config_hash: str,
    state: State,
    keep: int = 2,
) -> Path:
    """Collective over ``comm``: write checkpoint-<step>.h5 and prune to the newest ``keep``."""
    local = {**state.local, **global_rng_state()}
    encoded = [(name, *_to_array(v)) for name, v in local.items()]
    layout = [(name, a.dtype.str, a.shape, kind) for name, a, kind in encoded]
    payload = (
        np.concatenate([a.reshape(-1).view(np.uint8) for _, a, _ in encoded]) if encoded else np.zeros(0, np.uint8)
    )
    layouts = comm.mpi.gather(layout, root=0)
    counts = comm.mpi.gather(payload.size, root=0)
    is_root = comm.rank == 0
    gathered = np.empty(sum(counts), np.uint8) if is_root else None
    with comm.stats.label("checkpoint"):
        comm.Gatherv(payload, gathered, counts if is_root else [payload.size] * comm.size, root=0)
    path = checkpoint_path(directory, step)
    if is_root:
        with atomic_h5(path) as f:
            f.attrs.update(
                format_version=FORMAT_VERSION,
                step=step,
                world_size=comm.size,
                algorithm=algorithm,
                config_hash=config_hash,
                mpihybrid_version=__version__,
            )
            _write_tree(f.create_group("shared"), state.shared)
            offset = 0
            for rank, rank_layout in enumerate(layouts):
                tree = {}
                for name, dtype, shape, kind in rank_layout:
                    dt = np.dtype(dtype)
                    n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
                    tree[name] = _from_array(gathered[offset : offset + n].view(dt).reshape(shape), kind)
                    offset += n
                _write_tree(f.create_group(f"rank/{rank}"), tree)
        for old in list_checkpoints(directory)[:-keep]:
            old.unlink()
    comm.mpi.Barrier()
    return path


def read_info(path: str | Path) -> CheckpointInfo:
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            a = f.attrs
            if int(a.get("format_version", -1)) != FORMAT_VERSION:
                raise CheckpointError(
                    f"checkpoint '{path}': format version {a.get('format_version')} is not {FORMAT_VERSION}"
                )
            return CheckpointInfo(
                path, int(a["step"]), int(a["world_size"]), str(a["algorithm"]), str(a["config_hash"])
            )
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint '{path}' does not exist") from None
    except (OSError, KeyError) as exc:
        raise CheckpointError(f"checkpoint '{path}' is unreadable (truncated or not a checkpoint): {exc}") from None


def load_checkpoint(path: str | Path, *, rank: int, world_size: int, algorithm: str, config_hash: str) -> Restored:
    """Verify and read a checkpoint on one rank: the step, the shared tree and this rank's local tree.

    Not collective: every rank reads the file itself, so every rank reaches the same verdict
    before any collective.
    """
    info = read_info(path)
    if info.algorithm != algorithm:
        raise CheckpointError(f"checkpoint '{info.path}' is from algorithm '{info.algorithm}', not '{algorithm}'")
    if info.world_size != world_size:
        raise CheckpointError(
            f"checkpoint '{info.path}' was written by {info.world_size} ranks; this job has "
            f"{world_size} (resharding is not supported)"
        )
    if info.config_hash != config_hash:
        raise CheckpointError(
            f"checkpoint '{info.path}' was written with another config (hash "
            f"{info.config_hash[:12]} != {config_hash[:12]}); resume with the same config"
        )
    try:
        with h5py.File(info.path, "r") as f:
            shared = _read_tree(f["shared"], info.path)
            local = _read_tree(f[f"rank/{rank}"], info.path)
    except (OSError, KeyError) as exc:
        raise CheckpointError(f"checkpoint '{info.path}' is unreadable (truncated or corrupt): {exc}") from None
    return Restored(info.path, info.step, State(shared, local))


def latest_checkpoint(directory: str | Path) -> Path:
    found = list_checkpoints(directory)
    if not found:
        raise CheckpointError(f"--resume: no checkpoint-*.h5 in '{directory}'")
    return found[-1]
