"""The DHO2 overlap hand-off between the update group U and the curvature group C.

Tasks go between the first rank of each group (world ranks ``u_ranks[0]`` and ``c_ranks[0]``),
which shares them inside its own group. Messages, in order:

1. U → C, tag TASK: a header int64 [kind, step]:
   - CURVATURE: then θ (float32, n) with the same tag. C broadcasts both inside C, runs the
     sharded curvature at θ while U keeps training, and answers with step 2.
   - CHECKPOINT: header only. Every C rank joins the (world-collective) checkpoint of ``step``.
     U sends it only when no curvature is in flight, so no result crosses a checkpoint.
   - STOP: then the final θ. C installs it (its hash goes into the results file) and ends;
     ``step`` < 0 means the run diverged.
2. C → U: the eigenvalues (float64, r; tag RESULT, C's first rank to U's), then block to block
   (tag BLOCK): every C rank sends each U rank the rows of its vector block that the U rank
   owns, as (rows, r) float64. No rank ever holds more than its own block of the r × n
   eigenvectors plus O(r) values. U's first rank notices the values with a non-blocking probe
   and shares that in its per-step loss reduction; then every U rank takes part in
   `UpdateEnd.receive`. Sends go in ascending U rank and receives in ascending C rank; blocks
   are contiguous and ordered the same way on both sides, so the blocking pairs cannot deadlock.

A task is in flight from its send to U's receive; U sends no new CURVATURE task while one is
in flight or while a received result waits to be installed.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from mpihybrid.blocks import Blocks, blocks
from mpihybrid.comm import Comm

TAG_TASK, TAG_RESULT, TAG_BLOCK = 11, 12, 13
CURVATURE, CHECKPOINT, STOP = 0, 1, 2
IDLE_SLEEP = 0.0005  # C's first rank polls politely: a spinning receive would steal the update ranks' cores


def _overlaps(mine: range, theirs: Blocks) -> list[tuple[int, int, int]]:
    """(their rank, first row, end row) of every block of ``theirs`` that meets ``mine``."""
    out = []
    for rank in range(len(theirs.counts)):
        other = theirs.range(rank)
        lo, hi = max(mine.start, other.start), min(mine.stop, other.stop)
        if lo < hi:
            out.append((rank, lo, hi))
    return out


class UpdateEnd:
    """U's side: snapshots out, eigenpairs in. Collective over U where noted."""

    def __init__(self, world: Comm, update: Comm, c_ranks: list[int], n: int, pairs: int):
        self.world, self.update, self.c_ranks, self.n, self.pairs = world, update, c_ranks, n, pairs
        self.c_root = c_ranks[0]
        self.in_flight: int | None = None  # snapshot step of the task C is computing
        self.pending: tuple[int, np.ndarray, np.ndarray] | None = None  # (snapshot step, values, block)
        self.is_root = update.rank == 0

    def send(self, kind: int, step: int, theta: torch.Tensor | None = None) -> None:
        """U's first rank: send a task (θ for CURVATURE and STOP)."""
        header = np.array([kind, step], dtype=np.int64)
        with self.world.stats.label("handoff"):
            self.world.Send(header, self.c_root, TAG_TASK)
            if theta is not None:
                self.world.Send(theta.detach().clone(), self.c_root, TAG_TASK)

    def arrived(self) -> bool:
        """U's first rank: have C's eigenvalues for the in-flight task arrived (non-blocking)?"""
        return self.in_flight is not None and self.world.mpi.Iprobe(self.c_root, TAG_RESULT)

    def receive(self) -> None:
        """Collective over U: take C's eigenvalues (blocking at U's first rank) and this rank's rows."""
        u, r = self.update, self.pairs
        values = np.empty(r)
        if self.is_root:
            with self.world.stats.label("handoff"):
                self.world.Recv(values, self.c_root, TAG_RESULT)
        snapshot = np.array([self.in_flight if self.in_flight is not None else -1], dtype=np.int64)
        u.Bcast(snapshot)
        u.Bcast(values)
        split = blocks(self.n, u.size)
        mine = np.empty((split.counts[u.rank], r))  # rows in parameter order: C's pieces are row ranges
        start = split.offsets[u.rank]
        with self.world.stats.label("handoff"):
            for c, lo, hi in _overlaps(split.range(u.rank), blocks(self.n, len(self.c_ranks))):
                self.world.Recv(mine[lo - start : hi - start], self.c_ranks[c], TAG_BLOCK)
        self.pending = (int(snapshot[0]), values, np.ascontiguousarray(mine.T))
        self.in_flight = None


class CurvatureEnd:
    """C's side: tasks in, eigenpairs out. Collective over C where noted."""

    def __init__(self, world: Comm, curvature: Comm, u_ranks: list[int], n: int):
        self.world, self.curvature, self.u_ranks, self.n = world, curvature, u_ranks, n
        self.u_root = u_ranks[0]

    def next_task(self, theta: torch.Tensor) -> tuple[int, int]:
        """Collective over C: wait for U's next task; θ is received into ``theta`` when one comes."""
        c, header = self.curvature, np.empty(2, dtype=np.int64)
        if c.rank == 0:
            while not self.world.mpi.Iprobe(self.u_root, TAG_TASK):
                time.sleep(IDLE_SLEEP)
            self.world.Recv(header, self.u_root, TAG_TASK)
        c.Bcast(header)
        kind, step = int(header[0]), int(header[1])
        if kind != CHECKPOINT:
            if c.rank == 0:
                self.world.Recv(theta, self.u_root, TAG_TASK)
            c.Bcast(theta)
        return kind, step

    def send_result(self, values: np.ndarray, block: np.ndarray) -> None:
        """C's first rank sends the values; every C rank sends each U rank its rows of ``block``."""
        c = self.curvature
        split = blocks(self.n, c.size)
        rows = np.ascontiguousarray(block.T)  # (rows, r)
        start = split.offsets[c.rank]
        with self.world.stats.label("handoff"):
            if c.rank == 0:
                self.world.Send(values, self.u_root, TAG_RESULT)
            for u, lo, hi in _overlaps(split.range(c.rank), blocks(self.n, len(self.u_ranks))):
                self.world.Send(rows[lo - start : hi - start], self.u_ranks[u], TAG_BLOCK)
