"""ACnnL layers against slow references, and FedACnnL's invariances in one process
(the multi-rank versions run in tests/integration/test_fedacnnl.py)."""

import numpy as np
import pytest
import torch
from mpi4py import MPI

from mpihybrid.algorithms import load, sections
from mpihybrid.comm import Comm
from mpihybrid.config import build_config
from mpihybrid.data import partition
from mpihybrid.errors import ConfigError
from mpihybrid.fl.layerwise import Client, LayerwiseFit
from mpihybrid.fl.pfedacnnl import personalize
from mpihybrid.models.acnnl import Network, check_config, plan_layers


def config(model=None, acnnl=None, pfl=None, seed=3):
    raw = {
        "seed": seed,
        "model": model or {"name": "mlp", "hidden": [16, 12], "activation": "tanh"},
        "acnnl": acnnl or {},
        "pfl": pfl or {},
    }
    return build_config(raw, sections(load("pfedacnnl")))


def blobs(n=240, shape=(10,), classes=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centers = rng.standard_normal((classes, int(np.prod(shape)))) * 2
    x = (centers[y] + rng.standard_normal((n, int(np.prod(shape))))).reshape(n, *shape)
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y)


def clients_of(x, y, parts):
    empty = x[:0]
    return [Client(k, x[torch.from_numpy(idx)], y[torch.from_numpy(idx)], empty, y[:0]) for k, idx in enumerate(parts)]


def fit(cfg, net, clients, batch=64):
    cfg.acnnl.batch_size = batch
    f = LayerwiseFit(net, Comm(MPI.COMM_SELF), clients, cfg.acnnl)
    for index in range(len(net)):
        f.fit_layer(index)
    return [w.numpy() for w in f.weights]


def test_conv_rows_match_an_explicit_patch_loop():
    cfg = config({"name": "cnn2d", "channels": [3], "hidden": [], "kernel_size": 3, "activation": "tanh"})
    net = Network(cfg, (2, 5, 6), 4)
    H = torch.randn(3, 2, 5, 6, dtype=torch.float64)
    A = net.inputs(0, H)
    padded = np.pad(H.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)))
    rows = [
        np.append(padded[n, :, i : i + 3, j : j + 3].ravel(), 1.0) for n in range(3) for i in range(5) for j in range(6)
    ]
    assert A.shape == (3 * 30, 2 * 9 + 1)
    assert np.abs(A.numpy() - np.array(rows)).max() == 0
    y = torch.tensor([0, 3, 1])
    Z = net.targets(0, y)
    assert Z.shape == (90, 3) and torch.equal(Z[30:60], torch.atanh(net.encoders[0][3]).expand(30, 3))


def test_layerwise_fit_matches_a_plain_numpy_reference():
    """The ACnnL layer fit (docs/fedacnnl.md) written out with numpy and lstsq on ridge-augmented rows."""
    cfg = config(acnnl={"gamma": 1e-2, "projection": "orthonormal"})
    x, y = blobs()
    net = Network(cfg, (10,), 4)
    got = fit(cfg, net, clients_of(x, y, [np.arange(240)]), batch=50)
    H = x.numpy().astype(np.float64)
    onehot = np.eye(4)[y.numpy()]
    for index, layer in enumerate(net.layers):
        A = np.hstack([H, np.ones((240, 1))])
        Z = onehot if layer.kind == "classifier" else np.arctanh(onehot @ net.encoders[index].numpy())
        gamma = cfg.acnnl.gamma * np.trace(A.T @ A) / A.shape[1]
        W = np.linalg.lstsq(
            np.vstack([A, np.sqrt(gamma) * np.eye(A.shape[1])]),
            np.vstack([Z, np.zeros((A.shape[1], Z.shape[1]))]),
            rcond=None,
        )[0]
        assert np.abs(got[index] - W).max() / np.abs(W).max() < 1e-9, index
        H = np.tanh(A @ got[index])
    assert (np.argmax(A @ got[-1], 1) == y.numpy()).mean() > 0.9  # A: the classifier's input


@pytest.mark.parametrize(
    "model",
    [
        {"name": "mlp", "hidden": [16, 12], "activation": "tanh"},
        {"name": "cnn2d", "channels": [4], "hidden": [8], "kernel_size": 3, "activation": "relu"},
    ],
)
def test_partition_and_batch_invariance_in_one_process(model):
    cfg = config(model)
    shape = (16,) if model["name"] == "mlp" else (1, 4, 4)
    x, y = blobs(shape=shape)
    net = Network(cfg, shape, 4)
    central = fit(cfg, net, clients_of(x, y, [np.arange(240)]), batch=240)
    for M, scheme in ((2, "iid"), (7, "dirichlet"), (50, "shards")):
        parts = partition(y.numpy(), M, 1, scheme, alpha=0.5)
        by_batch = [fit(cfg, net, clients_of(x, y, parts), batch=batch) for batch in (1, 16)]
        for c, g in zip(central, by_batch[0]):
            assert np.abs(g - c).max() / np.abs(c).max() < 1e-10, (M, scheme)
        for a, b in zip(*by_batch):  # the batch size changes no bit (fixed accumulation blocks)
            assert np.array_equal(a, b), (M, scheme)


def test_personalisation_limits():
    cfg = config(pfl={"lam": 1e9})
    x, y = blobs(shape=(16,))
    net = Network(cfg, (16,), 4)
    group = [torch.from_numpy(w) for w in fit(cfg, net, clients_of(x, y, [np.arange(240)]))]
    mine = clients_of(x, y, [np.arange(30)])[0]
    assert np.abs(personalize(net, mine, group, cfg)[-1].numpy() - group[-1].numpy()).max() < 1e-6
    cfg.pfl.lam = 1e-12
    local = personalize(net, mine, group, cfg)[-1].numpy()
    A = net.inputs(len(net) - 1, net.features(net.prepare(mine.x), group[:-1])).numpy()
    ref = np.linalg.lstsq(A, np.eye(4)[mine.y.numpy()], rcond=None)[0]
    assert np.abs(A @ local - A @ ref).max() < 1e-6  # the local least-squares fit (its fitted values)
    cfg.pfl.personalize = "all"
    assert len(personalize(net, mine, group, cfg)) == len(net)


def test_bad_configs_name_their_key():
    with pytest.raises(ConfigError, match="acnnl.tau"):
        check_config(config(acnnl={"tau": 1.0}))
    with pytest.raises(ConfigError, match="model.activation"):
        check_config(config({"name": "mlp", "hidden": [4], "activation": "gelu"}))
    with pytest.raises(ConfigError, match="model.hidden"):
        plan_layers(config({"name": "mlp", "hidden": [9000]}).model, (10,), 3)
