"""Ridge least squares from summed statistics, against numpy.linalg.lstsq on explicit rows."""

import numpy as np
import pytest
import torch

from mpihybrid.solvers.least_squares import GramAccumulator, SolveError, packed_length, ridge_scale, ridge_solve


def problem(n=300, d=12, c=4, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, d)) @ np.diag(np.logspace(0, 2, d))  # cond(AᵀA) ~ 1e4
    return A, rng.standard_normal((n, c))


def gram_sums(A, Z):
    """(AᵀA, AᵀZ) as the float64 tensors ridge_solve takes."""
    return torch.from_numpy(A.T @ A), torch.from_numpy(A.T @ Z)


def test_ridge_matches_lstsq_on_augmented_rows():
    A, Z = problem()
    gamma = 0.37
    ref = np.linalg.lstsq(
        np.vstack([A, np.sqrt(gamma) * np.eye(A.shape[1])]),
        np.vstack([Z, np.zeros((A.shape[1], Z.shape[1]))]),
        rcond=None,
    )[0]
    sol = ridge_solve(*gram_sums(A, Z), gamma)
    assert sol.method == "cholesky"
    assert np.abs(sol.W.numpy() - ref).max() / np.abs(ref).max() < 1e-10
    assert sol.condition == pytest.approx(np.linalg.cond(A.T @ A + gamma * np.eye(A.shape[1])), rel=1e-8)


def test_proximal_prior_limits():
    A, Z = problem()
    G, B = gram_sums(A, Z)
    prior = torch.ones(A.shape[1], Z.shape[1], dtype=torch.float64)
    assert (ridge_solve(G, B, 1e15, prior).W - prior).abs().max() < 1e-6  # deviation ~ λ_max(G)/λ
    local = ridge_solve(G, B, 1e-12, prior).W.numpy()
    assert np.abs(local - np.linalg.lstsq(A, Z, rcond=None)[0]).max() < 1e-8


def test_sums_are_bitwise_independent_of_batch_sizes():
    A, Z = problem(n=2500)
    ref = np.linalg.lstsq(A, Z, rcond=None)[0]  # only to have a scale; the check is bitwise below
    sums = []
    for batch in (1, 7, 300, 2500):
        acc = GramAccumulator(12, 4, block=256)
        for i in range(0, 2500, batch):
            acc.add(torch.from_numpy(A[i : i + batch]), torch.from_numpy(Z[i : i + batch]))
        G, B = acc.sums()
        assert acc.n == 2500 and np.isfinite(ref).all()
        sums.append((G.clone(), B.clone(), acc.z_sq))
    for G, B, z in sums[1:]:
        assert torch.equal(G, sums[0][0]) and torch.equal(B, sums[0][1]) and z == sums[0][2]
    assert np.allclose(sums[0][0].numpy(), A.T @ A, rtol=1e-12)


def test_pack_roundtrip_and_length():
    A, Z = problem(n=20, d=5, c=3)
    acc = GramAccumulator(5, 3)
    acc.add(torch.from_numpy(A), torch.from_numpy(Z))
    flat = acc.packed()
    assert flat.size == packed_length(5, 3) == 5 * 6 // 2 + 15 + 2
    back = GramAccumulator.unpack(flat, 5, 3)
    # The upper triangle travels; BLAS need not round AᵀA to a bitwise-symmetric matrix.
    upper = torch.triu(acc.G)
    assert torch.equal(back.G, upper + torch.triu(upper, 1).T) and torch.equal(back.B, acc.B) and back.n == 20


def test_singular_gram_falls_back_to_minimum_norm():
    A, Z = problem(n=5, d=12)  # fewer rows than columns, γ = 0
    with pytest.warns(RuntimeWarning, match="minimum-norm"):
        sol = ridge_solve(*gram_sums(A, Z), 0.0)
    W = sol.W.numpy()
    assert sol.method == "eigh" and np.isfinite(W).all()
    assert np.abs(W - np.linalg.pinv(A) @ Z).max() < 1e-6 * np.abs(W).max()


def test_no_positive_spectrum_and_nan_are_errors():
    with pytest.raises(SolveError, match="no positive eigenvalue"):
        ridge_solve(torch.zeros(3, 3, dtype=torch.float64), torch.zeros(3, 1, dtype=torch.float64), 0.0)
    G = torch.eye(3, dtype=torch.float64)
    G[0, 0] = torch.nan
    with pytest.raises(SolveError, match="NaN"):
        ridge_solve(G, torch.zeros(3, 1, dtype=torch.float64), 1.0)


def test_ridge_scale_follows_the_data():
    G, _ = gram_sums(*problem())
    assert ridge_scale(100 * G, 1e-3) == pytest.approx(100 * ridge_scale(G, 1e-3))


@pytest.mark.cuda
def test_sums_and_solve_on_the_gpu_match_the_cpu():
    A, Z = problem(n=3000, d=40, c=5)
    results = {}
    for device in ("cpu", "cuda"):
        acc = GramAccumulator(40, 5, block=256, device=device)
        acc.add(torch.from_numpy(A).to(device), torch.from_numpy(Z).to(device))
        back = GramAccumulator.unpack(acc.packed(), 40, 5, device)
        sol = ridge_solve(back.G, back.B, ridge_scale(back.G, 1e-3))
        assert sol.W.device.type == device and sol.method == "cholesky"
        results[device] = (sol.W.cpu().numpy(), back.z_sq, back.n)
    (w_cpu, z_cpu, n_cpu), (w_gpu, z_gpu, n_gpu) = results["cpu"], results["cuda"]
    assert np.abs(w_gpu - w_cpu).max() / np.abs(w_cpu).max() < 1e-10
    assert z_gpu == pytest.approx(z_cpu, rel=1e-12) and n_gpu == n_cpu == 3000
