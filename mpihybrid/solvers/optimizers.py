"""The first-order optimizers: data-parallel training's and FOSI's base optimizer."""

from __future__ import annotations

from typing import Literal

import torch

OptimizerName = Literal["adam", "sgd", "heavy-ball", "gd"]


def make_optimizer(
    name: OptimizerName, params: list[torch.Tensor], lr: float, momentum: float
) -> torch.optim.Optimizer:
    """Adam, or SGD with ``momentum`` ("sgd", "heavy-ball") or without it ("gd")."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=0.0 if name == "gd" else momentum)
