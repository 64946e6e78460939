"""Collectives on CUDA tensors and GPU selection, where CUDA exists (marked `cuda`: elsewhere they
skip with the reason). Inputs are drawn on the CPU and moved, so the CPU direct path is the
reference for every bit."""

import pytest
import torch
from collective_cases import bits, communicators, counted, run_all
from mpi4py import MPI

from mpihybrid.comm import Comm, cuda_aware_mpi
from mpihybrid.comm.staging import RECV
from mpihybrid.config import DeviceConfig
from mpihybrid.device import select_device
from mpihybrid.errors import ConfigError
from mpihybrid.io.results import peak_device_bytes

DTYPES = (torch.float32, torch.float64, torch.int64)


def compare_with_cpu(staged: frozenset[str]) -> None:
    device = select_device(Comm(MPI.COMM_WORLD), DeviceConfig(type="cuda", share=True))
    for name, mpi in communicators():
        for dtype in DTYPES:
            reference = Comm(mpi, staged=frozenset())
            cuda = Comm(mpi, staged=staged)
            want = run_all(reference, dtype)
            got = run_all(cuda, dtype, device=device)
            assert all(t.device == device for t in got)
            assert bits(got) == bits(want), (name, dtype)
            assert counted(cuda.stats) == counted(reference.stats), (name, dtype)


@pytest.mark.cuda
@pytest.mark.mpi(ranks=2)
def test_cuda_tensors_through_pinned_host_buffers():
    compare_with_cpu(staged=frozenset({"cuda"}))
    probe = Comm(MPI.COMM_WORLD, staged=frozenset({"cuda"}))
    t = torch.ones(3, device="cuda")
    probe.Allreduce(t)  # in place: through the RECV buffer
    allocated = probe.buffers.allocations
    assert probe.buffers.get(RECV, t).is_pinned() and probe.buffers.allocations == allocated
    assert peak_device_bytes() > 0


@pytest.mark.cuda
@pytest.mark.mpi(ranks=2)
def test_cuda_tensors_directly_to_a_cuda_aware_mpi():
    # At 2 ranks a sum is one addition, so even an MPI that reduces on the GPU gives the CPU's bits.
    if not cuda_aware_mpi():
        pytest.skip(f"the MPI library is not CUDA-aware (asked: {cuda_aware_mpi()})")
    compare_with_cpu(staged=frozenset())


@pytest.mark.cuda
@pytest.mark.mpi(ranks=2)
def test_ranks_share_a_gpu_only_when_allowed():
    world = Comm(MPI.COMM_WORLD)
    node = MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED)
    local_rank, local_size = node.Get_rank(), node.Get_size()
    node.Free()
    count = torch.cuda.device_count()
    device = select_device(world, DeviceConfig(type="auto", share=True))
    assert device == torch.device("cuda", local_rank % count) and torch.cuda.current_device() == device.index
    if local_size <= count:
        assert select_device(world, DeviceConfig(type="cuda")).index == local_rank
    else:
        with pytest.raises(ConfigError, match=rf"device.share.*{local_size} ranks on .* but {count} GPU"):
            select_device(world, DeviceConfig(type="cuda"))
