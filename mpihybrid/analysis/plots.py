"""PNG plots of results files (matplotlib, no display needed): every metric against step and
against wall time, cumulative bytes against step, memory per rank and speed-up against ranks.
One line per run, labelled by what varies between the runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mpihybrid.analysis.table import RunRecord, time_to_target  # noqa: E402

SKIP = {"step", "wall_time", "uplink_bytes", "downlink_bytes"}


@dataclass
class Plot:
    path: Path
    xlabel: str
    ylabel: str
    legend: list[str]


def _save(fig, ax, path: Path) -> Plot:
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plot = Plot(path, ax.get_xlabel(), ax.get_ylabel(), [t.get_text() for t in ax.get_legend().get_texts()])
    plt.close(fig)
    return plot


def _line_plot(
    runs: list[RunRecord], labels: list[str], x_name: str, y_name: str, path: Path, cumulative: bool = False
) -> Plot | None:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    drawn = False
    for run, label in zip(runs, labels):
        if y_name not in run.metrics or x_name not in run.metrics:
            continue
        x, y = run.metrics[x_name].astype(float), run.metrics[y_name].astype(float)
        if cumulative:
            y = np.nancumsum(y)
        keep = ~np.isnan(y)
        if keep.any():
            ax.plot(x[keep], y[keep], marker="." if keep.sum() < 30 else None, label=label)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel({"step": "step (round / layer / iteration)", "wall_time": "wall time (s)"}[x_name])
    ax.set_ylabel(f"cumulative {y_name}" if cumulative else y_name)
    ax.set_title(f"{'cumulative ' if cumulative else ''}{y_name} vs {x_name}")
    if (
        y_name.endswith("loss")
        and not cumulative
        and all(
            run.metrics.get(y_name, np.ones(1))[~np.isnan(run.metrics.get(y_name, np.ones(1)))].min() > 0
            for run in runs
            if y_name in run.metrics
        )
    ):
        ax.set_yscale("log")
    return _save(fig, ax, path)


def _by_ranks(runs: list[RunRecord], labels: list[str], value, ylabel: str, title: str, path: Path) -> Plot | None:
    """One line per algorithm over world sizes (only when some algorithm ran at several sizes)."""
    groups: dict[str, list[tuple[int, float]]] = {}
    for run in runs:
        v = value(run)
        if v is not None and np.isfinite(v):
            groups.setdefault(run.attrs["algorithm"], []).append((int(run.attrs["world_size"]), float(v)))
    groups = {k: sorted(v) for k, v in groups.items() if len({p for p, _ in v}) > 1}
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for algo, points in groups.items():
        ax.plot([p for p, _ in points], [v for _, v in points], marker="o", label=algo)
    ax.set_xlabel("ranks")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _save(fig, ax, path)


def write_plots(
    runs: list[RunRecord], labels: list[str], directory: str | Path, target: tuple[str, str, float] | None = None
) -> list[Plot]:
    """Write the PNGs into ``directory``; returns what each one shows."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    names = sorted({k for r in runs for k in r.metrics} - SKIP)
    plots = []
    for name in names:
        plots.append(_line_plot(runs, labels, "step", name, out / f"{name}.png"))
        plots.append(_line_plot(runs, labels, "wall_time", name, out / f"{name}-vs-time.png"))
    for name in ("uplink_bytes", "downlink_bytes"):
        plots.append(_line_plot(runs, labels, "step", name, out / f"cumulative-{name}.png", cumulative=True))

    def memory(run: RunRecord) -> float | None:
        parts = [run.memory[k] for k in ("curvature_bytes", "optimizer_bytes") if k in run.memory]
        return float(np.max(sum(parts))) if parts else None

    plots.append(
        _by_ranks(
            runs,
            labels,
            memory,
            "curvature + optimizer bytes (max over ranks)",
            "memory per rank vs ranks",
            out / "memory-vs-ranks.png",
        )
    )
    plots.append(
        _by_ranks(
            runs,
            labels,
            lambda r: float(np.max(r.memory["peak_rss_bytes"])) / 2**20 if "peak_rss_bytes" in r.memory else None,
            "peak RSS, MiB (max over ranks)",
            "peak RSS vs ranks",
            out / "rss-vs-ranks.png",
        )
    )

    def seconds(run: RunRecord) -> float | None:
        if target is not None:
            hit = time_to_target(run, *target)
            return hit[0] if hit else None
        return float(run.metrics["wall_time"][-1]) if len(run.metrics.get("wall_time", [])) else None

    smallest: dict[str, tuple[int, float]] = {}
    for run in runs:
        s = seconds(run)
        size = int(run.attrs["world_size"])
        if s and (run.attrs["algorithm"] not in smallest or size < smallest[run.attrs["algorithm"]][0]):
            smallest[run.attrs["algorithm"]] = (size, s)
    plots.append(
        _by_ranks(
            runs,
            labels,
            lambda r: (
                smallest[r.attrs["algorithm"]][1] / seconds(r)
                if seconds(r) and r.attrs["algorithm"] in smallest
                else None
            ),
            "speed-up vs the fewest ranks",
            "speed-up vs ranks" + (f" (time to {target[0]} {target[1]} {target[2]:g})" if target else " (run time)"),
            out / "speedup-vs-ranks.png",
        )
    )
    return [p for p in plots if p is not None]
