"""`mpihybrid analyze`: sweeps grouped by the varied key, targets, speed-ups, bad files, plots."""

import json

import h5py
import numpy as np
import torch
from mpi4py import MPI

from mpihybrid.analysis import analyze
from mpihybrid.analysis.plots import write_plots
from mpihybrid.analysis.table import load_runs, parse_target, run_labels, time_to_target, varied_keys
from mpihybrid.comm import Comm
from mpihybrid.io.results import RunResults

PNG = b"\x89PNG\r\n\x1a\n"


def fake_run(path, P, *, speed=1.0, status="completed", algorithm="decomfl", memory=None):
    r = RunResults(
        path,
        algorithm=algorithm,
        config_json=json.dumps({"seed": 0, "zo": {"perturbations": P}}),
        comm=Comm(MPI.COMM_SELF),
    )
    for step in range(1, 11):
        r.log(
            step,
            wall_time=step / speed,
            train_loss=1.0 / step,
            test_accuracy=min(1.0, 0.1 * step * P / 5),
            uplink_bytes=20.0,
        )
    if status == "completed":
        r.finish(status="completed", params=[torch.ones(2)], memory=memory)
    else:
        r.write_failed("training diverged at step 10")
    return path


def test_sweep_table_target_and_speedup(tmp_path, capsys):
    files = [fake_run(tmp_path / f"p{P}.h5", P, speed=P) for P in (1, 5, 10)]
    runs, bad = load_runs([str(f) for f in files])
    assert bad == 0 and varied_keys(runs) == ["zo.perturbations"]
    assert run_labels(runs) == ["perturbations=1", "perturbations=5", "perturbations=10"]
    assert parse_target("test_accuracy=0.5") == ("test_accuracy", ">=", 0.5)
    assert time_to_target(runs[1], "test_accuracy", ">=", 0.5) == (5 / 5, 100.0, 5)
    code = analyze([str(f) for f in files], target="test_accuracy>=0.5", baseline=str(files[1]))
    out = capsys.readouterr().out
    assert code == 0 and "varied: zo.perturbations" in out
    rows = [line for line in out.splitlines() if line.startswith("| perturbations=")]
    assert len(rows) == 3
    # baseline P = 5 reaches 0.5 at step 5 (1.0 s); P = 10 at step 3 (0.3 s); P = 1 never
    assert rows[1].endswith("| 1x |") and rows[2].endswith("| 3.33x |")
    assert "not reached" in rows[0] and rows[0].endswith("| - |") and "| 3 |" in rows[2]


def test_failed_and_foreign_files_get_one_message_each(tmp_path, capsys):
    good = fake_run(tmp_path / "good.h5", 5)
    failed = fake_run(tmp_path / "failed.h5", 5, status="failed")
    other = tmp_path / "other.h5"
    other.write_bytes(good.read_bytes())
    with h5py.File(other, "r+") as f:
        f.attrs["schema_version"] = 99
    code = analyze([str(good), str(failed), str(other), str(tmp_path / "nope.h5")], fmt="csv")
    out, err = capsys.readouterr()
    assert code == 2 and out.count("decomfl") == 1
    assert "failed.h5: run failed (training diverged at step 10); left out" in err
    assert "other.h5: schema version 99" in err and "nope.h5: no such file" in err


def test_plots_are_pngs_with_labelled_axes_and_a_legend_per_run(tmp_path):
    files = [fake_run(tmp_path / f"p{P}.h5", P, speed=P, memory={"optimizer_bytes": 1000 // P}) for P in (1, 5)]
    runs, _ = load_runs([str(f) for f in files])
    plots = write_plots(runs, run_labels(runs), tmp_path / "plots")
    names = {p.path.name for p in plots}
    assert {"test_accuracy.png", "train_loss.png", "test_accuracy-vs-time.png", "cumulative-uplink_bytes.png"} <= names
    for p in plots:
        assert p.path.read_bytes()[:8] == PNG
        assert p.xlabel and p.ylabel
        assert p.legend == ["perturbations=1", "perturbations=5"] or "ranks" in p.xlabel


def test_memory_and_speedup_against_ranks(tmp_path):
    files = []
    for ranks in (1, 2, 4):
        path = tmp_path / f"r{ranks}.h5"
        fake_run(path, 5, speed=ranks, algorithm="dho2", memory={"curvature_bytes": 800 // ranks})
        with h5py.File(path, "r+") as f:
            f.attrs["world_size"] = ranks
        files.append(path)
    runs, _ = load_runs([str(f) for f in files])
    plots = {p.path.name: p for p in write_plots(runs, run_labels(runs), tmp_path / "plots")}
    assert plots["memory-vs-ranks.png"].xlabel == "ranks" and plots["memory-vs-ranks.png"].legend == ["dho2"]
    assert "speedup-vs-ranks.png" in plots
    assert np.isclose(runs[2].memory["curvature_bytes"][0], 200)
