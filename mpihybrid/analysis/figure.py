"""What every figure shares: one colour per group of runs, a median line with a min–max band
over seeds, log axes where values span decades, and a legend below the axes that grows the
figure instead of shrinking or covering the axes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.axis import Axis  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from mpihybrid.analysis.units import human_bytes  # noqa: E402

PANEL = (5.2, 3.6)  # inches per axes: the same in every figure, whatever the legend holds
DPI = 110
MAX_LEGEND = 16  # entries; further groups are summed up in one entry
LEGEND_CHAR_PT = 6.5  # mean width of a legend character (10 pt font) in points, for the label cap
GROUP = "group"  # gid of the line that stands for a group in legends
_COLOURS = plt.get_cmap("tab10").colors
_DASHES = ("-", "--", ":", "-.")


@dataclass
class Plot:
    """A written figure and what it shows (for tests and the report's captions)."""

    path: Path
    caption: str
    xlabels: list[str]
    ylabel: str
    yscale: str
    legend: list[str] = field(default_factory=list)


def style(index: int) -> dict:
    """Colour and dash of the index-th group: distinct for the first 40."""
    return {"color": _COLOURS[index % len(_COLOURS)], "linestyle": _DASHES[(index // len(_COLOURS)) % len(_DASHES)]}


def log_scale(name: str, values: np.ndarray) -> bool:
    """Bytes always (when positive), losses spanning a decade, anything else spanning two."""
    finite = values[np.isfinite(values)]
    if not len(finite) or finite.min() <= 0:
        return False
    if name.endswith("bytes"):
        return True
    return bool(finite.max() / finite.min() >= (10 if "loss" in name else 100))


def bytes_axis(axis: Axis, values: np.ndarray | None = None) -> None:
    """An axis labelled in B/kB/MB. For a log axis, ``values`` set limits on whole decades around
    them (so that even one value gets labelled ticks) with a decade to spare for text beside marks."""
    axis.set_major_formatter(FuncFormatter(lambda v, _: human_bytes(v)))
    axis.set_minor_formatter(NullFormatter())
    if values is not None and len(values):
        low, high = np.floor(np.log10(np.min(values) / 2)), np.ceil(np.log10(np.max(values) * 10))
        (axis.axes.set_xlim if axis is axis.axes.xaxis else axis.axes.set_ylim)(10**low, 10**high)


def new_figure(panels: int) -> tuple[Figure, list[Axes]]:
    """Panels side by side on one y axis, each PANEL inches, laid out to make room for labels."""
    fig, axes = plt.subplots(
        1, panels, figsize=(PANEL[0] * panels, PANEL[1]), sharey=True, layout="constrained", squeeze=False
    )
    for ax in axes[0]:
        ax.grid(alpha=0.3)
    return fig, list(axes[0])


def shorten(label: str, chars: int) -> str:
    """At most ``chars`` characters: a longer label loses its middle."""
    if len(label) <= chars:
        return label
    half = (chars - 1) // 2
    return label[:half] + "…" + label[-half:]


def draw_group(ax: Axes, xs: list[np.ndarray], ys: list[np.ndarray], label: str, index: int) -> None:
    """One run as a line; several as their median with a min–max band, on the x values they share."""
    st = style(index)
    kept = [(x[np.isfinite(x) & np.isfinite(y)], y[np.isfinite(x) & np.isfinite(y)]) for x, y in zip(xs, ys)]
    kept = [(x, y) for x, y in kept if len(x)]
    if not kept:
        return
    if len(kept) == 1:
        x, y = kept[0]
        ax.plot(x, y, marker="." if len(x) < 30 else None, label=label, gid=GROUP, **st)
        return
    lo, hi = max(x[0] for x, _ in kept), min(x[-1] for x, _ in kept)
    grid = np.unique(np.concatenate([x[(x >= lo) & (x <= hi)] for x, _ in kept]))
    if not len(grid):  # the runs share no x range: draw each
        for x, y in kept:
            ax.plot(x, y, alpha=0.7, **st)
        ax.plot([], [], label=label, gid=GROUP, **st)
        return
    stack = np.array([np.interp(grid, x, y) for x, y in kept])
    ax.fill_between(grid, stack.min(axis=0), stack.max(axis=0), color=st["color"], alpha=0.2, linewidth=0)
    ax.plot(grid, np.median(stack, axis=0), marker="." if len(grid) < 30 else None, label=label, gid=GROUP, **st)


def legend_below(fig: Figure, axes: list[Axes]) -> list[str]:
    """A legend under the axes, in as many columns as fit the figure's width; the figure grows
    by the legend's height, so the axes keep their size. Returns the entries shown."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels and not lab.startswith("_"):
                handles.append(h)
                labels.append(lab)
    if not labels:
        return []
    groups = [i for i, h in enumerate(handles) if h.get_gid() == GROUP]
    if len(groups) > MAX_LEGEND:  # the entries that explain marks (target, median, ...) stay
        hidden = set(groups[MAX_LEGEND - 1 :])
        handles = [h for i, h in enumerate(handles) if i not in hidden]
        labels = [lab for i, lab in enumerate(labels) if i not in hidden]
        handles.insert(MAX_LEGEND - 1, plt.Line2D([], [], linestyle="none"))
        labels.insert(MAX_LEGEND - 1, f"… and {len(hidden)} more (see the table)")
    width, height = fig.get_size_inches()
    labels = [shorten(lab, int(width * 72 / LEGEND_CHAR_PT)) for lab in labels]
    renderer = fig.canvas.get_renderer()
    for ncols in range(min(len(labels), 4), 0, -1):
        legend = fig.legend(handles, labels, loc="outside lower center", ncols=ncols, frameon=False)
        if legend.get_window_extent(renderer).width <= 0.95 * width * fig.dpi or ncols == 1:
            break
        legend.remove()
    fig.set_size_inches(width, height + legend.get_window_extent(renderer).height / fig.dpi + 0.1)
    return labels


def save(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
