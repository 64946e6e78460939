"""Data-parallel views of a data set: each rank's IID training shard with derived batches, and
each rank's block of the test set for a collective evaluation."""

from __future__ import annotations

import numpy as np
import torch

from mpihybrid.blocks import blocks
from mpihybrid.comm import Comm
from mpihybrid.data.datasets import Dataset
from mpihybrid.data.partition import partition
from mpihybrid.errors import ConfigError
from mpihybrid.models import evaluation_sums
from mpihybrid.seeding import numpy_rng


class ShardedBatches:
    """Each rank holds an IID shard of the training set; step t (0-based) of a rank uses the
    permutation of epoch t // steps_per_epoch drawn from (seed, "dp-batches", rank, epoch), so
    batches are derived, never stored, and a resume needs only the step."""

    def __init__(self, labels: np.ndarray, rank: int, size: int, batch_size: int, seed: int):
        self.shard = partition(labels, size, seed, "iid")[rank]
        self.rank, self.seed = rank, seed
        self.local_batch = batch_size // size
        self.steps_per_epoch = len(self.shard) // self.local_batch
        if self.steps_per_epoch < 1:
            raise ConfigError(
                "train.batch_size", f"a rank's batch of {self.local_batch} exceeds its {len(self.shard)} samples"
            )
        self._epoch, self._order = -1, np.empty(0, dtype=np.int64)  # the permutation of the current epoch

    def indices(self, step: int) -> np.ndarray:
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:  # drawing costs ~0.1 ms (most of a small model's step): once per epoch
            self._order = numpy_rng(self.seed, "dp-batches", self.rank, epoch).permutation(len(self.shard))
            self._epoch = epoch
        return self.shard[self._order[i * self.local_batch : (i + 1) * self.local_batch]]


class ShardedTestSet:
    """Each rank of ``comm`` evaluates a contiguous block of the test set (held on ``device``); one
    Allreduce of the sums gives every rank the whole set's loss and accuracy."""

    def __init__(self, data: Dataset, comm: Comm, device: torch.device | str = "cpu"):
        part = blocks(len(data.y_test), comm.size).slice(comm.rank)
        self.x = torch.from_numpy(data.x_test[part]).to(device)
        self.y = torch.from_numpy(data.y_test[part]).to(device)
        self.comm = comm

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Collective over ``comm``: test loss and accuracy (the model is back in train mode after)."""
        model.eval()
        sums = self.comm.Allreduce(np.array(evaluation_sums(model, self.x, self.y), dtype=np.float64))
        model.train()
        return {"test_loss": sums[0] / sums[2], "test_accuracy": sums[1] / sums[2]}
