"""How the notebooks draw results: accuracy bars and labelled points with their 95% intervals, an artwork's evolution.

Matplotlib only; every helper draws on the axes it is given (or returns a new figure). Accuracies come from a
tidy table with `accuracy`, `ci_low` and `ci_high` (the 95% Wilson interval of each row).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch
from matplotlib.path import Path
from matplotlib.text import Annotation, Text
from matplotlib.transforms import Bbox

#: Top of every accuracy axis: a bar at 1.00 keeps its interval's cap in view.
YMAX = 1.08
#: Label offsets (dx, dy) in points from the point, tried nearest first; dx < 0 puts the label on the left.
OFFSETS = sorted(
    ((dx, dy) for k in range(0, 241, 12) for dy in {k, -k} for dx in (6, -6, 30, -30)),
    key=lambda o: (np.hypot(*o), -o[0], o[1]),
)


def _colors(names: Sequence) -> dict:
    """A colour per name: greys for controls (`control:*`), tab10 / tab20 for the rest, in order."""
    controls = [n for n in names if str(n).startswith("control:")]
    others = [n for n in names if n not in controls]
    cmap = plt.get_cmap("tab10" if len(others) <= 10 else "tab20")
    greys = np.linspace(0.35, 0.75, max(len(controls), 1))
    return {**{n: cmap(i % cmap.N) for i, n in enumerate(others)}, **{n: str(g) for n, g in zip(controls, greys)}}


def _interval(df: pd.DataFrame, y: str = "accuracy") -> np.ndarray:
    """(2, N) distances from `y` down to `ci_low` and up to `ci_high`, as `yerr` wants them."""
    return np.vstack([df[y] - df["ci_low"], df["ci_high"] - df[y]]).clip(min=0)


def legend_outside(ax, handles: list | None = None, title: str | None = None) -> None:
    """The legend right of the axes, top-aligned, so it never covers data."""
    kw = {} if handles is None else {"handles": handles}
    ax.legend(
        **kw,
        title=title,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0,
        frameon=False,
        fontsize=8,
        title_fontsize=8,
    )


def accuracy_axis(ax) -> None:
    """y from 0 to YMAX (nothing at 1.00 clipped), ticks 0..1, labelled as accuracy with its interval."""
    ax.set_ylim(0, YMAX)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("accuracy (95% CI)")


def _zero_marker(ax, x: float, top: float, color) -> None:
    """A zero-height bar: a dot on the axis in the bar's colour and "0" printed above its interval."""
    ax.plot([x], [0], "o", ms=4, color=color, mec="0.2", mew=0.6, clip_on=False, zorder=4)
    ax.text(x, top + 0.015, "0", ha="center", va="bottom", fontsize=7)


def accuracy_bars(
    ax,
    df: pd.DataFrame,
    x: str,
    hue: str | None = None,
    *,
    order: Sequence | None = None,
    hue_order: Sequence | None = None,
    legend: bool = True,
) -> dict:
    """Grouped bars of `accuracy` with 95% error bars from `ci_low`/`ci_high`; returns {(x, hue): bar}.

    One row per (x, hue) cell (else ValueError: aggregate, or add the seed to `hue`, first). Each group holds
    only the hues it has, centred without gaps; a zero bar shows as a dot on the axis with its "0"; the legend
    (unless `legend` is False) sits right of the axes.
    """
    keys = [x] if hue is None else [x, hue]
    if df.duplicated(keys).any():
        raise ValueError(
            f"accuracy_bars needs one row per {keys}; repeated: {df[df.duplicated(keys)][keys].values.tolist()}"
        )
    xs = list(order if order is not None else dict.fromkeys(df[x]))
    hues = list(hue_order if hue_order is not None else dict.fromkeys(df[hue])) if hue else [None]
    colors = _colors(hues if hue else xs)
    rows = df[df[x].isin(xs) & (df[hue].isin(hues) if hue else True)]
    width = 0.8 / rows.groupby(x).size().max()
    bars = {}
    for i, xv in enumerate(xs):
        group = rows[rows[x] == xv]
        if hue:
            group = group.assign(_rank=group[hue].map(hues.index)).sort_values("_rank")
        for j, (_, r) in enumerate(group.iterrows()):
            pos, key = i + (j - (len(group) - 1) / 2) * width, r[hue] if hue else None
            name = key if hue else xv
            bars[(xv, key)] = ax.bar(
                pos,
                r["accuracy"],
                width,
                yerr=_interval(group.iloc[[j]]),
                color=colors[name],
                capsize=2,
                error_kw={"elinewidth": 0.9, "capthick": 0.9, "ecolor": "0.15"},
            )[0]
            if r["accuracy"] == 0:
                _zero_marker(ax, pos, r["ci_high"], colors[name])
    long = max(len(str(v)) for v in xs) > 10
    ax.set_xticks(range(len(xs)), [str(v) for v in xs], rotation=30 if long else 0, ha="right" if long else "center")
    ax.set_xlim(-0.5, len(xs) - 0.5)
    accuracy_axis(ax)
    if hue and legend:
        legend_outside(ax, [Patch(color=colors[h], label=str(h)) for h in hues], title=hue)
    return bars


def _text_box(ann: Annotation, renderer) -> Bbox:
    """The label's own box in pixels (an Annotation's extent would include its leader line)."""
    ann.update_positions(renderer)
    return Text.get_window_extent(ann, renderer)


def _inside(box: Bbox, frame: Bbox) -> bool:
    return frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1


