"""HVP, Lanczos, FOSI and the ADMM rule against slow, obvious references."""

import numpy as np
import pytest
import torch
from torch import nn

from mpihybrid.admm.rule import ADMMRule
from mpihybrid.solvers.fosi import FOSI, FOSICore, refresh_due
from mpihybrid.solvers.hvp import FlatLoss, hvp_function
from mpihybrid.solvers.lanczos import balanced_counts, lanczos


def small_problem(batchnorm=False, dtype=torch.float64):
    torch.manual_seed(0)
    layers = [nn.Linear(6, 8)] + ([nn.BatchNorm1d(8)] if batchnorm else []) + [nn.Tanh(), nn.Linear(8, 3)]
    model = nn.Sequential(*layers).to(dtype)
    x, y = torch.randn(32, 6, dtype=dtype), torch.randint(0, 3, (32,))
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return model, FlatLoss(model, x, y, weight_decay=1e-3), theta


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("method", ["forward-over-reverse", "double-backward"])
def test_hvp_matches_the_exact_hessian(batchnorm, method):
    model, loss, theta = small_problem(batchnorm)
    H = torch.autograd.functional.hessian(loss, theta)
    v = torch.randn_like(theta)
    assert torch.allclose(hvp_function(loss, method)(theta, v), H @ v, rtol=1e-9, atol=1e-11)
    if batchnorm:  # the HVP never moves the running statistics
        assert torch.equal(model[1].running_mean, torch.zeros(8))


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


def test_balanced_counts():
    assert balanced_counts(10, 4) == [3, 3, 2, 2] and sum(balanced_counts(2410, 8)) == 2410


def test_fosi_is_the_base_optimizer_bit_for_bit_before_the_first_refresh():
    def train(opt_factory, steps):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
        opt = opt_factory(model)
        x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        return torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def never(theta):
        raise AssertionError("no curvature before the first refresh")

    for base, ref in (
        ("adam", lambda m: torch.optim.Adam(m.parameters(), lr=3e-3)),
        ("heavy-ball", lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)),
    ):
        fosi = train(
            lambda m, base=base: FOSI(
                m.parameters(), curvature=never, k=2, refresh_every=50, base=base, lr=3e-3 if base == "adam" else 0.05
            ),
            49,
        )
        assert torch.equal(fosi, train(ref, 49)), base


def test_fosi_step_matches_the_spec_formula():
    torch.manual_seed(0)
    n, r = 40, 3
    V = torch.linalg.qr(torch.randn(n, r))[0].T.contiguous()
    values = np.array([2.0, 5.0, 9.0])
    theta = torch.randn(n)
    core = FOSICore(theta.clone(), base="gd", lr=0.1, alpha=0.3, clip_max=3.0)
    core.set_curvature(values, V.numpy(), k=3)
    g = torch.randn(n)
    start = core.theta.clone()
    core.step(g.clone())
    g1 = V.T @ (V @ g)
    d1 = V.T @ (torch.tensor(1 / values, dtype=torch.float32) * (V @ g1))
    u = -0.1 * (g - g1)
    c = min(max(9.0 / 2.0, 1.0), 3.0)
    expected = start + c * (u - V.T @ (V @ u)) - 0.3 * d1
    assert torch.allclose(core.theta, expected, atol=1e-6)
    assert abs(float((u - V.T @ (V @ u)) @ d1)) < 1e-5  # u⊥ is orthogonal to the Newton direction


def test_fosi_beats_gd_on_an_ill_conditioned_quadratic():
    torch.manual_seed(0)
    n = 50
    Q = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))[0]
    eig = torch.cat([torch.tensor([1000.0, 500.0, 200.0]), torch.linspace(1, 2, n - 3)]).to(torch.float64)
    A = (Q @ torch.diag(eig) @ Q.T).float()
    x0 = torch.randn(n)

    def run(with_curvature):
        core = FOSICore(x0.clone(), base="gd", lr=1.9 / (1000 if not with_curvature else 2), alpha=1.0, clip_max=1.0)
        if with_curvature:
            r = lanczos(lambda v: A.double().numpy() @ v, n, 20, k=3, seed=0)
            core.set_curvature(r.values, r.vectors, k=3)
        for _ in range(100):
            core.step(A @ core.theta)
        return float(core.theta @ A @ core.theta)

    assert run(True) < 1e-3 * run(False)


def test_refresh_schedule():
    assert [s for s in range(1, 40) if refresh_due(s, 10, 12)] == [10, 22, 34]


def test_admm_rule_closed_form():
    theta = torch.zeros(4)
    rule = ADMMRule(theta, sigma=0.5, round_steps=2)
    for step in range(1, 7):
        theta -= 0.1 * rule.gradient(torch.ones(4))
        rule.after_step(step, theta)
    # π_r = σ Σ Δ_j and the z-update moves θ by Σ Δ_j: check against a plain re-implementation
    th, pi, z, total = torch.zeros(4), torch.zeros(4), torch.zeros(4), torch.zeros(4)
    for step in range(1, 7):
        th -= 0.1 * (torch.ones(4) + pi)
        if step % 2 == 0:
            total += th - z
            pi = 0.5 * total
            th = th + total
            z = th.clone()
    assert torch.allclose(theta, th) and torch.allclose(rule.dual, pi)
    off = ADMMRule(torch.zeros(4), 0.5, 2, enabled=False)
    assert not off.after_step(2, torch.zeros(4)) and off.state_bytes() == 0


def test_lanczos_breakdown_before_k_plus_l_steps_returns_what_it_has():
    A = np.diag([5.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # rank 1: the Krylov space closes after one step
    ritz = lanczos(lambda x: A @ x, 6, 6, k=3, l=1, seed=0)
    assert ritz.iterations < 4 and len(ritz.values) == ritz.vectors.shape[0] <= ritz.iterations
    assert np.isclose(ritz.values[-1], 5.0)
