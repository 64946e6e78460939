"""FedAvg: sampled clients run K local SGD steps from the global model and upload their
d-dimensional models, averaged with weights n_k / Σ n (known on every rank from the seeded
partition, so only the weighted models travel: one Allreduce of d float32 per round).

`averaging_round` is shared with FedZO, which differs only in its local update.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call

from mpihybrid.config import Config
from mpihybrid.fl.common import Federation, FLConfig, learning_rate, run_rounds, validate_federation
from mpihybrid.harness import Diverged, Run
from mpihybrid.solvers.zeroth_order import SGDRule

SECTIONS = {"fl": FLConfig}
LocalUpdate = Callable[[int, int, torch.Tensor], torch.Tensor]  # (client, round, x) -> new x


def validate(config: Config, world_size: int) -> None:
    validate_federation(config, world_size)


def sgd_update(fed: Federation) -> LocalUpdate:
    cfg, flat = fed.config, fed.flat
    rule = SGDRule(cfg.train.momentum, cfg.train.weight_decay)

    def update(client: int, round_: int, x: torch.Tensor) -> torch.Tensor:
        lr, buf = learning_rate(cfg, round_), torch.zeros_like(x)
        for j in range(cfg.fl.local_steps):
            xb, yb = fed.batch(client, round_, j)
            xg = x.detach().requires_grad_(True)
            loss = nn.functional.cross_entropy(functional_call(flat.model, flat.params(xg), (xb,)), yb)
            (g,) = torch.autograd.grad(loss, xg)
            rule.apply(x, buf, g, lr)
        return x

    return update


def averaging_round(fed: Federation, x: torch.Tensor, round_: int, local_update: LocalUpdate) -> torch.Tensor:
    """One FedAvg-style round; returns the new global model (identical on every rank)."""
    sampled = fed.sampled(round_)
    weights = fed.sizes[sampled] / fed.sizes[sampled].sum()
    acc = torch.zeros_like(x)
    for k, w in zip(sampled, weights):
        if k in fed.mine:
            acc.add_(local_update(int(k), round_, x.clone()), alpha=float(w))
    with fed.world.stats.label("round"):
        fed.world.Allreduce(acc)
    if not torch.isfinite(acc).all():
        raise Diverged(f"training diverged in round {round_ + 1}: non-finite model")
    return acc


def run_averaging(run: Run, make_update: Callable[[Federation], LocalUpdate]) -> None:
    """FedAvg and FedZO: the shared round loop with a model average per round."""
    fed = Federation(run)
    state = {"global/x": fed.flat.initial()}
    if run.resumed is not None:
        state["global/x"] = run.resumed.state.shared["global/x"].clone()
    run.set_threads()
    update = make_update(fed)

    def play(round_: int) -> dict[str, float]:
        state["global/x"] = averaging_round(fed, state["global/x"], round_, update)
        return {}

    error = run_rounds(run, fed, play, lambda: state["global/x"], lambda: (dict(state), {}))
    run.finish(fed.flat.tensors(state["global/x"]), error=error)
    if error:
        raise Diverged(error)


def run(run: Run) -> None:
    run_averaging(run, sgd_update)
