"""FedZO: FedAvg whose clients take zeroth-order local steps (P two-point estimates per step,
with directions of their own) and upload d-dimensional models: the ZO baseline that moves
as many bytes as FedAvg, against which DeComFL's scalar rounds are measured."""

from __future__ import annotations

import torch

from mpihybrid.config import Config
from mpihybrid.fl.common import Federation, FLConfig, ZOConfig, validate_federation, zo_local_steps
from mpihybrid.fl.fedavg import LocalUpdate, run_averaging
from mpihybrid.harness import Run
from mpihybrid.solvers.zeroth_order import SGDRule, direction

SECTIONS = {"fl": FLConfig, "zo": ZOConfig}


def validate(config: Config, world_size: int) -> None:
    validate_federation(config, world_size)


def zo_update(fed: Federation) -> LocalUpdate:
    cfg, z = fed.config, fed.config.zo
    rule = SGDRule(cfg.train.momentum, cfg.train.weight_decay)

    def update(client: int, round_: int, x: torch.Tensor) -> torch.Tensor:
        zo_local_steps(
            fed,
            rule,
            client,
            round_,
            x,
            torch.zeros_like(x),
            lambda j: [
                direction(fed.flat.d, cfg.seed, ("fedzo", round_, client, j, p), z.direction)
                for p in range(z.perturbations)
            ],
        )
        return x

    return update


def run(run: Run) -> None:
    run_averaging(run, zo_update)
