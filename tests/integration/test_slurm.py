"""The shipped sbatch scripts on a real (private) Slurm: one node, and two nodes in network
namespaces. Skipped with the reason where Slurm is not installed or namespaces cannot be made;
.ci/run installs what they need, so CI (as root) always runs these."""

import os
import signal
import subprocess
import sys
import time

import h5py
import pytest
from slurm_cluster import LocalSlurm, TwoNodeSlurm, find, missing_reason

from conftest import BIN, REPO, explain, launch, rank_pids
from mpihybrid.io.checkpoint import list_checkpoints

pytestmark = pytest.mark.skipif(missing_reason() is not None, reason=missing_reason() or "")


def running(cluster):
    """Start ``cluster`` for the module's tests; stop it afterwards, even after a failed start."""
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    yield from running(LocalSlurm(tmp_path_factory.mktemp("slurm")))


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    reason = TwoNodeSlurm.missing_reason()
    if reason:
        pytest.skip(reason)
    yield from running(TwoNodeSlurm(tmp_path_factory.mktemp("slurm2")))


def job_env(runs):
    return {"MPIHYBRID_ENV": sys.prefix, "RUNS": str(runs), "PATH": f"{BIN}:/usr/bin:/bin:/usr/sbin:/sbin"}


def results(path):
    with h5py.File(path) as f:
        return f.attrs["status"], list(f["restarts/step"][()]), list(f["final/param_sha256"][()])


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


def reference(tmp_path, algo, *args):
    """The param hashes of the same job run whole, outside Slurm."""
    out = tmp_path / f"whole-{algo}.h5"
    proc = launch(2, "run", algo, "--config", str(REPO / "jobs" / algo / "digits.toml"), *args, "--out", str(out))
    assert proc.returncode == 0, explain(proc)
    return results(out)[2]


@pytest.mark.timeout(600)
def test_a_time_limit_and_a_requeue_both_resume_to_the_bits_of_an_uninterrupted_run(slurm, tmp_path):
    """A dp-adam job with a 2 min limit gets SIGUSR1 100 s before it (Slurm checks limits every 30 s:
    20-50 s into the attempt, after start-up), stops with a checkpoint and requeues itself; then the
    test lifts its limit so that the next attempt finishes. A DeComFL job is requeued by `scontrol
    requeue` (SIGTERM) after its first checkpoint. Steps sleep, so the jobs outlive the signals at
    little CPU cost."""
    env = {**job_env(tmp_path), "MPIHYBRID_STEP_SLEEP": "0.1"}
    script = REPO / "slurm" / "single-node.sbatch"
    output = f"--output={tmp_path}/slurm-%j.out"
    timed_args = ("--set", "train.steps=600", "--set", "checkpoint.every=100")
    timed = slurm.sbatch(script, *timed_args, options=(output, "--time=2", "--signal=USR1@100"), env=env, cwd=REPO)
    args = ("--set", "train.steps=400", "--set", "checkpoint.every=50")
    decomfl = {**env, "ALGO": "decomfl", "CONFIG": "jobs/decomfl/digits.toml"}
    requeued = slurm.sbatch(script, *args, options=(output, "--time=5"), env=decomfl, cwd=REPO)
    checkpoints = tmp_path / f"mpihybrid-{requeued}" / "checkpoints"
    deadline = time.time() + 300
    while not list_checkpoints(checkpoints):
        assert time.time() < deadline, f"no checkpoint\n{slurm.show(requeued)}\n{slurm.logs()}"
        time.sleep(0.2)
    assert slurm.client("scontrol", "requeue", str(requeued)).returncode == 0
    while "Restarts=0 " in slurm.show(timed)[str(timed)]:
        assert time.time() < deadline, f"no time-limit requeue\n{slurm.show(timed)}\n{slurm.logs()}"
        time.sleep(0.5)
    assert slurm.client("scontrol", "update", f"JobId={timed}", "TimeLimit=10").returncode == 0
    want = {timed: reference(tmp_path, "dp-adam", *timed_args), requeued: reference(tmp_path, "decomfl", *args)}
    for job, by in ((timed, "SIGUSR1"), (requeued, "SIGTERM")):
        record = slurm.wait(job)[str(job)]
        run_dir = tmp_path / f"mpihybrid-{job}"
        logs = (run_dir / "logs" / "rank-0.log").read_text()
        assert "JobState=COMPLETED" in record and "ExitCode=0:0" in record and "Restarts=0" not in record, (
            f"{record}\n{logs}\n{slurm.logs()}"
        )
        status, restarts, sha = results(run_dir / "results.h5")
        assert status == "completed" and len(restarts) >= 1 and sha == want[job], (restarts, logs)
        assert f"stopped by {by}" in logs and "resuming" in (tmp_path / f"slurm-{job}.out").read_text()


