"""`mpihybrid analyze`: a file's metrics per step, or a comparison of several runs (a table per
run and per group of seeds), and on request PNG figures and an HTML report."""

from __future__ import annotations

import sys

from mpihybrid.analysis.groups import group_runs, run_labels, varied_keys
from mpihybrid.analysis.runs import RunRecord, flatten, load_runs
from mpihybrid.analysis.summary import group_columns, group_rows, run_columns, run_rows
from mpihybrid.analysis.table import metrics_table, render, terminal_width
from mpihybrid.analysis.targets import Target, parse_target
from mpihybrid.errors import UsageError


def describe_varied(runs: list[RunRecord]) -> str:
    """'zo.perturbations (decomfl)': what a sweep varied, per algorithm."""
    parts = [f"{', '.join(keys)} ({algorithm})" for algorithm, keys in varied_keys(runs).items() if keys]
    return "; ".join(parts) or "nothing but the algorithm"


def comparison_text(runs: list[RunRecord], fmt: str, target: Target | None, baseline: RunRecord | None) -> str:
    """The run table (CSV: with each run's seed group and full config); in markdown, also the
    table of seed groups when some configuration ran with several seeds."""
    groups = group_runs(runs)
    columns = run_columns(target, str(baseline.path) if baseline is not None else None)
    if fmt == "csv":  # for machines: the file names the run, the config columns say what it was
        group_of = {id(r): number for number, g in enumerate(groups, 1) for r in g.runs}
        rows = run_rows(runs, [str(r.path) for r in runs], target, baseline)
        extra = [{"group": group_of[id(r)], **{f"config.{k}": v for k, v in flatten(r.config).items()}} for r in runs]
        return render(columns, rows, fmt, extra)
    rows = run_rows(runs, run_labels(runs), target, baseline)
    width = terminal_width()
    parts = [f"varied: {describe_varied(runs)}", "", render(columns, rows, fmt, width=width)]
    if any(len(g.runs) > 1 for g in groups):
        grouped = render(group_columns(target), group_rows(groups, target), fmt, width=width)
        parts += ["", "Runs that differ only in the seed, grouped: median (min–max)", "", grouped]
    return "\n".join(parts)


def analyze(
    files: list[str],
    fmt: str = "markdown",
    target: str | None = None,
    baseline: str | None = None,
    plots: str | None = None,
    report: str | None = None,
) -> int:
    """Print the table, write plots and the report; 2 if any file could not be used, else 0."""
    parsed = parse_target(target) if target else None
    runs, problems = load_runs(files)
    base = None
    if baseline:
        base_runs, base_problems = load_runs([baseline])
        problems += base_problems
        base = base_runs[0] if base_runs else None
    if parsed and runs and not any(parsed.metric in r.metrics for r in runs):
        known = sorted({k for r in runs for k in r.metrics} - {"step"})
        raise UsageError(f"--target: no run has the metric '{parsed.metric}' (they have {', '.join(known)})")
    if len(runs) == 1 and len(files) == 1 and not (target or baseline):
        run = runs[0]
        print(f"{run.path}: {run.algorithm} on {run.ranks} ranks, status {run.attrs['status']}")
        print(metrics_table(run, fmt))
    elif runs:
        print(comparison_text(runs, fmt, parsed, base))
    # matplotlib takes a while to import: only when figures are asked for.
    if plots and runs:
        from mpihybrid.analysis.plots import write_plots

        written = write_plots(runs, plots, parsed)
        print(f"\n{len(written)} plots in {plots}: {', '.join(p.path.name for p in written)}", file=sys.stderr)
    if report and runs:
        from mpihybrid.analysis.report import write_report

        page = write_report(runs, report, parsed, base, problems)
        print(f"\nreport: {page}", file=sys.stderr)
    return 2 if problems else 0
