"""FedZO: FedAvg whose clients take zeroth-order local steps (P two-point estimates per step,
with directions of their own) and upload d-dimensional models: the ZO baseline that moves
as many bytes as FedAvg, against which DeComFL's scalar rounds are measured. The local steps
are DeComFL's in-place ones (`zo_local_steps`), on the rank's model."""

from __future__ import annotations

import torch

from mpihybrid.fl.common import ZOConfig, zo_local_steps
from mpihybrid.fl.fedavg import FedAvg


class FedZO(FedAvg):
    sections = {**FedAvg.sections, "zo": ZOConfig}

    @torch.no_grad()
    def local_update(self, client: int, round_: int, x: torch.Tensor) -> torch.Tensor:
        fed = self.fed
        fed.load(fed.flat.tensors(x))
        bufs = [torch.zeros_like(p) for p in fed.trainable] if self.rule.momentum else []
        zo_local_steps(fed, self.rule, client, round_, bufs, lambda j: ("fedzo", round_, client, j))
        for t, p in zip(fed.flat.tensors(x), fed.trainable):
            t.copy_(p.view(-1))
        return x
