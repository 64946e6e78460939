"""The figures of --plots: one per metric (step and wall time), cumulative bytes on log axes,
groups of seeds as one legend entry, memory and speed-up against ranks."""

import numpy as np
from analysis_files import PNG, write_run

from mpihybrid.analysis.plots import write_plots
from mpihybrid.analysis.runs import load_runs
from mpihybrid.analysis.targets import Target


def three_runs(tmp_path):
    """Two DeComFL seeds at 20 B per round and a FedAvg at 9640 B per round."""
    files = [
        write_run(tmp_path / f"d{s}.h5", config={"seed": s, "zo": {"perturbations": 5}}, rate=0.05 * s) for s in (1, 2)
    ]
    files.append(
        write_run(tmp_path / "fa.h5", algorithm="fedavg", config={"seed": 0, "train": {"lr": 0.1}}, bytes_per_step=9640)
    )
    return load_runs([str(f) for f in files])[0]


def test_one_figure_per_metric_with_groups_in_the_legend(tmp_path):
    plots = {
        p.path.name: p
        for p in write_plots(three_runs(tmp_path), tmp_path / "plots", Target("test_accuracy", ">=", 0.5))
    }
    assert list(plots)[:4] == ["comparison.png", "train_loss.png", "test_accuracy.png", "cumulative-uplink_bytes.png"]
    for p in plots.values():
        assert p.path.read_bytes()[:8] == PNG and p.caption and p.ylabel
    accuracy = plots["test_accuracy.png"]
    assert accuracy.xlabels == ["step (round / layer / iteration)", "wall time (s)"] and accuracy.yscale == "linear"
    assert accuracy.legend == ["decomfl (2 seeds)", "fedavg", "target test_accuracy>=0.5"]
    assert plots["train_loss.png"].yscale == "log"  # 1/step: from 1 to 0.1
    uplink = plots["cumulative-uplink_bytes.png"]
    assert uplink.yscale == "log" and uplink.ylabel == "cumulative uplink_bytes" and "log scale" in uplink.caption
    assert not any(name.endswith("-vs-ranks.png") for name in plots)  # one world size only


def test_no_comparison_without_a_target(tmp_path):
    names = [p.path.name for p in write_plots(three_runs(tmp_path), tmp_path / "plots")]
    assert "comparison.png" not in names and "test_accuracy.png" in names


def test_memory_and_speedup_against_ranks(tmp_path):
    files = [
        write_run(tmp_path / f"r{p}.h5", algorithm="dho2", speed=p, ranks=p, memory={"curvature_bytes": 800 // p})
        for p in (1, 2, 4)
    ]
    runs = load_runs([str(f) for f in files])[0]
    assert np.isclose(runs[2].memory["curvature_bytes"][0], 200)
    plots = {p.path.name: p for p in write_plots(runs, tmp_path / "plots")}
    assert plots["memory-vs-ranks.png"].xlabels == ["ranks"] and plots["memory-vs-ranks.png"].legend == ["dho2"]
    assert plots["speedup-vs-ranks.png"].legend == ["dho2"] and "run time" in plots["speedup-vs-ranks.png"].caption
