"""A model's parameters as one flat float32 vector, the form optimizers, collectives, Lanczos
and zeroth-order steps work on.

`flatten_parameters` re-seats a model's parameters (and gradients) as views into one vector, for
training in place. `FlatModel` evaluates a model at any flat vector without touching its
parameters (``torch.func.functional_call``), for HVPs and zeroth-order estimates. Buffers
(BatchNorm running statistics) are passed as copies, so such an evaluation never moves them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from mpihybrid.models.losses import l2_loss


def flatten_parameters(params: list[nn.Parameter]) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-seat the parameters and their gradients as views into one flat float32 vector each,
    so optimizers and collectives see θ and ∇ as vectors without copies. Returns (θ, grad)."""
    theta = torch.cat([p.detach().reshape(-1) for p in params])
    grad = torch.zeros_like(theta)
    offset = 0
    for p in params:
        p.data = theta[offset : offset + p.numel()].view_as(p)
        p.grad = grad[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    return theta, grad


class FlatModel:
    """``model`` as a function of a flat parameter vector x (in the parameters' order)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.names = [n for n, _ in model.named_parameters()]
        self.shapes = [p.shape for p in model.parameters()]
        self.sizes = [p.numel() for p in model.parameters()]
        self.d = sum(self.sizes)

    def initial(self) -> torch.Tensor:
        """A copy of the model's own parameters, flattened."""
        return torch.cat([p.detach().reshape(-1) for p in self.model.parameters()]).clone()

    def tensors(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.split(x, self.sizes))

    def forward(self, x: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        params = {n: t.view(s) for n, t, s in zip(self.names, self.tensors(x), self.shapes)}
        buffers = {n: b.detach().clone() for n, b in self.model.named_buffers()}
        return functional_call(self.model, {**params, **buffers}, (inputs,))

    def loss(self, x: torch.Tensor, inputs: torch.Tensor, y: torch.Tensor, weight_decay: float = 0.0) -> torch.Tensor:
        """Cross-entropy at x (plus the L2 term on x), differentiable in x."""
        return l2_loss(self.forward(x, inputs), y, weight_decay, (x,))

    @torch.no_grad()
    def load_into_model(self, x: torch.Tensor) -> nn.Module:
        torch.nn.utils.vector_to_parameters(x, self.model.parameters())
        return self.model
