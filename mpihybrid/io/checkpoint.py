"""HDF5 checkpoints that resume bitwise: every rank writes its own shard, a manifest commits the set.

A checkpoint holds a `State`: two trees of arrays, ``shared`` (identical on every rank: parameters
of a data-parallel model, server history, ...) and ``local`` (one per rank: shards, virtual
clients, RNG states). A write after step s, collective over the world:

1. every rank writes its local tree to its own shard file, ``shards/<s>-<id>/rank-<r>.h5``, atomically
   (``id`` is new for every write, so no write ever touches a file a committed manifest names);
2. the shards' digests (a few bytes each) go to rank 0;
3. rank 0 writes the manifest ``checkpoint-<s>.h5`` atomically: the root attributes (format version,
   step, world size, algorithm, config hash, write id), the shared tree and the shard table
   (file, rank, digest). Its rename is what commits the checkpoint: a job killed before it leaves
   the previous checkpoint whole, a job killed after it leaves a complete one.

No rank holds another rank's state. Every dataset carries a SHA-256 of its bytes and every shard a
digest over its datasets' checksums. Restore checks the manifest, that every shard it lists exists,
and every byte this rank reads; it raises CheckpointError naming the file, so a bad or partial set
never starts a run. Parallel HDF5 is not used: the h5py wheel has none (docs/hpc.md).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import uuid
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

FORMAT_VERSION = 2
SHARDS = "shards"  # subdirectory of the checkpoint directory that holds every write's shard files
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
    h.update(array)  # a C-contiguous array hashes as its bytes, without the copy tobytes() makes
    return h.hexdigest()


def _tree_digest(sums: dict[str, str]) -> str:
    """One digest for a whole tree: over its dataset names and checksums, in name order."""
    return hashlib.sha256(json.dumps(sorted(sums.items())).encode()).hexdigest()


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


def _write_tree(group: h5py.Group, tree: Tree) -> str:
    """Write ``tree`` under ``group``, a checksum on every dataset; the tree's digest."""
    sums = {}
    for name, value in tree.items():
        array, kind = _to_array(value)
        ds = group.create_dataset(name, data=array)
        ds.attrs["kind"] = kind
        ds.attrs["sha256"] = sums[name] = _digest(array)
    return _tree_digest(sums)


def _read_tree(group: h5py.Group, path: Path) -> tuple[Tree, str]:
    """Read and verify every dataset under ``group``; the tree and its digest."""
    tree: Tree = {}
    sums: dict[str, str] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            array = np.asarray(obj[()])
            sums[name] = _digest(array)
            if sums[name] != obj.attrs.get("sha256"):
                raise CheckpointError(f"checkpoint '{path}': checksum mismatch in dataset '{obj.name}'")
            tree[name] = _from_array(array, obj.attrs["kind"])

    group.visititems(visit)
    return tree, _tree_digest(sums)


@dataclass
class CheckpointInfo:
    """A manifest's root attributes and shard table (shard paths absolute)."""

    path: Path
    step: int
    world_size: int
    algorithm: str
    config_hash: str
    write_id: str
    shards: list[dict[str, Any]]  # per rank, in rank order: {"file", "rank", "digest"}


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"checkpoint-{step:09d}.h5"


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Committed checkpoints (manifests) in ``directory``, oldest first (temp files of torn writes excluded)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _NAME.match(p.name))


def _shard_file(write_dir: Path, rank: int) -> Path:
    return write_dir / f"rank-{rank:05d}.h5"


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
    """Collective over ``comm``: write checkpoint-<step>.h5 with its shards and prune to the newest ``keep``."""
    directory = Path(directory)
    write_id = comm.mpi.bcast(uuid.uuid4().hex[:16] if comm.rank == 0 else None, root=0)
    write_dir = directory / SHARDS / f"{step:09d}-{write_id}"
    shard = _shard_file(write_dir, comm.rank)
    with atomic_h5(shard) as f:
        f.attrs.update(
            format_version=FORMAT_VERSION, step=step, rank=comm.rank, world_size=comm.size, write_id=write_id
        )
        digest = _write_tree(f.create_group("local"), {**state.local, **global_rng_state()})
    digests = comm.mpi.gather(digest, root=0)  # only after every shard is on disk
    path = checkpoint_path(directory, step)
    if comm.rank == 0:
        table = [
            {"file": str(_shard_file(write_dir, r).relative_to(directory)), "rank": r, "digest": d}
            for r, d in enumerate(digests)
        ]
        with atomic_h5(path) as f:
            f.attrs.update(
                format_version=FORMAT_VERSION,
                step=step,
                world_size=comm.size,
                algorithm=algorithm,
                config_hash=config_hash,
                write_id=write_id,
                shards=json.dumps(table),
                mpihybrid_version=__version__,
            )
            _write_tree(f.create_group("shared"), state.shared)
        _prune(directory, keep)
    comm.mpi.Barrier()
    return path


