"""DHO2's "ADMM-like" update rule, as in the official code (ShunxianGu/DHO2,
``DHO2_ADMM_v2.py``; docs/dho2.md, "The ADMM-like rule").

State on a flat parameter block: the dual π (starts at 0) and the anchor z. A round is
``round_steps`` optimizer steps:

    start of round r:   z ← θ
    every step:         the optimizer sees ĝ = g + π
    end of round r:     Δ_r = θ − z;   π ← π + σ·Δ_r;   θ ← θ + π/σ      (the "z-update")

Closed form: π_r = σ·Σ_{j≤r} Δ_j, so the z-update is θ ← θ_end(r) + Σ_{j≤r} Δ_j — a periodic
extrapolation by the sum of every round's displacement so far — while π itself is
σ·O(|Δ|) (about 1e-9·|Δ| with the code's σ = 5e-9) and barely moves the gradient. In
consensus-ADMM terms (Boyd: x-update on f + πᵀ(x − z) + ρ/2‖x − z‖², z ← x + π/ρ,
π ← π + ρ(x − z)), ρ ≡ σ, the x-update is replaced by a round of FOSI steps on the
linearised f + πᵀx with no proximal term, and no average over ranks is needed because data
parallelism keeps x identical everywhere. ``admm.enabled = false`` turns all of it off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mpihybrid.config import require


@dataclass
class ADMMConfig:
    enabled: bool = True
    sigma: float = 5e-9  # σ: dual step and the scale of the z-update (the official code's value)
    round_steps: int = 0  # steps per round; 0 = the curvature refresh period fosi.refresh_every

    def check(self) -> None:
        require(self.sigma > 0, "admm.sigma", f"must be > 0, got {self.sigma}")
        require(self.round_steps >= 0, "admm.round_steps", f"must be >= 0, got {self.round_steps}")


class ADMMRule:
    """π and z for one parameter block; a no-op when disabled."""

    def __init__(self, theta: torch.Tensor, sigma: float, round_steps: int, enabled: bool = True):
        self.enabled, self.sigma, self.round_steps = enabled, sigma, round_steps
        self.dual = torch.zeros_like(theta)
        self.anchor = theta.detach().clone()

    def gradient(self, g: torch.Tensor) -> torch.Tensor:
        return g.add_(self.dual) if self.enabled else g

    @torch.no_grad()
    def after_step(self, step: int, theta: torch.Tensor) -> bool:
        """At the end of a round, update π and θ and re-anchor; True when θ changed."""
        if not self.enabled or step % self.round_steps:
            return False
        self.dual.add_(theta - self.anchor, alpha=self.sigma)
        theta.add_(self.dual / self.sigma)
        self.anchor.copy_(theta)
        return True

    def state(self) -> dict[str, torch.Tensor]:
        return {"dual": self.dual.clone(), "anchor": self.anchor.clone()}

    def load_state(self, tree: dict) -> None:
        self.dual.copy_(torch.as_tensor(tree["dual"]))
        self.anchor.copy_(torch.as_tensor(tree["anchor"]))

    def state_bytes(self) -> int:
        return 2 * self.dual.numel() * self.dual.element_size() if self.enabled else 0
