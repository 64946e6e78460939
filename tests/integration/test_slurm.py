"""The shipped sbatch scripts on a real (private, single-node) Slurm. Skipped with the reason
where Slurm is not installed; .ci/run installs it, so CI always runs these."""

import subprocess
import sys

import h5py
import pytest
from slurm_cluster import LocalSlurm, find, missing_reason

from conftest import BIN, REPO

pytestmark = pytest.mark.skipif(missing_reason() is not None, reason=missing_reason() or "")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def job_env(runs):
    return {"MPIHYBRID_ENV": sys.prefix, "RUNS": str(runs), "PATH": f"{BIN}:/usr/bin:/bin:/usr/sbin:/sbin"}


def test_single_node_script_runs_a_2_rank_job(slurm, tmp_path):
    job = slurm.sbatch(
        REPO / "slurm" / "single-node.sbatch",
        "--set",
        "train.steps=200",
        "--set",
        "train.eval_every=100",
        options=(f"--output={tmp_path}/slurm-%j.out",),
        env=job_env(tmp_path),
        cwd=REPO,
    )
    record = slurm.wait(job)[str(job)]
    run_dir = tmp_path / f"mpihybrid-{job}"
    output = tmp_path / f"slurm-{job}.out"
    text = output.read_text() if output.exists() else ""
    assert "JobState=COMPLETED" in record and "ExitCode=0:0" in record, f"{record}\n{text}\n{slurm.logs()}"
    with h5py.File(run_dir / "results.h5") as f:
        assert f.attrs["status"] == "completed" and f.attrs["world_size"] == 2
    assert (run_dir / "logs" / "rank-0.log").exists() and (run_dir / "logs" / "rank-1.log").exists()
    assert "2 ranks" in text


def test_array_sweep_gives_three_results_and_one_table_and_plot_per_metric(slurm, tmp_path):
    job = slurm.sbatch(
        REPO / "slurm" / "array-sweep.sbatch",
        "--set",
        "train.steps=60",
        "--set",
        "train.eval_every=20",
        options=(f"--output={tmp_path}/slurm-%A_%a.out",),
        env=job_env(tmp_path),
        cwd=REPO,
    )
    records = slurm.wait(job)
    outputs = "\n".join(p.read_text() for p in tmp_path.glob("slurm-*.out"))
    assert len(records) == 3 and all("JobState=COMPLETED" in r for r in records.values()), f"{records}\n{outputs}"
    files = sorted((tmp_path / f"mpihybrid-sweep-{job}").glob("task-*/results.h5"))
    assert len(files) == 3
    plots = tmp_path / "plots"
    table = subprocess.run(
        [str(BIN / "mpihybrid"), "analyze", *map(str, files), "--plots", str(plots)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert table.returncode == 0, table.stderr
    assert "varied: zo.perturbations" in table.stdout
    assert sum(line.startswith("| decomfl perturbations=") for line in table.stdout.splitlines()) == 3
    for metric in ("train_loss", "test_accuracy", "test_loss", "history_length"):
        assert (plots / f"{metric}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", metric


def test_srun_without_pmi_is_reported_not_run_twice(slurm):
    proc = subprocess.run(
        [find("srun"), "--mpi=none", "-n", "2", str(BIN / "mpihybrid"), "info"],
        capture_output=True,
        text=True,
        env=slurm.env,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "launcher" in proc.stderr.lower() or "singleton" in proc.stderr.lower(), proc.stderr
