"""Zeroth-order kernels: seeded directions, finite-difference scalars, and the ZO-SGD step.

A direction is regenerated from its seed path whenever it is needed, always on the CPU in
float32 with one generator per direction, so a client's local step and a server's replay of
it produce the same bits. Two forms:

- flat: `direction`, `finite_differences`, `SGDRule.step` work on one flat float32 vector and
  hold every direction as a d-vector; x + μz is a new tensor, so x is never disturbed.
- in place (`Directions`, `estimate_`, `SGDRule.update_`): the same estimator and rule on a
  model's own parameter tensors, with no d-sized buffer. A direction is regenerated piece by
  piece each time it is added (perturb, restore, update), and a perturbation is undone by
  subtracting it. That restore is not exact in floating point (x + μz − μz differs from x by
  an ulp here and there), and a copy to restore from would cost d numbers. So an estimate
  leaves the parameters within rounding of x, not bit for bit: `estimate_` is for a working
  copy whose outputs are its scalars (DeComFL's local steps, as in its --no-optim path, and
  MeZO). Models that must agree bit for bit across ranks (the global model, rebuilt clients)
  are changed only by `SGDRule.update_`, which never perturbs and reads nothing but the
  parameters, the momentum buffers and (seed path, scalars). A client's local steps 2..K
  start from its drifted working copy; that moves its own later scalars by rounding only,
  and those scalars are what every party replays, so agreement is unaffected.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch

from mpihybrid.seeding import Key, torch_generator

LossFn = Callable[[torch.Tensor], float]  # flat parameters -> loss on a fixed batch
CHUNK = 1 << 20  # elements per drawn piece of an in-place direction: part of its definition, like the seed path


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

    @torch.no_grad()
    def update_(
        self,
        params: Sequence[torch.Tensor],
        bufs: Sequence[torch.Tensor],
        dirs: Directions,
        scalars: torch.Tensor,
        lr: float,
    ) -> None:
        """`step` on the tensors themselves, z regenerated piece by piece: x ← x − lr·m with
        m = momentum·m + (1/P)Σ_p g_p z_p + wd·x. ``bufs`` (a tensor per parameter, d numbers
        in all) is read only with momentum; pass ``[]`` without. Without momentum this is
        DeComFL's --no-optim update, x += (−lr·g_p/P)·z_p for p in order, after x *= 1 − lr·wd.
        """
        coefs = [s * c / dirs.count for s, c in zip(scalars.tolist(), dirs.scales)]
        if not self.momentum:
            if self.weight_decay:
                for t in params:
                    t.mul_(1.0 - lr * self.weight_decay)
            for p, c in enumerate(coefs):
                for piece, z in dirs.draws(p, params):
                    piece.add_(z, alpha=-lr * c)
            return
        for x, b in zip(_pieces(params), _pieces(bufs)):
            b.mul_(self.momentum).add_(x, alpha=self.weight_decay)
        for p, c in enumerate(coefs):
            for (_, z), b in zip(dirs.draws(p, params), _pieces(bufs)):
                b.add_(z, alpha=c)
        for x, b in zip(_pieces(params), _pieces(bufs)):
            x.add_(b, alpha=-lr)


def _pieces(tensors: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Flat views of the tensors in walk order: each tensor in turn, in pieces of at most CHUNK."""
    for t in tensors:
        flat = t.view(-1)
        for start in range(0, flat.numel(), CHUNK):
            yield flat[start : start + CHUNK]


@dataclass(frozen=True)
class Directions:
    """The ``count`` directions of one ZO step over tensors of ``sizes`` elements, never stored.

    Direction p is the stream of the generator (seed, *path, p), drawn walking the tensors in
    order, in pieces of at most CHUNK elements (as MeZO walks its parameters), on the CPU in
    float32. It depends on the sizes and their order, which every rank shares. ``sphere``
    rescales to radius sqrt(d) and so needs ‖z_p‖ first: one more regeneration, not a copy.
    """

    seed: int
    path: tuple[Key, ...]
    count: int
    sizes: tuple[int, ...]
    kind: str = "gaussian"

    @classmethod
    def over(
        cls, params: Sequence[torch.Tensor], seed: int, path: Sequence[Key], count: int, kind: str = "gaussian"
    ) -> Directions:
        return cls(seed, tuple(path), count, tuple(t.numel() for t in params), kind)

    def stream(self, p: int) -> Iterator[torch.Tensor]:
        """z_p piece by piece, in walk order, each piece in the same reused buffer."""
        gen = torch_generator(self.seed, *self.path, p)
        scratch = torch.empty(min(CHUNK, max(self.sizes, default=0)), dtype=torch.float32)
        for n in self.sizes:
            for start in range(0, n, CHUNK):
                m = min(CHUNK, n - start)
                yield torch.randn(m, generator=gen, dtype=torch.float32, out=scratch[:m])

    def draws(self, p: int, params: Sequence[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(piece of the parameters, the same piece of z_p on the piece's device), in walk order:
        drawn on the CPU and copied, so ranks with other devices draw the same bits."""
        if tuple(t.numel() for t in params) != self.sizes:
            raise ValueError(f"directions made for tensor sizes {self.sizes[:4]}... used on other tensors")
        return ((piece, z.to(piece.device)) for piece, z in zip(_pieces(params), self.stream(p)))

    @cached_property
    def scales(self) -> tuple[float, ...]:
        """The factor that turns stream p into direction p: 1, or sqrt(d)/‖z_p‖ on the sphere."""
        if self.kind != "sphere":
            return (1.0,) * self.count
        d = sum(self.sizes)
        return tuple(
            math.sqrt(d / sum(float(z.square().sum(dtype=torch.float64)) for z in self.stream(p)))
            for p in range(self.count)
        )

    def vectors(self, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        """The directions as explicit d-vectors: what the in-place kernels avoid (tests, benchmarks)."""
        out = []
        for p in range(self.count):
            parts = [torch.zeros(n, dtype=dtype) for n in self.sizes]
            add_direction_(parts, self, p, 1.0)
            out.append(torch.cat(parts))
        return out


@torch.no_grad()
def add_direction_(params: Sequence[torch.Tensor], dirs: Directions, p: int, alpha: float) -> None:
    """params += alpha·z_p, in place, piece by piece (any float dtype; z is float32)."""
    a = alpha * dirs.scales[p]
    for piece, z in dirs.draws(p, params):
        piece.add_(z, alpha=a)


@torch.no_grad()
def estimate_(
    params: Sequence[torch.Tensor], loss: Callable[[], float], dirs: Directions, mu: float, estimator: str = "forward"
) -> tuple[torch.Tensor, float]:
    """`finite_differences` by perturbing ``params`` in place; ``loss()`` evaluates the model
    that owns them on a fixed batch. Returns the P scalars and the loss at x (central: the mean
    of (f(x + μz) + f(x − μz))/2, which costs no extra evaluation). Each perturbation is undone
    by subtracting it, so the parameters come back within rounding of x (module docstring).
    """
    scalars = torch.empty(dirs.count, dtype=torch.float32)
    f0 = loss() if estimator == "forward" else 0.0
    for p in range(dirs.count):
        add_direction_(params, dirs, p, mu)
        plus = loss()
        if estimator == "central":
            add_direction_(params, dirs, p, -2 * mu)
            minus = loss()
            add_direction_(params, dirs, p, mu)
            scalars[p] = (plus - minus) / (2 * mu)
            f0 += (plus + minus) / (2 * dirs.count)
        else:
            add_direction_(params, dirs, p, -mu)
            scalars[p] = (plus - f0) / mu
    return scalars, f0
