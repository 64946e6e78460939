"""The numbers per run and per group of seeds."""

import h5py
import numpy as np
import pytest
from analysis_files import write_run

from mpihybrid.analysis.groups import group_runs, run_labels
from mpihybrid.analysis.runs import load_runs
from mpihybrid.analysis.summary import Spread, group_rows, run_rows
from mpihybrid.analysis.targets import Target

TARGET = Target("test_accuracy", ">=", 0.5)


def runs_of(tmp_path, rates, seeds=None):
    seeds = seeds or range(len(rates))
    files = [
        write_run(tmp_path / f"{i}.h5", config={"seed": s}, rate=rate, speed=2.0)
        for i, (rate, s) in enumerate(zip(rates, seeds))
    ]
    return load_runs([str(f) for f in files])[0]


def test_run_rows(tmp_path):
    runs = runs_of(tmp_path, [0.1, 0.04])
    with h5py.File(runs[0].path) as f:
        assert f["comm/allreduce/payload_bytes"][0] == 32
    base = runs[0]
    first, slow = run_rows(runs, run_labels(runs), TARGET, baseline=base)
    assert first["run"] == "decomfl seed=0" and first["steps"] == 10 and first["ranks"] == 1
    assert first["final_train_loss"] == pytest.approx(0.1) and first["best_test_accuracy"] == 1.0
    assert first["wall_time"] == 5.0 and first["sent_bytes_rank0"] == 32 and first["identical_params"] == "yes"
    assert (first["time_to_target"], first["step_to_target"], first["uplink_bytes_to_target"]) == (2.5, 5, 100.0)
    assert first["speedup"] == "1x"
    assert slow["final_test_accuracy"] == pytest.approx(0.4) and slow["time_to_target"] == "not reached"
    assert np.isnan(slow["step_to_target"]) and slow["speedup"] == "-"


def test_group_rows_give_median_and_range_over_the_seeds_that_reached(tmp_path):
    # rates 0.1, 0.125, 0.25 reach 0.5 at steps 5, 4, 2 (2.5 s, 2 s, 1 s); 0.04 never does
    runs = runs_of(tmp_path, [0.1, 0.125, 0.25, 0.04])
    (group,) = group_runs(runs)
    (row,) = group_rows([group], TARGET)
    assert row["group"] == "decomfl (4 seeds)" and row["reached"] == "3/4"
    assert row["time_to_target"] == Spread(2.0, 1.0, 2.5, "seconds")
    assert row["uplink_bytes_to_target"] == Spread(80.0, 40.0, 100.0, "bytes")
    assert row["final_test_accuracy"] == Spread(1.0, 0.4, 1.0, "number")
    assert Spread.of([float("nan")], "number") is None
