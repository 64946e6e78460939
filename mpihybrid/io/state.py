"""Flatten torch modules and optimizers into checkpoint trees and back, bit for bit."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def module_tree(model: nn.Module, prefix: str = "model") -> dict[str, torch.Tensor]:
    return {f"{prefix}/{name}": t.detach().clone() for name, t in model.state_dict().items()}


def load_module_tree(model: nn.Module, tree: dict[str, Any], prefix: str = "model") -> None:
    state = {name[len(prefix) + 1 :]: torch.as_tensor(t) for name, t in tree.items() if name.startswith(prefix + "/")}
    model.load_state_dict(state, strict=True)


def optimizer_tree(opt: torch.optim.Optimizer, prefix: str = "optimizer") -> dict[str, torch.Tensor]:
    """Per-parameter state tensors (Adam moments and step, SGD momentum buffers)."""
    tree = {}
    for index, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            tree[f"{prefix}/{index}/{key}"] = torch.as_tensor(value).detach().clone()
    return tree


def load_optimizer_tree(opt: torch.optim.Optimizer, tree: dict[str, Any], prefix: str = "optimizer") -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tree.items():
        if name.startswith(prefix + "/"):
            _, index, key = name.split("/", 2)
            state.setdefault(int(index), {})[key] = torch.as_tensor(value)
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
