"""A signal stops a run at a step boundary with a checkpoint and exit code 75 (docs/hpc.md,
"Time limits and requeue"); resuming gives the bits of an uninterrupted run, and the results
file records every restart. DeComFL: its clients catch up to the step the run stopped at."""

import os
import signal
import subprocess
import time

import h5py
import pytest

from conftest import BIN, REPO, explain, launch, rank_pids

JOB = REPO / "jobs" / "decomfl" / "digits.toml"
ARGS = ["run", "decomfl", "--config", str(JOB), "--set", "train.steps=400", "--set", "checkpoint.every=100"]
SLOW = {**os.environ, "MPIHYBRID_STEP_SLEEP": "0.02"}  # rounds take ~3 ms: give the signal time to land


def interrupt(tmp_path, after_step, send, resume):
    """Start the job, wait for the checkpoint of ``after_step``, then ``send(launcher_pid, out)``."""
    out, ckpt = tmp_path / "r.h5", tmp_path / "ck"
    cmd = [str(BIN / "mpiexec"), "-n", "2", str(BIN / "mpihybrid"), *ARGS, "--out", str(out), "--checkpoint", str(ckpt)]
    proc = subprocess.Popen(
        [*cmd, *(["--resume"] if resume else [])], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=SLOW
    )
    manifest = ckpt / f"checkpoint-{after_step:09d}.h5"
    deadline = time.time() + 120
    while not manifest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    send(proc.pid, out)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the job did not stop after the signal\n{proc.communicate()}")
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout.decode(), stderr.decode())


def test_sigusr1_and_sigterm_checkpoint_and_exit_75_then_resume_bitwise(tmp_path):
    whole = launch(2, *ARGS, "--out", str(tmp_path / "whole.h5"))
    assert whole.returncode == 0, explain(whole)

    # SIGUSR1 to the launcher (mpiexec forwards it to every rank, as Slurm's --signal does).
    first = interrupt(tmp_path, 100, lambda pid, out: os.kill(pid, signal.SIGUSR1), resume=False)
    assert first.returncode == 75 and "stopped by SIGUSR1" in first.stdout, explain(first)
    with h5py.File(tmp_path / "r.h5") as f:
        assert f.attrs["status"] == "interrupted" and f.attrs["restarts"] == 0
        stopped = int(f["metrics/step"][-1])
    assert 100 <= stopped < 400 and (tmp_path / "ck" / f"checkpoint-{stopped:09d}.h5").exists()

    # SIGTERM to one rank alone: the ranks agree after the step, so the other stops too.
    second = interrupt(tmp_path, 200, lambda pid, out: os.kill(max(rank_pids(out)), signal.SIGTERM), resume=True)
    assert second.returncode == 75, explain(second)

    last = launch(2, *ARGS, "--out", str(tmp_path / "r.h5"), "--checkpoint", str(tmp_path / "ck"), "--resume")
    assert last.returncode == 0, explain(last)
    with h5py.File(tmp_path / "r.h5") as f, h5py.File(tmp_path / "whole.h5") as g:
        assert f.attrs["status"] == "completed" and f.attrs["restarts"] == 2
        restarts = list(f["restarts/step"][()])
        assert restarts[0] == stopped and stopped < restarts[1] < 400
        assert list(f["metrics/step"][()]) == list(range(1, 401))
        assert list(f["final/param_sha256"][()]) == list(g["final/param_sha256"][()])
