"""Lanczos for the extreme eigenpairs of a symmetric operator, serial or sharded (docs/dho2.md).

Float64 throughout, with the double full reorthogonalisation of FOSI's code (the three-term
recurrence is never subtracted explicitly; reorthogonalising against every stored vector
removes it) and a breakdown guard: when β falls below BREAKDOWN·max|T| (an invariant
subspace, e.g. n < m) the iteration stops and the Ritz pairs of the smaller T are returned.

Sharded: each rank of ``comm`` holds its `blocks` block of every Lanczos vector.
``matvec`` maps the full current vector to this rank's block of A·x (a replicated operator
slices its product; a data-parallel HVP uses a Reduce_scatter). Projections against the basis
are Allreduces of at most m floats; the next full vector is assembled with one Allgatherv.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mpihybrid.blocks import blocks

BREAKDOWN = 1e-10


@dataclass
class Ritz:
    values: np.ndarray  # [ℓ smallest ascending ; k largest ascending] (FOSI's order)
    vectors: np.ndarray  # (k + ℓ, block length): this rank's block of the Ritz vectors
    iterations: int  # Lanczos steps taken (< m after a breakdown)


class _Serial:
    """Stands in for a communicator of one rank."""

    rank, size = 0, 1

    def Allreduce(self, buf: np.ndarray) -> np.ndarray:
        return buf

    def Allgatherv(self, send: np.ndarray, recv: np.ndarray, counts: list[int]) -> np.ndarray:
        recv[:] = send
        return recv


def lanczos(
    matvec: Callable[[np.ndarray], np.ndarray],
    n: int,
    m: int,
    k: int,
    l: int = 0,
    *,
    seed: int = 0,
    comm: Any = None,
    warm: np.ndarray | None = None,
) -> Ritz:
    """The k largest and ℓ smallest Ritz pairs after at most m steps (m is capped at n).

    ``comm`` is a `Comm` (sharded) or None (serial); the start vector is drawn from ``seed``
    in full on every rank, so the result does not depend on the number of ranks. ``warm``
    (full length, the same on every rank) is added to it with equal weight: a Krylov space
    started near the previous top eigenvectors finds the new ones in fewer steps.
    """
    if k + l > min(m, n):
        raise ValueError(f"k + ℓ = {k + l} Ritz pairs need at least that many Lanczos steps; m = {m}, n = {n}")
    comm = comm or _Serial()
    split = blocks(n, comm.size)
    block = split.slice(comm.rank)
    m = min(m, n)
    Q = np.zeros((m, split.counts[comm.rank]))
    T = np.zeros((m, m))
    x = np.random.default_rng(seed).standard_normal(n)
    x /= np.linalg.norm(x)
    if warm is not None and np.linalg.norm(warm) > 0:
        x += warm / np.linalg.norm(warm)
        x /= np.linalg.norm(x)
    Q[0] = x[block]
    steps = m
    for i in range(m):
        w = np.asarray(matvec(x), dtype=np.float64).copy()
        for sweep in range(2):
            c = comm.Allreduce(Q[: i + 1] @ w)
            if sweep == 0:
                T[i, i] = c[i]
            w -= c @ Q[: i + 1]
        if i + 1 == m:
            break
        beta = np.sqrt(comm.Allreduce(np.array([w @ w]))[0])
        if beta <= BREAKDOWN * np.abs(T[: i + 1, : i + 1]).max():
            steps = i + 1
            break
        T[i, i + 1] = T[i + 1, i] = beta
        Q[i + 1] = w / beta
        comm.Allgatherv(Q[i + 1], x, split.counts)
    values, Y = np.linalg.eigh(T[:steps, :steps])
    top = list(range(max(steps - k, 0), steps)) if k else []  # fewer than k + ℓ pairs only after a breakdown
    keep = list(range(min(l, steps - len(top)))) + top
    return Ritz(values[keep], Y[:, keep].T @ Q[:steps], steps)
