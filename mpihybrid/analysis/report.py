"""`mpihybrid analyze --report DIR`: one HTML page a person opens after a sweep (the tables, every
figure and each run's full config). The figures are written beside it and embedded in it, so the
page alone is enough: no server, no network, no script."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path

from mpihybrid import __version__
from mpihybrid.analysis.figure import Plot
from mpihybrid.analysis.groups import group_runs, run_labels
from mpihybrid.analysis.plots import write_plots
from mpihybrid.analysis.runs import RunRecord, flatten
from mpihybrid.analysis.summary import Column, group_columns, group_rows, run_columns, run_rows
from mpihybrid.analysis.table import cell
from mpihybrid.analysis.targets import Target

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
.meta, figcaption, .key { color: #555; font-size: 0.9em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #e4e4e4; text-align: left; }
td { white-space: nowrap; }
th { background: #f4f4f4; vertical-align: bottom; font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.varied td { background: #fff6dc; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
.problems { color: #a00; }
"""


def _align(column: Column) -> str:
    return "text" if column.kind == "text" else "num"


def _header(column: Column) -> str:
    """The CSV name in words, with the unit where it has one."""
    return column.name.replace("_", " ") + (" (s)" if column.kind == "seconds" else "")


def _table(columns: list[Column], rows: list[dict[str, object]]) -> str:
    head = "".join(
        f'<th class="{_align(c)}" title="{html.escape(c.doc)}">{html.escape(_header(c))}</th>' for c in columns
    )
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{_align(c)}">{html.escape(cell(r.get(c.name), c.kind))}</td>' for c in columns)
        + "</tr>"
        for r in rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _configs(runs: list[RunRecord], labels: list[str]) -> str:
    """Every config key (rows) of every run (columns); keys whose values differ are highlighted."""
    flats = [flatten(r.config) for r in runs]
    keys = sorted({k for f in flats for k in f})
    head = "<th>key</th>" + "".join(f"<th>{html.escape(label)}</th>" for label in labels)
    body = []
    for key in keys:
        values = [f.get(key) for f in flats]
        varied = len({repr(v) for v in values}) > 1
        cells = "".join(f"<td>{html.escape('-' if v is None else str(v))}</td>" for v in values)
        body.append(f'<tr class="{"varied" if varied else ""}"><td>{html.escape(key)}</td>{cells}</tr>')
    files = "".join(f"<td>{html.escape(str(r.path))}</td>" for r in runs)
    body.append(f"<tr><td>file</td>{files}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _figure(plot: Plot) -> str:
    data = base64.b64encode(plot.path.read_bytes()).decode("ascii")
    caption = html.escape(plot.caption)
    return (
        f'<figure id="{html.escape(plot.path.stem)}"><img src="data:image/png;base64,{data}" alt="{caption}">'
        f"<figcaption>{caption} ({html.escape(plot.path.name)})</figcaption></figure>"
    )


def write_report(
    runs: list[RunRecord],
    directory: str | Path,
    target: Target | None = None,
    baseline: RunRecord | None = None,
    problems: list[str] | None = None,
) -> Path:
    """Write the figures and ``DIR/index.html``; returns the page's path."""
    out = Path(directory)
    plots = write_plots(runs, out, target)
    labels = run_labels(runs)
    groups = group_runs(runs)
    columns = run_columns(target, str(baseline.path) if baseline is not None else None)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>mpihybrid analysis: {len(runs)} runs</title><style>{STYLE}</style></head><body>",
        f"<h1>mpihybrid analysis: {len(runs)} runs</h1>",
        f'<p class="meta">{", ".join(sorted({r.algorithm for r in runs}))}'
        + (f"; target {html.escape(str(target))}" if target else "")
        + (f"; speed-ups against {html.escape(str(baseline.path))}" if baseline is not None else "")
        + f"; written {datetime.now(timezone.utc).isoformat(timespec='seconds')} by mpihybrid {__version__}</p>",
    ]
    if problems:
        items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
        parts.append(f'<h2>Files left out</h2><ul class="problems">{items}</ul>')
    parts += ["<h2>Runs</h2>", _table(columns, run_rows(runs, labels, target, baseline))]
    parts.append('<p class="key">Hover over a header for what it means; CSV: <code>--format csv</code>.</p>')
    if any(len(g.runs) > 1 for g in groups):
        parts += [
            "<h2>Seeds grouped</h2>",
            '<p class="key">Runs whose configs differ only in the seed: median (min–max).</p>',
            _table(group_columns(target), group_rows(groups, target)),
        ]
    parts += ["<h2>Figures</h2>", *(_figure(p) for p in plots)]
    parts += ["<h2>Configurations</h2>", '<p class="key">Keys whose values differ are highlighted.</p>']
    parts += [_configs(runs, labels), "</body></html>"]
    page = out / "index.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    return page
