"""Which device each rank computes on: the ``[device]`` config section resolved on the job's ranks.

`select_device` runs once at start-up, collectively over the world, after the config checks and
before any algorithm collective. Every rank gathers every rank's view (`RankView`) and decides
with the same pure function (`plan`), so a setting the job cannot honour stops every rank with
the same one-line ConfigError (exit 2), and no rank goes on into a collective alone.

- ``cpu``: every rank computes on the CPU; nothing touches CUDA.
- ``cuda``: every rank needs a GPU; a rank without one is an error that says what torch found.
- ``auto``: CUDA if every rank has a GPU, else the CPU on every rank (one device type per job).

The GPUs a rank may use are those the CUDA runtime enumerates, so ``CUDA_VISIBLE_DEVICES`` is
honoured (Slurm sets it, per task under ``--gpus-per-task`` or ``--gpu-bind``). Where it is
unset but Slurm names the GPUs of the step (``SLURM_STEP_GPUS``, else ``SLURM_JOB_GPUS``), only
those. Ranks on one node (one shared-memory split) that see the same GPUs take them in
node-local rank order; a rank bound to a GPU of its own takes that one. Two ranks on one GPU
(told apart by UUID) are an error naming the numbers unless ``device.share`` allows it.
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import torch
from mpi4py import MPI

from mpihybrid.comm import Comm
from mpihybrid.config import DeviceConfig
from mpihybrid.errors import ConfigError

SLURM_GPU_VARS = ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS")
CPU = torch.device("cpu")


@dataclass(frozen=True)
class RankView:
    """What one rank reports at start-up; every rank gets every rank's."""

    rank: int
    host: str
    node: int  # the lowest world rank on this rank's node: equal on ranks that share memory
    local_rank: int  # rank within the node
    gpus: tuple[int, ...] = ()  # CUDA device indices this rank may use
    ids: tuple[str, ...] = ()  # their UUIDs: two ranks with one UUID would share a GPU
    names: tuple[str, ...] = ()  # their names, for `mpihybrid info`
    found: str = ""  # why there is no usable GPU, for the message


def _indices(var: str, raw: str) -> list[int]:
    """Slurm's GPU lists: ``0,1,3`` or ``0-2,5``."""
    out: list[int] = []
    try:
        for part in raw.split(","):
            first, _, last = part.partition("-")
            out.extend(range(int(first), int(last or first) + 1))
    except ValueError:
        raise ValueError(f"{var}={raw!r} is not a list of GPU indices") from None
    return out


def usable_gpus(env: Mapping[str, str], count: int) -> tuple[int, ...]:
    """Indices of the GPUs this rank may use, of the ``count`` the CUDA runtime enumerates."""
    if "CUDA_VISIBLE_DEVICES" not in env:
        for var in SLURM_GPU_VARS:
            raw = env.get(var, "").strip()
            if raw:
                indices = _indices(var, raw)
                bad = [i for i in indices if not 0 <= i < count]
                if bad:
                    raise ValueError(f"{var}={raw!r} names GPU {bad[0]}, but the CUDA runtime sees {count}")
                return tuple(indices)
    return tuple(range(count))


def _view(rank: int, host: str, node: int, local_rank: int, kind: str) -> RankView:
    view = RankView(rank, host, node, local_rank)
    if kind == "cpu":
        return view
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
        return replace(
            view,
            found=f"torch {torch.__version__} (CUDA build: {torch.version.cuda}) finds no CUDA device, "
            f"CUDA_VISIBLE_DEVICES={visible}",
        )
    try:
        gpus = usable_gpus(os.environ, torch.cuda.device_count())
    except ValueError as exc:
        return replace(view, found=str(exc))
    props = [torch.cuda.get_device_properties(i) for i in gpus]
    return replace(view, gpus=gpus, ids=tuple(str(p.uuid) for p in props), names=tuple(p.name for p in props))


def gather_views(world: Comm, kind: str) -> list[RankView]:
    """Collective over ``world``: every rank's view (GPUs probed unless ``kind`` is cpu), on every rank."""
    node = world.mpi.Split_type(MPI.COMM_TYPE_SHARED, key=world.rank)
    try:
        local_rank, first = node.Get_rank(), node.allreduce(world.rank, op=MPI.MIN)
    finally:
        node.Free()
    return world.mpi.allgather(_view(world.rank, MPI.Get_processor_name(), first, local_rank, kind))


def plan(views: Sequence[RankView], kind: str, share: bool) -> list[torch.device]:
    """Every rank's device (index = rank); raises ConfigError where the job cannot run so."""
    if kind == "cpu" or (kind == "auto" and not all(v.gpus for v in views)):
        return [CPU] * len(views)
    missing = next((v for v in views if not v.gpus), None)
    if missing is not None:
        raise ConfigError(
            "device.type", f"is 'cuda', but rank {missing.rank} on {missing.host} has no usable GPU: {missing.found}"
        )
    peers: dict[tuple[int, tuple[str, ...]], list[int]] = defaultdict(list)  # (node, GPUs seen) -> local ranks
    for v in views:
        peers[v.node, v.ids].append(v.local_rank)
    choice = [sorted(peers[v.node, v.ids]).index(v.local_rank) % len(v.gpus) for v in views]
    if not share:
        on_node: dict[int, list[int]] = defaultdict(list)
        for v in views:
            on_node[v.node].append(v.rank)
        for ranks in on_node.values():
            used = [views[r].ids[choice[r]] for r in ranks]
            if len(set(used)) < len(used):
                gpus = len({i for r in ranks for i in views[r].ids})
                raise ConfigError(
                    "device.share",
                    f"{len(ranks)} ranks on {views[ranks[0]].host} but {gpus} GPU(s) for them: start at most "
                    f"{gpus} rank(s) per node, set device.share = true to let ranks share a GPU, "
                    'or device.type = "cpu"',
                )
    return [torch.device("cuda", v.gpus[c]) for v, c in zip(views, choice)]


def select_device(world: Comm, config: DeviceConfig) -> torch.device:
    """Collective over ``world``, once at start-up: this rank's device (made CUDA's current
    device). Raises the same ConfigError on every rank when the job cannot run as configured."""
    if config.type == "cpu":
        return CPU
    device = plan(gather_views(world, config.type), config.type, config.share)[world.rank]
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def device_for(algorithm: str, on_device: bool, device: torch.device, *, root: bool) -> torch.device:
    """Where ``algorithm`` computes given the device `select_device` chose: that device if the
    algorithm is ported (``Algorithm.on_device``), else the CPU, said in one line on rank 0 so that
    ``device.type = "cuda"`` never half-works in silence (the results file records the CPU)."""
    if on_device or device.type == "cpu":
        return device
    if root:
        print(
            f"mpihybrid: note: {algorithm} does not compute on {device.type} yet; it runs on the CPU "
            f"(docs/gpu.md, 'What runs on the device')",
            file=sys.stderr,
            flush=True,
        )
    return CPU
