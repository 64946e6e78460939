"""FOSI and DHO2 runs (``mpihybrid run fosi|dho2``; arXiv 2302.08484 and 2505.00982,
docs/dho2.md).

- ``fosi``: one process; the curvature is computed inline at step W and every T steps.
- ``dho2`` mode ``sync`` (the official code): every rank trains, and every rank joins the
  sharded Lanczos at each refresh (training stops meanwhile).
- ``dho2`` mode ``overlap``: the world is split into an update group U (`OverlapUpdate`) and
  a curvature group C (`CurvatureService`). At a refresh U hands C a snapshot of θ; C runs the
  sharded Lanczos while U keeps stepping with the old eigenpairs; the new ones are picked up as
  soon as they arrive (``pickup = "probe"``) or exactly ``pickup_delay`` steps after the
  snapshot (``"fixed"``: deterministic, so a resumed run repeats an uninterrupted one bit for
  bit). The staleness of every installed curvature, in steps, is logged. The hand-off protocol
  is in `admm.handoff`.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from mpihybrid.admm.config import DHO2_SECTIONS, FOSI_SECTIONS, check_split, overlapped
from mpihybrid.admm.curvature import Curvature
from mpihybrid.admm.handoff import CHECKPOINT, CURVATURE, STOP, CurvatureEnd, UpdateEnd
from mpihybrid.admm.update import FOSIWorkload, UpdateSide
from mpihybrid.algorithm import Algorithm
from mpihybrid.comm import Comm, Topology
from mpihybrid.config import Config, require
from mpihybrid.harness import Diverged, Run, check_finite
from mpihybrid.io.checkpoint import State
from mpihybrid.io.state import nest, subtree
from mpihybrid.solvers.fosi import refresh_due


class SyncTraining(Algorithm):
    """FOSI (1 rank) and DHO2 sync: every rank updates and joins every refresh."""

    on_device = True  # fosi and dho2 (either mode) compute on run.device (docs/gpu.md)

    def __init__(self, run: Run):
        super().__init__(run)
        self.work = FOSIWorkload(run.config, run.device)
        self.update = UpdateSide(self.work, run.world)
        self.curvature = Curvature(self.work, run.world)

    def step(self, step: int) -> dict[str, float]:
        t0, f, world = time.perf_counter(), self.config.fosi, self.run.world
        row = {}
        if refresh_due(step, f.first, f.refresh_every):
            self.update.install(*self.curvature.compute(self.work.theta, step))
            row["curvature_staleness"] = 0.0
        loss = world.allreduce_scalar(self.update.train_step(step)) / world.size
        row.update(train_loss=loss, step_seconds=time.perf_counter() - t0)
        check_finite(loss, step)
        return row

    def evaluate(self) -> dict[str, float]:
        return self.update.evaluate()

    def state(self) -> State:
        state = self.update.state()
        state.local.update(nest("curvature", self.curvature.state()))
        return state

    def load_state(self, state: State) -> None:
        self.update.load_state(state)
        self.curvature.load_state(subtree(state.local, "curvature"))

    def parameters(self) -> list[torch.Tensor]:
        return self.work.params

    def memory(self) -> dict[str, int]:
        mem = self.update.memory()
        return {**mem, "curvature_bytes": mem["curvature_bytes"] + self.curvature.basis_bytes}


class FOSI(SyncTraining):
    sections = FOSI_SECTIONS

    @classmethod
    def validate(cls, config: Config, world_size: int) -> None:
        require(world_size == 1, "fosi", f"fosi runs on one process; use 'dho2' for {world_size} ranks")
        check_split(config, world_size)


class DHO2(SyncTraining):
    sections = DHO2_SECTIONS

    @classmethod
    def validate(cls, config: Config, world_size: int) -> None:
        check_split(config, world_size)

    @classmethod
    def create(cls, run: Run) -> Algorithm:
        """Collective: sync mode trains on every rank; overlap splits the world into U and C."""
        if not overlapped(run.config):
            return cls(run)
        curvature = run.config.dho2.curvature_ranks
        topo = Topology(run.world, {"update": run.world.size - curvature, "curvature": curvature})
        role = OverlapUpdate if topo.role == "update" else CurvatureService
        return role(run, topo)


class OverlapUpdate(Algorithm):
    """An update rank in overlap mode: trains with the eigenpairs it has while C computes new ones."""

    def __init__(self, run: Run, topo: Topology):
        super().__init__(run)
        self.topo = topo
        self.work = FOSIWorkload(run.config, run.device)
        self.update = UpdateSide(self.work, topo.comm)
        f = run.config.fosi
        self.hand = UpdateEnd(run.world, topo.comm, topo.ranks("curvature"), self.work.n, f.pairs)
        self.flags = np.zeros(2)  # [this rank's loss, "C's result arrived" at U's first rank]
        self.last_step = 0

    def step(self, step: int) -> dict[str, float]:
        t0, f, d, hand, u = time.perf_counter(), self.config.fosi, self.config.dho2, self.hand, self.topo.comm
        row = {"curvature_busy": float(hand.in_flight is not None)}
        if hand.pending is not None and (d.pickup == "probe" or step >= hand.pending[0] + d.pickup_delay):
            snapshot, values, block = hand.pending
            self.update.install(values, block)
            hand.pending = None
            row["curvature_staleness"] = float(step - snapshot)
        if refresh_due(step, f.first, f.refresh_every) and hand.in_flight is None and hand.pending is None:
            if hand.is_root:
                hand.send(CURVATURE, step, self.work.theta)
            hand.in_flight = step
        self.flags[:] = [self.update.train_step(step), float(hand.is_root and hand.arrived())]
        u.Allreduce(self.flags)
        fixed_due = d.pickup == "fixed" and hand.in_flight is not None and step + 1 >= hand.in_flight + d.pickup_delay
        if self.flags[1] or fixed_due:
            hand.receive()
        self.last_step = step
        loss = self.flags[0] / u.size
        row.update(train_loss=loss, step_seconds=time.perf_counter() - t0)
        check_finite(loss, step)
        return row

    def evaluate(self) -> dict[str, float]:
        return self.update.evaluate()

    def step_comm(self) -> Comm:
        return self.topo.comm  # C runs no steps: it learns of an interruption in `Run.finish`

    def state(self) -> State:
        """Collective over the world: no curvature may be in flight across a checkpoint, so
        U drains it first, then tells C to join the checkpoint."""
        hand = self.hand
        if hand.in_flight is not None:
            hand.receive()
        if hand.is_root:
            hand.send(CHECKPOINT, self.last_step)
        state = self.update.state()
        if hand.pending is not None:
            snapshot, values, block = hand.pending
            state.local.update({"pending/step": np.int64(snapshot), "pending/values": values, "pending/block": block})
        return state

    def load_state(self, state: State) -> None:
        self.update.load_state(state)
        local = state.local
        if "pending/values" in local:
            pending = (
                int(local["pending/step"]),
                np.asarray(local["pending/values"]),
                np.asarray(local["pending/block"]),
            )
            self.hand.pending = pending

    def close(self, error: str) -> None:
        hand = self.hand
        if hand.in_flight is not None:
            hand.receive()
        if hand.is_root:
            hand.send(STOP, -1 if error else self.last_step, self.work.theta)
        self.topo.free()

    def parameters(self) -> list[torch.Tensor]:
        return self.work.params

    def memory(self) -> dict[str, int]:
        return self.update.memory()


class CurvatureService(Algorithm):
    """A curvature rank in overlap mode: serves U's tasks until U says stop (it runs no steps)."""

    def __init__(self, run: Run, topo: Topology):
        super().__init__(run)
        self.topo = topo
        self.work = FOSIWorkload(run.config, run.device)
        self.curvature = Curvature(self.work, topo.comm)
        self.end = CurvatureEnd(run.world, topo.comm, topo.ranks("update"), self.work.n)

    def serve(self) -> str:
        """Collective over C (and the world at checkpoints): returns the final error text."""
        while True:
            kind, step = self.end.next_task(self.work.theta)
            if kind == CHECKPOINT:
                self.run.save(step, State({}, nest("curvature", self.curvature.state())))
            elif kind == STOP:
                return "diverged" if step < 0 else ""
            else:
                self.end.send_result(*self.curvature.compute(self.work.theta, step))

    def train(self) -> None:
        if self.run.resumed is not None:
            self.curvature.load_state(subtree(self.run.resumed.state.local, "curvature"))
        self.curvature.warm_up()
        error = self.serve()
        self.topo.free()
        self.run.finish(self.work.params, self.memory(), error=error)
        if error:
            raise Diverged(error)

    def memory(self) -> dict[str, int]:
        return {"curvature_bytes": self.curvature.basis_bytes, "optimizer_bytes": 0}
