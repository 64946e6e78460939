"""End-to-end checks of the `mpihybrid` command under real mpiexec launches."""

import os
import time

import numpy as np
import pytest
import torch

from conftest import BIN, REPO, explain, launch
from mpihybrid.analysis import read_results
from mpihybrid.io.checkpoint import list_checkpoints, read_info

JOB = str(REPO / "jobs" / "dp-adam" / "digits.toml")


def test_info_reports_ranks_and_mismatches():
    proc = launch(4, "info", "--expect-ranks", "4")
    assert proc.returncode == 0, explain(proc)
    assert "world size: 4" in proc.stdout and "rank 3 of 4" in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if line.startswith("rank ")]
    assert len(rows) == 4 and all(": cpu" in row or ": cuda:" in row for row in rows), explain(proc)
    wrong = launch(2, "info", "--expect-ranks", "3")
    assert wrong.returncode == 2 and "expected 3 ranks, MPI reports 2" in wrong.stderr, explain(wrong)


def test_singleton_launch_is_detected():
    # What a foreign launcher leaves behind: it announced 4 ranks, but this MPI sees a world of 1.
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "MPI_LOCAL"))}
    proc = subprocess.run(
        [str(BIN / "mpihybrid"), "info"],
        env={**env, "OMPI_COMM_WORLD_SIZE": "4"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "each is 'rank 0 of 1'" in proc.stderr, explain(proc)
    proc = subprocess.run(
        [str(BIN / "mpihybrid"), "info"],
        env={**env, "MPIHYBRID_EXPECT_RANKS": "2"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "expected 2 ranks, MPI reports 1" in proc.stderr, explain(proc)


def test_dp_adam_accuracy_and_bitwise_resume_after_a_crash(tmp_path):
    common = ["run", "dp-adam", "--config", JOB, "--set", "checkpoint.every=200"]
    full = launch(2, *common, "--out", str(tmp_path / "full.h5"))
    assert full.returncode == 0, explain(full)
    run = read_results(tmp_path / "full.h5")
    assert run.attrs["status"] == "completed" and run.ranks == 2
    assert run.final["test_accuracy"] >= 0.95 and len(set(run.param_sha256)) == 1
    assert len(run.metrics["step"]) == 600 and run.metrics["wall_time"].shape == (600,)
    assert run.comm["allreduce"]["calls"][1] > 600

    ckpt = tmp_path / "ckpt"
    crashed = launch(
        2, *common, "--out", str(tmp_path / "resumed.h5"), "--checkpoint", str(ckpt), env={"MPIHYBRID_FAULT": "1:350"}
    )
    assert crashed.returncode != 0 and "[rank 1] RuntimeError: injected fault" in crashed.stderr, explain(crashed)
    assert [p.name for p in list_checkpoints(ckpt)] == ["checkpoint-000000200.h5"]
    resumed = launch(2, *common, "--out", str(tmp_path / "resumed.h5"), "--checkpoint", str(ckpt), "--resume")
    assert resumed.returncode == 0, explain(resumed)
    again = read_results(tmp_path / "resumed.h5")
    assert again.param_sha256 == run.param_sha256 and list(again.metrics["step"]) == list(range(1, 601))


def test_exception_on_one_rank_ends_a_4_rank_job_quickly(tmp_path):
    start = time.monotonic()
    proc = launch(
        4,
        "run",
        "dp-adam",
        "--config",
        JOB,
        "--out",
        str(tmp_path / "r.h5"),
        env={"MPIHYBRID_FAULT": "1:5"},
        timeout=60,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode != 0, explain(proc)
    assert "[rank 1] Traceback" in proc.stderr and "injected fault" in proc.stderr, explain(proc)
    assert "[rank 0] Traceback" not in proc.stderr
    assert elapsed < 30, f"took {elapsed:.1f}s"


def test_unknown_key_is_one_line_exit_2(tmp_path):
    proc = launch(
        2, "run", "dp-adam", "--config", JOB, "--set", "train.learning_rate=0.1", "--out", str(tmp_path / "r.h5")
    )
    assert proc.returncode == 2, explain(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "train.learning_rate" in lines[0] and "unknown key" in lines[0], explain(proc)
    assert not (tmp_path / "r.h5").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks what a machine without CUDA reports")
def test_cuda_without_cuda_is_one_line_exit_2(tmp_path):
    for args in (
        ["run", "dp-adam", "--config", JOB, "--set", "device.type=cuda", "--out", str(tmp_path / "r.h5")],
        ["info", "--device", "cuda"],
    ):
        proc = launch(2, *args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, explain(proc)
        assert "'device.type': is 'cuda'" in lines[0] and "finds no CUDA device" in lines[0], explain(proc)
    assert not (tmp_path / "r.h5").exists()


def test_impossible_size_and_resume_errors(tmp_path):
    proc = launch(2, "run", "dp-adam", "--config", JOB, "--set", "train.batch_size=63", "--out", str(tmp_path / "r.h5"))
    assert proc.returncode == 2 and "train.batch_size" in proc.stderr, explain(proc)

    ckpt = tmp_path / "ckpt"
    ok = launch(
        2,
        "run",
        "dp-adam",
        "--config",
        JOB,
        "--set",
        "train.steps=20",
        "--out",
        str(tmp_path / "r.h5"),
        "--checkpoint",
        str(ckpt),
    )
    assert ok.returncode == 0, explain(ok)
    (good,) = list_checkpoints(ckpt)
    before = good.read_bytes()
    other = launch(
        2,
        "run",
        "dp-adam",
        "--config",
        JOB,
        "--set",
        "train.steps=30",
        "--out",
        str(tmp_path / "r2.h5"),
        "--checkpoint",
        str(ckpt),
        "--resume",
    )
    assert other.returncode == 2 and "another config" in other.stderr, explain(other)
    sizes = launch(
        1,
        "run",
        "dp-adam",
        "--config",
        JOB,
        "--set",
        "train.steps=20",
        "--out",
        str(tmp_path / "r3.h5"),
        "--checkpoint",
        str(ckpt),
        "--resume",
    )
    assert sizes.returncode == 2 and "written by 2 ranks" in sizes.stderr, explain(sizes)

    good.write_bytes(before[: len(before) // 3])
    resume_args = ["run", "dp-adam", "--config", JOB, "--set", "train.steps=20", "--checkpoint", str(ckpt), "--resume"]
    trunc = launch(2, *resume_args, "--out", str(tmp_path / "r4.h5"))
    lines = trunc.stderr.strip().splitlines()
    assert trunc.returncode == 2 and len(lines) == 1 and "unreadable" in lines[0], explain(trunc)
    assert not (tmp_path / "r4.h5").exists()

    good.write_bytes(before)
    shard = read_info(good).shards[1]["file"]
    shard.unlink()
    partial = launch(2, *resume_args, "--out", str(tmp_path / "r5.h5"))
    lines = partial.stderr.strip().splitlines()
    assert partial.returncode == 2 and len(lines) == 1 and f"shard '{shard}' of rank 1 is missing" in lines[0], explain(
        partial
    )


@pytest.mark.parametrize(
    "spoil, words",
    [
        (lambda a: a["x_train"].__setitem__((5, 3), np.nan), "x_train[5, 3] is nan (not finite)"),
        (lambda a: a["y_train"].__setitem__(11, -2), "y_train[11] = -2 is not an integer >= 0"),
    ],
)
def test_bad_data_is_exit_2_naming_the_array_and_index(tmp_path, spoil, words):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.normal(size=(200, 6)), "y_train": rng.integers(0, 4, 200)}
    spoil(arrays)
    np.savez(tmp_path / "d.npz", **arrays)
    data = ["--set", "data.name='npz'", "--set", f"data.path='{tmp_path / 'd.npz'}'", "--set", "train.steps=5"]
    proc = launch(2, "run", "dp-adam", "--config", JOB, *data, "--out", str(tmp_path / "r.h5"))
    assert proc.returncode == 2 and words in proc.stderr and "data.path" in proc.stderr, explain(proc)
    assert "Traceback" not in proc.stderr and "diverged" not in proc.stderr, explain(proc)


def test_existing_results_are_kept_unless_overwrite(tmp_path):
    out = tmp_path / "r.h5"
    args = ["run", "dp-adam", "--config", JOB, "--set", "train.steps=5", "--out", str(out)]
    assert launch(2, *args).returncode == 0
    before = out.read_bytes()
    again = launch(2, *args, "--set", "seed=1")
    assert again.returncode == 2 and "--out" in again.stderr and "--overwrite" in again.stderr, explain(again)
    assert out.read_bytes() == before
    replaced = launch(2, *args, "--set", "seed=1", "--overwrite")
    assert replaced.returncode == 0 and out.read_bytes() != before, explain(replaced)


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    ckpt = tmp_path / "ckpt"
    proc = launch(
        2,
        "run",
        "dp-adam",
        "--config",
        JOB,
        "--set",
        "train.lr=1e30",
        "--set",
        "checkpoint.every=1",
        "--out",
        str(tmp_path / "r.h5"),
        "--checkpoint",
        str(ckpt),
    )
    assert proc.returncode == 3 and "diverged at step" in proc.stderr, explain(proc)
    run = read_results(tmp_path / "r.h5")
    assert run.attrs["status"] == "failed" and "diverged" in run.attrs["error"]
    last_step = int(run.metrics["step"][-1])
    kept = [p.name for p in list_checkpoints(ckpt)]
    assert kept and kept[-1] == f"checkpoint-{last_step:09d}.h5"


@pytest.mark.parametrize("n", [1, 2])
def test_analyze_prints_a_run(tmp_path, n):
    import subprocess

    out = tmp_path / "r.h5"
    proc = launch(
        n,
        "run",
        "dp-adam",
        "--config",
        JOB,
        "--set",
        "train.steps=30",
        "--set",
        "train.eval_every=10",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, explain(proc)
    table = subprocess.run([str(BIN / "mpihybrid"), "analyze", str(out)], capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, explain(table)
    assert "| step | wall_time | train_loss | test_loss | test_accuracy |" in table.stdout
    assert len([line for line in table.stdout.splitlines() if line.startswith("| ")]) == 31
