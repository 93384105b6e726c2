"""Figure content on small tables: what the renderer draws (labels' bounding boxes, axis limits,
points, marker sizes, z-order), via :func:`varscore.analysis.layout.figure_facts`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from varscore.analysis import plots
from varscore.analysis.hsv import sign_agreement
from varscore.analysis.layout import figure_facts, place_labels


def test_placed_labels_do_not_overlap_where_fixed_offsets_do():
    plt = plots._pyplot()
    xs = np.array([0.0, 0.02, 0.04, 0.5, 0.51, 1.0])
    ys = np.array([0.0, 0.0, 0.01, 0.5, 0.5, 1.0])
    labels = ["C20orf187", "JAG1", "SLX4IP", "MKKS", "GENE5", "SNAP25"]
    naive, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(xs, ys)
    for x, y, label in zip(xs, ys, labels, strict=True):
        ax.annotate(label, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=7)
    assert figure_facts(naive)[0]["label_overlaps"]  # the check sees the overlap of the old figure
    placed, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(xs, ys)
    ax.set_xlim(-0.2, 1.2)
    ax.set_ylim(-0.2, 1.2)
    texts = place_labels(ax, xs, ys, labels)
    (facts,) = figure_facts(placed)
    assert facts["label_overlaps"] == [] and sorted(facts["texts"]) == sorted(labels)
    renderer = placed.canvas.get_renderer()
    axes_box = ax.get_window_extent(renderer)
    for text in texts:  # inside the axes and clear of every point
        box = text.get_window_extent(renderer)
        assert axes_box.x0 <= box.x0 and box.x1 <= axes_box.x1 and axes_box.y0 <= box.y0 and box.y1 <= axes_box.y1
        for px, py in ax.transData.transform(np.column_stack([xs, ys])):
            assert not (box.x0 < px < box.x1 and box.y0 < py < box.y1)
    plt.close("all")


def _ism() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    rows = []
    for model, width in (("seq", 8000), ("enet", 24000)):
        d = rng.integers(-width, width, 40)
        rows.append(
            pd.DataFrame(
                {
                    "model": model,
                    "gene": "G",
                    "key": [f"k{i}" for i in range(40)],
                    "distance_to_tss": d,
                    "delta": rng.normal(0, 0.1, 40),
                }
            )
        )
    ism = pd.concat(rows, ignore_index=True)
    return ism, ism.groupby("model").head(5)


def test_weights_figure_draws_the_first_model_on_top_with_one_legend_below():
    ism, hsvs = _ism()
    fig = plots.weights_vs_distance(ism, hsvs, ["seq", "enet"], set(), {"seq": 16000, "enet": 48000})
    (facts,) = figure_facts(fig)
    ax = fig.axes[0]
    assert facts["points"] == len(ism) + len(hsvs)
    assert ax.get_legend() is None and len(fig.legends) == 1  # no legend over the data
    z: dict[str, list[float]] = {}
    for collection in ax.collections:
        if collection.get_gid():
            z.setdefault(collection.get_gid(), []).append(collection.get_zorder())
    assert set(z) == {"seq", "enet"} and min(z["seq"]) > max(z["enet"])  # the first model on top
    assert facts["xlim"][1] >= 24.0  # the widest window
    assert any("16 kb" in t.get_text() for t in fig.legends[0].get_texts())
    plots._pyplot().close(fig)


def test_drivers_figure_keeps_ld_on_0_to_1_and_sizes_by_driver_count():
    summary = pd.DataFrame(
        {
            "model": ["seq"] * 3 + ["enet"] * 3,
            "gene": list("ABCABC"),
            "drivers": [1, 1, 3, 9, 25, 5],
            "mean_ld": [np.nan, np.nan, 0.2, 0.44, 0.14, 0.54],
            "r2": [0.49, 0.25, -0.01, 0.47, 0.11, 0.004],
        }
    )
    fig = plots.drivers_overview(summary, ["seq", "enet"], "enet")
    (facts,) = figure_facts(fig)
    assert facts["points"] == 6 and facts["label_overlaps"] == [] and facts["tick_overlaps"] == []
    assert set(facts["x_values"]) == {plots.NA_LD_X, 0.2, 0.44, 0.14, 0.54}
    assert facts["xlim"][0] < plots.NA_LD_X and facts["xlim"][1] <= 1.05
    assert len(facts["sizes"]) == 5  # 1, 3, 5, 9 and 25 drivers
    plots._pyplot().close(fig)


def test_share_axis_stops_at_one_and_sign_panel_says_too_few_pairs():
    rates = pd.DataFrame(
        {"model": ["m", "m"], "group": ["drivers", "controls"], "k": [2, 0], "n": [2, 9], "rate": [1.0, 0.0]}
    )
    fig = plots.rate_bars(rates, "t", "share")
    (facts,) = figure_facts(fig)
    assert facts["ylim"] == (0.0, 1.0) and facts["texts_outside_figure"] == []
    plots._pyplot().close(fig)
    pairs = pd.DataFrame(
        {
            "model": "seq",
            "linear_weight": [0.2, -0.3, 0.01, -0.02, 0.03],
            "model_weight": [1.8, -1.3, 0.001, 2e-4, -5e-4],
        }
    )
    agree = {"seq": sign_agreement(pairs["model_weight"], pairs["linear_weight"], 0.05)}
    every = {"seq": sign_agreement(pairs["model_weight"], pairs["linear_weight"], 0.0)}
    fig = plots.sign_agreement_plot(pairs, "enet", agree, every)
    (facts,) = figure_facts(fig)
    assert facts["points"] == 5 and facts["yscale"] == "symlog" and facts["tick_overlaps"] == []
    assert "too few pairs (n = 2 < 10)" in facts["title"] and "Fisher p" not in facts["title"].split("\n")[0]
    plots._pyplot().close(fig)
