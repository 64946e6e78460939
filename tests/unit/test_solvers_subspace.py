"""Block subspace iteration against numpy's eigh, and its warm start."""

import numpy as np

from mpihybrid.solvers.subspace import subspace_iteration


def matrix(seed=1, n=300):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    spectrum = np.concatenate([rng.uniform(-1, 1, n - 6), [4, 5, 6, 8, 12, 20]])
    return Q, spectrum, Q @ np.diag(spectrum) @ Q.T


def test_top_eigenpairs_match_eigh():
    Q, spectrum, A = matrix()
    ritz = subspace_iteration(lambda X: X @ A, 300, 6, 12, seed=3)
    assert np.allclose(ritz.values, np.sort(spectrum)[-6:], rtol=1e-8)
    assert np.allclose(ritz.vectors @ ritz.vectors.T, np.eye(6), atol=1e-10)
    assert np.abs(A @ ritz.vectors.T - ritz.vectors.T * ritz.values).max() < 1e-6
    assert ritz.iterations == 13


def test_warm_start_from_nearby_vectors_needs_fewer_sweeps():
    Q, spectrum, A = matrix(2)
    exact = np.sort(spectrum)[-6:]
    near = (Q[:, -6:] + 0.01 * np.random.default_rng(0).standard_normal((300, 6))).T

    def error(**start):
        return np.abs(subspace_iteration(lambda X: X @ A, 300, 6, 2, seed=0, **start).values - exact).max()

    assert error(start=near) < 1e-3 < error()


def test_rank_deficient_operator_returns_what_it_spans():
    U = np.linalg.qr(np.random.default_rng(0).standard_normal((50, 2)))[0]
    A = U @ np.diag([3.0, 2.0]) @ U.T  # rank 2: the block collapses to two directions
    ritz = subspace_iteration(lambda X: X @ A, 50, 4, 3, seed=0)
    assert len(ritz.values) == ritz.vectors.shape[0] <= 4 and np.allclose(ritz.values[-2:], [2.0, 3.0])
