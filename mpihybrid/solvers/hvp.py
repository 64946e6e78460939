"""Hessian-vector products of a model's mini-batch loss at a flat parameter vector.

Forward-over-reverse (``torch.func.jvp`` of ``torch.func.grad``) costs about two gradients
and no second graph; double backward (``autograd.grad`` twice) is the fallback for models
whose ops lack forward-mode rules. The loss is a `FlatModel.loss` on a fixed batch, so buffers
never move and the L2 term is inside (FOSI needs weight decay in the loss, not in the
optimizer, so the curvature sees it).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Literal

import torch
from torch.func import grad, jvp, vmap

HVPMethod = Literal["forward-over-reverse", "double-backward"]


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


def block_hvp(
    hvp: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], theta: torch.Tensor, vectors: torch.Tensor
) -> torch.Tensor:
    """∇²loss(θ)·vᵢ for every row vᵢ of ``vectors`` in one vmapped pass; one product at a time,
    with a warning, where the model's ops have no batching rule."""
    try:
        return vmap(lambda v: hvp(theta, v))(vectors)
    except (RuntimeError, NotImplementedError) as exc:
        warnings.warn(f"vmapped HVP failed ({exc}); one vector at a time", RuntimeWarning, stacklevel=2)
        return torch.stack([hvp(theta, v) for v in vectors])
