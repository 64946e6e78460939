"""Block subspace iteration for the top-k eigenpairs of a symmetric operator, serial or sharded
(docs/dho2.md, "Subspace iteration").

Each sweep multiplies a whole block of s = 2k vectors at once, so a batched operator (a
vmapped HVP) does one pass where Lanczos does s sequential ones. The block is re-orthonormalised
after every product; a final Rayleigh–Ritz step on AX gives the Ritz pairs. Float64 throughout.

Sharded like `lanczos`: each rank of ``comm`` holds its `blocks` block of every vector;
``block_matvec`` maps the full (s, n) block to this rank's (s, rows) block of A·X. Gram
matrices are Allreduces of s² floats; the full block is assembled with one Allgatherv.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mpihybrid.blocks import blocks
from mpihybrid.solvers.lanczos import Ritz, _Serial

DEFLATE = 1e-12  # directions with a Gram eigenvalue below DEFLATE·max are dropped (A X is rank-deficient)


def _orthonormal(Y: np.ndarray, comm: Any) -> np.ndarray:
    """Orthonormal rows spanning the sharded rows of Y (Gram eigen-decomposition, done twice)."""
    for _ in range(2):
        d, U = np.linalg.eigh(comm.Allreduce(Y @ Y.T))
        keep = d > DEFLATE * max(d.max(), 0.0) if d.max() > 0 else np.zeros(len(d), bool)
        Y = (U[:, keep] / np.sqrt(d[keep])).T @ Y
    return Y


def subspace_iteration(
    block_matvec: Callable[[np.ndarray], np.ndarray],
    n: int,
    k: int,
    sweeps: int,
    *,
    seed: int = 0,
    comm: Any = None,
    start: np.ndarray | None = None,
) -> Ritz:
    """The k largest Ritz pairs after ``sweeps`` products of a block of min(2k, n) vectors.

    The block is drawn from ``seed`` in full on every rank (so the result does not depend on the
    number of ranks); ``start`` (this rank's block of up to 2k vectors) replaces its first rows.
    ``iterations`` of the result counts the products, the final Rayleigh–Ritz one included.
    """
    comm = comm or _Serial()
    split = blocks(n, comm.size)
    counts, mine = split.counts, split.slice(comm.rank)
    s = min(2 * k, n)
    X = np.random.default_rng(seed).standard_normal((s, n))[:, mine]
    if start is not None:
        X[: len(start)] = start[:s]
    X = _orthonormal(X, comm)
    for sweep in range(sweeps + 1):
        full = np.empty((n, len(X)))
        comm.Allgatherv(np.ascontiguousarray(X.T).reshape(-1), full.reshape(-1), [c * len(X) for c in counts])
        Y = np.asarray(block_matvec(np.ascontiguousarray(full.T)), dtype=np.float64)
        if sweep == sweeps:
            break
        X = _orthonormal(Y, comm)
    T = comm.Allreduce(X @ Y.T)
    values, W = np.linalg.eigh((T + T.T) / 2)
    top = list(range(max(len(values) - k, 0), len(values)))
    return Ritz(values[top], W[:, top].T @ X, sweeps + 1)
