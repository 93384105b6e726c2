"""Figures of the variant analyses (matplotlib, headless). Each function takes tidy tables and
returns a ``Figure``; :func:`save_figure` writes it as PNG and PDF."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from varscore.io.outputguard import atomic_file

MODEL_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def colour(models: Sequence[str], model: str) -> str:
    return MODEL_COLOURS[list(models).index(model) % len(MODEL_COLOURS)]


def save_figure(fig: Any, out_dir: Path, name: str) -> tuple[Path, Path]:
    """Write ``name.png`` (150 dpi) and ``name.pdf`` into ``out_dir``; close the figure."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    png, pdf = out_dir / f"{name}.png", out_dir / f"{name}.pdf"
    try:
        for path, options in ((png, {"dpi": 150}), (pdf, {})):
            with atomic_file(path) as tmp:
                fig.savefig(tmp, bbox_inches="tight", format=path.suffix[1:], **options)
    finally:
        plt.close(fig)
    return png, pdf


def _grid(n: int, ncols: int = 3, size: tuple[float, float] = (4.0, 3.4)) -> tuple[Any, list[Any]]:
    plt = _pyplot()
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def observed_vs_predicted(predictions: pd.DataFrame, models: Sequence[str]) -> Any:
    """Fig. 1a. ``predictions``: model, gene, person, observed, predicted (held-out people)."""
    genes = list(dict.fromkeys(predictions["gene"]))
    fig, axes = _grid(len(genes), size=(4.0, 4.0))
    for ax, gene in zip(axes, genes, strict=True):
        rows = predictions[predictions["gene"] == gene]
        for model in models:
            part = rows[rows["model"] == model]
            if part.empty:
                continue
            r = np.corrcoef(part["observed"], part["predicted"])[0, 1] if part["predicted"].std() > 0 else np.nan
            ax.scatter(
                part["predicted"],
                part["observed"],
                s=12,
                alpha=0.7,
                color=colour(models, model),
                label=f"{model} (r = {r:.2f})",
            )
        ax.set_title(gene)
        ax.set_xlabel("predicted expression (model units)")
        ax.set_ylabel("observed expression\n(inverse-normal)")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)  # below the data
    fig.suptitle(f"Observed vs predicted expression, held-out people (n = {predictions['person'].nunique()})")
    fig.tight_layout()
    return fig


def metric_between_models(metrics: pd.DataFrame, metric: str, reference: str, others: Sequence[str]) -> Any:
    """Fig. 1b/c. Per-gene ``metric`` (r2 or pearson) of ``reference`` (y) against each other model (x),
    with bootstrap 95% CIs as error bars where ``metrics`` has ``METRIC_lo``/``METRIC_hi``; gene
    labels placed by :func:`varscore.analysis.layout.place_labels` (no overlaps)."""
    from varscore.analysis.layout import place_labels

    label = {"r2": "R²", "pearson": "Pearson r"}[metric]
    fig, axes = _grid(len(others), ncols=3, size=(4.6, 4.4))
    wide = metrics.pivot_table(index="gene", columns="model", values=metric)
    has_ci = {f"{metric}_lo", f"{metric}_hi"} <= set(metrics.columns)
    for ax, other in zip(axes, others, strict=True):
        both = wide[[reference, other]].dropna()
        values = both.to_numpy().ravel()
        if has_ci:
            ci = metrics.set_index(["model", "gene"])
            for gene, row in both.iterrows():
                xlo, xhi = ci.loc[(other, gene), [f"{metric}_lo", f"{metric}_hi"]]
                ylo, yhi = ci.loc[(reference, gene), [f"{metric}_lo", f"{metric}_hi"]]
                ax.plot([xlo, xhi], [row[reference]] * 2, color="#9ecae1", lw=1, zorder=1)
                ax.plot([row[other]] * 2, [ylo, yhi], color="#9ecae1", lw=1, zorder=1)
        ax.scatter(both[other], both[reference], s=25, color="#1f77b4", zorder=3)
        lo, hi = (float(np.nanmin(values)), float(np.nanmax(values))) if len(values) else (0.0, 1.0)
        pad = 0.12 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="grey", lw=0.8, ls="--", zorder=0)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal", adjustable="box")
        better = int((both[reference] > both[other]).sum())
        ax.set_title(
            f"{reference} better on {better}/{len(both)} genes\n(dashed: y = x"
            + ("; lines: 95% bootstrap CIs)" if has_ci else ")"),
            fontsize=9,
        )
        ax.set_xlabel(f"{label}, {other}")
        ax.set_ylabel(f"{label}, {reference}")
        fig.tight_layout()
        place_labels(ax, both[other].to_numpy(), both[reference].to_numpy(), [str(g) for g in both.index])
    fig.suptitle(f"Per-gene {label} across held-out people")
    fig.tight_layout()
    return fig


