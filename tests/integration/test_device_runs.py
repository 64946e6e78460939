"""Algorithms on a rank's device (docs/gpu.md): the CPU-runnable plumbing here, the GPU runs
marked ``cuda`` (they skip, saying why, where torch finds no CUDA device)."""

import h5py
import numpy as np
import pytest
import torch

from conftest import REPO, explain, launch
from mpihybrid.algorithms import ALGORITHMS, load
from mpihybrid.analysis import read_results
from mpihybrid.errors import UsageError
from mpihybrid.harness import Fault, parse_fault

DP = ["run", "dp-adam", "--config", str(REPO / "jobs" / "dp-adam" / "digits.toml")]
SHORT = ["--set", "train.steps=40", "--set", "train.eval_every=20", "--set", "checkpoint.every=20"]
FED = ["--config", str(REPO / "jobs" / "pfedacnnl" / "digits.toml"), "--set", "model.hidden=[48, 32]"]
ON_GPU = ["--set", 'device.type="cuda"', "--set", "device.share=true"]  # a one-GPU machine runs both ranks
ON_CPU = ["--set", 'device.type="cpu"']
NOTE = "does not compute on cuda yet; it runs on the CPU"


def test_fault_values():
    assert parse_fault("") is None
    assert parse_fault("1:5") == Fault(1, 5, "error")
    assert parse_fault("0:12:device") == Fault(0, 12, "device")
    for bad in ("1", "1:x", "1:5:gpu", "1:5:device:2", "-1:5"):
        with pytest.raises(UsageError, match="MPIHYBRID_FAULT"):
            parse_fault(bad)


def test_every_algorithm_computes_on_the_device():
    """None is left to `device_for`'s CPU fallback (tests/unit/test_device.py tests that)."""
    assert [name for name in ALGORITHMS if not load(name).on_device] == []


def test_malformed_fault_is_one_line_exit_2(tmp_path):
    proc = launch(2, *DP, "--out", str(tmp_path / "r.h5"), env={"MPIHYBRID_FAULT": "1:5:gpu"})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "MPIHYBRID_FAULT='1:5:gpu'" in lines[0], explain(proc)
    assert not (tmp_path / "r.h5").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="device.type=auto must resolve to the CPU here")
def test_device_error_ends_the_job_and_a_checkpoint_resumes_under_another_device_setting(tmp_path):
    """A CUDA error (injected: torch.AcceleratorError) on rank 1 ends both ranks with rank 1's
    traceback; [device] is not part of the resume check, so the run continues bit for bit."""
    full = launch(2, *DP, *SHORT, *ON_CPU, "--out", str(tmp_path / "full.h5"))
    assert full.returncode == 0 and NOTE not in full.stderr, explain(full)
    ck = ["--out", str(tmp_path / "r.h5"), "--checkpoint", str(tmp_path / "ck")]
    crash = launch(2, *DP, *SHORT, "--set", 'device.type="auto"', *ck, env={"MPIHYBRID_FAULT": "1:30:device"})
    assert crash.returncode == 1, explain(crash)
    assert "[rank 1] Traceback" in crash.stderr and "[rank 0] Traceback" not in crash.stderr, explain(crash)
    assert "torch.AcceleratorError: CUDA error: injected device fault" in crash.stderr, explain(crash)
    resumed = launch(2, *DP, *SHORT, *ON_CPU, *ck, "--resume")
    assert resumed.returncode == 0, explain(resumed)
    want, got = read_results(tmp_path / "full.h5"), read_results(tmp_path / "r.h5")
    assert got.attrs["device"] == want.attrs["device"] == "cpu"
    assert got.param_sha256 == want.param_sha256 and list(got.metrics["step"]) == list(range(1, 41))


@pytest.mark.cuda
def test_dp_adam_on_the_gpu_and_its_checkpoint_resumed_on_the_cpu(tmp_path):
    full = launch(2, *DP, *SHORT, *ON_GPU, "--out", str(tmp_path / "full.h5"), timeout=300)
    assert full.returncode == 0 and NOTE not in full.stderr, explain(full)
    run = read_results(tmp_path / "full.h5")
    assert run.attrs["device"] == "cuda" and len(set(run.param_sha256)) == 1
    assert min(run.memory["peak_device_bytes"]) > 0 and run.final["test_accuracy"] > 0.8
    ck = ["--out", str(tmp_path / "r.h5"), "--checkpoint", str(tmp_path / "ck")]
    crash = launch(2, *DP, *SHORT, *ON_GPU, *ck, env={"MPIHYBRID_FAULT": "1:30"}, timeout=300)
    assert crash.returncode == 1 and "[rank 1] Traceback" in crash.stderr, explain(crash)
    resumed = launch(2, *DP, *SHORT, *ON_CPU, *ck, "--resume", timeout=300)
    assert resumed.returncode == 0, explain(resumed)
    again = read_results(tmp_path / "r.h5")
    # the CPU rounds differently from here on (docs/gpu.md): same steps, close, not bitwise
    assert again.attrs["device"] == "cpu" and list(again.metrics["step"]) == list(range(1, 41))
    assert again.final["test_accuracy"] == pytest.approx(run.final["test_accuracy"], abs=0.05)


