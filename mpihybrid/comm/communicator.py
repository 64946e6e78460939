"""Buffer collectives on contiguous numpy arrays and CPU torch tensors, counted as they go.

`Comm` wraps an mpi4py communicator. Its methods keep mpi4py's uppercase buffer semantics
(zero copy, no pickling; torch tensors pass through DLPack) and add one `CommStats` update per
call. `recvbuf=None` means "in place". Pickled lowercase collectives stay on ``comm.mpi``
for small control messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from time import perf_counter
from typing import Any

import numpy as np
from mpi4py import MPI

from mpihybrid.comm.accounting import CommStats

Buffer = Any  # a C-contiguous numpy array or CPU torch tensor


def _displacements(counts: Sequence[int]) -> list[int]:
    displs, offset = [], 0
    for c in counts:
        displs.append(offset)
        offset += c
    return displs


class Comm:
    """An MPI communicator whose buffer collectives record calls, payload bytes and seconds."""

    def __init__(self, comm: MPI.Comm = MPI.COMM_WORLD, stats: CommStats | None = None):
        self.mpi = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.stats = CommStats() if stats is None else stats
        self._scalar = np.zeros(1, dtype=np.float64)

    def __repr__(self) -> str:
        return f"Comm(rank={self.rank}, size={self.size}, name={self.mpi.Get_name()!r})"

    # -- communicators -------------------------------------------------------------------
    def Dup(self) -> Comm:
        return Comm(self.mpi.Dup(), self.stats)

    def Split(self, color: int, key: int = 0) -> Comm | None:
        """Collective; returns None on ranks that pass ``color=MPI.UNDEFINED``."""
        sub = self.mpi.Split(color, key)
        return None if sub == MPI.COMM_NULL else Comm(sub, self.stats)

    def Free(self) -> None:
        if self.mpi not in (MPI.COMM_WORLD, MPI.COMM_SELF):
            self.mpi.Free()

    # -- blocking collectives ------------------------------------------------------------
    def Barrier(self) -> None:
        t = perf_counter()
        self.mpi.Barrier()
        self.stats.add("barrier", 0, 0, perf_counter() - t)

    def Allreduce(self, sendbuf: Buffer, recvbuf: Buffer | None = None, op: MPI.Op = MPI.SUM) -> Buffer:
        """Reduce over all ranks; every rank gets the same result. In place when recvbuf is None."""
        nbytes = sendbuf.nbytes
        t = perf_counter()
        if recvbuf is None:
            self.mpi.Allreduce(MPI.IN_PLACE, sendbuf, op)
            recvbuf = sendbuf
        else:
            self.mpi.Allreduce(sendbuf, recvbuf, op)
        self.stats.add("allreduce", nbytes, nbytes, perf_counter() - t)
        return recvbuf

    def allreduce_scalar(self, value: float, op: MPI.Op = MPI.SUM) -> float:
        """One float64 through a preallocated buffer: the cheapest reduction of a scalar."""
        buf = self._scalar
        buf[0] = value
        t = perf_counter()
        self.mpi.Allreduce(MPI.IN_PLACE, buf, op)
        self.stats.add("allreduce", 8, 8, perf_counter() - t)
        return float(buf[0])

    def Reduce(
        self, sendbuf: Buffer, recvbuf: Buffer | None = None, op: MPI.Op = MPI.SUM, root: int = 0
    ) -> Buffer | None:
        """Reduce to ``root``; in place at the root when recvbuf is None. Returns the result at root."""
        nbytes = sendbuf.nbytes
        is_root = self.rank == root
        t = perf_counter()
        if recvbuf is None:
            self.mpi.Reduce(MPI.IN_PLACE if is_root else sendbuf, sendbuf if is_root else None, op, root)
            recvbuf = sendbuf
        else:
            self.mpi.Reduce(sendbuf, recvbuf, op, root)
        self.stats.add("reduce", nbytes, nbytes if is_root else 0, perf_counter() - t)
        return recvbuf if is_root else None

    def Bcast(self, buf: Buffer, root: int = 0) -> Buffer:
        nbytes = buf.nbytes
        t = perf_counter()
        self.mpi.Bcast(buf, root)
        is_root = self.rank == root
        self.stats.add("bcast", nbytes if is_root else 0, 0 if is_root else nbytes, perf_counter() - t)
        return buf

    def Allgatherv(self, sendbuf: Buffer, recvbuf: Buffer, counts: Sequence[int]) -> Buffer:
        """Concatenate each rank's ``counts[r]`` elements, in rank order, on every rank."""
        t = perf_counter()
        self.mpi.Allgatherv(sendbuf, [recvbuf, (list(counts), _displacements(counts))])
        sent = sendbuf.nbytes
        self.stats.add("allgatherv", sent, recvbuf.nbytes - sent, perf_counter() - t)
        return recvbuf

    def Reduce_scatter(self, sendbuf: Buffer, recvbuf: Buffer, counts: Sequence[int], op: MPI.Op = MPI.SUM) -> Buffer:
        """Sum full-length ``sendbuf`` over ranks; rank r receives only elements of block r."""
        t = perf_counter()
        self.mpi.Reduce_scatter(sendbuf, recvbuf, list(counts), op)
        self.stats.add("reduce_scatter", sendbuf.nbytes, recvbuf.nbytes, perf_counter() - t)
        return recvbuf

    def Gatherv(self, sendbuf: Buffer, recvbuf: Buffer | None, counts: Sequence[int], root: int = 0) -> Buffer | None:
        """Concatenate each rank's elements at ``root`` (recvbuf is ignored elsewhere)."""
        is_root = self.rank == root
        t = perf_counter()
        self.mpi.Gatherv(sendbuf, [recvbuf, (list(counts), _displacements(counts))] if is_root else None, root)
        sent = sendbuf.nbytes
        self.stats.add("gatherv", sent, recvbuf.nbytes - sent if is_root else 0, perf_counter() - t)
        return recvbuf if is_root else None

    def Scatterv(self, sendbuf: Buffer | None, recvbuf: Buffer, counts: Sequence[int], root: int = 0) -> Buffer:
        """Rank r receives ``counts[r]`` consecutive elements of the root's ``sendbuf``."""
        is_root = self.rank == root
        t = perf_counter()
        self.mpi.Scatterv([sendbuf, (list(counts), _displacements(counts))] if is_root else None, recvbuf, root)
        self.stats.add(
            "scatterv",
            sendbuf.nbytes - recvbuf.nbytes if is_root else 0,
            0 if is_root else recvbuf.nbytes,
            perf_counter() - t,
        )
        return recvbuf

    # -- point to point (hand-offs between role groups) ------------------------------------
    def Send(self, buf: Buffer, dest: int, tag: int = 0) -> None:
        t = perf_counter()
        self.mpi.Send(buf, dest, tag)
        self.stats.add("send", buf.nbytes, 0, perf_counter() - t)

    def Recv(self, buf: Buffer, source: int, tag: int = 0) -> Buffer:
        t = perf_counter()
        self.mpi.Recv(buf, source, tag)
        self.stats.add("recv", 0, buf.nbytes, perf_counter() - t)
        return buf

    # -- non-blocking collectives (time counted at initiation; Wait time is the caller's) --
    def Iallreduce(self, sendbuf: Buffer, recvbuf: Buffer | None = None, op: MPI.Op = MPI.SUM) -> MPI.Request:
        nbytes = sendbuf.nbytes
        t = perf_counter()
        if recvbuf is None:
            req = self.mpi.Iallreduce(MPI.IN_PLACE, sendbuf, op)
        else:
            req = self.mpi.Iallreduce(sendbuf, recvbuf, op)
        self.stats.add("iallreduce", nbytes, nbytes, perf_counter() - t)
        return req

    def Ibcast(self, buf: Buffer, root: int = 0) -> MPI.Request:
        nbytes = buf.nbytes
        t = perf_counter()
        req = self.mpi.Ibcast(buf, root)
        is_root = self.rank == root
        self.stats.add("ibcast", nbytes if is_root else 0, 0 if is_root else nbytes, perf_counter() - t)
        return req

    def Iallgatherv(self, sendbuf: Buffer, recvbuf: Buffer, counts: Sequence[int]) -> MPI.Request:
        t = perf_counter()
        req = self.mpi.Iallgatherv(sendbuf, [recvbuf, (list(counts), _displacements(counts))])
        sent = sendbuf.nbytes
        self.stats.add("iallgatherv", sent, recvbuf.nbytes - sent, perf_counter() - t)
        return req
