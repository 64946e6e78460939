"""FOSI: a base optimizer on the complement of the top curvature directions, Newton steps on
them (FOSI, arXiv 2302.08484, as in its official code; docs/dho2.md).

With V (r×n, orthonormal rows: ℓ bottom then k top Ritz vectors) and η_i = 1/|λ_i|, a step on
gradient g is

    g1 = Vᵀ(Vg), g2 = g − g1                  split
    m  ← M(g1, m)                             Adam: (1−β)g1 + βm; heavy-ball: g1 + βm; GD: g1
    d1 = Vᵀ(η ⊙ Vm)                           Newton direction on span(V)
    u  = BaseOpt(g2)                          the base step, its state fed with g2 only
    θ  ← θ + c·(u − Vᵀ(Vu)) − α·d1            c = clip(|λ_max|/|λ_(k)|, 1, c_max); 1 for Adam

Before the first curvature (V = 0) the base optimizer steps the parameters itself, so FOSI is
the base optimizer bit for bit. The momentum m survives curvature refreshes.

`FOSICore` works on a flat float32 block of the parameters. Sharded, every rank holds its
block of θ, g, m, V and of the base optimizer's state (ZeRO-1 style); ``reduce`` sums the
r-length projections over the blocks (an Allreduce), which is all the update communicates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from mpihybrid.solvers.optimizers import make_optimizer

Base = Literal["adam", "heavy-ball", "gd"]
EIGEN_SHIFT = 1e-12  # η = 1/max(|λ|, shift): a zero eigenvalue must not give an infinite step


def refresh_due(step: int, warmup: int, every: int) -> bool:
    """FOSI's schedule: the first curvature at step ``warmup``, then every ``every`` steps (1-based)."""
    return step >= warmup and (step - warmup) % every == 0


class FOSICore:
    """FOSI on one flat float32 parameter block (the whole vector when ``reduce`` is None)."""

    def __init__(
        self,
        theta: torch.Tensor,
        *,
        k: int,
        base: Base = "adam",
        lr: float = 1e-3,
        momentum: float = 0.9,
        alpha: float = 0.01,
        decay: float = 0.9,
        clip_max: float | None = None,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self.theta = theta
        self.kind = base
        self.k = k  # top eigenpairs among the installed ones (the rest are the ℓ bottom ones)
        self.base = make_optimizer(base, [theta], lr, momentum)
        self.alpha, self.decay = alpha, decay
        self.clip_max = 1.0 if base == "adam" else (3.0 if clip_max is None else clip_max)
        self.reduce = reduce or (lambda t: t)
        self.velocity = torch.zeros_like(theta)
        self.values: torch.Tensor | None = None
        self.V: torch.Tensor | None = None
        self.eta = self.gram = torch.zeros(0, device=theta.device)
        self.c = 1.0

    def set_curvature(self, values: np.ndarray, vectors: np.ndarray) -> None:
        """Install Ritz pairs (ℓ bottom then k top, ascending) with this rank's block of the vectors
        (float64 on the host, as the eigensolvers give them; rounded to float32 there, then moved
        to θ's device)."""
        if not np.isfinite(values).all() or not np.isfinite(vectors).all():
            raise FloatingPointError("non-finite eigenpairs; the curvature was not installed")
        device = self.theta.device
        self.values = torch.from_numpy(np.asarray(values, dtype=np.float32).copy()).to(device)
        self.V = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(device)
        self.eta = 1.0 / self.values.abs().clamp_min(EIGEN_SHIFT)
        self.gram = self.reduce(self.V @ self.V.T)  # VVᵀ (≈ I), so V·m updates need no extra reduction
        r = len(self.values)
        self.c = float(np.clip(float(self.eta[r - self.k] / self.eta[r - 1]), 1.0, self.clip_max)) if self.k else 1.0

    @torch.no_grad()
    def step(self, g: torch.Tensor) -> None:
        theta = self.theta
        if self.V is None:
            theta.grad = g
            self.base.step()
            return
        V, beta, r = self.V, self.decay, len(self.values)
        proj = self.reduce(torch.cat([V @ g, V @ self.velocity]))  # one reduction of 2r floats
        p, v_old = proj[:r], proj[r:]
        g1 = V.T @ p
        if self.kind == "adam":
            self.velocity.mul_(beta).add_(g1, alpha=1 - beta)
            vm = (1 - beta) * (self.gram @ p) + beta * v_old
        elif self.kind == "heavy-ball":
            self.velocity.mul_(beta).add_(g1)
            vm = self.gram @ p + beta * v_old
        else:
            self.velocity.copy_(g1)
            vm = self.gram @ p
        d1 = V.T @ (self.eta * vm)
        old = theta.detach().clone()
        theta.grad = g - g1
        self.base.step()
        u = theta.detach() - old
        u_perp = u - V.T @ self.reduce(V @ u)
        theta.copy_(old + self.c * u_perp - self.alpha * d1)

    # -- checkpoint support ------------------------------------------------------------
    def state(self) -> dict[str, torch.Tensor]:
        tree = {"velocity": self.velocity.clone()}
        for name, value in self.base.state[self.theta].items():
            tree[f"base/{name}"] = value.clone() if torch.is_tensor(value) else torch.tensor(value)
        if self.V is not None:
            tree.update(values=self.values.clone(), vectors=self.V.clone(), c=torch.tensor(self.c))
        return tree

    def load_state(self, tree: dict) -> None:
        """Restore a `state` tree (host copies): the tensors go back onto θ's device."""
        self.velocity.copy_(torch.as_tensor(tree["velocity"]))
        base = {
            name.split("/", 1)[1]: torch.as_tensor(v).clone() for name, v in tree.items() if name.startswith("base/")
        }
        if base:  # torch's own loader: the state moves to θ's device, Adam's step count stays on the host
            self.base.load_state_dict({"state": {0: base}, "param_groups": self.base.state_dict()["param_groups"]})
        if "vectors" in tree:
            self.set_curvature(np.asarray(tree["values"]), np.asarray(tree["vectors"]))

    def state_bytes(self) -> int:
        """Persistent optimizer bytes of this rank: base state, momentum, eigenpairs."""
        tensors = [self.velocity, *[v for v in self.base.state[self.theta].values() if torch.is_tensor(v)]]
        if self.V is not None:
            tensors += [self.V, self.values, self.eta, self.gram]
        return sum(t.numel() * t.element_size() for t in tensors)
