"""Ridge least squares from summed sufficient statistics (the kernel of FedACnnL).

A layer's problem min_W ‖AW − Z‖² + γ‖W‖² depends on the data only through G = AᵀA and
B = AᵀZ, and both are sums over samples. So clients stream their rows in batches of any size
into a `GramAccumulator`, the parties add their accumulators, and one `ridge_solve` gives the
same weights however the rows were split or batched. Everything here is float64.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg
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

    def __init__(self, dim: int, targets: int, block: int = 1024):
        self.G = torch.zeros(dim, dim, dtype=torch.float64)
        self.B = torch.zeros(dim, targets, dtype=torch.float64)
        self.n = 0
        self.z_sq = 0.0
        self._A = torch.empty(block, dim, dtype=torch.float64)
        self._Z = torch.empty(block, targets, dtype=torch.float64)
        self._fill = 0

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
        self.z_sq += float((Z * Z).sum())

    def sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(G, B) including the rows still in the current block."""
        if self._fill:
            self._flush()
        return self.G, self.B

    def packed(self) -> np.ndarray:
        """[upper triangle of G, B row-major, n, ‖Z‖²]: what one party uploads."""
        self.sums()
        d, c = self.B.shape
        tri = d * (d + 1) // 2
        flat = np.empty(packed_length(d, c))
        flat[:tri] = self.G.numpy()[np.triu_indices(d)]
        flat[tri : tri + d * c] = self.B.numpy().ravel()
        flat[-2:] = self.n, self.z_sq
        return flat

    @classmethod
    def unpack(cls, flat: np.ndarray, dim: int, targets: int) -> GramAccumulator:
        acc = cls(dim, targets, block=1)
        tri = dim * (dim + 1) // 2
        G = np.zeros((dim, dim))
        G[np.triu_indices(dim)] = flat[:tri]
        G = G + np.triu(G, 1).T
        acc.G = torch.from_numpy(G)
        acc.B = torch.from_numpy(flat[tri : tri + dim * targets].reshape(dim, targets).copy())
        acc.n, acc.z_sq = int(round(flat[-2])), float(flat[-1])
        return acc


def packed_length(dim: int, targets: int) -> int:
    """Floats one party uploads per layer: dim(dim+1)/2 + dim·targets + 2 (n and ‖Z‖²)."""
    return dim * (dim + 1) // 2 + dim * targets + 2


def ridge_scale(G: np.ndarray, relative: float) -> float:
    """γ = relative · tr(G)/dim: a ridge term that follows the scale of the data."""
    return relative * float(np.trace(G)) / G.shape[0]


@dataclass
class Solution:
    W: np.ndarray
    condition: float  # cond(G + γI) in the 2-norm
    method: str  # "cholesky" or "eigh" (the fallback)


def ridge_solve(G: np.ndarray, B: np.ndarray, gamma: float, prior: np.ndarray | None = None) -> Solution:
    """argmin_W ‖AW − Z‖² + γ‖W − prior‖² = (G + γI)⁻¹(B + γ·prior), by Cholesky.

    Documented fallback: when G + γI is singular or indefinite to working precision (its
    smallest eigenvalue is below RANK_TOL·λ_max, e.g. γ = 0 with fewer rows than columns, or
    Cholesky fails), the minimum-norm solution over the eigenvectors above that threshold is
    returned with a warning. No positive eigenvalue at all raises SolveError. Never forms an
    explicit inverse.
    """
    if not (np.isfinite(G).all() and np.isfinite(B).all()):
        raise SolveError("the Gram statistics contain NaN or Inf")
    M = G + gamma * np.eye(G.shape[0])
    rhs = B if prior is None else B + gamma * prior
    eig = np.linalg.eigvalsh(M)
    condition = float(eig[-1] / eig[0]) if eig[0] > 0 else float("inf")
    if eig[0] > RANK_TOL * eig[-1]:
        try:
            W = scipy.linalg.cho_solve(scipy.linalg.cho_factor(M, check_finite=False), rhs, check_finite=False)
            return Solution(W, condition, "cholesky")
        except np.linalg.LinAlgError:
            pass
    values, vectors = np.linalg.eigh(M)
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
