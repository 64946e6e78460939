"""The DHO2 overlap hand-off between the update group U and the curvature group C.

Only the first rank of each group talks across (world ranks ``u_root`` and ``c_root``); each
shares what it learns inside its own group. Messages, in order:

1. U → C, tag TASK: a header int64 [kind, step]:
   - CURVATURE: then θ (float32, n) with the same tag. C broadcasts both inside C, runs the
     sharded Lanczos at θ while U keeps training, gathers the vector blocks on its first rank
     and answers with step 2.
   - CHECKPOINT: header only. Every C rank joins the (world-collective) checkpoint of ``step``.
     U sends it only when no curvature is in flight, so no result crosses a checkpoint.
   - STOP: then the final θ. C installs it (its hash goes into the results file) and ends;
     ``step`` < 0 means the run diverged.
2. C → U, tag RESULT: the eigenvalues (float64, r), then the vectors (float64, n × r, rows in
   parameter order, so a U rank's block is a contiguous row range). U's first rank notices
   the result with a non-blocking probe and shares that in its per-step loss reduction; then
   every U rank takes part in `UpdateEnd.receive`: a Bcast of the snapshot step and values
   and a Scatterv of the row blocks.

A task is in flight from its send to U's receive; U sends no new CURVATURE task while one is
in flight or while a received result waits to be installed.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from mpihybrid.blocks import blocks
from mpihybrid.comm import Comm

TAG_TASK, TAG_RESULT = 11, 12
CURVATURE, CHECKPOINT, STOP = 0, 1, 2
IDLE_SLEEP = 0.0005  # C's first rank polls politely: a spinning receive would steal the update ranks' cores


class UpdateEnd:
    """U's side: snapshots out, eigenpairs in. Collective over U where noted."""

    def __init__(self, world: Comm, update: Comm, c_root: int, n: int, pairs: int):
        self.world, self.update, self.c_root, self.n, self.pairs = world, update, c_root, n, pairs
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
        """U's first rank: has C's result for the in-flight task arrived (non-blocking)?"""
        return self.in_flight is not None and self.world.mpi.Iprobe(self.c_root, TAG_RESULT)

    def receive(self) -> None:
        """Collective over U: take C's result (blocking at U's first rank) and scatter the blocks."""
        u, r = self.update, self.pairs
        values = np.empty(r)
        full = np.empty((self.n, r)) if self.is_root else None
        if self.is_root:
            with self.world.stats.label("handoff"):
                self.world.Recv(values, self.c_root, TAG_RESULT)
                self.world.Recv(full, self.c_root, TAG_RESULT)
        snapshot = np.array([self.in_flight if self.in_flight is not None else -1], dtype=np.int64)
        u.Bcast(snapshot)
        u.Bcast(values)
        counts = blocks(self.n, u.size).counts
        mine = np.empty((counts[u.rank], r))  # vectors travel as (n, r): blocks are row ranges
        with u.stats.label("handoff"):
            u.Scatterv(full, mine, [c * r for c in counts])
        self.pending = (int(snapshot[0]), values, np.ascontiguousarray(mine.T))
        self.in_flight = None


class CurvatureEnd:
    """C's side: tasks in, eigenpairs out. Collective over C where noted."""

    def __init__(self, world: Comm, curvature: Comm, u_root: int):
        self.world, self.curvature, self.u_root = world, curvature, u_root

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

    def send_result(self, values: np.ndarray, block: np.ndarray, n: int) -> None:
        """Collective over C: gather the vector blocks as (n, r) rows on C's first rank and send."""
        c = self.curvature
        counts = [rows * len(values) for rows in blocks(n, c.size).counts]
        full = np.empty(sum(counts)) if c.rank == 0 else None
        c.Gatherv(np.ascontiguousarray(block.T).reshape(-1), full, counts)
        if c.rank == 0:
            self.world.Send(values, self.u_root, TAG_RESULT)
            self.world.Send(full, self.u_root, TAG_RESULT)
