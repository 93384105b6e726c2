"""Figure layout helpers: point labels placed without overlaps (greedy repulsion over an offset
table, measured with the renderer's text bounding boxes), and :func:`figure_facts`, what a
figure shows (axis limits, points per axes, label overlaps, data under legends) so that tests and
the report check content rather than file size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# offsets (points) tried in order: close around the point first, then further out with a leader line
_RINGS = (6.0, 14.0, 24.0, 36.0, 50.0)
_ANGLES = (45, -45, 135, -135, 0, 180, 90, -90, 22, -22, 158, -158)


def _renderer(fig: Any) -> Any:
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _overlap(a: Any, b: Any, pad: float = 1.0) -> bool:
    return bool(a.x0 < b.x1 + pad and b.x0 < a.x1 + pad and a.y0 < b.y1 + pad and b.y0 < a.y1 + pad)


def place_labels(
    ax: Any,
    xs: Sequence[float] | np.ndarray,
    ys: Sequence[float] | np.ndarray,
    labels: Sequence[str],
    fontsize: float = 7,
    avoid: Sequence[Any] = (),
    sizes: Sequence[float] | None = None,
) -> list[Any]:
    """Annotate points ``(xs[i], ys[i])`` with ``labels[i]`` so that no two labels overlap, no
    label covers a labelled point or leaves the axes: each label takes the first offset of
    :data:`_RINGS` × :data:`_ANGLES` that is free (a grey leader line beyond the first ring).
    ``avoid``: other artists' display bounding boxes to keep clear of; ``sizes``: the points' marker
    areas (points², as ``scatter``'s ``s``), so that labels clear big markers. Returns the annotations."""
    fig = ax.figure
    renderer = _renderer(fig)
    axes_box = ax.get_window_extent(renderer)
    points = ax.transData.transform(np.column_stack([xs, ys])) if len(xs) else np.zeros((0, 2))
    radius = np.sqrt(np.asarray(sizes, float)) / 2 if sizes is not None else np.full(len(points), 3.0)  # points
    to_display = fig.dpi / 72
    taken: list[Any] = list(avoid)
    out = []
    for i in np.argsort(-points[:, 1], kind="stable") if len(points) else []:
        best, best_cost = None, None
        for ring in _RINGS:
            for angle in _ANGLES:
                reach = ring + float(radius[i])
                dx, dy = reach * np.cos(np.radians(angle)), reach * np.sin(np.radians(angle))
                ha = "left" if dx > 1 else "right" if dx < -1 else "center"
                va = "bottom" if dy > 1 else "top" if dy < -1 else "center"
                text = ax.annotate(
                    labels[i],
                    (xs[i], ys[i]),
                    xytext=(dx, dy),
                    textcoords="offset points",
                    fontsize=fontsize,
                    ha=ha,
                    va=va,
                )
                box = text.get_window_extent(renderer)
                cost = sum(_overlap(box, other) for other in taken)
                cost += sum(
                    box.x0 - r * to_display < px < box.x1 + r * to_display
                    and box.y0 - r * to_display < py < box.y1 + r * to_display
                    for (px, py), r in zip(points, radius, strict=True)
                )
                inside = (
                    box.x0 >= axes_box.x0 and box.x1 <= axes_box.x1 and box.y0 >= axes_box.y0 and box.y1 <= axes_box.y1
                )
                cost += 0 if inside else 5
                if best_cost is None or cost < best_cost:
                    if best is not None:
                        best[0].remove()
                    best, best_cost = (text, box, ring), cost
                else:
                    text.remove()
                if best_cost == 0:
                    break
            if best_cost == 0:
                break
        assert best is not None
        text, box, ring = best
        if ring > _RINGS[0]:
            ax.annotate(
                "",
                (xs[i], ys[i]),
                xytext=text.get_position(),
                textcoords=text.get_anncoords(),
                arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.5, "shrinkA": 0, "shrinkB": 2},
            )
        taken.append(box)
        out.append(text)
    return out


