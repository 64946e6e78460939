"""FedAvg: sampled clients run K local SGD steps from the global model and upload their
d-dimensional models, averaged with weights n_k / Σ n (known on every rank from the seeded
partition, so only the weighted models travel: one Allreduce of d float32 per round).

FedZO (`fl.fedzo`) is FedAvg with another local update.
"""

from __future__ import annotations

import torch

from mpihybrid.config import Config, ConfigError
from mpihybrid.fl.common import LANGUAGE_MODEL, FederatedRounds, learning_rate
from mpihybrid.harness import Diverged, Run
from mpihybrid.io.checkpoint import State
from mpihybrid.solvers.zeroth_order import SGDRule


class FedAvg(FederatedRounds):
    @classmethod
    def validate(cls, config: Config, world_size: int) -> None:
        super().validate(config, world_size)
        if config.model.name == LANGUAGE_MODEL and config.model.trainable != "all":
            raise ConfigError("model.trainable", "FedAvg and FedZO train and upload the whole model: use 'all'")

    def __init__(self, run: Run):
        super().__init__(run)
        self.x = self.fed.flat.initial()
        self.rule = SGDRule(self.config.train.momentum, self.config.train.weight_decay)

    def local_update(self, client: int, round_: int, x: torch.Tensor) -> torch.Tensor:
        """K local SGD steps from the global model ``x`` (a copy, updated in place)."""
        fed, lr, buf = self.fed, learning_rate(self.config, round_), torch.zeros_like(x)
        for j in range(self.config.fl.local_steps):
            xb, yb = fed.batch(client, round_, j)
            xg = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(fed.flat.loss(xg, xb, yb), xg)
            self.rule.apply(x, buf, g, lr)
        return x

    def play_round(self, round_: int) -> dict[str, float]:
        fed = self.fed
        sampled = fed.sampled(round_)
        weights = fed.sizes[sampled] / fed.sizes[sampled].sum()
        acc = torch.zeros_like(self.x)
        for k, w in zip(sampled, weights):
            if k in fed.mine:
                acc.add_(self.local_update(int(k), round_, self.x.clone()), alpha=float(w))
        with fed.world.stats.label("round"):
            fed.world.Allreduce(acc)
        if not torch.isfinite(acc).all():
            raise Diverged(f"training diverged in round {round_ + 1}: non-finite model")
        self.x = acc
        return {}

    def global_model(self) -> list[torch.Tensor]:
        return self.fed.flat.tensors(self.x)

    def state(self) -> State:
        return State({"global/x": self.x})

    def load_state(self, state: State) -> None:
        self.x = state.shared["global/x"].clone()
