"""A client's local steps through the federated glue (batches, loss, lr, momentum) in place,
against the explicit-direction estimator and flat SGD step on the same batches."""

from types import SimpleNamespace

import torch

from mpihybrid import algorithms
from mpihybrid.config import build_config
from mpihybrid.device import CPU
from mpihybrid.fl.common import Federation, learning_rate, zo_local_steps
from mpihybrid.solvers.zeroth_order import Directions, SGDRule, finite_differences


def test_local_steps_in_place_equal_the_explicit_estimator_and_step():
    raw = {
        "data": {"name": "digits"},
        "model": {"hidden": [16]},
        "train": {"batch_size": 16, "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3},
        "fl": {"clients": 2, "sampled": 1, "local_steps": 3, "lr_schedule": "cosine"},
        "zo": {"perturbations": 4, "estimator": "central"},
    }
    config = build_config(raw, algorithms.sections(algorithms.load("decomfl")))
    fed = Federation(SimpleNamespace(config=config, world=SimpleNamespace(rank=0, size=1), device=CPU))
    # float64, so the only difference left is the order of roundings.
    fed.model.double()
    fed.x_train = fed.x_train.double()
    rule = SGDRule(config.train.momentum, config.train.weight_decay)
    x, buf = fed.flat.initial(), torch.zeros(fed.flat.d, dtype=torch.float64)
    path = lambda j: ("decomfl", 7, j)  # noqa: E731
    want = torch.zeros(3, 4)
    for j in range(3):
        xb, yb = fed.batch(1, 7, j)
        dirs = Directions.over(fed.trainable, config.seed, path(j), 4).vectors(torch.float64)
        want[j], _ = finite_differences(lambda v: float(fed.flat.loss(v, xb, yb)), x, dirs, 1e-3, "central")  # noqa: B023
        rule.step(x, buf, want[j], dirs, learning_rate(config, 7))

    got = zo_local_steps(fed, rule, 1, 7, [torch.zeros_like(p) for p in fed.trainable], path)
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-8), (got, want)
    assert torch.allclose(fed.flat.initial(), x, rtol=0, atol=1e-12)
    assert not torch.equal(got, torch.zeros_like(got))
