"""What the federated algorithms share: config sections, virtual clients on ranks, client
sampling, derived client batches, server-side evaluation, and the round step.

Rounds are ``train.steps``; ``train.batch_size`` is a client's batch per local step;
``train.lr``, ``train.momentum`` and ``train.weight_decay`` set the update rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from mpihybrid.algorithm import Algorithm
from mpihybrid.blocks import blocks
from mpihybrid.config import Config, ConfigError, require
from mpihybrid.data import Dataset, load_dataset, partition
from mpihybrid.harness import Run
from mpihybrid.models import FlatModel, build_model, evaluation_sums
from mpihybrid.seeding import numpy_rng
from mpihybrid.solvers.zeroth_order import SGDRule, finite_differences


@dataclass
class FLConfig:
    clients: int = 8  # M virtual clients, spread over the ranks (M >> ranks is fine)
    sampled: int = 2  # m clients sampled per round
    local_steps: int = 1  # K local steps per sampled client per round
    lr_schedule: Literal["constant", "cosine"] = "constant"

    def check(self) -> None:
        require(self.clients >= 1, "fl.clients", f"must be >= 1, got {self.clients}")
        require(
            1 <= self.sampled <= self.clients,
            "fl.sampled",
            f"must be in [1, fl.clients = {self.clients}], got {self.sampled}",
        )
        require(self.local_steps >= 1, "fl.local_steps", f"must be >= 1, got {self.local_steps}")


@dataclass
class ZOConfig:
    perturbations: int = 5  # P directions per local step
    mu: float = 1e-3  # finite-difference step
    estimator: Literal["forward", "central"] = "forward"
    direction: Literal["gaussian", "sphere"] = "gaussian"

    def check(self) -> None:
        require(self.perturbations >= 1, "zo.perturbations", f"must be >= 1, got {self.perturbations}")
        require(self.mu > 0, "zo.mu", f"must be > 0, got {self.mu}")


def validate_federation(config: Config, world_size: int) -> None:
    require(
        config.fl.clients >= world_size,
        "fl.clients",
        f"{config.fl.clients} clients cannot occupy {world_size} ranks; use at least as many clients as ranks",
    )


def sampled_clients(seed: int, round_: int, clients: int, sampled: int) -> np.ndarray:
    """The round's clients, sorted; the same on every rank without a message."""
    return np.sort(numpy_rng(seed, "fl-sample", round_).choice(clients, sampled, replace=False))


def learning_rate(config: Config, round_: int) -> float:
    lr = config.train.lr
    if config.fl.lr_schedule == "cosine":
        return 0.5 * lr * (1 + math.cos(math.pi * round_ / config.train.steps))
    return lr


class Federation:
    """The data, clients and model of one federated run, as seen from this rank."""

    def __init__(self, run: Run):
        cfg = run.config
        self.config, self.world = cfg, run.world
        self.data: Dataset = load_dataset(cfg.data, cfg.seed)
        self.client_indices = partition(
            self.data.y_train,
            cfg.fl.clients,
            cfg.seed,
            cfg.data.partition,
            alpha=cfg.data.alpha,
            shards_per_client=cfg.data.shards_per_client,
            owners=self.data.owner_train,
        )
        empty = [k for k, idx in enumerate(self.client_indices) if len(idx) == 0]
        if empty:
            raise ConfigError(
                "data.partition",
                f"clients {empty[:5]} received no samples; use fewer clients or a larger data.alpha",
            )
        self.sizes = np.array([len(i) for i in self.client_indices])
        self.mine = list(blocks(cfg.fl.clients, self.world.size).range(self.world.rank))
        self.x_train, self.y_train = torch.from_numpy(self.data.x_train), torch.from_numpy(self.data.y_train)
        self.flat = FlatModel(build_model(cfg.model, self.data.input_shape, self.data.num_classes, cfg.seed))

    def sampled(self, round_: int) -> np.ndarray:
        return sampled_clients(self.config.seed, round_, self.config.fl.clients, self.config.fl.sampled)

    def batch(self, client: int, round_: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Client's batch for a local step, drawn from (seed, client, round, step): no stored state."""
        idx = self.client_indices[client]
        b = min(self.config.train.batch_size, len(idx))
        pick = numpy_rng(self.config.seed, "fl-batch", client, round_, step).choice(len(idx), b, replace=False)
        sel = torch.from_numpy(idx[np.sort(pick)])
        return self.x_train[sel], self.y_train[sel]

    def evaluate(self, x: torch.Tensor) -> dict[str, float]:
        """The global model's test loss/accuracy and its loss on the whole training set."""
        model = self.flat.load_into_model(x)
        model.eval()
        tl, tc, tn = evaluation_sums(model, torch.from_numpy(self.data.x_test), torch.from_numpy(self.data.y_test))
        rl, _, rn = evaluation_sums(model, self.x_train, self.y_train)
        return {"train_loss": rl / rn, "test_loss": tl / tn, "test_accuracy": tc / tn}


@torch.no_grad()
def zo_local_steps(
    fed: Federation,
    rule: SGDRule,
    client: int,
    round_: int,
    x: torch.Tensor,
    buf: torch.Tensor,
    directions: Callable[[int], list[torch.Tensor]],
) -> torch.Tensor:
    """A client's K local ZO-SGD steps, in place on (x, buf); returns its K×P scalars.

    ``directions(j)`` gives step j's directions: shared by the round's clients in DeComFL,
    the client's own in FedZO.
    """
    z = fed.config.zo
    lr = learning_rate(fed.config, round_)
    scalars = torch.zeros(fed.config.fl.local_steps, z.perturbations, dtype=torch.float32)
    for j in range(fed.config.fl.local_steps):
        xb, yb = fed.batch(client, round_, j)
        dirs = directions(j)

        def loss(v: torch.Tensor, xb: torch.Tensor = xb, yb: torch.Tensor = yb) -> float:
            return float(fed.flat.loss(v, xb, yb))

        scalars[j], _ = finite_differences(loss, x, dirs, z.mu, z.estimator)
        rule.step(x, buf, scalars[j], dirs, lr)
    return scalars


class FederatedRounds(Algorithm):
    """DeComFL, FedAvg and FedZO: a step is a round. The bytes a round moves are measured (the
    collectives under the "round" label), and rank 0 evaluates the global model."""

    sections = {"fl": FLConfig}

    @classmethod
    def validate(cls, config: Config, world_size: int) -> None:
        validate_federation(config, world_size)

    def __init__(self, run: Run):
        super().__init__(run)
        self.fed = Federation(run)

    def play_round(self, round_: int) -> dict[str, float]:
        """Collective: round ``round_`` (0-based); returns extra metrics."""
        raise NotImplementedError

    def global_model(self) -> torch.Tensor:
        raise NotImplementedError

    def step(self, step: int) -> dict[str, float]:
        stats = self.run.world.stats
        before = stats.total(phase="round")
        extra = self.play_round(step - 1)
        moved = stats.total(phase="round") - before
        return {"uplink_bytes": moved.sent_bytes, "downlink_bytes": moved.received_bytes, **extra}

    def evaluate(self) -> dict[str, float]:
        return self.fed.evaluate(self.global_model()) if self.run.is_root else {}

    def parameters(self) -> Iterable[torch.Tensor]:
        return self.fed.flat.tensors(self.global_model())
