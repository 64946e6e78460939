"""Hessian-vector products of a model's mini-batch loss at a flat parameter vector.

Forward-over-reverse (``torch.func.jvp`` of ``torch.func.grad``) costs about two gradients
and no second graph; double backward (``autograd.grad`` twice) is the fallback for models
whose ops lack forward-mode rules. Buffers (BatchNorm running statistics) are passed to
``functional_call`` as copies, so an HVP never moves them; the loss includes the L2 term
(FOSI needs weight decay in the loss, not in the optimizer, so the curvature sees it).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call, grad, jvp

HVPMethod = Literal["forward-over-reverse", "double-backward"]


class FlatLoss:
    """loss(θ) of ``model`` on a fixed batch, for θ a flat vector in the parameters' order."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, weight_decay: float = 0.0):
        self.model, self.x, self.y, self.weight_decay = model, x, y, weight_decay
        self.names = [n for n, _ in model.named_parameters()]
        self.shapes = [p.shape for p in model.parameters()]
        self.sizes = [p.numel() for p in model.parameters()]
        self.buffers = {n: b.detach().clone() for n, b in model.named_buffers()}

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        params = {n: t.view(s) for n, t, s in zip(self.names, torch.split(theta, self.sizes), self.shapes)}
        buffers = {n: b.clone() for n, b in self.buffers.items()}
        loss = nn.functional.cross_entropy(functional_call(self.model, {**params, **buffers}, (self.x,)), self.y)
        if self.weight_decay:
            loss = loss + 0.5 * self.weight_decay * (theta * theta).sum()
        return loss


def hvp_function(
    loss: Callable[[torch.Tensor], torch.Tensor], method: HVPMethod = "forward-over-reverse"
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """(θ, v) -> ∇²loss(θ)·v. Forward-over-reverse falls back to double backward, with a
    warning, the first time forward mode fails."""

    def double_backward(theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        theta = theta.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(theta), theta, create_graph=True)
        (hv,) = torch.autograd.grad(g, theta, grad_outputs=v)
        return hv.detach()

    if method == "double-backward":
        return double_backward
    state = {"forward": True}

    def forward_over_reverse(theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if state["forward"]:
            try:
                return jvp(grad(loss), (theta.detach(),), (v,))[1]
            except (RuntimeError, NotImplementedError) as exc:
                warnings.warn(
                    f"forward-over-reverse HVP failed ({exc}); using double backward", RuntimeWarning, stacklevel=2
                )
                state["forward"] = False
        return double_backward(theta, v)

    return forward_over_reverse
