"""The comparison figure: the target metric against bytes, time and bytes to the target per group."""

from analysis_files import PNG, write_run

from mpihybrid.analysis.comparison import comparison_figure
from mpihybrid.analysis.groups import group_runs
from mpihybrid.analysis.runs import load_runs
from mpihybrid.analysis.targets import Target


def test_comparison_figure(tmp_path):
    specs = [("decomfl", {"seed": s}, 0.05 * s, 20) for s in (1, 2)]
    specs += [("fedavg", {"seed": 0}, 0.2, 9640), ("fedzo", {"seed": 0}, 0.01, 9640)]  # fedzo never gets there
    files = [
        write_run(tmp_path / f"{i}.h5", algorithm=a, config=c, rate=rate, bytes_per_step=b)
        for i, (a, c, rate, b) in enumerate(specs)
    ]
    groups = group_runs(load_runs([str(f) for f in files])[0])
    plot = comparison_figure(groups, Target("test_accuracy", ">=", 0.5), tmp_path / "comparison.png")
    assert plot.path.read_bytes()[:8] == PNG
    assert plot.xlabels == [
        "cumulative uplink bytes (rank 0)",
        "wall time to the target (s)",
        "uplink bytes (rank 0) to the target",
    ]
    assert plot.legend == [
        "decomfl (2 seeds)",
        "fedavg",
        "fedzo",
        "target test_accuracy>=0.5",
        "median of a group",
        "its runs, min–max",
    ]
    assert comparison_figure(groups, Target("test_loss", "<=", 0.5), tmp_path / "none.png") is None


def test_without_byte_counts_the_curve_is_against_wall_time(tmp_path):
    files = [
        write_run(tmp_path / f"{s}.h5", algorithm="dp-adam", config={"seed": s}, bytes_per_step=None) for s in (1, 2)
    ]
    groups = group_runs(load_runs([str(f) for f in files])[0])
    plot = comparison_figure(groups, Target("test_accuracy", ">=", 0.5), tmp_path / "comparison.png")
    assert plot.xlabels[0] == "wall time (s)" and plot.legend[0] == "dp-adam (2 seeds)"
