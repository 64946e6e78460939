"""Hessian-vector products against the exact Hessian."""

import pytest
import torch
from torch import nn

from mpihybrid.models import FlatModel
from mpihybrid.solvers.hvp import hvp_function


def small_problem(batchnorm=False, dtype=torch.float64):
    torch.manual_seed(0)
    layers = [nn.Linear(6, 8)] + ([nn.BatchNorm1d(8)] if batchnorm else []) + [nn.Tanh(), nn.Linear(8, 3)]
    model = nn.Sequential(*layers).to(dtype)
    x, y = torch.randn(32, 6, dtype=dtype), torch.randint(0, 3, (32,))
    flat = FlatModel(model)
    return model, (lambda theta: flat.loss(theta, x, y, weight_decay=1e-3)), flat.initial()


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("method", ["forward-over-reverse", "double-backward"])
def test_hvp_matches_the_exact_hessian(batchnorm, method):
    model, loss, theta = small_problem(batchnorm)
    H = torch.autograd.functional.hessian(loss, theta)
    v = torch.randn_like(theta)
    assert torch.allclose(hvp_function(loss, method)(theta, v), H @ v, rtol=1e-9, atol=1e-11)
    if batchnorm:  # the HVP never moves the running statistics
        assert torch.equal(model[1].running_mean, torch.zeros(8))