def _points(ax: Any) -> np.ndarray:
    """Data coordinates of every scatter point of ``ax`` ``(N, 2)``."""
    from matplotlib.collections import PathCollection

    parts = [np.asarray(c.get_offsets(), dtype=float) for c in ax.collections if isinstance(c, PathCollection)]
    parts = [part for part in parts if len(part)]
    return np.concatenate(parts) if parts else np.zeros((0, 2))


def figure_facts(fig: Any) -> list[dict[str, Any]]:
    """Per visible axes: title, x/y labels, limits and scales, ``points`` (scatter points),
    ``sizes`` (distinct marker sizes), ``points_outside`` (outside the limits), ``label_overlaps``
    (pairs of overlapping texts drawn in the axes: annotations), ``tick_overlaps`` (of tick labels),
    ``texts_outside_figure``, and ``points_under_legend`` (points inside the legend's box)."""
    from matplotlib.collections import PathCollection

    renderer = _renderer(fig)
    figure_box = fig.bbox
    facts = []
    for ax in fig.axes:
        if not ax.get_visible() or not ax.has_data() and not ax.texts:
            continue
        pts = _points(ax)
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        lo_x, hi_x, lo_y, hi_y = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
        outside = int(((pts[:, 0] < lo_x) | (pts[:, 0] > hi_x) | (pts[:, 1] < lo_y) | (pts[:, 1] > hi_y)).sum())
        texts = [t for t in ax.texts if t.get_visible() and t.get_text()]
        boxes = [t.get_window_extent(renderer) for t in texts]
        overlaps = [
            (texts[i].get_text(), texts[j].get_text())
            for i in range(len(boxes))
            for j in range(i + 1, len(boxes))
            if _overlap(boxes[i], boxes[j], pad=0.0)
        ]
        outside_fig = [
            t.get_text()
            for t, b in zip(texts, boxes, strict=True)
            if b.x0 < figure_box.x0 - 1
            or b.x1 > figure_box.x1 + 1
            or b.y0 < figure_box.y0 - 1
            or b.y1 > figure_box.y1 + 1
        ]
        ticks = [
            t
            for axis, (a, b) in ((ax.xaxis, (lo_x, hi_x)), (ax.yaxis, (lo_y, hi_y)))
            for loc, t in zip(axis.get_majorticklocs(), axis.get_majorticklabels(), strict=False)
            if t.get_visible() and t.get_text() and a - 1e-12 <= loc <= b + 1e-12
        ]
        tick_boxes = [t.get_window_extent(renderer) for t in ticks]
        tick_overlaps = [
            (ticks[i].get_text(), ticks[j].get_text())
            for i in range(len(ticks))
            for j in range(i + 1, len(ticks))
            if _overlap(tick_boxes[i], tick_boxes[j], pad=0.0)
        ]
        legend = ax.get_legend()
        under = 0
        if legend is not None and len(pts):
            box = legend.get_window_extent(renderer)
            display = ax.transData.transform(pts)
            under = int(
                (
                    (display[:, 0] > box.x0)
                    & (display[:, 0] < box.x1)
                    & (display[:, 1] > box.y0)
                    & (display[:, 1] < box.y1)
                ).sum()
            )
        sizes = sorted(
            {
                round(float(s), 3)
                for c in ax.collections
                if isinstance(c, PathCollection) and len(np.asarray(c.get_offsets()))
                for s in np.atleast_1d(c.get_sizes())
            }
        )
        facts.append(
            {
                "title": ax.get_title(),
                "xlabel": ax.get_xlabel(),
                "ylabel": ax.get_ylabel(),
                "xlim": (float(x0), float(x1)),
                "ylim": (float(y0), float(y1)),
                "xscale": ax.get_xscale(),
                "yscale": ax.get_yscale(),
                "points": len(pts),
                "points_outside": outside,
                "sizes": sizes,
                "x_values": sorted({round(float(v), 6) for v in pts[:, 0]}) if len(pts) else [],
                "texts": [t.get_text() for t in texts],
                "label_overlaps": overlaps,
                "tick_overlaps": tick_overlaps,
                "texts_outside_figure": outside_fig,
                "points_under_legend": under,
            }
        )
    return facts
