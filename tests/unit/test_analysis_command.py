"""`mpihybrid analyze` end to end: one file, a sweep with a target and a baseline, seed groups,
CSV, bad files and bad targets, --plots and --report."""

import csv
import io

from analysis_files import write_run

from mpihybrid.analysis import analyze
from mpihybrid.cli import main


def sweep(tmp_path):
    """zo.perturbations P in (1, 5, 10): accuracy 0.02·P per step, P steps per second."""
    return [
        str(write_run(tmp_path / f"p{p}.h5", config={"seed": 0, "zo": {"perturbations": p}}, rate=0.02 * p, speed=p))
        for p in (1, 5, 10)
    ]


def table_rows(out: str, start: str) -> list[list[str]]:
    return [[c.strip() for c in line.split("|")[1:-1]] for line in out.splitlines() if line.startswith(start)]


def test_one_file_prints_its_metrics_per_step(tmp_path, capsys):
    (path,) = sweep(tmp_path)[:1]
    assert analyze([path]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: decomfl on 1 ranks, status completed")
    assert len(table_rows(out, "| ")) == 11  # header and ten steps


def test_a_sweep_with_a_target_and_a_baseline(tmp_path, capsys):
    files = sweep(tmp_path)
    assert analyze(files, target="test_accuracy>=0.5", baseline=files[1]) == 0
    out = capsys.readouterr().out
    assert "varied: zo.perturbations (decomfl)" in out
    header, *rows = table_rows(out, "| ")[:4]
    assert header[0] == "run" and header[-4:] == ["→ s", "→ step", "→ uplink", "speed-up"]
    assert [r[0] for r in rows] == ["decomfl perturbations=1", "decomfl perturbations=5", "decomfl perturbations=10"]
    # P = 5 (the baseline) reaches 0.5 at step 5 (1 s), P = 10 at step 3 (0.3 s), P = 1 never
    assert rows[0][-4:] == ["not reached", "-", "-", "-"]
    assert rows[1][-4:] == ["1", "5", "100 B", "1x"] and rows[2][-4:] == ["0.3", "3", "60 B", "3.33x"]
    assert "Runs that differ only in the seed" not in out  # no seeds to group


def test_seeds_are_grouped_in_a_second_table(tmp_path, capsys):
    files = [str(write_run(tmp_path / f"s{s}.h5", config={"seed": s}, rate=0.1 * s)) for s in (1, 2, 4)]
    files.append(str(write_run(tmp_path / "fa.h5", algorithm="fedavg", config={"seed": 0, "train": {"lr": 0.1}})))
    assert analyze(files, target="test_accuracy>=0.4") == 0
    out = capsys.readouterr().out
    assert "varied: seed (decomfl)" in out and "Runs that differ only in the seed, grouped" in out
    groups = table_rows(out, "| decomfl (3 seeds)") + table_rows(out, "| fedavg ")
    assert groups[0][:2] == ["decomfl (3 seeds)", "1"]  # final accuracy 1 for every seed
    assert groups[0][-3:] == ["3/3", "2 (1–4)", "40 B (20 B–80 B)"] and groups[1][0] == "fedavg"


def test_the_table_fits_the_terminal(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    analyze(sweep(tmp_path), target="test_accuracy>=0.5")
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80 and "Left out to fit" in out


def test_csv_names_runs_by_file_and_carries_their_config(tmp_path, capsys):
    files = sweep(tmp_path)
    assert analyze(files, fmt="csv", target="test_accuracy>=0.5") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["run"] for r in rows] == files and [r["group"] for r in rows] == ["1", "2", "3"]
    assert [r["config.zo.perturbations"] for r in rows] == ["1", "5", "10"]
    assert rows[2]["time_to_target"] == "0.3" and rows[2]["uplink_bytes_to_target"] == "60.0"


def test_bad_files_get_one_message_each_and_the_rest_are_analysed(tmp_path, capsys):
    good = sweep(tmp_path)
    failed = str(write_run(tmp_path / "failed.h5", status="failed"))
    code = main(["analyze", *good, failed, str(tmp_path / "nope.h5"), "--plots", str(tmp_path / "plots")])
    out, err = capsys.readouterr()
    assert code == 2 and len(table_rows(out, "| decomfl")) == 3
    assert "failed.h5: run failed" in err and "nope.h5: no such file" in err
    assert (tmp_path / "plots" / "test_accuracy.png").exists()


def test_a_bad_target_is_one_line_and_exit_2(tmp_path, capsys):
    files = sweep(tmp_path)
    assert main(["analyze", *files, "--target", "test_acc>=0.9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mpihybrid: error: --target: no run has the metric 'test_acc'") and err.count("\n") == 1
    assert main(["analyze", *files, "--target", "test_accuracy"]) == 2
    assert "expected NAME>=VALUE" in capsys.readouterr().err


def test_report_via_the_command_line(tmp_path, capsys):
    files = sweep(tmp_path)
    assert main(["analyze", *files, "--target", "test_accuracy>=0.5", "--report", str(tmp_path / "r")]) == 0
    assert f"report: {tmp_path / 'r' / 'index.html'}" in capsys.readouterr().err
    assert (tmp_path / "r" / "comparison.png").exists() and "decomfl perturbations=10" in (
        tmp_path / "r" / "index.html"
    ).read_text()
