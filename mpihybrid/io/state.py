"""Checkpoint trees: flat dicts of arrays keyed by "a/b" paths, and torch state in and out of them."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

Tree = dict[str, Any]  # name ("a/b") -> numpy array, torch tensor, int, float or str


def nest(prefix: str, tree: Tree) -> Tree:
    """``tree`` with every name moved under ``prefix/``."""
    return {f"{prefix}/{name}": value for name, value in tree.items()}


def subtree(tree: Tree, prefix: str) -> Tree:
    """The entries under ``prefix/``, with the prefix removed (the inverse of `nest`)."""
    head = prefix + "/"
    return {name[len(head) :]: value for name, value in tree.items() if name.startswith(head)}


def module_tree(model: nn.Module, prefix: str = "model") -> Tree:
    return nest(prefix, {name: t.detach().clone() for name, t in model.state_dict().items()})


def load_module_tree(model: nn.Module, tree: Tree, prefix: str = "model") -> None:
    model.load_state_dict({name: torch.as_tensor(t) for name, t in subtree(tree, prefix).items()}, strict=True)


def optimizer_tree(opt: torch.optim.Optimizer, prefix: str = "optimizer") -> Tree:
    """Per-parameter state tensors (Adam moments and step, SGD momentum buffers)."""
    tree = {}
    for index, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            tree[f"{index}/{key}"] = torch.as_tensor(value).detach().clone()
    return nest(prefix, tree)


def load_optimizer_tree(opt: torch.optim.Optimizer, tree: Tree, prefix: str = "optimizer") -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in subtree(tree, prefix).items():
        index, key = name.split("/", 1)
        state.setdefault(int(index), {})[key] = torch.as_tensor(value)
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
