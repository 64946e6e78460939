"""The shipped job launchers: a run directory with results, checkpoints and per-rank logs;
running the launcher again after a crash resumes bit for bit."""

import mmap
import os
import subprocess
from pathlib import Path

import h5py

from conftest import BIN, REPO, explain


def launch_job(script, run_dir, *args, env=None):
    full = {
        **os.environ,
        "RUN_DIR": str(run_dir),
        "MPIEXEC": str(BIN / "mpiexec"),
        "MPIHYBRID": str(BIN / "mpihybrid"),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    return subprocess.run([str(script), *args], capture_output=True, text=True, env=full, timeout=300)


def sha(path):
    with h5py.File(path) as f:
        return list(f["final/param_sha256"][()])


def test_every_algorithm_has_a_config_and_a_launcher():
    for algo in ("dp-adam", "fosi", "dho2", "decomfl", "fedavg", "fedzo", "fedacnnl", "pfedacnnl"):
        script = REPO / "jobs" / algo / "run.sh"
        assert script.exists() and os.access(script, os.X_OK), algo
        assert list((REPO / "jobs" / algo).glob("*.toml")), algo


def test_launcher_resumes_after_a_crash_with_the_recorded_overrides(tmp_path):
    args = ["--set", "train.steps=300", "--set", "train.eval_every=100", "--set", "checkpoint.every=100"]
    script = REPO / "jobs" / "dp-adam" / "run.sh"
    whole = launch_job(script, tmp_path / "whole", *args)
    assert whole.returncode == 0, explain(whole)
    crash = launch_job(script, tmp_path / "run", *args, env={"MPIHYBRID_FAULT": "1:250"})
    assert crash.returncode != 0
    other = launch_job(script, tmp_path / "run", "--set", "train.steps=400")
    assert other.returncode == 2 and "train.steps=300" in other.stderr, explain(other)
    again = launch_job(script, tmp_path / "run")  # a requeue repeats no arguments: the recorded ones are used
    assert again.returncode == 0 and "resuming" in again.stderr, explain(again)
    assert sha(tmp_path / "run" / "results.h5") == sha(tmp_path / "whole" / "results.h5")
    logs = (tmp_path / "run" / "logs" / "rank-1.log").read_text()
    assert "injected fault" in logs  # the crashed attempt's traceback, kept
    assert (tmp_path / "run" / "config.toml").exists()


def test_clean_shm_removes_unmapped_mpich_segments_and_keeps_mapped_ones():
    stale, live = (Path(f"/dev/shm/mpich_shm_test{os.getpid()}{k}_0") for k in ("a", "b"))
    stale.write_bytes(b"\0" * 4096)
    live.write_bytes(b"\0" * 4096)
    try:
        with live.open("r+b") as f, mmap.mmap(f.fileno(), 4096):
            proc = subprocess.run([str(REPO / "slurm" / "clean-shm.sh")], capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0 and f"removed stale {stale}" in proc.stdout, explain(proc)
            assert not stale.exists() and live.exists()
    finally:
        stale.unlink(missing_ok=True)
        live.unlink(missing_ok=True)
