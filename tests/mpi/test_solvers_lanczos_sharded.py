"""Sharded Lanczos over COMM_WORLD, a Dup and a Split equals the serial result (float64)."""

import numpy as np
import pytest
import torch
from mpi4py import MPI
from torch import nn

from mpihybrid.blocks import blocks
from mpihybrid.comm import Comm
from mpihybrid.models import FlatModel
from mpihybrid.solvers.hvp import hvp_function
from mpihybrid.solvers.lanczos import lanczos


def communicators():
    world = Comm(MPI.COMM_WORLD)
    yield world
    dup = world.Dup()
    yield dup
    dup.Free()
    split = world.Split(world.rank % 2, key=-world.rank)
    yield split
    split.Free()


@pytest.mark.mpi(ranks=[2, 4])
def test_sharded_lanczos_equals_serial_on_a_matrix():
    rng = np.random.default_rng(7)
    B = rng.standard_normal((301, 301))
    A = B + B.T
    serial = lanczos(lambda x: A @ x, 301, 40, k=5, l=2, seed=11)
    for comm in communicators():
        blk = blocks(301, comm.size).slice(comm.rank)
        got = lanczos(lambda x, blk=blk: (A @ x)[blk], 301, 40, k=5, l=2, seed=11, comm=comm)
        assert np.abs(got.values - serial.values).max() <= 1e-10 * np.abs(serial.values).max()
        assert np.abs(got.vectors - serial.vectors[:, blk]).max() <= 1e-10


@pytest.mark.mpi(ranks=[2, 4])
def test_sharded_lanczos_on_a_model_hessian():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4)).double()
    flat, x, y = FlatModel(model), torch.randn(64, 8, dtype=torch.float64), torch.randint(0, 4, (64,))
    theta = flat.initial()
    hvp = hvp_function(lambda t: flat.loss(t, x, y, 1e-3))
    n = theta.numel()
    serial = lanczos(lambda x: hvp(theta, torch.from_numpy(x)).numpy(), n, 24, k=4, seed=2)
    for comm in communicators():
        blk = blocks(n, comm.size).slice(comm.rank)
        got = lanczos(lambda x, blk=blk: hvp(theta, torch.from_numpy(x)).numpy()[blk], n, 24, k=4, seed=2, comm=comm)
        assert np.abs(got.values - serial.values).max() <= 1e-10 * np.abs(serial.values).max()
