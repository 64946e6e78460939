"""Text tables: aligned markdown for a terminal (short headers and a key beneath) or CSV with
every column and each run's full config."""

from __future__ import annotations

import csv
import io
import math
import shutil
import textwrap

import numpy as np

from mpihybrid.analysis.runs import RunRecord, metric_order
from mpihybrid.analysis.summary import Column, Spread
from mpihybrid.analysis.units import human_bytes

MISSING = "-"
KEY_WIDTH = 100


def cell(value: object, kind: str, digits: int = 4) -> str:
    """A value as a person reads it; '-' where there is none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, str):
        return value
    if isinstance(value, Spread):
        low, middle, high = (cell(v, value.kind, 3) for v in (value.low, value.median, value.high))
        return middle if low == high else f"{middle} ({low}–{high})"
    if kind == "count":
        return f"{int(value)}"
    if kind == "bytes":
        return human_bytes(float(value))
    if kind == "seconds":
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, (int, np.integer)):
        return f"{value}"
    return f"{value:.{digits}g}"


def _raw(value: object) -> str:
    """A value for CSV: full precision, empty where there is none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def markdown(headers: list[str], cells: list[list[str]], right: list[bool]) -> str:
    """An aligned markdown table (numbers right-aligned), readable as plain text."""
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        padded = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if r else "-") for w, r in zip(widths, right)) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in cells)])


def csv_text(headers: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return out.getvalue().rstrip("\n")


def metrics_table(run: RunRecord, fmt: str) -> str:
    """One run's metrics per step."""
    names = ["step", *metric_order(run.metrics)]
    columns = list(zip(*(run.metrics[n] for n in names)))
    if fmt == "csv":
        return csv_text(names, [[_raw(v) for v in row] for row in columns])
    cells = [[cell(v, "count" if n == "step" else "number") for n, v in zip(names, row)] for row in columns]
    return markdown(names, cells, [True] * len(names))


def terminal_width() -> int | None:
    """The terminal's columns (or $COLUMNS); None when the output is not a terminal."""
    width = shutil.get_terminal_size((0, 0)).columns
    return width or None


def render(
    columns: list[Column],
    rows: list[dict[str, object]],
    fmt: str,
    extra: list[dict] | None = None,
    width: int | None = None,
) -> str:
    """Rows as CSV (every column, plus ``extra`` columns per row, e.g. the full config), or as a
    markdown table with a key to its short headers that leaves out columns, least needed first,
    until it fits in ``width`` characters."""
    if fmt == "csv":
        extra = extra or [{} for _ in rows]
        extra_names = sorted({k for e in extra for k in e})
        headers = [c.name for c in columns] + extra_names
        body = [
            [_raw(r.get(c.name)) for c in columns] + [_raw(e.get(k)) for k in extra_names] for r, e in zip(rows, extra)
        ]
        return csv_text(headers, body)
    shown = [c for c in columns if c.terminal]
    left_out: list[Column] = []
    while True:
        cells = [[cell(r.get(c.name), c.kind) for c in shown] for r in rows]
        table = markdown([c.short for c in shown], cells, [c.kind != "text" for c in shown])
        droppable = [c for c in shown if c.drop]
        if width is None or len(table.split("\n", 1)[0]) <= width or not droppable:
            break
        worst = max(droppable, key=lambda c: c.drop)
        shown.remove(worst)
        left_out.append(worst)
    key = "; ".join(f"{c.short}: {c.doc}" for c in shown if c.short != c.name)
    if left_out:
        key += f". Left out to fit: {', '.join(c.short for c in left_out)} (all columns: --format csv, --report)"
    return table + "\n" + textwrap.fill(key, min(width or KEY_WIDTH, KEY_WIDTH))
