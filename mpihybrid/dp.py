"""dp-adam: data-parallel Adam or SGD, the first-order baseline every comparison needs.

Each rank holds an IID shard of the training set and a full model replica. A step takes
``batch_size / world_size`` samples per rank, sums the gradients with one Allreduce of the
flat gradient buffer (the parameters' .grad tensors are views into it, so nothing is copied)
and applies the same optimizer step everywhere, so the replicas stay bitwise identical.

Batches are derived, not stored: step t of rank r uses the permutation of epoch
t // steps_per_epoch drawn from (seed, "dp-batches", r, epoch). A checkpoint therefore needs
only the model, the optimizer state and the step to resume bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch

from mpihybrid.comm import Comm
from mpihybrid.config import Config, ConfigError
from mpihybrid.data import Dataset, load_dataset, partition
from mpihybrid.harness import Diverged, Run
from mpihybrid.io.state import load_module_tree, load_optimizer_tree, module_tree, optimizer_tree
from mpihybrid.models import build_model, evaluation_sums, flatten_parameters, l2_loss
from mpihybrid.seeding import numpy_rng

SECTIONS: dict[str, type] = {}


def validate(config: Config, world_size: int) -> None:
    if config.train.batch_size % world_size:
        raise ConfigError(
            "train.batch_size", f"{config.train.batch_size} does not split evenly over {world_size} ranks"
        )


class ShardedBatches:
    """Each rank of ``comm`` holds an IID shard of the training set; step t (0-based) of a rank
    uses the permutation of epoch t // steps_per_epoch drawn from (seed, "dp-batches", rank, epoch)."""

    def __init__(self, labels: np.ndarray, rank: int, size: int, batch_size: int, seed: int):
        self.shard = partition(labels, size, seed, "iid")[rank]
        self.rank, self.seed = rank, seed
        self.local_batch = batch_size // size
        self.steps_per_epoch = len(self.shard) // self.local_batch
        if self.steps_per_epoch < 1:
            raise ConfigError(
                "train.batch_size", f"a rank's batch of {self.local_batch} exceeds its {len(self.shard)} samples"
            )

    def indices(self, step: int) -> np.ndarray:
        epoch, i = divmod(step, self.steps_per_epoch)
        order = numpy_rng(self.seed, "dp-batches", self.rank, epoch).permutation(len(self.shard))
        return self.shard[order[i * self.local_batch : (i + 1) * self.local_batch]]


class ShardedTestSet:
    """Each rank of ``comm`` evaluates a contiguous block of the test set; one Allreduce of the
    sums gives every rank the whole set's loss and accuracy."""

    def __init__(self, data: Dataset, comm: Comm):
        part = np.array_split(np.arange(len(data.y_test)), comm.size)[comm.rank]
        self.x, self.y = torch.from_numpy(data.x_test[part]), torch.from_numpy(data.y_test[part])
        self.comm = comm

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Collective over ``comm``: test loss and accuracy (the model is back in train mode after)."""
        model.eval()
        sums = self.comm.Allreduce(np.array(evaluation_sums(model, self.x, self.y), dtype=np.float64))
        model.train()
        return {"test_loss": sums[0] / sums[2], "test_accuracy": sums[1] / sums[2]}


def make_optimizer(config: Config, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    t = config.train
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr)
    return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum)


def run(run: Run) -> None:
    config, world = run.config, run.world
    t = config.train
    data = load_dataset(config.data, config.seed)
    batches = ShardedBatches(data.y_train, world.rank, world.size, t.batch_size, config.seed)
    x_train, y_train = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    test = ShardedTestSet(data, world)

    model = build_model(config.model, data.input_shape, data.num_classes, config.seed)
    params = list(model.parameters())
    _, grad = flatten_parameters(params)
    opt = make_optimizer(config, params)
    if run.resumed is not None:
        load_module_tree(model, run.resumed.state.shared)
        load_optimizer_tree(opt, run.resumed.state.shared)
    run.set_threads()

    error = ""
    try:
        for step in range(run.start_step + 1, t.steps + 1):
            run.step_hook(step)
            idx = torch.from_numpy(batches.indices(step - 1))
            opt.zero_grad(set_to_none=False)
            loss = l2_loss(model, model(x_train[idx]), y_train[idx], t.weight_decay)
            loss.backward()
            with world.stats.label("gradients"):
                world.Allreduce(grad)
            grad.div_(world.size)
            opt.step()
            mean_loss = world.allreduce_scalar(loss.item()) / world.size
            run.check_finite(mean_loss, step)
            row = {"wall_time": run.elapsed(), "train_loss": mean_loss}
            if step % t.eval_every == 0 or step == t.steps:
                row.update(test.evaluate(model))
                run.progress(step, t.steps, loss=mean_loss, acc=row["test_accuracy"])
            run.results.log(step, **row)
            if run.checkpoint_due(step, t.steps):
                run.save(step, {**module_tree(model), **optimizer_tree(opt)}, {})
    except Diverged as exc:
        error = str(exc)
    run.finish(params, memory={"optimizer_bytes": sum(v.nbytes for v in optimizer_tree(opt).values())}, error=error)
    if error:
        raise Diverged(error)
