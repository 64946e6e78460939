"""`--target`: parsing, and the first row that meets it (time, uplink bytes, step)."""

import pytest
from analysis_files import write_run

from mpihybrid.analysis.runs import read_results
from mpihybrid.analysis.targets import Reached, Target, parse_target, reach, seconds_to
from mpihybrid.errors import UsageError


def test_parse_target():
    assert parse_target("test_accuracy>=0.9") == Target("test_accuracy", ">=", 0.9)
    assert parse_target(" train_loss <= 0.05") == Target("train_loss", "<=", 0.05)
    assert parse_target("test_accuracy=0.5") == Target("test_accuracy", ">=", 0.5)
    assert parse_target("test_loss=0.5") == Target("test_loss", "<=", 0.5)
    assert str(Target("test_accuracy", ">=", 0.9)) == "test_accuracy>=0.9"
    for bad in ("test_accuracy", "test_accuracy>=high"):
        with pytest.raises(UsageError, match="--target"):
            parse_target(bad)


def test_reach_skips_rows_without_an_evaluation(tmp_path):
    # accuracy 0.1·step, evaluated every 2nd step; 2 steps per second; 20 B per step
    run = read_results(write_run(tmp_path / "r.h5", speed=2.0, eval_every=2))
    assert reach(run, Target("test_accuracy", ">=", 0.5)) == Reached(seconds=3.0, uplink_bytes=120.0, step=6)
    assert reach(run, Target("train_loss", "<=", 0.25)) == Reached(seconds=2.0, uplink_bytes=80.0, step=4)
    assert reach(run, Target("test_accuracy", ">=", 1.1)) is None
    assert reach(run, Target("test_loss", "<=", 1.0)) is None  # never measured


def test_seconds_to_is_the_time_to_the_target_or_the_run_time(tmp_path):
    run = read_results(write_run(tmp_path / "r.h5", speed=2.0))
    assert seconds_to(run, Target("test_accuracy", ">=", 0.5)) == 2.5
    assert seconds_to(run, None) == 5.0
    assert seconds_to(run, Target("test_accuracy", ">=", 2.0)) is None
