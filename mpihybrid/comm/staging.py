"""How CUDA tensors reach MPI: directly where the MPI library is CUDA-aware, otherwise through
host buffers that are allocated once and reused.

The path is chosen once per process from ``MPIHYBRID_COMM_PATH``:

- ``auto`` (default): CUDA tensors go to MPI directly if the library says it is CUDA-aware
  (`cuda_aware_mpi`), else through the host buffers. If it cannot be asked, they are staged:
  a device pointer handed to an MPI that is not CUDA-aware crashes or reads garbage.
- ``direct``: CUDA tensors go to MPI directly, for a CUDA-aware MPI that cannot be asked or
  answers wrongly.
- ``staged``: every torch tensor goes through the host buffers, CPU tensors too, so that the
  staging code runs (and is tested) on machines without a GPU.

numpy arrays always go to MPI as they are.
"""

from __future__ import annotations

import ctypes
import os
from functools import cache

import torch
from mpi4py import MPI

from mpihybrid.errors import UsageError

PATH_ENV = "MPIHYBRID_COMM_PATH"
DIRECT, STAGED = "direct", "staged"
SEND, RECV = 0, 1  # the two host buffers: what MPI reads, what MPI writes


def cuda_aware_mpi() -> bool | None:
    """Whether the MPI library mpi4py loaded takes CUDA device buffers; None if it cannot say.

    Asked in two ways: ``MPIX_Query_cuda_support`` (MPICH >= 4, Open MPI >= 2; mpi4py 4.1
    does not wrap it, so it is looked up in the loaded library), then the MPI 4.1 info key
    ``mpi_memory_alloc_kinds`` of COMM_WORLD (``cuda:device`` among the kinds)."""
    query = getattr(ctypes.CDLL(MPI.__file__), "MPIX_Query_cuda_support", None)
    if query is not None:
        query.restype, query.argtypes = ctypes.c_int, []
        return bool(query())
    info = MPI.COMM_WORLD.Get_info()
    try:
        kinds = info.Get("mpi_memory_alloc_kinds")
    finally:
        info.Free()
    return None if kinds is None else supports_cuda_device(kinds)


def supports_cuda_device(kinds: str) -> bool:
    """``mpi_memory_alloc_kinds`` lists kinds like ``system,mpi,cuda:device,cuda:host``;
    a kind without restrictors (``cuda``) covers all of them."""
    return any(kind.strip() in ("cuda", "cuda:device") for kind in kinds.split(","))


@cache
def staged_device_types() -> frozenset[str]:
    """The tensor device types this process stages through host buffers (`PATH_ENV`)."""
    choice = os.environ.get(PATH_ENV, "auto").strip() or "auto"
    if choice == STAGED:
        return frozenset({"cpu", "cuda"})
    if choice == DIRECT:
        return frozenset()
    if choice == "auto":
        return frozenset() if cuda_aware_mpi() else frozenset({"cuda"})
    raise UsageError(f"{PATH_ENV}={choice!r}: expected auto, direct or staged")


class HostBuffers:
    """Two host buffers, one MPI reads (SEND) and one it writes (RECV), each grown to the
    largest message seen and then reused: no allocation per call, and host memory bounded by
    twice the largest message. Pinned once a CUDA tensor is staged, so device copies run at full
    speed; CPU tensors (the forced `staged` path) never touch CUDA."""

    def __init__(self) -> None:
        self._raw: list[torch.Tensor | None] = [None, None]
        self._pinned = [False, False]
        self.allocations = 0

    def get(self, slot: int, like: torch.Tensor) -> torch.Tensor:
        """A host tensor with ``like``'s dtype and shape, backed by buffer ``slot`` (uninitialised)."""
        nbytes = like.numel() * like.element_size()
        raw, pin = self._raw[slot], like.is_cuda
        if raw is None or raw.numel() < nbytes or (pin and not self._pinned[slot]):
            size = max(nbytes, 0 if raw is None else raw.numel())
            raw = self._raw[slot] = torch.empty(size, dtype=torch.uint8, pin_memory=pin)
            self._pinned[slot] = pin
            self.allocations += 1
        return raw[:nbytes].view(like.dtype).view(like.shape)
