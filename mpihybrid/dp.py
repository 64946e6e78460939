"""dp-adam: data-parallel Adam or SGD, the first-order baseline every comparison needs.

Each rank holds an IID shard of the training set and a full model replica. A step takes
``batch_size / world_size`` samples per rank, sums the gradients with one Allreduce of the
flat gradient buffer (the parameters' .grad tensors are views into it, so nothing is copied)
and applies the same optimizer step everywhere, so the replicas stay bitwise identical.
Batches are derived from the seed and the step (`ShardedBatches`), so a checkpoint needs only
the model, the optimizer state and the step to resume bit for bit.

Everything a step touches lives on ``run.device`` (the model, the flat gradient the Allreduce
sums, the optimizer state, the training and test tensors, moved once); only the batch indices
are derived on the CPU and copied per step (docs/gpu.md).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from mpihybrid.algorithm import Algorithm
from mpihybrid.config import Config, ConfigError
from mpihybrid.data.shards import ShardedBatches, ShardedTestSet
from mpihybrid.harness import Run, check_finite
from mpihybrid.io.checkpoint import State
from mpihybrid.io.state import load_module_tree, load_optimizer_tree, module_tree, optimizer_tree
from mpihybrid.models import l2_loss
from mpihybrid.solvers.optimizers import make_optimizer
from mpihybrid.workload import Workload


class DataParallel(Algorithm):
    on_device = True

    @classmethod
    def validate(cls, config: Config, world_size: int) -> None:
        if config.train.batch_size % world_size:
            raise ConfigError(
                "train.batch_size", f"{config.train.batch_size} does not split evenly over {world_size} ranks"
            )

    def __init__(self, run: Run):
        super().__init__(run)
        cfg, world = run.config, run.world
        self.work = work = Workload(cfg, run.device)
        self.batches = ShardedBatches(work.data.y_train, world.rank, world.size, cfg.train.batch_size, cfg.seed)
        self.test = ShardedTestSet(work.data, world, work.device)
        self.model, self.params = work.model, work.params
        t = cfg.train
        self.opt = make_optimizer(t.optimizer, self.params, t.lr, t.momentum)

    def step(self, step: int) -> dict[str, float]:
        world, t = self.run.world, self.config.train
        work = self.work
        idx = torch.from_numpy(self.batches.indices(step - 1)).to(work.device)
        self.opt.zero_grad(set_to_none=False)
        loss = l2_loss(self.model(work.x_train[idx]), work.y_train[idx], t.weight_decay, self.params)
        loss.backward()
        with world.stats.label("gradients"):
            world.Allreduce(work.grad)
        work.grad.div_(world.size)
        self.opt.step()
        mean_loss = world.allreduce_scalar(loss.item()) / world.size
        check_finite(mean_loss, step)
        return {"train_loss": mean_loss}

    def evaluate(self) -> dict[str, float]:
        return self.test.evaluate(self.model)

    def state(self) -> State:
        return State({**module_tree(self.model), **optimizer_tree(self.opt)})

    def load_state(self, state: State) -> None:
        load_module_tree(self.model, state.shared)
        load_optimizer_tree(self.opt, state.shared)

    def parameters(self) -> Iterable[torch.Tensor]:
        return self.params

    def memory(self) -> dict[str, int]:
        return {"optimizer_bytes": sum(v.nbytes for v in optimizer_tree(self.opt).values())}
