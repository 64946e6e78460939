"""DeComFL, FedAvg and FedZO as real MPI jobs: bitwise agreement, bytes per round, resume."""

import numpy as np
import pytest

from conftest import REPO, explain, launch
from mpihybrid.analysis import read_results
from mpihybrid.io.checkpoint import list_checkpoints

JOBS = REPO / "jobs" / "decomfl"


@pytest.mark.parametrize("ranks", [2, 4])
def test_decomfl_models_agree_bitwise_and_resume_bitwise(tmp_path, ranks):
    args = [
        "run",
        "decomfl",
        "--config",
        str(JOBS / "digits.toml"),
        "--set",
        "fl.clients=20",
        "--set",
        "fl.sampled=3",
        "--set",
        "fl.local_steps=2",
        "--set",
        "train.steps=300",
        "--set",
        "train.momentum=0.9",
        "--set",
        "train.lr=0.005",
        "--set",
        "fl.lr_schedule='cosine'",
        "--set",
        "data.partition='dirichlet'",
        "--set",
        "checkpoint.every=100",
    ]
    full = launch(ranks, *args, "--out", str(tmp_path / "full.h5"))
    assert full.returncode == 0, explain(full)
    r = read_results(tmp_path / "full.h5")
    assert len(set(r.param_sha256)) == 1, r.param_sha256
    assert np.all(r.metrics["uplink_bytes"] == 4 * 2 * 5) and np.all(r.metrics["downlink_bytes"] == 4 * 2 * 5)
    assert r.final["replayed_rounds"].sum() > 0

    ckpt = tmp_path / "ckpt"
    crash = launch(
        ranks,
        *args,
        "--out",
        str(tmp_path / "res.h5"),
        "--checkpoint",
        str(ckpt),
        env={"MPIHYBRID_FAULT": f"{ranks - 1}:250"},
    )
    assert crash.returncode != 0 and "injected fault" in crash.stderr, explain(crash)
    resumed = launch(ranks, *args, "--out", str(tmp_path / "res.h5"), "--checkpoint", str(ckpt), "--resume")
    assert resumed.returncode == 0, explain(resumed)
    assert read_results(tmp_path / "res.h5").param_sha256 == r.param_sha256


def test_bytes_per_round_do_not_depend_on_d(tmp_path):
    ups = {}
    for hidden in (32, 1536):  # d = 2,410 and 115,210
        for algo, job in (("decomfl", JOBS / "digits.toml"), ("fedavg", REPO / "jobs" / "fedavg" / "digits.toml")):
            out = tmp_path / f"{algo}-{hidden}.h5"
            proc = launch(
                2,
                "run",
                algo,
                "--config",
                str(JOBS / job),
                "--set",
                f"model.hidden=[{hidden}]",
                "--set",
                "train.steps=3",
                "--set",
                "train.eval_every=3",
                "--out",
                str(out),
            )
            assert proc.returncode == 0, explain(proc)
            ups[algo, hidden] = set(read_results(out).metrics["uplink_bytes"].tolist())
    assert ups["decomfl", 32] == ups["decomfl", 1536] == {4 * 1 * 5}
    assert ups["fedavg", 32] == {4 * 2410} and ups["fedavg", 1536] == {4 * (64 * 1536 + 1536 + 1536 * 10 + 10)}


def test_fedzo_runs_with_d_dimensional_uploads(tmp_path):
    out = tmp_path / "fedzo.h5"
    proc = launch(
        2,
        "run",
        "fedzo",
        "--config",
        str(REPO / "jobs" / "fedzo" / "digits.toml"),
        "--set",
        "train.steps=20",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, explain(proc)
    r = read_results(out)
    assert len(set(r.param_sha256)) == 1 and set(r.metrics["uplink_bytes"].tolist()) == {4 * 2410}


@pytest.mark.parametrize(
    "override, key",
    [
        ("fl.sampled=9", "fl.sampled"),
        ("zo.perturbations=0", "zo.perturbations"),
        ("zo.mu=0.0", "zo.mu"),
        ("zo.estimator='backward'", "zo.estimator"),
        ("fl.clients=1", "fl.clients"),
    ],
)
def test_bad_federated_input_is_exit_2(tmp_path, override, key):
    proc = launch(
        2, "run", "decomfl", "--config", str(JOBS / "digits.toml"), "--set", override, "--out", str(tmp_path / "r.h5")
    )
    assert proc.returncode == 2 and key in proc.stderr, explain(proc)
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.h5").exists()


def test_decomfl_nan_keeps_last_good_checkpoint(tmp_path):
    ckpt = tmp_path / "ckpt"
    proc = launch(
        2,
        "run",
        "decomfl",
        "--config",
        str(JOBS / "digits.toml"),
        "--set",
        "train.lr=1e30",
        "--set",
        "train.steps=50",
        "--set",
        "checkpoint.every=1",
        "--out",
        str(tmp_path / "r.h5"),
        "--checkpoint",
        str(ckpt),
    )
    assert proc.returncode == 3 and "diverged" in proc.stderr, explain(proc)
    r = read_results(tmp_path / "r.h5")
    assert r.attrs["status"] == "failed"
    last = int(r.metrics["step"][-1])
    assert list_checkpoints(ckpt)[-1].name == f"checkpoint-{last:09d}.h5"
