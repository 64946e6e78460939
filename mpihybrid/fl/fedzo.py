"""FedZO: FedAvg whose clients take zeroth-order local steps (P two-point estimates per step,
with directions of their own) and upload d-dimensional models: the ZO baseline that moves
as many bytes as FedAvg, against which DeComFL's scalar rounds are measured."""

from __future__ import annotations

import torch

from mpihybrid.fl.common import ZOConfig, zo_local_steps
from mpihybrid.fl.fedavg import FedAvg
from mpihybrid.solvers.zeroth_order import direction


class FedZO(FedAvg):
    sections = {**FedAvg.sections, "zo": ZOConfig}

    def local_update(self, client: int, round_: int, x: torch.Tensor) -> torch.Tensor:
        d, z, seed = self.fed.flat.d, self.config.zo, self.config.seed

        def directions(j: int) -> list[torch.Tensor]:
            return [direction(d, seed, ("fedzo", round_, client, j, p), z.direction) for p in range(z.perturbations)]

        zo_local_steps(self.fed, self.rule, client, round_, x, torch.zeros_like(x), directions)
        return x