def _prune(directory: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` manifests (each before its shards), then every shard
    directory no kept manifest names (left by writes that never committed)."""
    manifests = list_checkpoints(directory)
    for old in manifests[:-keep]:
        old.unlink()
    named = set()
    for kept in manifests[-keep:]:
        try:
            named.update(Path(s["file"]).parent.name for s in read_info(kept).shards)
        except CheckpointError:
            pass  # a kept manifest that cannot be read names nothing; resume will say why
    for write_dir in (directory / SHARDS).iterdir():
        if write_dir.name not in named:
            shutil.rmtree(write_dir, ignore_errors=True)


def read_info(path: str | Path) -> CheckpointInfo:
    """A manifest's attributes, checked for the format; CheckpointError naming the file otherwise."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            a = f.attrs
            version = int(a.get("format_version", -1))
            if version == 1:
                raise CheckpointError(
                    f"checkpoint '{path}' has format 1 (one file gathered on rank 0), written by an older "
                    f"mpihybrid; this version reads format {FORMAT_VERSION} (per-rank shards): start a new run"
                )
            if version != FORMAT_VERSION:
                raise CheckpointError(f"checkpoint '{path}': format version {version} is not {FORMAT_VERSION}")
            shards = json.loads(a["shards"])
            for s in shards:
                s["file"] = path.parent / s["file"]
            return CheckpointInfo(
                path,
                int(a["step"]),
                int(a["world_size"]),
                str(a["algorithm"]),
                str(a["config_hash"]),
                str(a["write_id"]),
                shards,
            )
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint '{path}' does not exist") from None
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint '{path}' is unreadable (truncated or not a checkpoint): {exc}") from None


def _check_shard_set(info: CheckpointInfo) -> None:
    """The manifest lists one shard per rank and every one of them exists (cheap: no shard is opened)."""
    if [s["rank"] for s in info.shards] != list(range(info.world_size)):
        raise CheckpointError(f"checkpoint '{info.path}': its shard table does not list ranks 0..{info.world_size - 1}")
    for s in info.shards:
        if not s["file"].is_file():
            raise CheckpointError(
                f"checkpoint '{info.path}' is incomplete: shard '{s['file']}' of rank {s['rank']} is missing"
            )


def _read_shard(info: CheckpointInfo, rank: int) -> Tree:
    entry = info.shards[rank]
    shard = entry["file"]
    try:
        with h5py.File(shard, "r") as f:
            a = f.attrs
            header = (str(a.get("write_id")), *(int(a.get(k, -1)) for k in ("rank", "world_size", "step")))
            if header != (info.write_id, rank, info.world_size, info.step):
                raise CheckpointError(
                    f"shard '{shard}' belongs to another checkpoint (write {header[0]}, rank {header[1]} of "
                    f"{header[2]}, step {header[3]}), not to '{info.path}' (write {info.write_id}, rank {rank} of "
                    f"{info.world_size}, step {info.step})"
                )
            local, digest = _read_tree(f["local"], shard)
    except (OSError, KeyError) as exc:
        raise CheckpointError(f"shard '{shard}' is unreadable (truncated or corrupt): {exc}") from None
    if digest != entry["digest"]:
        raise CheckpointError(f"shard '{shard}' does not match the digest in '{info.path}' (changed after the write)")
    return local


def load_checkpoint(path: str | Path, *, rank: int, world_size: int, algorithm: str, config_hash: str) -> Restored:
    """Verify and read a checkpoint on one rank: the step, the shared tree and this rank's shard.

    Not collective: every rank checks the manifest and that every shard exists, then reads and
    verifies its own; the CLI agrees on the first rank's error before any collective.
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
    _check_shard_set(info)
    try:
        with h5py.File(info.path, "r") as f:
            shared, _ = _read_tree(f["shared"], info.path)
    except (OSError, KeyError) as exc:
        raise CheckpointError(f"checkpoint '{info.path}' is unreadable (truncated or corrupt): {exc}") from None
    return Restored(info.path, info.step, State(shared, _read_shard(info, rank)))


def latest_checkpoint(directory: str | Path) -> Path:
    found = list_checkpoints(directory)
    if not found:
        raise CheckpointError(f"--resume: no checkpoint-*.h5 in '{directory}'")
    return found[-1]
