"""The figure a reader of the DeComFL or FedACnnL papers looks for: the target metric against
the bytes sent, and per group of runs the wall time and the uplink bytes to reach the target
(median, min–max range and each seed), bytes on log axes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from mpihybrid.analysis.figure import PANEL, Plot, bytes_axis, draw_group, legend_below, save, shorten, style
from mpihybrid.analysis.groups import Group
from mpihybrid.analysis.targets import Target, reach
from mpihybrid.analysis.units import human_bytes

ROW_HEIGHT = 0.55  # inches per group in the time and bytes panels
LABEL_CHARS = 140  # a group's label spans both panels


def _curves(ax: Axes, groups: list[Group], target: Target) -> str:
    """The target metric against cumulative uplink bytes (wall time where no run counts bytes)."""
    by_bytes = any("uplink_bytes" in r.metrics for g in groups for r in g.runs)
    for index, group in enumerate(groups):
        xs, ys = [], []
        for run in group.runs:
            if target.metric not in run.metrics or (by_bytes and "uplink_bytes" not in run.metrics):
                continue
            x = np.nancumsum(run.metrics["uplink_bytes"]) if by_bytes else run.metrics["wall_time"]
            xs.append(x.astype(float))
            ys.append(run.metrics[target.metric].astype(float))
        draw_group(ax, xs, ys, group.label, index)
    ax.axhline(target.value, color="0.3", linewidth=0.8, linestyle="--", label=f"target {target}")
    ax.set_ylabel(target.metric)
    if by_bytes:
        ax.set_xscale("log")
        bytes_axis(ax.xaxis)
        ax.set_xlabel("cumulative uplink bytes (rank 0)")
        return "cumulative uplink bytes"
    ax.set_xlabel("wall time (s)")
    return "wall time"


def _dots(ax: Axes, values: list[list[float]], reached: list[bool], fmt: Callable[[float], str]) -> None:
    """Per group (one row each): every run as a small dot, the median as a large one with the
    min–max range as a line, and the median's value written beside it."""
    for row, (vals, hit) in enumerate(zip(values, reached)):
        colour = style(row)["color"]
        if not vals:
            why = "not measured" if hit else "not reached"
            ax.annotate(why, (0.02, row), xycoords=("axes fraction", "data"), va="center", color="0.4")
            continue
        median = float(np.median(vals))
        ax.plot([min(vals), max(vals)], [row, row], color=colour, linewidth=2, alpha=0.5)
        ax.plot(vals, [row] * len(vals), "o", color=colour, markersize=4, alpha=0.6)
        ax.plot([median], [row], "D", color=colour, markersize=8)
        ax.annotate(fmt(median), (max(vals), row), xytext=(8, 0), textcoords="offset points", va="center")


def comparison_figure(groups: list[Group], target: Target, path: Path) -> Plot | None:
    """Top: ``target.metric`` against cumulative uplink bytes. Bottom: time and uplink bytes to
    the target per group, sharing the groups' axis."""
    if not any(target.metric in r.metrics for g in groups for r in g.runs):
        return None
    fig, axes = plt.subplot_mosaic(
        [["curve", "curve"], ["time", "bytes"]],
        figsize=(2 * PANEL[0], PANEL[1] + ROW_HEIGHT * (len(groups) + 2)),
        layout="constrained",
        gridspec_kw={"height_ratios": [PANEL[1], ROW_HEIGHT * (len(groups) + 2)]},
    )
    x_name = _curves(axes["curve"], groups, target)
    hits = [[h for h in (reach(r, target) for r in g.runs) if h] for g in groups]
    seconds = [[h.seconds for h in hs if np.isfinite(h.seconds)] for hs in hits]
    sent = [[h.uplink_bytes for h in hs if h.uplink_bytes > 0] for hs in hits]  # NaN: not measured
    reached = [bool(hs) for hs in hits]
    _dots(axes["time"], seconds, reached, lambda v: f"{v:.3g} s")
    _dots(axes["bytes"], sent, reached, human_bytes)
    axes["bytes"].sharey(axes["time"])
    axes["bytes"].set_facecolor("none")  # the labels from the time panel run across it
    for ax in (axes["time"], axes["bytes"]):
        ax.tick_params(left=False, labelleft=False)
        ax.set_yticks([])
    # Each group's label on a line of its own above its marks, across both panels.
    for row, (group, hs) in enumerate(zip(groups, hits)):
        reached = "" if len(hs) == len(group.runs) else f"  ({len(hs)}/{len(group.runs)} reached)"
        label = axes["time"].annotate(
            shorten(group.label + reached, LABEL_CHARS),
            (0, row - 0.42),
            xycoords=("axes fraction", "data"),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize="small",
            annotation_clip=False,
        )
        label.set_in_layout(False)  # it may run into the bytes panel: the layout must not make room
    axes["time"].set_ylim(len(groups) - 0.5, -0.8)  # first group on top, as in the table
    longest = max((v for vals in seconds for v in vals), default=1.0)
    axes["time"].set_xlim(0, 1.25 * longest)  # room for the values written beside the marks
    axes["time"].set_xlabel("wall time to the target (s)")
    axes["bytes"].set_xscale("log")
    bytes_axis(axes["bytes"].xaxis, np.array([v for vals in sent for v in vals]))
    axes["bytes"].tick_params(which="both", labelbottom=any(sent))  # no scale to show without bytes
    axes["bytes"].set_xlabel("uplink bytes (rank 0) to the target")
    for ax in axes.values():
        ax.grid(alpha=0.3)
    # What the marks of the lower panels mean, as legend entries in grey.
    axes["time"].plot([], [], "D", color="0.4", label="median of a group")
    axes["time"].plot([], [], "-o", color="0.4", alpha=0.6, markersize=4, label="its runs, min–max")
    fig.suptitle(f"Reaching {target}")
    legend = legend_below(fig, [axes["curve"], axes["time"]])
    save(fig, path)
    caption = f"{target.metric} against {x_name}; wall time and uplink bytes to {target} per group of runs"
    return Plot(
        path, caption, [axes[k].get_xlabel() for k in ("curve", "time", "bytes")], target.metric, "linear", legend
    )
