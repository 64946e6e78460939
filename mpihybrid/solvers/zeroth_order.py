"""Zeroth-order kernels: seeded directions, finite-difference scalars, and the ZO-SGD step.

Everything works on one flat float32 parameter vector. A direction is regenerated from its
seed path whenever it is needed, always on the CPU in float32 with one generator per
direction, so a client's local step and a server's replay of it produce the same bits.
The model is never perturbed in place: x + μz is a new tensor (an add-then-subtract restore
is not exact in float32).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from mpihybrid.seeding import Key, torch_generator

LossFn = Callable[[torch.Tensor], float]  # flat parameters -> loss on a fixed batch


def direction(d: int, seed: int, path: Sequence[Key], kind: str = "gaussian") -> torch.Tensor:
    """z ~ N(0, I_d), or on the sphere of radius sqrt(d) (so E[z zᵀ] = I in both cases)."""
    z = torch.randn(d, generator=torch_generator(seed, *path), dtype=torch.float32)
    if kind == "sphere":
        z.mul_(math.sqrt(d) / z.norm())
    return z


def finite_differences(
    loss: LossFn, x: torch.Tensor, directions: Sequence[torch.Tensor], mu: float, estimator: str = "forward"
) -> tuple[torch.Tensor, float]:
    """Directional derivative estimates g_p ≈ ∇f(x)·z_p, and f(x).

    forward: (f(x + μz) − f(x)) / μ, one evaluation per direction plus f(x);
    central: (f(x + μz) − f(x − μz)) / 2μ, two per direction.
    """
    f0 = loss(x)
    scalars = torch.empty(len(directions), dtype=torch.float32)
    for p, z in enumerate(directions):
        plus = loss(x + mu * z)
        if estimator == "central":
            scalars[p] = (plus - loss(x - mu * z)) / (2 * mu)
        else:
            scalars[p] = (plus - f0) / mu
    return scalars, f0


@dataclass(frozen=True)
class SGDRule:
    """SGD with L2 weight decay and heavy-ball momentum, for gradients and ZO estimates alike."""

    momentum: float = 0.0
    weight_decay: float = 0.0

    def apply(self, x: torch.Tensor, buf: torch.Tensor, g: torch.Tensor, lr: float) -> None:
        """x ← x − lr·m with m = momentum·m + g + wd·x, in place, in this exact order."""
        if self.weight_decay:
            g = g.add(x, alpha=self.weight_decay)
        if self.momentum:
            buf.mul_(self.momentum).add_(g)
            g = buf
        x.add_(g, alpha=-lr)

    def step(
        self, x: torch.Tensor, buf: torch.Tensor, scalars: torch.Tensor, directions: Sequence[torch.Tensor], lr: float
    ) -> None:
        """`apply` to the ZO estimate (1/P)Σ_p g_p z_p, summed over p in order."""
        g = torch.zeros_like(x)
        inv_p = 1.0 / len(directions)
        for s, z in zip(scalars.tolist(), directions):
            g.add_(z, alpha=s * inv_p)
        self.apply(x, buf, g, lr)
