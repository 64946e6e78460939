"""The model a FOSI/DHO2 rank trains, and the update side of the algorithm.

Update ranks train data-parallel, each holding only its block of θ's optimizer state, of the
FOSI momentum, of the ADMM dual and anchor, and of the eigenvectors ("partial curvature",
ZeRO-1 style): a step Reduce_scatters the gradient to the blocks, runs the FOSI rule on the
block (its projections are Allreduces of 2r and r floats) and reassembles θ with one
Allgatherv (docs/dho2.md).
"""

from __future__ import annotations

import numpy as np
import torch

from mpihybrid.admm.rule import ADMMRule
from mpihybrid.blocks import blocks
from mpihybrid.comm import Comm
from mpihybrid.config import Config, ConfigError
from mpihybrid.data.shards import ShardedBatches, ShardedTestSet
from mpihybrid.io.checkpoint import State
from mpihybrid.io.state import nest, subtree
from mpihybrid.models import l2_loss
from mpihybrid.solvers.fosi import FOSICore
from mpihybrid.workload import Workload


class FOSIWorkload(Workload):
    """A FOSI/DHO2 rank's `Workload`, whatever its role: its k + ℓ eigenpairs must fit the model."""

    def __init__(self, config: Config, device: torch.device):
        super().__init__(config, device)
        if config.fosi.pairs > self.n:
            raise ConfigError(
                "fosi.k", f"k + ℓ = {config.fosi.pairs} eigenpairs exceed the model's {self.n} parameters"
            )


class UpdateSide:
    """Collective over the update communicator: data-parallel FOSI steps on sharded state."""

    def __init__(self, work: FOSIWorkload, comm: Comm):
        cfg = work.config
        self.work, self.comm, self.config = work, comm, cfg
        self.batches = ShardedBatches(work.data.y_train, comm.rank, comm.size, cfg.train.batch_size, cfg.seed)
        self.split = blocks(work.n, comm.size)
        self.block = self.split.slice(comm.rank)
        self.theta_block = work.theta[self.block].clone()
        self.grad_block = torch.zeros_like(self.theta_block)
        f, t, a = cfg.fosi, cfg.train, cfg.admm
        self.core = FOSICore(
            self.theta_block,
            k=f.k,
            base=f.base,
            lr=t.lr,
            momentum=t.momentum,
            alpha=f.alpha,
            decay=f.decay,
            clip_max=f.clip_max,
            reduce=self._reduce,
        )
        self.admm = ADMMRule(self.theta_block, a.sigma, a.round_steps or f.refresh_every, a.enabled)
        self.test = ShardedTestSet(work.data, comm, work.device)

    def _reduce(self, t: torch.Tensor) -> torch.Tensor:
        with self.comm.stats.label("projections"):
            return self.comm.Allreduce(t)

    def train_step(self, step: int) -> float:
        """Collective: one data-parallel FOSI step; returns this rank's loss."""
        work, comm = self.work, self.comm
        idx = torch.from_numpy(self.batches.indices(step - 1)).to(work.device)
        work.grad.zero_()
        loss = l2_loss(
            work.model(work.x_train[idx]), work.y_train[idx], self.config.train.weight_decay, work.model.parameters()
        )
        loss.backward()
        with comm.stats.label("gradients"):
            comm.Reduce_scatter(work.grad, self.grad_block, self.split.counts)
        self.grad_block.div_(comm.size)
        self.core.step(self.admm.gradient(self.grad_block))
        self.admm.after_step(step, self.theta_block)
        with comm.stats.label("parameters"):
            comm.Allgatherv(self.theta_block, work.theta, self.split.counts)
        return float(loss.detach())

    def evaluate(self) -> dict[str, float]:
        return self.test.evaluate(self.work.model)

    def install(self, values: np.ndarray, vectors_block: np.ndarray) -> None:
        self.core.set_curvature(values, vectors_block)

    def state(self) -> State:
        local = {**nest("fosi", self.core.state()), **nest("admm", self.admm.state())}
        return State({"theta": self.work.theta}, {**local, "theta_block": self.theta_block.clone()})

    def load_state(self, state: State) -> None:
        self.work.theta.copy_(torch.as_tensor(state.shared["theta"]))
        self.theta_block.copy_(torch.as_tensor(state.local["theta_block"]))
        self.core.load_state(subtree(state.local, "fosi"))
        self.admm.load_state(subtree(state.local, "admm"))

    def memory(self) -> dict[str, int]:
        """Persistent bytes of this rank: the eigenpairs (curvature) and the rest of the rule's state."""
        core = self.core
        curvature = [core.V, core.values, core.eta, core.gram] if core.V is not None else []
        curv = sum(t.numel() * t.element_size() for t in curvature)
        return {"curvature_bytes": curv, "optimizer_bytes": core.state_bytes() - curv + self.admm.state_bytes()}