def weights_vs_distance(
    ism: pd.DataFrame,
    hsvs: pd.DataFrame,
    models: Sequence[str],
    motif_keys: set[tuple[str, str, str]] | None = None,
    windows: dict[str, int] | None = None,
) -> Any:
    """Fig. 2a. ``ism``: model, gene, distance_to_tss, delta, key; ``hsvs`` the same for HSVs.
    ``motif_keys``: (model, gene, key) of HSVs with a motif change, drawn as light vertical lines.
    ``windows``: model -> input window (bp); each model scores only variants inside its window, and
    every window narrower than the widest is shaded. The first model is drawn on top (filled
    markers); the others underneath as open markers, so no model's points hide another's. One legend
    for the figure, below the panels."""
    genes = list(dict.fromkeys(ism["gene"]))
    fig, axes = _grid(len(genes), ncols=2, size=(6.0, 3.4))
    markers = ("o", "s", "^", "D", "v", "P", "X", "*")
    handles: dict[str, Any] = {}
    widest = max((windows or {}).values(), default=0)
    for ax, gene in zip(axes, genes, strict=True):
        for rank, model in enumerate(models):
            rows = ism[(ism["gene"] == gene) & (ism["model"] == model)]
            if rows.empty:
                continue
            c = colour(models, model)
            z = 2 * (len(models) - rank) + 2  # the first model on top
            filled = rank == 0
            marker = markers[rank % len(markers)]
            ax.scatter(
                rows["distance_to_tss"] / 1000,
                rows["delta"],
                s=7,
                marker=marker,
                zorder=z,
                facecolors=c if filled else "none",
                edgecolors=c,
                linewidths=0.6,
                alpha=0.6,
                gid=model,
            )
            top = hsvs[(hsvs["gene"] == gene) & (hsvs["model"] == model)]
            handle = ax.scatter(
                top["distance_to_tss"] / 1000,
                top["delta"],
                s=34,
                marker=marker,
                zorder=z + 1,
                facecolors=c if filled else "none",
                edgecolors=c if not filled else "black",
                linewidths=1.2 if not filled else 0.5,
                gid=model,
            )
            handles.setdefault(f"{model}: all variants (small), HSVs (large)", handle)
            if motif_keys:
                for _, hit in top.iterrows():
                    if (model, gene, hit["key"]) in motif_keys:
                        ax.axvline(hit["distance_to_tss"] / 1000, color=c, alpha=0.3, lw=1, zorder=1)
        for model, size in (windows or {}).items():
            if size < widest:
                span = ax.axvspan(-size / 2000, size / 2000, color=colour(models, model), alpha=0.08, zorder=0)
                handles.setdefault(f"{model}'s input window ({size / 1000:g} kb; it scores no variant outside)", span)
        ax.axhline(0, color="grey", lw=0.6, zorder=1)
        ax.axvline(0, color="black", lw=0.6, ls=":", zorder=1)
        if widest:
            ax.set_xlim(-widest / 2000 * 1.03, widest / 2000 * 1.03)
        ax.set_title(gene)
        ax.set_xlabel("distance to TSS (kb; upstream < 0)")
        ax.set_ylabel("variant weight\n(predicted alt − ref)")
    note = "; light vertical lines: HSVs that change a TF motif" if motif_keys else ""
    widths = ", ".join(f"{m} {w / 1000:g} kb" for m, w in (windows or {}).items())
    fig.suptitle(
        f"Variant weights vs distance to TSS (large markers: HSVs{note})"
        + (f"\ninput windows: {widths}" if widths else "")
    )
    fig.tight_layout(rect=(0, 0.07 if handles else 0, 1, 1))
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="lower center",
            ncol=min(len(handles), 2),
            fontsize=8,
            frameon=False,
        )
    return fig