def global_weights(ckpt_dir):
    last = sorted(ckpt_dir.glob("checkpoint-*.h5"))[-1]
    with h5py.File(last) as f:
        return [f[f"shared/weights/{i}"][()] for i in range(3)]


@pytest.mark.cuda
def test_pfedacnnl_on_the_gpu_matches_the_cpu(tmp_path):
    """Float64 sums and solve on the GPU (adaptive batches, timed with the GPU's kernels): the
    global weights agree with the CPU's to 1e-10."""
    weights = {}
    adaptive = ["--set", "acnnl.adaptive_batch=true", "--set", "acnnl.batch_seconds=0.001"]
    for name, device in (("gpu", [*ON_GPU, *adaptive]), ("cpu", ON_CPU)):
        out, ck = tmp_path / f"{name}.h5", tmp_path / name
        proc = launch(2, "run", "pfedacnnl", *FED, *device, "--out", str(out), "--checkpoint", str(ck), timeout=300)
        assert proc.returncode == 0, explain(proc)
        assert read_results(out).attrs["device"] == {"gpu": "cuda", "cpu": "cpu"}[name]
        weights[name] = global_weights(ck)
    for index, (g, c) in enumerate(zip(weights["gpu"], weights["cpu"])):
        assert np.abs(g - c).max() / np.abs(c).max() <= 1e-10, index


DHO2 = ["run", "dho2", "--config", str(REPO / "jobs" / "dho2" / "digits.toml"), "--set", "dho2.mode='sync'"]
DHO2_SHORT = ["--set", "train.steps=120", "--set", "fosi.refresh_every=30", "--set", "fosi.k=4"]
DHO2_SHORT += ["--set", "fosi.curvature_batch=64", "--set", "train.eval_every=60", "--set", "checkpoint.every=50"]


def final_theta(ckpt_dir):
    with h5py.File(sorted(ckpt_dir.glob("checkpoint-*.h5"))[-1]) as f:
        return f["shared/theta"][()]


@pytest.mark.cuda
def test_dho2_sync_on_the_gpu_matches_the_cpu_and_resumes_bitwise(tmp_path):
    """HVPs, FOSI rule and sharded state on the GPU (the Lanczos basis on the host): θ after 120
    steps agrees with the CPU run's to 1e-2 of its largest entry (float32 steps round differently;
    a first bound, not yet measured on a GPU), and a run interrupted at step 75 resumes on the GPU
    bit for bit."""
    theta, sha = {}, {}
    for name, device in (("gpu", ON_GPU), ("cpu", ON_CPU)):
        out, ck = tmp_path / f"{name}.h5", tmp_path / name
        proc = launch(2, *DHO2, *DHO2_SHORT, *device, "--out", str(out), "--checkpoint", str(ck), timeout=300)
        assert proc.returncode == 0 and NOTE not in proc.stderr, explain(proc)
        run = read_results(out)
        assert run.attrs["device"] == {"gpu": "cuda", "cpu": "cpu"}[name] and len(set(run.param_sha256)) == 1
        theta[name], sha[name] = final_theta(ck), run.param_sha256
    assert np.abs(theta["gpu"] - theta["cpu"]).max() <= 1e-2 * np.abs(theta["cpu"]).max()
    ck = ["--out", str(tmp_path / "r.h5"), "--checkpoint", str(tmp_path / "ck")]
    crash = launch(2, *DHO2, *DHO2_SHORT, *ON_GPU, *ck, env={"MPIHYBRID_FAULT": "0:75"}, timeout=300)
    assert crash.returncode != 0 and "injected fault" in crash.stderr, explain(crash)
    resumed = launch(2, *DHO2, *DHO2_SHORT, *ON_GPU, *ck, "--resume", timeout=300)
    assert resumed.returncode == 0, explain(resumed)
    assert read_results(tmp_path / "r.h5").param_sha256 == sha["gpu"]
