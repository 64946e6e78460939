"""Reading results files: the documented schema only, one message per file that cannot be used."""

import h5py
from analysis_files import write_run

from mpihybrid.analysis.runs import load_runs, metric_order, read_results


def test_a_results_file_reads_as_its_schema(tmp_path):
    path = write_run(tmp_path / "r.h5", config={"seed": 3, "train": {"lr": 0.02, "hidden": [32, 16]}}, ranks=4)
    run = read_results(path)
    assert (run.algorithm, run.ranks, run.config["seed"]) == ("decomfl", 4, 3)
    assert run.flat_config == {"seed": 3, "train.lr": 0.02, "train.hidden": "[32, 16]", "ranks": 4}
    assert list(run.metrics["step"]) == list(range(1, 11)) and run.param_sha256 and run.attrs["status"] == "completed"


def test_each_unusable_file_gets_one_message_and_the_rest_are_read(tmp_path, capsys):
    good = write_run(tmp_path / "good.h5")
    failed = write_run(tmp_path / "failed.h5", status="failed")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[:300])
    other = tmp_path / "other.h5"
    other.write_bytes(good.read_bytes())
    with h5py.File(other, "r+") as f:
        f.attrs["schema_version"] = 99
    no_config = tmp_path / "no_config.h5"
    no_config.write_bytes(good.read_bytes())
    with h5py.File(no_config, "r+") as f:
        del f.attrs["config"]
    bad_json = tmp_path / "bad_json.h5"
    bad_json.write_bytes(good.read_bytes())
    with h5py.File(bad_json, "r+") as f:
        f.attrs["config"] = "{seed: 1"
    names = [good, failed, truncated, other, no_config, bad_json, tmp_path / "missing.h5"]
    runs, problems = load_runs([str(p) for p in names])
    err = capsys.readouterr().err
    assert [r.path.name for r in runs] == ["good.h5"]
    assert len(problems) == 6 and len(err.strip().splitlines()) == 6
    assert "failed.h5: run failed (training diverged at step 10); left out" in err
    assert "truncated.h5: unreadable" in err and "other.h5: schema version 99 is not 1" in err
    assert "no_config.h5: not an mpihybrid results file (missing config)" in err
    assert "bad_json.h5: config attribute is not JSON" in err and "missing.h5: no such file" in err


def test_main_metrics_come_first_then_the_rest_by_name():
    names = ["step", "history_length", "test_accuracy", "train_loss", "condition_number", "wall_time"]
    assert metric_order(names) == ["wall_time", "train_loss", "test_accuracy", "condition_number", "history_length"]
