"""The host-staged path gives the same bits and the same accounting as the direct path, for
every collective, on COMM_WORLD, a Dup and a Split; forced (`staged` on CPU tensors) so that it
runs without a GPU. test_cuda.py repeats this with CUDA tensors where CUDA exists."""

import numpy as np
import pytest
import torch
from collective_cases import SENTINEL, bits, communicators, counted, run_all
from mpi4py import MPI

from mpihybrid.comm import Comm
from mpihybrid.comm.staging import HostBuffers


@pytest.mark.mpi(ranks=[2, 4])
def test_staged_path_gives_the_direct_bits_and_accounting():
    for name, mpi in communicators():
        for dtype in (torch.float32, torch.float64, torch.int64):
            direct = Comm(mpi, staged=frozenset())
            staged = Comm(mpi, staged=frozenset({"cpu", "cuda"}))
            want = run_all(direct, dtype)
            got = run_all(staged, dtype)
            assert bits(got) == bits(want), (name, dtype)
            assert counted(staged.stats) == counted(direct.stats), (name, dtype)
            assert staged.buffers.allocations > 0 and direct.buffers.allocations == 0
            sentinels = [t for t in got if t.numel() and int(t.reshape(-1)[-1]) == SENTINEL]
            assert len(sentinels) >= 3, (name, dtype)  # the tails MPI does not write stayed


@pytest.mark.mpi(ranks=2)
def test_host_buffers_are_reused_and_numpy_is_never_staged():
    world = Comm(MPI.COMM_WORLD, staged=frozenset({"cpu"}))
    sub = world.Split(0)
    assert sub.buffers is world.buffers and sub.staged == world.staged
    run_all(world, torch.float64)
    allocated = world.buffers.allocations
    assert 1 <= allocated <= 2 * 3  # grown a few times, never per call
    for _ in range(3):
        run_all(world, torch.float64)
        run_all(sub, torch.float32)  # smaller elements: the same buffers
    assert world.buffers.allocations == allocated
    x = np.arange(4.0)
    world.Allreduce(x)
    assert np.array_equal(x, 2 * np.arange(4.0)) and world.buffers.allocations == allocated
    sub.Free()


def test_host_buffers_grow_to_the_largest_message_and_keep_shape_and_dtype():
    buffers = HostBuffers()
    a = buffers.get(0, torch.zeros(2, 3, dtype=torch.float64))
    assert a.shape == (2, 3) and a.dtype == torch.float64 and buffers.allocations == 1
    b = buffers.get(0, torch.zeros(12, dtype=torch.int32))
    assert b.data_ptr() == a.data_ptr() and buffers.allocations == 1
    c = buffers.get(0, torch.zeros(7, dtype=torch.float64))
    assert buffers.allocations == 2 and c.shape == (7,)
    d = buffers.get(1, torch.zeros(0, dtype=torch.float32))
    assert d.numel() == 0 and buffers.get(0, torch.zeros(())).shape == ()
