import numpy as np
import pytest
import torch

from mpihybrid.fl.common import sampled_clients
from mpihybrid.solvers.zeroth_order import SGDRule, direction, finite_differences


def test_directions_are_derived_and_distinct():
    a = direction(1000, 7, ("decomfl", 3, 0, 1))
    assert torch.equal(a, direction(1000, 7, ("decomfl", 3, 0, 1)))
    assert not torch.equal(a, direction(1000, 7, ("decomfl", 3, 0, 2)))
    # The official code's s*(p+17)+p collides for (17, 0) and (16, 1); derived paths do not.
    assert not torch.equal(direction(50, 0, (17, 0)), direction(50, 0, (16, 1)))
    s = direction(1000, 7, ("x",), kind="sphere")
    assert float(s.norm()) == pytest.approx(np.sqrt(1000), rel=1e-5)


@pytest.mark.parametrize("estimator", ["forward", "central"])
def test_finite_differences_match_the_directional_derivative(estimator):
    torch.manual_seed(0)
    A = torch.randn(20, 20, dtype=torch.float32)
    A = A @ A.T / 20
    x = torch.randn(20)

    def f(v):
        return float(0.5 * v @ A @ v)

    dirs = [direction(20, 1, (p,)) for p in range(4)]
    scalars, f0 = finite_differences(f, x, dirs, mu=1e-2, estimator=estimator)
    exact = torch.stack([(A @ x) @ z for z in dirs])
    if estimator == "forward":  # on a quadratic the forward difference is off by exactly (μ/2) zᵀAz
        exact += torch.stack([0.5 * 1e-2 * z @ A @ z for z in dirs])
    assert f0 == pytest.approx(f(x))
    assert torch.allclose(scalars, exact, rtol=1e-3, atol=1e-2), (scalars, exact)


def test_replaying_a_step_gives_the_same_bits():
    x0 = torch.randn(500)
    dirs = [direction(500, 3, (p,)) for p in range(5)]
    scalars = torch.randn(5)
    rule = SGDRule(momentum=0.9, weight_decay=1e-3)
    a, abuf = x0.clone(), torch.zeros(500)
    b, bbuf = x0.clone(), torch.zeros(500)
    for _ in range(3):
        rule.step(a, abuf, scalars, dirs, 0.01)
        rule.step(b, bbuf, scalars, [direction(500, 3, (p,)) for p in range(5)], 0.01)
    assert torch.equal(a, b) and torch.equal(abuf, bbuf) and not torch.equal(a, x0)


def test_one_step_is_sgd_on_the_estimate():
    x, buf = torch.ones(4), torch.zeros(4)
    dirs = [torch.tensor([1.0, 0, 0, 0]), torch.tensor([0, 2.0, 0, 0])]
    SGDRule().step(x, buf, torch.tensor([2.0, 1.0]), dirs, lr=0.5)
    assert torch.equal(x, torch.tensor([0.5, 0.5, 1.0, 1.0]))


def test_client_sampling_is_derived_per_round():
    a = sampled_clients(0, 5, 100, 10)
    assert np.array_equal(a, sampled_clients(0, 5, 100, 10)) and len(set(a)) == 10
    assert not np.array_equal(a, sampled_clients(0, 6, 100, 10))