def _symlog_axis(ax: Any, values: np.ndarray, max_ticks: int = 4) -> None:
    """A symmetric-log y axis for ``values``: linear below the 10th percentile of the non-zero
    magnitudes, at most ``max_ticks`` decades labelled on each side of 0."""
    from matplotlib.ticker import NullLocator

    magnitude = np.abs(values[np.isfinite(values)])
    magnitude = magnitude[magnitude > 0]
    if not len(magnitude):
        return
    linthresh = 10.0 ** math.floor(math.log10(float(np.quantile(magnitude, 0.1))))
    ax.set_yscale("symlog", linthresh=linthresh)
    top = math.ceil(math.log10(float(magnitude.max())))
    low = math.log10(linthresh)
    step = max(1, math.ceil((top - low) / max_ticks))
    decades = [10.0**k for k in range(top, int(low), -step)][:max_ticks]
    ticks = sorted([*(-d for d in decades), 0.0, *decades])
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.yaxis.set_minor_locator(NullLocator())


def sign_agreement_plot(
    pairs: pd.DataFrame, linear_name: str, agreements: dict[str, Any], all_pairs: dict[str, Any] | None = None
) -> Any:
    """Fig. 2c. ``pairs``: model, linear_weight, model_weight (variants with non-zero linear weight);
    ``agreements``: per model the :class:`~varscore.analysis.hsv.SignAgreement` of pairs where both
    weights exceed its threshold (no p-value below ``MIN_PAIRS``: "too few pairs"); ``all_pairs``:
    the same over every pair with both weights non-zero. The ISM axis is symmetric-log, so weights
    of very different sizes are all visible."""
    from varscore.analysis.matched import describe_p

    models = list(agreements)
    fig, axes = _grid(len(models), ncols=3, size=(4.6, 4.4))
    for ax, model in zip(axes, models, strict=True):
        rows = pairs[pairs["model"] == model]
        agree = agreements[model]
        threshold = agree.threshold
        strong = (rows["linear_weight"].abs() > threshold) & (rows["model_weight"].abs() > threshold)
        same = np.sign(rows["linear_weight"]) == np.sign(rows["model_weight"])
        for mask, colour_, label in (
            (~strong & same, "#a1d99b", "same sign"),
            (~strong & ~same, "#fcbba1", "opposite sign"),
            (strong & same, "#2ca02c", f"same sign, both |w| > {threshold}"),
            (strong & ~same, "#d62728", f"opposite sign, both |w| > {threshold}"),
        ):
            ax.scatter(
                rows.loc[mask, "linear_weight"],
                rows.loc[mask, "model_weight"],
                s=16 if "both" in label else 10,
                color=colour_,
                label=f"{label} ({int(mask.sum())})",
                zorder=3,
            )
        _symlog_axis(ax, rows["model_weight"].to_numpy(dtype=float))
        ax.axhline(0, color="grey", lw=0.6)
        ax.axvline(0, color="grey", lw=0.6)
        frac = "n/a" if agree.n == 0 else f"{agree.fraction:.0%}"
        lines = [
            f"{model}: |w| > {threshold}: {agree.agree}/{agree.n} agree ({frac}), {describe_p(agree.p_value, agree.n)}"
        ]
        if all_pairs and model in all_pairs:
            every = all_pairs[model]
            lines.append(
                f"all {every.n} pairs: {every.agree} agree ({every.fraction:.0%}), Fisher "
                f"{describe_p(every.p_value, every.n)}"
            )
        ax.set_title("\n".join(lines), fontsize=8)
        ax.set_xlabel(f"{linear_name} coefficient (per ALT allele)")
        ax.set_ylabel(f"{model} ISM (alt − ref; symlog)")
        ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    fig.suptitle(f"Sign agreement with {linear_name} (variants with non-zero coefficients)")
    fig.tight_layout()
    return fig


