"""Ridge least squares from summed sufficient statistics (the kernel of FedACnnL).

A layer's problem min_W ‖AW − Z‖² + γ‖W‖² depends on the data only through G = AᵀA and
B = AᵀZ, and both are sums over samples. So clients stream their rows in batches of any size
into a `GramAccumulator`, the parties add their accumulators, and one `ridge_solve` gives the
same weights however the rows were split or batched. Everything here is float64 torch on the
device the sums live on (the CPU, or a rank's GPU: docs/gpu.md); only the packed upload is a host array.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

RANK_TOL = 1e-13  # eigenvalues below RANK_TOL·λ_max count as zero (the Cholesky would be meaningless)


class SolveError(ArithmeticError):
    """The regularised Gram matrix is not positive definite, even after the fallback."""


class GramAccumulator:
    """Running G = AᵀA, B = AᵀZ, the row count n and ‖Z‖², fed one batch at a time.

    Rows are gathered into fixed blocks of ``block`` rows and each full block is added with one
    ``addmm``, so the sequence of floating-point operations — hence every bit of G and B —
    is the same whatever the batch sizes the rows arrived in.
    """

    def __init__(self, dim: int, targets: int, block: int = 1024, device: torch.device | str = "cpu"):
        f64 = {"dtype": torch.float64, "device": device}
        self.G = torch.zeros(dim, dim, **f64)
        self.B = torch.zeros(dim, targets, **f64)
        self.n = 0
        self._z_sq = torch.zeros((), **f64)  # a device scalar: no host sync per block
        self._A = torch.empty(block, dim, **f64)
        self._Z = torch.empty(block, targets, **f64)
        self._fill = 0

    @property
    def z_sq(self) -> float:
        """‖Z‖² of the rows added so far (those still in the current block included)."""
        self.sums()
        return float(self._z_sq)

    def add(self, A: torch.Tensor, Z: torch.Tensor) -> None:
        start, rows, block = 0, A.shape[0], len(self._A)
        if A.dtype == torch.float64 and Z.dtype == torch.float64 and A.is_contiguous() and Z.is_contiguous():
            while self._fill == 0 and rows - start >= block:  # whole aligned blocks: no copy
                self._add_block(A[start : start + block], Z[start : start + block])
                start += block
        while start < rows:
            take = min(block - self._fill, rows - start)
            self._A[self._fill : self._fill + take] = A[start : start + take]
            self._Z[self._fill : self._fill + take] = Z[start : start + take]
            self._fill += take
            start += take
            if self._fill == len(self._A):
                self._flush()
        self.n += rows

    def _flush(self) -> None:
        self._add_block(self._A[: self._fill], self._Z[: self._fill])
        self._fill = 0

    def _add_block(self, A: torch.Tensor, Z: torch.Tensor) -> None:
        self.G.addmm_(A.T, A)
        self.B.addmm_(A.T, Z)
        self._z_sq += (Z * Z).sum()

    def sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(G, B) including the rows still in the current block."""
        if self._fill:
            self._flush()
        return self.G, self.B

    def packed(self) -> np.ndarray:
        """[upper triangle of G, B row-major, n, ‖Z‖²] on the host: what one party uploads (MPI sums
        host memory the same way on every machine)."""
        self.sums()
        d, c = self.B.shape
        row, col = torch.triu_indices(d, d, device=self.G.device)
        flat = torch.cat([self.G[row, col], self.B.reshape(-1), self._z_sq.reshape(1)]).cpu().numpy()
        return np.concatenate([flat[:-1], [self.n], flat[-1:]])

    @classmethod
    def unpack(cls, flat: np.ndarray, dim: int, targets: int, device: torch.device | str = "cpu") -> GramAccumulator:
        """The summed statistics of a packed upload, G symmetric, on ``device``."""
        acc = cls(dim, targets, block=1, device=device)
        tri = dim * (dim + 1) // 2
        values = torch.from_numpy(flat).to(device)
        row, col = torch.triu_indices(dim, dim, device=device)
        acc.G[row, col] = values[:tri]
        acc.G += torch.triu(acc.G, 1).T
        acc.B = values[tri : tri + dim * targets].reshape(dim, targets).clone()
        acc.n = int(round(flat[-2]))
        acc._z_sq = values[-1].clone()
        return acc


def packed_length(dim: int, targets: int) -> int:
    """Floats one party uploads per layer: dim(dim+1)/2 + dim·targets + 2 (n and ‖Z‖²)."""
    return dim * (dim + 1) // 2 + dim * targets + 2


def ridge_scale(G: torch.Tensor, relative: float) -> float:
    """γ = relative · tr(G)/dim: a ridge term that follows the scale of the data."""
    return relative * float(torch.trace(G)) / G.shape[0]


@dataclass
class Solution:
    W: torch.Tensor  # on G's device
    condition: float  # cond(G + γI) in the 2-norm
    method: str  # "cholesky" or "eigh" (the fallback)


def ridge_solve(G: torch.Tensor, B: torch.Tensor, gamma: float, prior: torch.Tensor | None = None) -> Solution:
    """argmin_W ‖AW − Z‖² + γ‖W − prior‖² = (G + γI)⁻¹(B + γ·prior), by Cholesky, on G's device.

    Documented fallback: when G + γI is singular or indefinite to working precision (its
    smallest eigenvalue is below RANK_TOL·λ_max, e.g. γ = 0 with fewer rows than columns, or
    Cholesky fails), the minimum-norm solution over the eigenvectors above that threshold is
    returned with a warning. No positive eigenvalue at all raises SolveError. Never forms an
    explicit inverse.
    """
    if not bool(torch.isfinite(G).all() & torch.isfinite(B).all()):
        raise SolveError("the Gram statistics contain NaN or Inf")
    M = G + gamma * torch.eye(G.shape[0], dtype=G.dtype, device=G.device)
    rhs = B if prior is None else B + gamma * prior
    eig = torch.linalg.eigvalsh(M).tolist()
    condition = eig[-1] / eig[0] if eig[0] > 0 else float("inf")
    if eig[0] > RANK_TOL * eig[-1]:
        L, info = torch.linalg.cholesky_ex(M)
        if int(info) == 0:
            return Solution(torch.cholesky_solve(rhs, L), condition, "cholesky")
    values, vectors = torch.linalg.eigh(M)
    if values[-1] <= 0:
        raise SolveError(f"G + γI has no positive eigenvalue (γ = {gamma:g}); add samples or raise the ridge term")
    keep = values > RANK_TOL * values[-1]
    warnings.warn(
        f"G + γI is singular or indefinite (cond = {condition:.3g}, γ = {gamma:g}): minimum-norm "
        f"solution on {int(keep.sum())} of {len(values)} eigen-directions",
        RuntimeWarning,
        stacklevel=2,
    )
    V = vectors[:, keep]
    return Solution(V @ ((V.T @ rhs) / values[keep][:, None]), condition, "eigh")
