import pytest
import torch
from mpi4py import MPI

from mpihybrid.algorithm import Algorithm
from mpihybrid.comm import Comm, staging
from mpihybrid.config import DeviceConfig
from mpihybrid.device import RankView, device_for, plan, select_device, usable_gpus
from mpihybrid.errors import ConfigError, UsageError

NO_CUDA = not torch.cuda.is_available()


def node(host, first, ranks, ids, gpus=None):
    """Views of ``ranks`` (world ranks, in node-local order) on one node, each seeing ``ids``."""
    ids = tuple(ids)
    gpus = tuple(range(len(ids))) if gpus is None else gpus
    return [RankView(r, host, first, local, gpus, ids, ids) for local, r in enumerate(ranks)]


def by_rank(views):
    return sorted(views, key=lambda v: v.rank)


def indices(devices):
    return [d.index if d.type == "cuda" else "cpu" for d in devices]


def test_mpiexec_ranks_take_the_node_gpus_in_local_rank_order():
    # two nodes, ranks placed round robin: world ranks 0, 2 on a; 1, 3 on b
    views = by_rank(node("a", 0, [0, 2], ["A0", "A1"]) + node("b", 1, [1, 3], ["B0", "B1"]))
    assert indices(plan(views, "cuda", share=False)) == [0, 0, 1, 1]
    assert indices(plan(views, "auto", share=False)) == [0, 0, 1, 1]
    assert indices(plan(views, "cpu", share=False)) == ["cpu"] * 4


def test_more_ranks_than_gpus_needs_share_and_names_the_numbers():
    views = node("a", 0, [0, 1, 2, 3], ["A0", "A1"])
    with pytest.raises(ConfigError, match=r"'device.share': 4 ranks on a but 2 GPU\(s\) for them"):
        plan(views, "cuda", share=False)
    with pytest.raises(ConfigError, match="device.share"):
        plan(views, "auto", share=False)
    assert indices(plan(views, "cuda", share=True)) == [0, 1, 0, 1]


def test_slurm_per_task_binding_each_rank_sees_its_own_gpu():
    views = [RankView(r, "a", 0, r, (0,), (f"GPU-{r}",), ("H100",)) for r in range(4)]
    assert indices(plan(views, "cuda", share=False)) == [0, 0, 0, 0]
    bound_twice = [RankView(r, "a", 0, r, (0,), ("GPU-0",), ("H100",)) for r in range(2)]
    with pytest.raises(ConfigError, match=r"2 ranks on a but 1 GPU"):
        plan(bound_twice, "cuda", share=False)
    assert indices(plan(bound_twice, "cuda", share=True)) == [0, 0]


def test_slurm_step_gpus_pick_the_indices():
    views = node("a", 0, [0, 1], ["A1", "A3"], gpus=(1, 3))
    assert indices(plan(views, "cuda", share=False)) == [1, 3]


def test_a_rank_without_gpu_is_cpu_for_auto_and_an_error_for_cuda():
    views = node("a", 0, [0], ["A0"]) + [RankView(1, "b", 1, 0, found="no CUDA device here")]
    assert indices(plan(views, "auto", share=False)) == ["cpu", "cpu"]
    with pytest.raises(ConfigError, match="'device.type': is 'cuda', but rank 1 on b has no usable GPU: no CUDA"):
        plan(views, "cuda", share=True)


def test_usable_gpus_honour_cuda_visible_devices_then_slurm():
    assert usable_gpus({}, 2) == (0, 1)
    assert usable_gpus({"CUDA_VISIBLE_DEVICES": "3", "SLURM_STEP_GPUS": "3"}, 1) == (0,)
    assert usable_gpus({"SLURM_STEP_GPUS": "1,3", "SLURM_JOB_GPUS": "0-3"}, 4) == (1, 3)
    assert usable_gpus({"SLURM_JOB_GPUS": "0-2,5"}, 8) == (0, 1, 2, 5)
    with pytest.raises(ValueError, match=r"SLURM_STEP_GPUS='4' names GPU 4, but the CUDA runtime sees 2"):
        usable_gpus({"SLURM_STEP_GPUS": "4"}, 2)
    with pytest.raises(ValueError, match="SLURM_JOB_GPUS='gpu:a100' is not a list"):
        usable_gpus({"SLURM_JOB_GPUS": "gpu:a100"}, 2)


@pytest.mark.skipif(not NO_CUDA, reason="checks what a machine without CUDA reports")
def test_select_device_without_cuda():
    world = Comm(MPI.COMM_SELF)
    assert select_device(world, DeviceConfig()) == torch.device("cpu")
    assert select_device(world, DeviceConfig(type="auto")) == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"'device.type': is 'cuda', but rank 0 on .* finds no CUDA device"):
        select_device(world, DeviceConfig(type="cuda"))


def test_comm_path_from_the_environment(monkeypatch):
    def staged_types(choice, aware=None):
        monkeypatch.setenv(staging.PATH_ENV, choice)
        monkeypatch.setattr(staging, "cuda_aware_mpi", lambda: aware)
        staging.staged_device_types.cache_clear()
        return staging.staged_device_types()

    try:
        assert staged_types("staged", aware=True) == {"cpu", "cuda"}
        assert staged_types("direct", aware=False) == frozenset()
        assert staged_types("auto", aware=True) == frozenset()
        assert staged_types("auto", aware=False) == {"cuda"}
        assert staged_types("auto", aware=None) == {"cuda"}  # cannot be asked: the safe path
        with pytest.raises(UsageError, match="MPIHYBRID_COMM_PATH='fast'"):
            staged_types("fast")
    finally:
        staging.staged_device_types.cache_clear()


def test_memory_alloc_kinds():
    assert not staging.supports_cuda_device("mpi,system")
    assert staging.supports_cuda_device("system,mpi,cuda:device,cuda:host")
    assert staging.supports_cuda_device("mpi, cuda")
    assert not staging.supports_cuda_device("system,cuda:host")


class NotPorted(Algorithm):
    """An algorithm that does not say it computes on the device (every shipped one does)."""


def test_device_for_runs_an_algorithm_not_ported_on_the_cpu_with_a_note(capsys):
    cuda, cpu = torch.device("cuda", 1), torch.device("cpu")
    assert NotPorted.on_device is False  # the default
    assert device_for("dp-adam", True, cuda, root=True) == cuda
    assert device_for("not-ported", NotPorted.on_device, cpu, root=True) == cpu
    assert capsys.readouterr().err == ""
    assert device_for("not-ported", NotPorted.on_device, cuda, root=False) == cpu
    assert capsys.readouterr().err == ""  # only rank 0 says it
    assert device_for("not-ported", NotPorted.on_device, cuda, root=True) == cpu
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "not-ported does not compute on cuda yet; it runs on the CPU" in lines[0]