def maf_distribution(selected: pd.DataFrame, models: Sequence[str], what: str) -> Any:
    """Fig. 3d (HSVs) or driver MAFs: one box + points per model on a log10 MAF axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.8 + 1.3 * len(models), 4.0))
    data = [
        np.log10(np.clip(selected.loc[selected["model"] == m, "maf"].dropna().to_numpy(), 1e-4, 0.5)) for m in models
    ]
    ax.boxplot(data, widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)
    for i, (model, values) in enumerate(zip(models, data, strict=True), start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(values)), values, s=10, color=colour(models, model), alpha=0.7)
    ax.set_xticks(
        range(1, len(models) + 1), [f"{m}\n(n = {len(d)})" for m, d in zip(models, data, strict=True)], fontsize=8
    )
    ticks = [-4, -3, -2, -1, np.log10(0.5)]
    ax.set_yticks(ticks, ["0.01%", "0.1%", "1%", "10%", "50%"])
    ax.set_ylabel("minor allele frequency (log scale)")
    ax.set_title(f"MAF of {what}")
    fig.tight_layout()
    return fig


def rate_bars(rates: pd.DataFrame, title: str, ylabel: str) -> Any:
    """Grouped bars: ``rates`` has model, group (e.g. HSVs / matched controls), rate, k, n. The share
    axis stops at 1 (its top is the largest share plus room for the count labels, at most 1); the
    legend sits below the axes."""
    plt = _pyplot()
    models = list(dict.fromkeys(rates["model"]))
    groups = list(dict.fromkeys(rates["group"]))
    fig, ax = plt.subplots(figsize=(1.5 + 1.6 * len(models), 4.4))
    width = 0.8 / max(len(groups), 1)
    shades = ("#1f77b4", "#bbbbbb", "#ff7f0e", "#dddddd")
    largest = float(np.nanmax(rates["rate"].to_numpy(dtype=float), initial=0))
    top = min(1.0, max(0.05, largest * 1.25))
    for j, group in enumerate(groups):
        for i, model in enumerate(models):
            row = rates[(rates["model"] == model) & (rates["group"] == group)]
            if row.empty:
                continue
            rate = float(row["rate"].iloc[0])
            shown = 0 if math.isnan(rate) else rate
            x = i + (j - (len(groups) - 1) / 2) * width
            ax.bar(
                x,
                shown,
                width=width,
                color=shades[j % len(shades)],
                label=group if i == 0 else None,
                edgecolor="black",
                lw=0.4,
            )
            inside = shown > 0.85 * top  # no room above: label inside the bar
            ax.annotate(
                f"{int(row['k'].iloc[0])}/{int(row['n'].iloc[0])}",
                (x, shown),
                ha="center",
                va="top" if inside else "bottom",
                fontsize=7,
                xytext=(0, -2 if inside else 2),
                textcoords="offset points",
            )
    ax.set_xticks(range(len(models)), models, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.set_ylim(0, top)
    ax.legend(
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12),
        ncol=2,
        frameon=False,
        title="bar label: count / total",
        title_fontsize=7,
    )
    fig.tight_layout()
    return fig


NA_LD_X = -0.15  # where genes without a pairwise LD (fewer than 2 drivers) are drawn in Fig. 4e


def drivers_overview(summary: pd.DataFrame, models: Sequence[str], relative_to: str | None) -> Any:
    """Fig. 4e. ``summary``: model, gene, drivers, mean_ld, r2; ``relative_to``: the linear model, whose
    drivers are its non-zero coefficients.
    x: mean pairwise LD (r², 0..1) of a gene's drivers; genes with fewer than 2 drivers have no pair
    and are drawn in a separate "n/a" column left of the axis. Marker area is proportional to the
    number of drivers (size key in the legend); labels placed without overlaps."""
    from matplotlib.lines import Line2D

    from varscore.analysis.layout import place_labels

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    y_col = "r2"  # absolute: the linear model's own drivers (its non-zero coefficients) are shown too
    xs: list[float] = []
    ys: list[float] = []
    labels: list[str] = []
    areas: list[float] = []
    for model in models:
        rows = summary[summary["model"] == model]
        if rows.empty:
            continue
        ld = rows["mean_ld"].to_numpy(dtype=float)
        x = np.where(np.isnan(ld), NA_LD_X, ld)
        area = 18 * rows["drivers"].clip(lower=1).to_numpy(dtype=float)
        ax.scatter(x, rows[y_col], s=area, color=colour(models, model), alpha=0.7, edgecolor="black", lw=0.4, zorder=3)
        areas.extend(area)
        xs.extend(x)
        ys.extend(rows[y_col])
        labels.extend(f"{g} ({int(d)})" for g, d in zip(rows["gene"], rows["drivers"], strict=True))
    ax.axhline(0, color="grey", lw=0.6)
    ax.axvline((NA_LD_X + 0) / 2, color="grey", lw=0.6, ls=":")
    ax.set_xlim(NA_LD_X - 0.08, 1.02)
    ax.set_xticks([NA_LD_X, 0, 0.25, 0.5, 0.75, 1.0], ["n/a", "0", "0.25", "0.5", "0.75", "1"])
    if ys:
        lo, hi = float(np.nanmin(ys)), float(np.nanmax(ys))
        pad = 0.15 * ((hi - lo) or max(abs(hi), 0.05))
        ax.set_ylim(min(lo, 0) - pad, max(hi, 0) + pad)
    ax.set_xlabel("mean pairwise LD (r²) of a gene's drivers\n(n/a: fewer than 2 drivers, no pair to correlate)")
    ax.set_ylabel("R² (held-out people)")
    ax.set_title("Drivers: performance vs LD (marker area and label: number of drivers)", fontsize=10)
    model_keys = [
        Line2D(
            [],
            [],
            ls="",
            marker="o",
            color=colour(models, m),
            label=m + (" (non-zero coefficients)" if m == relative_to else ""),
        )
        for m in models
        if (summary["model"] == m).any()
    ]
    size_keys = [
        ax.scatter([], [], s=18 * n, color="white", edgecolor="black", lw=0.4, label=f"{n} driver(s)")
        for n in (1, 5, 20)
    ]
    ax.legend(
        handles=[*model_keys, *size_keys],
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        frameon=False,
        labelspacing=1.2,
    )
    fig.tight_layout()
    place_labels(ax, np.array(xs), np.array(ys, dtype=float), labels, sizes=areas)
    return fig


def distance_distribution(selected: pd.DataFrame, models: Sequence[str], what: str) -> Any:
    """Fig. 4f: distance to TSS of selected variants, one row of points per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 1.2 + 0.6 * len(models)))
    rng = np.random.default_rng(0)
    for i, model in enumerate(models):
        d = selected.loc[selected["model"] == model, "distance_to_tss"].to_numpy() / 1000
        ax.scatter(d, i + rng.uniform(-0.2, 0.2, len(d)), s=14, color=colour(models, model), alpha=0.8)
    ax.set_yticks(range(len(models)), [f"{m} (n = {(selected['model'] == m).sum()})" for m in models], fontsize=8)
    ax.axvline(0, color="black", lw=0.6, ls=":")
    ax.set_xlabel("distance to TSS (kb; upstream < 0)")
    ax.set_title(f"Distance to TSS of {what}", fontsize=10)
    ax.set_ylim(len(models) - 0.4, -0.6)  # first model on top
    fig.tight_layout()
    return fig