def test_a_rank_killed_under_srun_ends_the_job(slurm, tmp_path):
    env = {**job_env(tmp_path), "MPIHYBRID_STEP_SLEEP": "0.1", "REQUEUE": "0"}
    job = slurm.sbatch(
        REPO / "slurm" / "single-node.sbatch",
        "--set",
        "train.steps=2000",
        options=(f"--output={tmp_path}/slurm-%j.out", "--time=5"),
        env=env,
        cwd=REPO,
    )
    run_dir = tmp_path / f"mpihybrid-{job}"
    deadline = time.time() + 120
    while not rank_pids(run_dir):
        assert time.time() < deadline, f"no ranks started\n{slurm.show(job)}\n{slurm.logs()}"
        time.sleep(0.2)
    time.sleep(3)  # into the steps
    os.kill(max(rank_pids(run_dir)), signal.SIGKILL)
    record = slurm.wait(job, timeout=120)[str(job)]  # not the time limit: srun ends the other rank
    assert "JobState=FAILED" in record, f"{record}\n{(tmp_path / f'slurm-{job}.out').read_text()}"


@pytest.mark.timeout(600)
def test_two_nodes_run_one_job_across_namespaces_with_the_one_node_bits(two_nodes, tmp_path):
    info = two_nodes.client("srun", "-N2", "-n4", str(BIN / "mpihybrid"), "info", env=job_env(tmp_path), timeout=120)
    assert info.returncode == 0, explain(info)
    assert {line.split(" on ")[1].split(":")[0] for line in info.stdout.splitlines() if " on " in line} == {
        "node1",
        "node2",
    }, info.stdout

    args = ("--set", "train.steps=200", "--set", "train.eval_every=100")
    env = {**job_env(tmp_path), "ALGO": "dp-adam", "CONFIG": "jobs/dp-adam/digits.toml"}
    before = two_nodes.crossed_bytes()
    job = two_nodes.sbatch(
        REPO / "slurm" / "multi-node.sbatch",
        *args,
        options=(f"--output={tmp_path}/slurm-%j.out", "--nodes=2", "--ntasks-per-node=2", "--time=10"),
        env=env,
        cwd=REPO,
    )
    one_node = launch(
        4,
        "run",
        "dp-adam",
        "--config",
        str(REPO / "jobs/dp-adam/digits.toml"),
        *args,
        "--out",
        str(tmp_path / "one.h5"),
    )
    assert one_node.returncode == 0, explain(one_node)
    record = two_nodes.wait(job)[str(job)]
    text = (tmp_path / f"slurm-{job}.out").read_text()
    assert "JobState=COMPLETED" in record and "NodeList=node[1-2]" in record, f"{record}\n{text}\n{two_nodes.logs()}"
    assert "2 node(s), 4 ranks" in text
    status, _, sha = results(tmp_path / f"mpihybrid-{job}" / "results.h5")
    assert status == "completed" and sha == results(tmp_path / "one.h5")[2]
    crossed = two_nodes.crossed_bytes() - before
    assert crossed > 1_000_000  # 200 gradient allreduces between the nodes
