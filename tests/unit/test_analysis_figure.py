"""What every figure shares: log axes where values span decades, seed bands, a legend below the
axes that never shrinks or covers them."""

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from mpihybrid.analysis.figure import MAX_LEGEND, draw_group, legend_below, log_scale, new_figure, save, shorten


@pytest.mark.parametrize(
    "name, values, log",
    [
        ("uplink_bytes", [20, 40, 60], True),  # bytes: always, even within a decade
        ("uplink_bytes", [0, 20, 40], False),  # not with a zero
        ("train_loss", [2.3, 0.2], True),  # a loss spanning a decade
        ("train_loss", [2.3, 0.5], False),
        ("test_accuracy", [0.1, 0.99], False),
        ("condition_number", [1.0, 50.0], False),
        ("condition_number", [1.0, 1e4], True),  # anything else spanning two decades
        ("train_loss", [np.nan, 2.3, 0.1], True),  # NaN rows do not count
    ],
)
def test_log_scale(name, values, log):
    assert log_scale(name, np.array(values, dtype=float)) is log


def test_a_group_of_runs_is_its_median_with_a_min_max_band_on_shared_x():
    fig, (ax,) = new_figure(1)
    xs = [np.array([0.0, 1.0, 2.0]), np.array([0.5, 1.5, 2.5]), np.array([0.0, 1.0, 2.0, 3.0])]
    ys = [np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0]), np.array([0.0, np.nan, 0.0, 0.0])]
    draw_group(ax, xs, ys, "g", 0)
    (line,) = ax.lines
    grid = [0.5, 1.0, 1.5, 2.0]  # where all three runs have values
    assert list(line.get_xdata()) == grid and line.get_label() == "g"
    at = np.array([[1.5, 2.0, 2.5, 3.0], [2.0, 3.0, 4.0, 5.0], [0.0, 0.0, 0.0, 0.0]])  # runs interpolated
    assert np.allclose(line.get_ydata(), np.median(at, axis=0))
    (band,) = ax.collections
    vertices = band.get_paths()[0].vertices
    for x, low, high in zip(grid, at.min(axis=0), at.max(axis=0)):
        at_x = vertices[np.isclose(vertices[:, 0], x), 1]
        assert np.isclose(at_x.min(), low) and np.isclose(at_x.max(), high)


def _axes_inches(fig, ax):
    box = ax.get_window_extent(fig.canvas.get_renderer())
    return box.width / fig.dpi, box.height / fig.dpi


def _figure_with_groups(tmp_path, n, label):
    fig, axes = new_figure(2)
    for ax in axes:
        for i in range(n):
            ax.plot([0, 1], [i, i + 1], label=label.format(i), gid="group")
        ax.axhline(0.5, label="target")
        ax.set_xlabel("step")
    axes[0].set_ylabel("metric")
    shown = legend_below(fig, axes)
    save(fig, tmp_path / f"{n}.png")
    FigureCanvasAgg(fig).draw()  # save() closed the figure; lay it out again to measure it
    return fig, axes, shown


def test_the_legend_grows_the_figure_not_into_the_axes(tmp_path):
    small, small_axes, _ = _figure_with_groups(tmp_path, 1, "run {}")
    label = "decomfl batch_size=32 lr=0.02 direction=sphere perturbations={} (3 seeds)"
    big, big_axes, shown = _figure_with_groups(tmp_path, 12, label)
    assert len(shown) == 13 and shown[-1] == "target"
    assert big.get_size_inches()[1] > small.get_size_inches()[1] + 1  # taller by the legend's rows
    for a, b in zip(small_axes, big_axes):
        assert np.allclose(_axes_inches(small, a), _axes_inches(big, b), rtol=0.03)
    renderer = big.canvas.get_renderer()
    legend = big.legends[0].get_window_extent(renderer)
    assert legend.width <= big.bbox.width and legend.x0 >= 0
    for ax in big_axes:
        assert legend.y1 <= ax.get_tightbbox(renderer).y0  # below the axes and their labels


def test_the_legend_has_a_size_cap_and_keeps_the_entries_that_explain_marks(tmp_path):
    _, _, shown = _figure_with_groups(tmp_path, MAX_LEGEND + 4, "g{}")
    assert len(shown) == MAX_LEGEND + 1
    assert shown[MAX_LEGEND - 2] == f"g{MAX_LEGEND - 2}" and shown[MAX_LEGEND - 1] == "… and 5 more (see the table)"
    assert shown[-1] == "target"


def test_long_labels_lose_their_middle():
    assert shorten("short", 10) == "short"
    assert shorten("decomfl lr=0.02 seed=1", 15) == "decomfl… seed=1" and len(shorten("x" * 99, 15)) == 15