def state_enrichment_plot(per_state: pd.DataFrame, models: Sequence[str]) -> Any:
    """Fig. 3a. ``per_state``: model, state, observed, expected, log_enrichment."""
    plt = _pyplot()
    states = sorted(per_state["state"].unique(), key=str)
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(states) * max(1, len(models)) / 2, 4.2))
    width = 0.8 / max(len(models), 1)
    finite = per_state["log_enrichment"].replace([np.inf, -np.inf], np.nan)
    floor = float(np.nanmin(finite.to_numpy(dtype=float), initial=0.0)) - 0.5
    for j, model in enumerate(models):
        rows = per_state[per_state["model"] == model].set_index("state")
        for i, state in enumerate(states):
            if state not in rows.index:
                continue
            value = float(rows.loc[state, "log_enrichment"])
            x = i + (j - (len(models) - 1) / 2) * width
            shown = floor if value == -np.inf else value
            ax.bar(
                x,
                shown,
                width=width,
                color=colour(models, model),
                edgecolor="black",
                lw=0.4,
                hatch="//" if value == -np.inf else None,
                label=model if i == 0 else None,
            )
            ax.annotate(
                f"{int(rows.loc[state, 'observed'])}",
                (x, shown),
                ha="center",
                va="bottom" if shown >= 0 else "top",
                fontsize=7,
                xytext=(0, 2 if shown >= 0 else -2),
                textcoords="offset points",
            )
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(range(len(states)), states, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("ln(observed / expected HSVs)")
    ax.set_title("HSV enrichment across chromatin states\n(bar label: HSVs in the state; hatched: none)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def finemap_plot(per_gene: pd.DataFrame, overall: pd.DataFrame, models: Sequence[str]) -> Any:
    """Fig. 3c. Per-gene auROC and auPR of |weight| for fine-mapped eQTLs, per model."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(2.5 + 2.2 * len(models), 4.0))
    rng = np.random.default_rng(0)
    for ax, metric, label in ((axes[0], "auroc", "auROC"), (axes[1], "aupr", "auPR")):
        for i, model in enumerate(models):
            values = per_gene.loc[per_gene["model"] == model, metric].to_numpy()
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(values)), values, s=18, color=colour(models, model))
            pooled = overall.loc[overall["model"] == model, metric]
            if len(pooled):
                ax.hlines(float(pooled.iloc[0]), i - 0.3, i + 0.3, color="black", lw=1.5)
        ax.set_xticks(range(len(models)), models, fontsize=8, rotation=20, ha="right")
        ax.set_xlim(-0.6, len(models) - 0.4)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(f"{label} of |variant weight|")
        if metric == "auroc":
            ax.axhline(0.5, color="grey", lw=0.6, ls="--")
    fig.suptitle("Fine-mapped eQTLs vs distance-matched variants\n(points: genes; bar: all genes pooled)", fontsize=10)
    fig.tight_layout()
    return fig


def attribution_at_variants(values: pd.DataFrame, models: Sequence[str]) -> Any:
    """Fig. S10-like. ``values``: model, background (reference/personal), group (HSVs, HSV controls,
    drivers, driver controls), value (standardised attribution at a variant). Mean with a 95%
    bootstrap interval (1,000 resamples of variants)."""
    plt = _pyplot()
    backgrounds = list(dict.fromkeys(values["background"]))
    groups = list(dict.fromkeys(values["group"]))
    fig, axes = plt.subplots(
        1, len(backgrounds), figsize=(1.5 + 2.4 * len(models) * len(backgrounds), 4.0), squeeze=False
    )
    rng = np.random.default_rng(0)
    shades = ("#1f77b4", "#bbbbbb", "#ff7f0e", "#dddddd")
    for ax, background in zip(axes[0], backgrounds, strict=True):
        width = 0.8 / max(len(groups), 1)
        for i, model in enumerate(models):
            for j, group in enumerate(groups):
                v = (
                    values[
                        (values["model"] == model) & (values["background"] == background) & (values["group"] == group)
                    ]["value"]
                    .dropna()
                    .to_numpy()
                )
                if len(v) == 0:
                    continue
                boot = rng.choice(v, size=(1000, len(v))).mean(axis=1)
                lo, hi = np.percentile(boot, [2.5, 97.5])
                x = i + (j - (len(groups) - 1) / 2) * width
                ax.bar(
                    x,
                    v.mean(),
                    width=width,
                    color=shades[j % len(shades)],
                    edgecolor="black",
                    lw=0.4,
                    label=group if i == 0 else None,
                )
                ax.errorbar(x, v.mean(), yerr=[[v.mean() - lo], [hi - v.mean()]], color="black", capsize=2, lw=0.8)
                ax.annotate(
                    f"n={len(v)}", (x, 0), ha="center", va="top", fontsize=6, xytext=(0, -2), textcoords="offset points"
                )
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(range(len(models)), models, fontsize=8)
        ax.set_ylabel("standardised attribution (z-score)")
        ax.set_title(f"{background} sequence", fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle("Gradient × input at selected variants vs matched controls (mean, 95% bootstrap CI)", fontsize=10)
    fig.tight_layout()
    return fig
