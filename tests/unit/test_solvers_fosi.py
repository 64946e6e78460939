"""The FOSI rule against its formula, the base optimizer and plain GD."""

import numpy as np
import torch
from torch import nn

from mpihybrid.models import flatten_parameters
from mpihybrid.solvers.fosi import FOSICore, refresh_due
from mpihybrid.solvers.lanczos import lanczos


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

    class CoreOnFlatParameters:
        """FOSICore with no curvature installed, driven like a torch optimizer."""

        def __init__(self, model, base, lr):
            self.theta, self.grad = flatten_parameters(list(model.parameters()))
            self.core = FOSICore(self.theta, k=2, base=base, lr=lr, momentum=0.9)

        def zero_grad(self):
            self.grad.zero_()

        def step(self):
            self.core.step(self.grad.clone())

    for base, lr, ref in (
        ("adam", 3e-3, lambda m: torch.optim.Adam(m.parameters(), lr=3e-3)),
        ("heavy-ball", 0.05, lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)),
    ):
        fosi = train(lambda m, base=base, lr=lr: CoreOnFlatParameters(m, base, lr), 49)
        assert torch.equal(fosi, train(ref, 49)), base


def test_fosi_step_matches_the_spec_formula():
    torch.manual_seed(0)
    n, r = 40, 3
    V = torch.linalg.qr(torch.randn(n, r))[0].T.contiguous()
    values = np.array([2.0, 5.0, 9.0])
    theta = torch.randn(n)
    core = FOSICore(theta.clone(), k=3, base="gd", lr=0.1, alpha=0.3, clip_max=3.0)
    core.set_curvature(values, V.numpy())
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
        core = FOSICore(
            x0.clone(), k=3, base="gd", lr=1.9 / (1000 if not with_curvature else 2), alpha=1.0, clip_max=1.0
        )
        if with_curvature:
            r = lanczos(lambda v: A.double().numpy() @ v, n, 20, k=3, seed=0)
            core.set_curvature(r.values, r.vectors)
        for _ in range(100):
            core.step(A @ core.theta)
        return float(core.theta @ A @ core.theta)

    assert run(True) < 1e-3 * run(False)


def test_refresh_schedule():
    assert [s for s in range(1, 40) if refresh_due(s, 10, 12)] == [10, 22, 34]
