"""FedACnnL and pFedACnnL as real MPI jobs: partition invariance across ranks and clients,
L reductions with the documented byte count (docs/fedacnnl.md), resume, bad input."""

import h5py
import numpy as np
import pytest

from conftest import REPO, explain, launch
from mpihybrid.analysis import read_results
from mpihybrid.solvers.least_squares import packed_length

JOB = REPO / "jobs" / "fedacnnl" / "digits.toml"
PJOB = REPO / "jobs" / "pfedacnnl" / "digits.toml"
SMALL = ["--set", "model.hidden=[48, 32]", "--set", "acnnl.local_test_fraction=0.0"]
DIMS = [(65, 48), (49, 32), (33, 10)]  # (inputs + bias, outputs) of the three layers


def weights(ckpt_dir):
    last = sorted(ckpt_dir.glob("checkpoint-*.h5"))[-1]
    with h5py.File(last) as f:
        return [f[f"shared/weights/{i}"][()] for i in range(len(DIMS))]


def test_weights_do_not_depend_on_ranks_clients_split_or_batch(tmp_path):
    runs = {
        "central": (1, ["--set", "fl.clients=1", "--set", "acnnl.batch_size=2000"]),
        "7-dirichlet": (
            2,
            ["--set", "fl.clients=7", "--set", "data.partition='dirichlet'", "--set", "acnnl.batch_size=1"],
        ),
        "50-shards": (
            4,
            [
                "--set",
                "fl.clients=50",
                "--set",
                "data.partition='shards'",
                "--set",
                "acnnl.adaptive_batch=true",
                "--set",
                "acnnl.batch_seconds=0.0005",
            ],
        ),
    }
    got = {}
    for name, (ranks, extra) in runs.items():
        proc = launch(
            ranks,
            "run",
            "fedacnnl",
            "--config",
            str(JOB),
            *SMALL,
            *extra,
            "--out",
            str(tmp_path / f"{name}.h5"),
            "--checkpoint",
            str(tmp_path / name),
        )
        assert proc.returncode == 0, explain(proc)
        got[name] = weights(tmp_path / name)
        run = read_results(tmp_path / f"{name}.h5")
        assert run.attrs["status"] == "completed"
        assert list(run.comm["reduce"]["calls"]) == [len(DIMS)] * ranks  # L layers = L reductions
        assert list(run.metrics["uplink_bytes"]) == [8 * packed_length(d, c) for d, c in DIMS]
        assert list(run.metrics["downlink_bytes"]) == [8 * d * c for d, c in DIMS]
        assert len(set(run.param_sha256)) == 1
        exposed = list(run.metrics["privacy_exposed_clients"])
        # One client holds all 1,437 rows; 50 label-shard clients hold at most 30 rows each, fewer
        # than any layer's inputs (>= 33), so every one of them is reported at every layer.
        assert exposed == {"central": [0, 0, 0], "50-shards": [50, 50, 50]}.get(name, exposed), name
        assert ("privacy warning" in proc.stderr) == (name == "50-shards" or max(exposed) > 0), name
    for name in ("7-dirichlet", "50-shards"):
        for index, (c, w) in enumerate(zip(got["central"], got[name])):
            assert np.abs(w - c).max() / np.abs(c).max() <= 1e-10, (name, index)


def test_resume_after_a_crash_continues_with_the_next_layer(tmp_path):
    args = ["run", "fedacnnl", "--config", str(JOB), *SMALL]
    full = launch(2, *args, "--out", str(tmp_path / "full.h5"))
    assert full.returncode == 0, explain(full)
    crash = launch(
        2, *args, "--out", str(tmp_path / "r.h5"), "--checkpoint", str(tmp_path / "ck"), env={"MPIHYBRID_FAULT": "1:3"}
    )
    assert crash.returncode != 0 and "injected fault" in crash.stderr, explain(crash)
    resumed = launch(2, *args, "--out", str(tmp_path / "r.h5"), "--checkpoint", str(tmp_path / "ck"), "--resume")
    assert resumed.returncode == 0, explain(resumed)
    full, again = read_results(tmp_path / "full.h5"), read_results(tmp_path / "r.h5")
    assert full.param_sha256 == again.param_sha256 and list(again.metrics["step"]) == [1, 2, 3]


def test_pfedacnnl_groups_and_its_global_ablation(tmp_path):
    out = tmp_path / "p.h5"
    proc = launch(2, "run", "pfedacnnl", "--config", str(PJOB), "--set", "pfl.groups=3", "--out", str(out))
    assert proc.returncode == 0, explain(proc)
    plain = tmp_path / "fedacnnl.toml"
    plain.write_text(PJOB.read_text().split("[pfl]")[0])
    fed = launch(2, "run", "fedacnnl", "--config", str(plain), "--out", str(tmp_path / "f.h5"))
    run = read_results(out)
    final = run.final
    assert final["groups"] == 3
    # L reductions for the global model plus L for each group this rank serves
    assert list(run.comm["reduce"]["calls"]) == [3 * (1 + int(h)) for h in final["groups_hosted"]]
    for name in ("mean_client_accuracy", "group_mean_client_accuracy", "global_mean_client_accuracy"):
        assert 0.5 < final[name] <= 1.0, name
    assert fed.returncode == 0, explain(fed)
    # the ablation is exactly FedACnnL on the same clients
    assert read_results(tmp_path / "f.h5").final["mean_client_accuracy"] == final["global_mean_client_accuracy"]


@pytest.mark.parametrize(
    "setting, key",
    [
        ("acnnl.tau=1.5", "acnnl.tau"),
        ("model.activation='gelu'", "model.activation"),
        ("model.hidden=[9000]", "model.hidden"),
        ("fl.clients=2000", "data.partition"),
    ],
)
def test_bad_input_names_its_key(tmp_path, setting, key):
    proc = launch(2, "run", "fedacnnl", "--config", str(JOB), "--set", setting, "--out", str(tmp_path / "x.h5"))
    assert proc.returncode == 2 and key in proc.stderr, explain(proc)


def test_singular_gram_uses_the_documented_fallback(tmp_path):
    out = tmp_path / "s.h5"
    proc = launch(
        2,
        "run",
        "fedacnnl",
        "--config",
        str(JOB),
        "--set",
        "acnnl.gamma=0.0",
        "--set",
        "data.name='synthetic'",
        "--set",
        "data.num_samples=60",
        "--set",
        "fl.clients=4",
        "--set",
        "model.hidden=[100]",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, explain(proc)
    assert "minimum-norm solution" in proc.stderr
    metrics = read_results(out).metrics
    assert np.isfinite(metrics["train_loss"]).all() and metrics["eigen_fallback"].max() == 1.0
