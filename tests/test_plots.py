"""Tests of art_lib.plots: what the figures show (intervals, zero bars, nothing clipped) and that nothing covers
anything (legends, labels), measured on figures rendered with the Agg backend."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from art_lib.plots import YMAX, abs_change, accuracy_bars, evolution_strip, labelled_points  # noqa: E402
from art_lib.scoring import wilson_interval  # noqa: E402


def tidy(cells: dict[tuple[str, str], int], n: int = 40) -> pd.DataFrame:
    """A tidy table as the notebooks write it: {(benchmark, arm): correct out of n} with Wilson intervals."""
    rows = []
    for (bench, arm), k in cells.items():
        lo, hi = wilson_interval(k, n)
        rows.append({"benchmark": bench, "arm": arm, "accuracy": k / n, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)


#: Like Table 2: controls at 0, full marks, asymmetric intervals, and an arm only one benchmark has.
TABLE = tidy(
    {
        ("toy_add", "control:text_only"): 0,
        ("toy_add", "art/sft"): 40,
        ("toy_add", "lora/sft"): 37,
        ("toy_add", "art/dapo"): 11,
        ("toy_mul", "control:text_only"): 0,
        ("toy_mul", "art/sft"): 29,
        ("toy_mul", "lora/sft"): 40,
    }
)


@pytest.fixture
def bars():
    fig, ax = plt.subplots(figsize=(6, 3))
    drawn = accuracy_bars(ax, TABLE, x="benchmark", hue="arm")
    fig.canvas.draw()
    yield fig, ax, drawn
    plt.close(fig)


def errorbars(ax) -> list:
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def error_segments(ax) -> dict[float, tuple[float, float]]:
    """{bar centre x: (bottom, top)} of every vertical error bar drawn."""
    out = {}
    for c in errorbars(ax):
        for seg in c.lines[2][0].get_segments():
            out[round(float(seg[0][0]), 9)] = (float(seg[0][1]), float(seg[1][1]))
    return out


def test_error_bars_are_the_tables_intervals(bars):
    _, ax, drawn = bars
    segments = error_segments(ax)
    assert len(drawn) == len(TABLE)
    for r in TABLE.itertuples():
        bar = drawn[(r.benchmark, r.arm)]
        assert bar.get_height() == pytest.approx(r.accuracy)
        low, high = segments[round(bar.get_x() + bar.get_width() / 2, 9)]
        assert (low, high) == (pytest.approx(r.ci_low), pytest.approx(r.ci_high))


def test_a_full_bar_and_its_interval_are_not_clipped(bars):
    _, ax, _ = bars
    assert ax.get_ylim() == (0, YMAX) and YMAX > 1.0
    caps_at_one = [cap for c in errorbars(ax) for cap in c.lines[1] if np.isclose(cap.get_ydata(), 1.0).any()]
    assert caps_at_one, "the interval of a 1.00 bar ends at 1.00 with a cap"
    frame = ax.get_window_extent()
    for cap in caps_at_one:
        box = cap.get_window_extent()
        assert frame.y0 < box.y0 and box.y1 < frame.y1, "a cap at 1.00 lies inside the axes"


def test_a_zero_bar_shows_a_marker_on_the_axis_and_its_value(bars):
    _, ax, drawn = bars
    for r in TABLE[TABLE["accuracy"] == 0].itertuples():
        key = (r.benchmark, r.arm)
        centre = drawn[key].get_x() + drawn[key].get_width() / 2
        markers = [
            line
            for line in ax.lines
            if np.allclose(line.get_xdata(), centre) and np.allclose(line.get_ydata(), 0.0) and line.get_marker()
        ]
        dots = [m for m in markers if not m.get_clip_on()]  # an error bar's lower cap at 0 is clipped in half
        assert dots and dots[0].get_window_extent().height > 0, "a marker at 0 the axis does not clip"
        labels = [t for t in ax.texts if t.get_text() == "0" and np.isclose(t.get_position()[0], centre)]
        assert labels and labels[0].get_position()[1] > r.ci_high, "the 0 is printed above its interval"


def test_the_legend_covers_no_bar_and_no_interval(bars):
    fig, ax, drawn = bars
    legend = ax.get_legend().get_window_extent()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(dict.fromkeys(TABLE["arm"]))
    intervals = [ax.transData.transform([(x, lo), (x, hi)]) for x, (lo, hi) in error_segments(ax).items()]
    boxes = [b.get_window_extent() for b in drawn.values()] + [Bbox(seg) for seg in intervals]
    boxes += [cap.get_window_extent() for c in errorbars(ax) for cap in c.lines[1]]
    assert len(boxes) == 4 * len(TABLE)
    for box in boxes:
        assert not legend.overlaps(box)
    assert legend.x0 >= ax.get_window_extent().x1, "the legend sits right of the axes"


def test_each_group_is_centred_on_its_tick_without_gaps(bars):
    _, ax, drawn = bars
    for i, bench in enumerate(["toy_add", "toy_mul"]):
        group = sorted((b for (x, _), b in drawn.items() if x == bench), key=lambda b: b.get_x())
        assert np.mean([b.get_x() + b.get_width() / 2 for b in group]) == pytest.approx(i)
        for left, right in itertools.pairwise(group):
            assert left.get_x() + left.get_width() == pytest.approx(right.get_x())


def test_bars_refuse_two_rows_for_one_cell():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="one row per"):
        accuracy_bars(ax, pd.concat([TABLE, TABLE.head(1)]), x="benchmark", hue="arm")
    plt.close(fig)


def text_boxes(fig, texts) -> list:
    renderer = fig.canvas.get_renderer()
    return [Text.get_window_extent(t, renderer) for t in texts]


ALIGNMENT = [12288, 27648, 49152, 19200, 30000, 3584, 14336, 57344, 256]  # Table 3's arms' trainable parameters


@pytest.mark.parametrize(
    "xs, correct, log",
    [
        ([0.331, 0.979, 0.971], [40] * 3, False),  # the style sweep: w=1 and w=10 a hair apart
        (ALIGNMENT, [40] * 9, True),  # Table 3: every arm at 1.00
        (ALIGNMENT, [40, 40, 20, 40, 40, 35, 40, 40, 40], True),  # a short run: long intervals block the way down
    ],
    ids=["style", "alignment", "alignment-short-run"],
)
def test_labels_of_close_points_overlap_neither_each_other_nor_the_points(xs, correct, log):
    df = tidy({("b", f"arm-{i}"): k for i, k in enumerate(correct)}).assign(x=xs)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if log:
        ax.set_xscale("log")
        ax.set_xlim(min(xs) / 3, max(xs) * 3)
    else:
        ax.set_xlim(0, 1.05)
    labels = labelled_points(ax, df, x="x", label="arm")
    fig.canvas.draw()
    boxes = text_boxes(fig, labels)
    assert [a.get_text() for a in labels] == [df["arm"][i] for i in np.argsort(xs, kind="stable")]
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b)
    points = ax.transData.transform(np.column_stack([xs, df["accuracy"]]))
    markers = [Bbox.from_extents(x - 3, y - 3, x + 3, y + 3) for x, y in points]  # 5 pt markers at 100 dpi
    frame = ax.get_window_extent()
    for box in boxes:
        assert not any(box.overlaps(m) for m in markers), "a label covers a point"
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1, "a label leaves the axes"
    plt.close(fig)


def test_evolution_strip_shows_and_prints_each_snapshots_change():
    seed = np.zeros((8, 8, 3), np.uint8)
    step1 = seed + 10  # every value moved by 10
    step2 = step1.copy()
    step2[0, 0, 1] = 40  # one value moved by 30 more
    fig = evolution_strip([(0, seed), (50, step1), (100, step2)])
    top, bottom = fig.axes[:3], fig.axes[3:]
    assert [a.get_title() for a in top] == ["step 0", "step 50", "step 100"]
    np.testing.assert_array_equal(bottom[2].images[0].get_array(), np.abs(step2 - step1.astype(int)).max(axis=-1))
    assert abs_change(step2, step1).mean() == pytest.approx(30 / step2.size)
    assert bottom[1].get_xlabel() == "mean |change| 10.00\nfrom seed 10.0"
    assert bottom[2].get_xlabel() == "mean |change| 0.16\nfrom seed 10.2"  # 30 / 192; (192 * 10 + 30) / 192
    assert bottom[2].images[0].get_clim() == (0, 30), "each difference fills its own colour scale"
    plt.close(fig)
