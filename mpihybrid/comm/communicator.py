"""Buffer collectives on contiguous numpy arrays and torch tensors (CPU or CUDA), counted as they go.

`Comm` wraps an mpi4py communicator. Its methods keep mpi4py's uppercase buffer semantics
(no pickling; numpy arrays and CPU tensors zero copy, tensors through DLPack) and add one
`CommStats` update per call. `recvbuf=None` means "in place". Pickled lowercase collectives
stay on ``comm.mpi`` for small control messages.

CUDA tensors go to MPI directly where the library is CUDA-aware, else through reused host
buffers (`mpihybrid.comm.staging`). Either way the call has the same semantics and the same
accounting: payload bytes are those of the application buffers, and the seconds include the
host copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from time import perf_counter
from typing import Any

import numpy as np
import torch
from mpi4py import MPI

from mpihybrid.comm.accounting import CommStats
from mpihybrid.comm.staging import RECV, SEND, HostBuffers, staged_device_types

Buffer = Any  # a C-contiguous numpy array, or a contiguous torch tensor on the CPU or a GPU


def _displacements(counts: Sequence[int]) -> list[int]:
    displs, offset = [], 0
    for c in counts:
        displs.append(offset)
        offset += c
    return displs


class Comm:
    """An MPI communicator whose buffer collectives record calls, payload bytes and seconds.

    ``staged`` names the tensor device types that go through host buffers (default: this
    process's choice, `staged_device_types`); communicators split from this one share it, the
    statistics and the host buffers."""

    def __init__(
        self,
        comm: MPI.Comm = MPI.COMM_WORLD,
        stats: CommStats | None = None,
        staged: frozenset[str] | None = None,
        buffers: HostBuffers | None = None,
    ):
        self.mpi = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.stats = CommStats() if stats is None else stats
        self.staged = staged_device_types() if staged is None else staged
        self.buffers = HostBuffers() if buffers is None else buffers
        self._scalar = np.zeros(1, dtype=np.float64)

    def __repr__(self) -> str:
        return f"Comm(rank={self.rank}, size={self.size}, name={self.mpi.Get_name()!r})"

    def path(self, device_type: str) -> str:
        """How tensors on ``device_type`` reach MPI: "host-staged", "CUDA-aware direct" or "direct"."""
        if device_type in self.staged:
            return "host-staged"
        return "CUDA-aware direct" if device_type == "cuda" else "direct"

    # -- communicators -------------------------------------------------------------------
    def _wrap(self, comm: MPI.Comm) -> Comm:
        return Comm(comm, self.stats, self.staged, self.buffers)

    def Dup(self) -> Comm:
        return self._wrap(self.mpi.Dup())

    def Split(self, color: int, key: int = 0) -> Comm | None:
        """Collective; returns None on ranks that pass ``color=MPI.UNDEFINED``."""
        sub = self.mpi.Split(color, key)
        return None if sub == MPI.COMM_NULL else self._wrap(sub)

    def Free(self) -> None:
        if self.mpi not in (MPI.COMM_WORLD, MPI.COMM_SELF):
            self.mpi.Free()

    # -- the buffers MPI sees ------------------------------------------------------------
    def _stages(self, buf: Buffer) -> bool:
        """Whether ``buf`` goes through a host buffer. A CUDA tensor that goes to MPI directly is
        made ready first: MPI knows nothing of torch's streams."""
        if not isinstance(buf, torch.Tensor):
            return False
        if buf.device.type in self.staged:
            return True
        if buf.is_cuda:
            torch.cuda.current_stream(buf.device).synchronize()
        return False

    def _read(self, buf: Buffer) -> Buffer:
        """What MPI reads from ``buf``."""
        if not self._stages(buf):
            return buf
        host = self.buffers.get(SEND, buf)
        host.copy_(buf)
        return host

    def _write(self, buf: Buffer) -> Buffer:
        """Where MPI writes ``buf``'s result; copy it back with `_done`."""
        return self.buffers.get(RECV, buf) if self._stages(buf) else buf

    def _update(self, buf: Buffer) -> Buffer:
        """What MPI reads from and writes to ``buf`` (in place); copy it back with `_done`."""
        if not self._stages(buf):
            return buf
        host = self.buffers.get(RECV, buf)
        host.copy_(buf)
        return host

    @staticmethod
    def _done(buf: Buffer, host: Buffer, written: int | None = None) -> None:
        """Copy MPI's result back into ``buf``: its first ``written`` elements (None: all), so
        that the part MPI did not write stays as it was, as it does without staging."""
        if host is buf:
            return
        if written is None:
            buf.copy_(host)
        else:
            buf.view(-1)[:written].copy_(host.view(-1)[:written])

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
            recvbuf = sendbuf
            host = self._update(recvbuf)
            self.mpi.Allreduce(MPI.IN_PLACE, host, op)
        else:
            host = self._write(recvbuf)
            self.mpi.Allreduce(self._read(sendbuf), host, op)
        self._done(recvbuf, host)
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
            recvbuf = sendbuf
            if is_root:
                host = self._update(recvbuf)
                self.mpi.Reduce(MPI.IN_PLACE, host, op, root)
                self._done(recvbuf, host)
            else:
                self.mpi.Reduce(self._read(sendbuf), None, op, root)
        else:
            host = self._write(recvbuf) if is_root else None
            self.mpi.Reduce(self._read(sendbuf), host, op, root)
            if is_root:
                self._done(recvbuf, host)
        self.stats.add("reduce", nbytes, nbytes if is_root else 0, perf_counter() - t)
        return recvbuf if is_root else None

    def Bcast(self, buf: Buffer, root: int = 0) -> Buffer:
        nbytes = buf.nbytes
        is_root = self.rank == root
        t = perf_counter()
        host = self._read(buf) if is_root else self._write(buf)
        self.mpi.Bcast(host, root)
        if not is_root:
            self._done(buf, host)
        self.stats.add("bcast", nbytes if is_root else 0, 0 if is_root else nbytes, perf_counter() - t)
        return buf

    def Allgatherv(self, sendbuf: Buffer, recvbuf: Buffer, counts: Sequence[int]) -> Buffer:
        """Concatenate each rank's ``counts[r]`` elements, in rank order, on every rank."""
        t = perf_counter()
        host = self._write(recvbuf)
        self.mpi.Allgatherv(self._read(sendbuf), [host, (list(counts), _displacements(counts))])
        self._done(recvbuf, host, sum(counts))
        sent = sendbuf.nbytes
        self.stats.add("allgatherv", sent, recvbuf.nbytes - sent, perf_counter() - t)
        return recvbuf

    def Reduce_scatter(self, sendbuf: Buffer, recvbuf: Buffer, counts: Sequence[int], op: MPI.Op = MPI.SUM) -> Buffer:
        """Sum full-length ``sendbuf`` over ranks; rank r receives only elements of block r."""
        t = perf_counter()
        host = self._write(recvbuf)
        self.mpi.Reduce_scatter(self._read(sendbuf), host, list(counts), op)
        self._done(recvbuf, host)
        self.stats.add("reduce_scatter", sendbuf.nbytes, recvbuf.nbytes, perf_counter() - t)
        return recvbuf

    def Gatherv(self, sendbuf: Buffer, recvbuf: Buffer | None, counts: Sequence[int], root: int = 0) -> Buffer | None:
        """Concatenate each rank's elements at ``root`` (recvbuf is ignored elsewhere)."""
        is_root = self.rank == root
        t = perf_counter()
        host = self._write(recvbuf) if is_root else None
        self.mpi.Gatherv(self._read(sendbuf), [host, (list(counts), _displacements(counts))] if is_root else None, root)
        if is_root:
            self._done(recvbuf, host, sum(counts))
        sent = sendbuf.nbytes
        self.stats.add("gatherv", sent, recvbuf.nbytes - sent if is_root else 0, perf_counter() - t)
        return recvbuf if is_root else None

    def Scatterv(self, sendbuf: Buffer | None, recvbuf: Buffer, counts: Sequence[int], root: int = 0) -> Buffer:
        """Rank r receives ``counts[r]`` consecutive elements of the root's ``sendbuf``."""
        is_root = self.rank == root
        t = perf_counter()
        host = self._write(recvbuf)
        send = [self._read(sendbuf), (list(counts), _displacements(counts))] if is_root else None
        self.mpi.Scatterv(send, host, root)
        self._done(recvbuf, host, counts[self.rank])
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
        self.mpi.Send(self._read(buf), dest, tag)
        self.stats.add("send", buf.nbytes, 0, perf_counter() - t)

    def Recv(self, buf: Buffer, source: int, tag: int = 0) -> Buffer:
        t = perf_counter()
        host = self._write(buf)
        status = MPI.Status()
        self.mpi.Recv(host, source, tag, status)
        self._done(buf, host, status.Get_count(MPI.BYTE) // buf.itemsize)
        self.stats.add("recv", 0, buf.nbytes, perf_counter() - t)
        return buf
