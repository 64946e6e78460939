"""Serial Lanczos against numpy's eigh, and its breakdown guard."""

import numpy as np
import pytest

from mpihybrid.solvers.lanczos import lanczos


def test_lanczos_extreme_eigenpairs_match_eigh():
    rng = np.random.default_rng(1)
    Qm, _ = np.linalg.qr(rng.standard_normal((300, 300)))
    spectrum = np.concatenate([[50, 30, 20, 12], rng.uniform(-1, 1, 294), [-8, -5]])
    A = Qm @ np.diag(spectrum) @ Qm.T
    ritz = lanczos(lambda x: A @ x, 300, 60, k=4, l=2, seed=3)
    exact = np.sort(spectrum)
    assert np.allclose(ritz.values, np.concatenate([exact[:2], exact[-4:]]), rtol=1e-10)
    assert np.allclose(ritz.vectors @ ritz.vectors.T, np.eye(6), atol=1e-10)
    residual = A @ ritz.vectors.T - ritz.vectors.T * ritz.values
    assert np.abs(residual).max() < 1e-8


def test_lanczos_breakdown_guard_on_a_low_rank_operator():
    rng = np.random.default_rng(0)
    U = np.linalg.qr(rng.standard_normal((50, 3)))[0]
    A = U @ np.diag([3.0, 2.0, 1.0]) @ U.T  # rank 3: the Krylov space closes after 3-4 steps
    ritz = lanczos(lambda x: A @ x, 50, 20, k=2, seed=0)
    assert ritz.iterations < 20 and np.allclose(ritz.values, [2.0, 3.0], rtol=1e-10)
    with pytest.raises(ValueError, match="k \\+ ℓ"):
        lanczos(lambda x: x, 5, 10, k=4, l=2)


def test_lanczos_breakdown_before_k_plus_l_steps_returns_what_it_has():
    A = np.diag([5.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # rank 1: the Krylov space closes after one step
    ritz = lanczos(lambda x: A @ x, 6, 6, k=3, l=1, seed=0)
    assert ritz.iterations < 4 and len(ritz.values) == ritz.vectors.shape[0] <= ritz.iterations
    assert np.isclose(ritz.values[-1], 5.0)


def test_warm_start_from_nearby_top_vectors_needs_fewer_steps():
    rng = np.random.default_rng(2)
    Qm, _ = np.linalg.qr(rng.standard_normal((400, 400)))
    spectrum = np.concatenate([rng.uniform(0, 1, 390), np.linspace(2, 3, 10)])
    A = Qm @ np.diag(spectrum) @ Qm.T
    top = Qm[:, -10:] + 0.01 * rng.standard_normal((400, 10))  # the previous refresh's vectors, slightly off
    exact = np.sort(spectrum)[-10:]

    def error(**warm):
        return np.abs(lanczos(lambda x: A @ x, 400, 20, k=10, seed=0, **warm).values - exact).max()

    cold, warm = error(), error(warm=top.sum(1))
    assert warm < 0.2 * cold, (warm, cold)
