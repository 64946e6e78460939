"""FOSI and DHO2 as real MPI jobs: identical replicas, bitwise resume (sync and overlap with a
fixed pickup, cold and warm-started, Lanczos and subspace; one overlap run resumed with its
tensors staged through host buffers), curvature handed from C to U block to block with its
staleness, memory falling with ranks, bad input and divergence."""

import h5py
import numpy as np
import pytest

from conftest import REPO, explain, launch

JOB = REPO / "jobs" / "dho2" / "digits.toml"
SHORT = [
    "--set",
    "train.steps=120",
    "--set",
    "fosi.refresh_every=30",
    "--set",
    "train.eval_every=60",
    "--set",
    "fosi.k=4",
    "--set",
    "fosi.curvature_batch=64",
    "--set",
    "admm.enabled=true",
    "--set",
    "admm.sigma=1e-4",
    "--set",
    "checkpoint.every=50",
]


def received(path):
    """Bytes each rank received by point-to-point Recv (in overlap mode: the hand-off only)."""
    with h5py.File(path) as f:
        return f["comm/recv/received_bytes"][()] if "recv" in f["comm"] else None


def read(path):
    with h5py.File(path) as f:
        metrics = {k: f["metrics"][k][()] for k in f["metrics"]}
        memory = {k: f["memory"][k][()] for k in f["memory"]}
        return [s.decode() for s in f["final/param_sha256"][()]], metrics, memory, f.attrs["status"]


WARM = ["--set", "fosi.warm_start=true", "--set", "fosi.warm_lanczos_steps=8"]


# torch tensors through Comm's host buffers, as CUDA tensors go where MPI is not CUDA-aware
STAGED = {"MPIHYBRID_COMM_PATH": "staged"}


@pytest.mark.parametrize(
    "ranks, mode, extra, resume_env",
    [
        (2, "sync", [], {}),
        (4, "sync", [*WARM, "--set", "fosi.solver='subspace'", "--set", "fosi.warm_subspace_sweeps=2"], {}),
        (2, "overlap", [], STAGED),  # the hand-off's θ snapshots staged: the same bits
        (3, "overlap", WARM, {}),  # C's one block goes to U's two ranks, half to each
    ],
)
def test_replicas_agree_and_resume_is_bitwise(tmp_path, ranks, mode, extra, resume_env):
    args = [
        "run",
        "dho2",
        "--config",
        str(JOB),
        *SHORT,
        "--set",
        f"dho2.mode='{mode}'",
        "--set",
        "dho2.pickup='fixed'",
        "--set",
        "dho2.pickup_delay=7",
        *extra,
    ]
    full = launch(ranks, *args, "--out", str(tmp_path / "full.h5"))
    assert full.returncode == 0, explain(full)
    sha, metrics, memory, status = read(tmp_path / "full.h5")
    assert status == "completed" and len(set(sha)) == 1, sha
    stale = metrics["curvature_staleness"][~np.isnan(metrics["curvature_staleness"])]
    assert len(stale) >= 2 and set(stale) == ({0.0} if mode == "sync" else {7.0})
    if mode == "sync":
        assert len(set(memory["curvature_bytes"])) <= 2 and memory["optimizer_bytes"].min() > 0
    if ranks == 3:  # no full r×n on U's first rank: it receives its row block (and r values) like the other
        got = received(tmp_path / "full.h5")
        assert 0 < got[1] <= got[0] <= 1.01 * got[1], got

    ck = ["--out", str(tmp_path / "r.h5"), "--checkpoint", str(tmp_path / "ck")]
    crash = launch(ranks, *args, *ck, env={"MPIHYBRID_FAULT": "0:75", **resume_env})
    assert crash.returncode != 0 and "injected fault" in crash.stderr, explain(crash)
    resumed = launch(ranks, *args, *ck, "--resume", env=resume_env)
    assert resumed.returncode == 0, explain(resumed)
    assert read(tmp_path / "r.h5")[0] == sha


