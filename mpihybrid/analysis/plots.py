"""The PNG figures of `mpihybrid analyze --plots`: each metric against step and wall time,
cumulative bytes (log axis), the comparison to a target, and memory and speed-up against ranks.

Runs that differ only in the seed are drawn as one group (median and min–max band), each group
in the same colour in every figure.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from mpihybrid.analysis.comparison import comparison_figure
from mpihybrid.analysis.figure import Plot, bytes_axis, draw_group, legend_below, log_scale, new_figure, save, style
from mpihybrid.analysis.groups import Group, group_runs
from mpihybrid.analysis.runs import RunRecord, metric_order
from mpihybrid.analysis.targets import Target, seconds_to

NOT_PLOTTED = {"step", "wall_time"}
CUMULATIVE = ("uplink_bytes", "downlink_bytes")
X_LABELS = {"step": "step (round / layer / iteration)", "wall_time": "wall time (s)"}


def _series(run: RunRecord, x_name: str, y_name: str, cumulative: bool) -> tuple[np.ndarray, np.ndarray]:
    y = run.metrics[y_name].astype(float)
    return run.metrics[x_name].astype(float), np.nancumsum(y) if cumulative else y


def metric_figure(groups: list[Group], name: str, path: Path, target: Target | None = None) -> Plot | None:
    """``name`` against step (left) and wall time (right) on a shared y axis; cumulative for bytes."""
    cumulative = name in CUMULATIVE
    ylabel = f"cumulative {name}" if cumulative else name
    present = [(i, g) for i, g in enumerate(groups) if any(name in r.metrics for r in g.runs)]
    if not present:
        return None
    values = np.concatenate(
        [_series(r, "step", name, cumulative)[1] for _, g in present for r in g.runs if name in r.metrics]
    )
    if not np.isfinite(values).any():
        return None
    fig, axes = new_figure(2)
    for ax, x_name in zip(axes, ("step", "wall_time")):
        for index, group in present:
            series = [_series(r, x_name, name, cumulative) for r in group.runs if name in r.metrics]
            draw_group(ax, [x for x, _ in series], [y for _, y in series], group.label, index)
        ax.set_xlabel(X_LABELS[x_name])
        if target is not None and target.metric == name:
            ax.axhline(target.value, color="0.3", linewidth=0.8, linestyle="--", label=f"target {target}")
    axes[0].set_ylabel(ylabel)
    yscale = "log" if log_scale(name, values) else "linear"
    axes[0].set_yscale(yscale)
    if yscale == "log" and name.endswith("bytes"):
        bytes_axis(axes[0].yaxis)
    fig.suptitle(ylabel)
    legend = legend_below(fig, axes)
    save(fig, path)
    caption = f"{ylabel} against step and wall time" + (" (log scale)" if yscale == "log" else "")
    return Plot(path, caption, [ax.get_xlabel() for ax in axes], ylabel, yscale, legend)


def ranks_figure(
    runs: list[RunRecord],
    value: Callable[[RunRecord], float | None],
    ylabel: str,
    title: str,
    path: Path,
    in_bytes: bool = False,
) -> Plot | None:
    """One line per algorithm over world sizes (median over runs at a size), only when some
    algorithm ran at several sizes."""
    points: dict[str, dict[int, list[float]]] = {}
    for run in runs:
        v = value(run)
        if v is not None and np.isfinite(v):
            points.setdefault(run.algorithm, {}).setdefault(run.ranks, []).append(float(v))
    points = {algo: sizes for algo, sizes in points.items() if len(sizes) > 1}
    if not points:
        return None
    fig, (ax,) = new_figure(1)
    for index, (algo, sizes) in enumerate(points.items()):
        ranks = sorted(sizes)
        ax.plot(ranks, [np.median(sizes[p]) for p in ranks], marker="o", label=algo, **style(index))
    ax.set_xlabel("ranks")
    ax.set_ylabel(ylabel)
    ax.set_xticks(sorted({p for sizes in points.values() for p in sizes}))
    if in_bytes:
        bytes_axis(ax.yaxis)
    fig.suptitle(title)
    legend = legend_below(fig, [ax])
    save(fig, path)
    return Plot(path, title, ["ranks"], ylabel, "linear", legend)


def _algorithm_memory(run: RunRecord) -> float | None:
    parts = [run.memory[k] for k in ("curvature_bytes", "optimizer_bytes") if k in run.memory]
    return float(np.max(sum(parts))) if parts else None


def _peak_rss_mib(run: RunRecord) -> float | None:
    return float(np.max(run.memory["peak_rss_bytes"])) / 2**20 if "peak_rss_bytes" in run.memory else None


def _speedups(runs: list[RunRecord], target: Target | None) -> Callable[[RunRecord], float | None]:
    """Speed-up of each run against its algorithm's run on the fewest ranks."""
    fewest: dict[str, tuple[int, float]] = {}
    for run in runs:
        s = seconds_to(run, target)
        if s and (run.algorithm not in fewest or run.ranks < fewest[run.algorithm][0]):
            fewest[run.algorithm] = (run.ranks, s)

    def speedup(run: RunRecord) -> float | None:
        s = seconds_to(run, target)
        return fewest[run.algorithm][1] / s if s and run.algorithm in fewest else None

    return speedup


def write_plots(runs: list[RunRecord], directory: str | Path, target: Target | None = None) -> list[Plot]:
    """Write the PNGs into ``directory``; returns what each one shows, the comparison first."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    groups = group_runs(runs)
    plots = [comparison_figure(groups, target, out / "comparison.png") if target else None]
    for name in metric_order({k for r in runs for k in r.metrics} - NOT_PLOTTED):
        cumulative = name in CUMULATIVE
        path = out / (f"cumulative-{name}.png" if cumulative else f"{name}.png")
        plots.append(metric_figure(groups, name, path, target))
    speedup_title = "speed-up vs ranks" + (f" (time to {target})" if target else " (run time)")
    plots += [
        ranks_figure(
            runs,
            _algorithm_memory,
            "curvature + optimizer bytes\n(max over ranks)",
            "memory per rank vs ranks",
            out / "memory-vs-ranks.png",
            in_bytes=True,
        ),
        ranks_figure(
            runs, _peak_rss_mib, "peak RSS, MiB (max over ranks)", "peak RSS vs ranks", out / "rss-vs-ranks.png"
        ),
        ranks_figure(
            runs, _speedups(runs, target), "speed-up vs the fewest ranks", speedup_title, out / "speedup-vs-ranks.png"
        ),
    ]
    return [p for p in plots if p is not None]