def _point_boxes(ax, xs, lows, highs, pad: float = 4.0) -> list[Bbox]:
    """Pixel boxes around each point's marker and error bar: labels must not cover them."""
    lo = ax.transData.transform(np.column_stack([xs, lows]))
    hi = ax.transData.transform(np.column_stack([xs, highs]))
    return [Bbox([[a[0] - pad, a[1] - pad], [b[0] + pad, b[1] + pad]]) for a, b in zip(lo, hi)]


def _clashes(box: Bbox, leader: Path, placed: list[tuple[Bbox, Path]], avoid: Sequence[Bbox], frame: Bbox) -> int:
    """What a label at `box` with its `leader` line would hit, weighted: 4 for each earlier label or box to avoid
    it covers and for leaving the axes, 1 for each line crossing (its leader over a label, a leader or a box away
    from its own point; an earlier leader over it)."""
    start = leader.vertices[0]
    covers = sum(box.overlaps(b) for b in [*(b for b, _ in placed), *avoid]) + (not _inside(box, frame))
    crosses = sum(
        leader.intersects_bbox(b) or line.intersects_bbox(box) or leader.intersects_path(line) for b, line in placed
    )
    crosses += sum(leader.intersects_bbox(b) and not b.contains(*start) for b in avoid)
    return 4 * covers + crosses


def _put(ann: Annotation, dx: float, dy: float, renderer) -> Bbox:
    """Move a label to (dx, dy) points from its point (left of it when dx < 0); return its box."""
    ann.xyann = (dx, dy)
    ann.set_ha("left" if dx > 0 else "right")
    return _text_box(ann, renderer)


def place_labels(
    ax, xs: Sequence[float], ys: Sequence[float], texts: Sequence[str], avoid: Sequence[Bbox] = ()
) -> list[Annotation]:
    """One label per point with a leader line, at the first of OFFSETS where it stays inside the axes and meets no
    earlier label, leader line or box in `avoid` (else where it meets the fewest). Placed in pixels: call this
    after the axes' scale, limits and size are final."""
    renderer = ax.figure.canvas.get_renderer()
    frame, placed, labels = ax.get_window_extent(renderer), [], []
    for i in np.argsort(np.asarray(xs, dtype=float), kind="stable"):
        ann = ax.annotate(
            texts[i],
            (xs[i], ys[i]),
            xytext=(0, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
            arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.5", "shrinkB": 3},
        )
        point, clashes = ax.transData.transform((xs[i], ys[i])), {}
        for offset in OFFSETS:
            box = _put(ann, *offset, renderer)
            clashes[offset] = _clashes(box, Path([point, box.p0 + box.size / 2]), placed, avoid, frame)
            if not clashes[offset]:
                break
        else:  # nowhere free: the offset with the fewest clashes
            box = _put(ann, *min(clashes, key=clashes.get), renderer)
        placed.append((box, Path([point, box.p0 + box.size / 2])))
        labels.append(ann)
    return labels


def labelled_points(
    ax, df: pd.DataFrame, x: str, label: str, *, y: str = "accuracy", group: str | None = None
) -> list[Annotation]:
    """Points of `y` against `x` with 95% error bars, one colour per `group` (legend right of the axes), each
    point labelled by its `label` with no two labels overlapping. Set the x scale and limits first."""
    for name, g in df.groupby(group, sort=False) if group else [(None, df)]:
        ax.errorbar(g[x], g[y], yerr=_interval(g, y), fmt="o", ms=5, capsize=3, label=name)
    accuracy_axis(ax)
    if group:
        legend_outside(ax, title=group)
    ax.figure.canvas.draw()  # fixes the layout the labels are placed in
    avoid = _point_boxes(ax, df[x], df["ci_low"], df["ci_high"])
    return place_labels(ax, list(df[x]), list(df[y]), [str(t) for t in df[label]], avoid)


def abs_change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| of two uint8 (H, W, 3) images, in 8-bit levels."""
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def evolution_strip(frames: Sequence[tuple[int, np.ndarray]]):
    """Snapshots of one artwork (top row) above what changed since the previous one (bottom row); returns the figure.

    `frames`: (step, uint8 (H, W, 3)) in step order, the seed first. The bottom row shows max over channels of
    |frame - previous|, each scaled to its own maximum (printed); under it, the mean |change| in 8-bit levels
    from the previous snapshot and from the seed, so snapshots that look alike still show how far they moved.
    """
    fig, ax = plt.subplots(2, len(frames), figsize=(2 * len(frames), 5.0), squeeze=False)
    seed = frames[0][1]
    for j, (step, img) in enumerate(frames):
        ax[0, j].imshow(img)
        ax[0, j].set_title(f"step {step}", fontsize=10)
        if j:
            prev_step, prev = frames[j - 1]
            change = abs_change(img, prev)  # (H, W, 3)
            ax[1, j].imshow(change.max(axis=-1), cmap="magma", vmin=0, vmax=max(int(change.max()), 1))
            ax[1, j].set_title(f"|change| since step {prev_step}\n(colour scale 0-{change.max()})", fontsize=8)
            ax[1, j].set_xlabel(
                f"mean |change| {change.mean():.2f}\nfrom seed {abs_change(img, seed).mean():.1f}", fontsize=8
            )
        else:
            ax[1, j].text(
                0.5,
                0.5,
                "change since the\nprevious snapshot\n(8-bit levels)",
                ha="center",
                va="center",
                fontsize=8,
                transform=ax[1, j].transAxes,
            )
            ax[1, j].set_frame_on(False)
    for a in ax.ravel():
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout(h_pad=1.5)
    return fig
