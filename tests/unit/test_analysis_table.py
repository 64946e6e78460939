"""Terminal tables that fit the terminal, CSV with every column and each run's config."""

import csv
import io

from analysis_files import write_run

from mpihybrid.analysis.runs import read_results
from mpihybrid.analysis.summary import Column, Spread
from mpihybrid.analysis.table import cell, metrics_table, render

COLUMNS = [
    Column("run", "run", "the run", "text"),
    Column("final_test_accuracy", "acc", "final test_accuracy"),
    Column("wall_time", "time s", "wall time (s)", "seconds", drop=1),
    Column("sent_bytes", "sent", "bytes sent", "bytes", drop=2),
    Column("hidden", "hidden", "not for terminals", terminal=False),
]
ROWS = [
    {"run": "decomfl seed=1", "final_test_accuracy": 0.93314, "wall_time": 11.93, "sent_bytes": 20000.0, "hidden": 1},
    {"run": "fedavg", "final_test_accuracy": 0.9777, "wall_time": 4.31, "sent_bytes": 2.892e6, "hidden": 2},
]


def test_cells():
    assert cell(float("nan"), "number") == "-" and cell(None, "bytes") == "-"
    assert cell(0.933147, "number") == "0.9331" and cell(12.0, "count") == "12"
    assert cell(4.3149, "seconds") == "4.31" and cell(123.4, "seconds") == "123"
    assert cell(2.892e6, "bytes") == "2.89 MB" and cell("not reached", "seconds") == "not reached"
    assert cell(Spread(0.94, 0.928, 0.953, "number"), "number") == "0.94 (0.928–0.953)"
    assert cell(Spread(6500, 6500, 6500, "bytes"), "bytes") == "6.5 kB"


def test_markdown_table_is_aligned_with_numbers_on_the_right():
    text = render(COLUMNS, ROWS, "markdown")
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len({len(line) for line in table}) == 1  # every row as wide as the header
    assert table[0].split("|")[1:-1] == [" run            ", "    acc ", " time s ", "    sent "]
    assert table[1] == "|----------------|-------:|-------:|--------:|"
    assert table[3] == "| fedavg         | 0.9777 |   4.31 | 2.89 MB |"
    assert "hidden" not in text and "acc: final test_accuracy" in text


def test_a_narrow_terminal_leaves_out_columns_least_needed_first_and_says_so():
    wide = render(COLUMNS, ROWS, "markdown", width=200)
    assert "Left out" not in wide
    narrow = render(COLUMNS, ROWS, "markdown", width=40)
    lines = narrow.splitlines()
    assert lines[0] == "| run            |    acc | time s |"
    assert all(len(line) <= 40 for line in lines)
    assert "Left out to fit: sent (all columns" in " ".join(lines)
    # the label and the accuracy are never left out, even where they do not fit
    tiny = render(COLUMNS, ROWS, "markdown", width=20)
    assert tiny.splitlines()[0] == "| run            |    acc |"
    assert "Left out to fit: sent, time s" in " ".join(tiny.splitlines())


def test_csv_has_every_column_and_the_extra_ones():
    text = render(COLUMNS, ROWS, "csv", extra=[{"config.seed": 1}, {"config.lr": 0.1}])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["run", "final_test_accuracy", "wall_time", "sent_bytes", "hidden", "config.lr", "config.seed"]
    assert rows[1] == ["decomfl seed=1", "0.93314", "11.93", "20000.0", "1", "", "1"]
    assert rows[2][-2:] == ["0.1", ""]


def test_one_runs_metrics_per_step(tmp_path):
    run = read_results(write_run(tmp_path / "r.h5", steps=3, eval_every=2))
    lines = metrics_table(run, "markdown").splitlines()
    assert lines[0] == "| step | wall_time | train_loss | test_accuracy | uplink_bytes |"
    assert lines[2] == "|    1 |         1 |          1 |             - |           20 |"
    csv_rows = list(csv.reader(io.StringIO(metrics_table(run, "csv"))))
    assert csv_rows[1] == ["1", "1.0", "1.0", "", "20.0"] and csv_rows[2][3] == "0.2"