def test_overlap_probe_installs_curvature_and_records_staleness(tmp_path):
    out = tmp_path / "o.h5"
    proc = launch(
        2,
        "run",
        "dho2",
        "--config",
        str(JOB),
        "--set",
        "train.steps=1500",
        "--set",
        "fosi.refresh_every=50",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, explain(proc)
    sha, m, memory, _ = read(out)
    stale = m["curvature_staleness"][~np.isnan(m["curvature_staleness"])]
    assert len(stale) >= 1 and (stale >= 1).all()  # installed while U kept stepping
    assert m["curvature_busy"].sum() > 0 and len(set(sha)) == 1
    assert memory["curvature_bytes"][1] > 0  # C holds its Lanczos basis block


def test_memory_per_rank_falls_with_ranks(tmp_path):
    totals = {}
    for ranks in (1, 2, 4):
        out = tmp_path / f"m{ranks}.h5"
        proc = launch(
            ranks,
            "run",
            "dho2",
            "--config",
            str(JOB),
            "--set",
            "dho2.mode='sync'",
            "--set",
            "train.steps=11",
            "--set",
            "fosi.refresh_every=10",
            "--set",
            "model.hidden=[128]",
            "--set",
            "train.batch_size=64",
            "--set",
            "fosi.curvature_batch=64",
            "--out",
            str(out),
        )
        assert proc.returncode == 0, explain(proc)
        mem = read(out)[2]
        totals[ranks] = (mem["curvature_bytes"] + mem["optimizer_bytes"]).max()
    assert totals[2] < 0.55 * totals[1] and totals[4] < 0.3 * totals[1], totals


def test_fosi_single_process(tmp_path):
    out = tmp_path / "f.h5"
    proc = launch(
        1,
        "run",
        "fosi",
        "--config",
        str(REPO / "jobs" / "fosi" / "digits.toml"),
        "--set",
        "train.steps=200",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, explain(proc)
    _, m, _, _ = read(out)
    assert np.isfinite(m["train_loss"]).all() and m["test_accuracy"][-1] > 0.8


@pytest.mark.parametrize(
    "ranks, setting, key",
    [
        (2, "fosi.k=3000", "fosi.k"),
        (2, "dho2.curvature_ranks=2", "dho2.curvature_ranks"),
        (2, "fosi.refresh_every=0", "fosi.refresh_every"),
        (2, "fosi.lanczos_steps=5", "fosi.lanczos_steps"),
        (2, "dho2.pickup='fixed'", "dho2.pickup_delay"),
        (1, "dho2.mode='overlap'", "dho2.mode"),
    ],
)
def test_bad_input_names_its_key(tmp_path, ranks, setting, key):
    proc = launch(ranks, "run", "dho2", "--config", str(JOB), "--set", setting, "--out", str(tmp_path / "x.h5"))
    assert proc.returncode == 2 and key in proc.stderr, explain(proc)


@pytest.mark.parametrize("mode", ["sync", "overlap"])
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, mode):
    ck = tmp_path / "ck"
    proc = launch(
        2,
        "run",
        "dho2",
        "--config",
        str(JOB),
        *SHORT,
        "--set",
        f"dho2.mode='{mode}'",
        "--set",
        "fosi.base='gd'",
        "--set",
        "train.lr=1e8",
        "--set",
        "checkpoint.every=1",
        "--set",
        "checkpoint.keep=1",
        "--out",
        str(tmp_path / "d.h5"),
        "--checkpoint",
        str(ck),
    )
    assert proc.returncode == 3 and "diverged" in proc.stderr, explain(proc)
    kept = sorted(ck.glob("checkpoint-*.h5"))
    assert len(kept) == 1
    with h5py.File(tmp_path / "d.h5") as f:
        assert f.attrs["status"] == "failed"
        step = int(kept[0].stem.split("-")[1])
        assert np.isfinite(f["metrics/train_loss"][()][:step]).all()
