"""Figures of the variant analyses (matplotlib, headless). Each function takes tidy tables and
returns a ``Figure``; :func:`save_figure` writes it as PNG and PDF."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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
    fig.savefig(png, dpi=150, bbox_inches="tight")
    fig.savefig(pdf, bbox_inches="tight")
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
    fig, axes = _grid(len(genes))
    for ax, gene in zip(axes, genes, strict=True):
        rows = predictions[predictions["gene"] == gene]
        for model in models:
            part = rows[rows["model"] == model]
            if part.empty:
                continue
            r = np.corrcoef(part["observed"], part["predicted"])[0, 1] if part["predicted"].std() > 0 else np.nan
            ax.scatter(part["predicted"], part["observed"], s=12, alpha=0.7, color=colour(models, model),
                       label=f"{model} (r = {r:.2f})")
        ax.set_title(gene)
        ax.set_xlabel("predicted expression (model units)")
        ax.set_ylabel("observed expression\n(inverse-normal)")
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"Observed vs predicted expression, held-out people (n = {predictions['person'].nunique()})")
    fig.tight_layout()
    return fig


def metric_between_models(metrics: pd.DataFrame, metric: str, reference: str, others: Sequence[str]) -> Any:
    """Fig. 1b/c. Per-gene ``metric`` (r2 or pearson) of ``reference`` (y) against each other model (x)."""
    label = {"r2": "R²", "pearson": "Pearson r"}[metric]
    fig, axes = _grid(len(others), ncols=3, size=(4.2, 4.0))
    wide = metrics.pivot_table(index="gene", columns="model", values=metric)
    for ax, other in zip(axes, others, strict=True):
        both = wide[[reference, other]].dropna()
        ax.scatter(both[other], both[reference], s=25, color="#1f77b4")
        for gene, row in both.iterrows():
            ax.annotate(str(gene), (row[other], row[reference]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        values = both.to_numpy().ravel()
        lo, hi = (float(np.nanmin(values)), float(np.nanmax(values))) if len(values) else (0.0, 1.0)
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="grey", lw=0.8, ls="--", label="y = x")
        better = int((both[reference] > both[other]).sum())
        ax.set_title(f"{reference} better on {better}/{len(both)} genes", fontsize=9)
        ax.set_xlabel(f"{label}, {other}")
        ax.set_ylabel(f"{label}, {reference}")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Per-gene {label} across held-out people")
    fig.tight_layout()
    return fig


def weights_vs_distance(ism: pd.DataFrame, hsvs: pd.DataFrame, models: Sequence[str],
                        motif_keys: set[tuple[str, str, str]] | None = None,
                        windows: dict[str, int] | None = None) -> Any:
    """Fig. 2a. ``ism``: model, gene, distance_to_tss, delta, key; ``hsvs`` the same for HSVs.
    ``motif_keys``: (model, gene, key) of HSVs with a motif change, drawn as light vertical lines.
    ``windows``: model -> window (bp); windows narrower than the widest are shaded."""
    genes = list(dict.fromkeys(ism["gene"]))
    fig, axes = _grid(len(genes), ncols=2, size=(6.0, 3.4))
    for ax, gene in zip(axes, genes, strict=True):
        for model in models:
            rows = ism[(ism["gene"] == gene) & (ism["model"] == model)]
            if rows.empty:
                continue
            c = colour(models, model)
            ax.scatter(rows["distance_to_tss"] / 1000, rows["delta"], s=6, color=c, alpha=0.35)
            top = hsvs[(hsvs["gene"] == gene) & (hsvs["model"] == model)]
            ax.scatter(top["distance_to_tss"] / 1000, top["delta"], s=30, color=c, edgecolor="black", lw=0.5,
                       label=f"{model} ({len(top)} HSVs)")
            if motif_keys:
                for _, hit in top.iterrows():
                    if (model, gene, hit["key"]) in motif_keys:
                        ax.axvline(hit["distance_to_tss"] / 1000, color=c, alpha=0.3, lw=1)
        widest = max((windows or {}).values(), default=0)
        for model, size in (windows or {}).items():
            if size < widest:
                ax.axvspan(-size / 2000, size / 2000, color=colour(models, model), alpha=0.08,
                           label=f"{model} window ({size / 1000:g} kb)")
        ax.axhline(0, color="grey", lw=0.6)
        ax.axvline(0, color="black", lw=0.6, ls=":")
        ax.set_title(gene)
        ax.set_xlabel("distance to TSS (kb; upstream < 0)")
        ax.set_ylabel("variant weight\n(predicted alt − ref)")
        ax.legend(fontsize=7, loc="best")
    note = "; light vertical lines: HSVs that change a TF motif" if motif_keys else ""
    fig.suptitle(f"Variant weights vs distance to TSS (large dots: HSVs{note})")
    fig.tight_layout()
    return fig


def sign_agreement_plot(pairs: pd.DataFrame, linear_name: str, agreements: dict[str, Any]) -> Any:
    """Fig. 2c. ``pairs``: model, linear_weight, model_weight (variants with non-zero linear weight)."""
    models = list(agreements)
    fig, axes = _grid(len(models), ncols=3, size=(4.2, 4.0))
    for ax, model in zip(axes, models, strict=True):
        rows = pairs[pairs["model"] == model]
        agree = agreements[model]
        threshold = agree.threshold
        strong = (rows["linear_weight"].abs() > threshold) & (rows["model_weight"].abs() > threshold)
        ax.scatter(rows.loc[~strong, "linear_weight"], rows.loc[~strong, "model_weight"], s=10, color="lightgrey",
                   label=f"|weight| ≤ {threshold} on either axis")
        same = strong & (np.sign(rows["linear_weight"]) == np.sign(rows["model_weight"]))
        ax.scatter(rows.loc[same, "linear_weight"], rows.loc[same, "model_weight"], s=18, color="#2ca02c",
                   label="same sign")
        ax.scatter(rows.loc[strong & ~same, "linear_weight"], rows.loc[strong & ~same, "model_weight"], s=18,
                   color="#d62728", label="opposite sign")
        ax.axhline(0, color="grey", lw=0.6)
        ax.axvline(0, color="grey", lw=0.6)
        frac = "n/a" if agree.n == 0 else f"{agree.fraction:.1%}"
        ax.set_title(f"{model}: {agree.agree}/{agree.n} agree ({frac})\nFisher p = {agree.p_value:.2g}", fontsize=9)
        ax.set_xlabel(f"{linear_name} coefficient (per ALT allele)")
        ax.set_ylabel(f"{model} ISM (alt − ref)")
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"Sign agreement with {linear_name} (variants with non-zero coefficients)")
    fig.tight_layout()
    return fig


def maf_distribution(selected: pd.DataFrame, models: Sequence[str], what: str) -> Any:
    """Fig. 3d (HSVs) or driver MAFs: one box + points per model on a log10 MAF axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.8 + 1.3 * len(models), 4.0))
    data = [np.log10(np.clip(selected.loc[selected["model"] == m, "maf"].dropna().to_numpy(), 1e-4, 0.5))
            for m in models]
    ax.boxplot(data, widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)
    for i, (model, values) in enumerate(zip(models, data, strict=True), start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(values)), values, s=10, color=colour(models, model), alpha=0.7)
    ax.set_xticks(range(1, len(models) + 1), [f"{m}\n(n = {len(d)})" for m, d in zip(models, data, strict=True)],
                  fontsize=8)
    ticks = [-4, -3, -2, -1, np.log10(0.5)]
    ax.set_yticks(ticks, ["0.01%", "0.1%", "1%", "10%", "50%"])
    ax.set_ylabel("minor allele frequency (log scale)")
    ax.set_title(f"MAF of {what}")
    fig.tight_layout()
    return fig


def rate_bars(rates: pd.DataFrame, title: str, ylabel: str) -> Any:
    """Grouped bars: ``rates`` has model, group (e.g. HSVs / matched controls), rate, k, n."""
    plt = _pyplot()
    models = list(dict.fromkeys(rates["model"]))
    groups = list(dict.fromkeys(rates["group"]))
    fig, ax = plt.subplots(figsize=(1.5 + 1.6 * len(models), 4.0))
    width = 0.8 / max(len(groups), 1)
    shades = ("#1f77b4", "#bbbbbb", "#ff7f0e", "#dddddd")
    for j, group in enumerate(groups):
        for i, model in enumerate(models):
            row = rates[(rates["model"] == model) & (rates["group"] == group)]
            if row.empty:
                continue
            rate = float(row["rate"].iloc[0])
            x = i + (j - (len(groups) - 1) / 2) * width
            ax.bar(x, 0 if math.isnan(rate) else rate, width=width, color=shades[j % len(shades)],
                   label=group if i == 0 else None, edgecolor="black", lw=0.4)
            ax.annotate(f"{int(row['k'].iloc[0])}/{int(row['n'].iloc[0])}", (x, 0 if math.isnan(rate) else rate),
                        ha="center", va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(models)), models, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.set_ylim(0, max(0.05, float(np.nanmax(rates["rate"].to_numpy(dtype=float), initial=0)) * 1.45))
    ax.legend(fontsize=8, loc="upper center", ncol=2, title="bar label: count / total", title_fontsize=7)
    fig.tight_layout()
    return fig


def drivers_overview(summary: pd.DataFrame, models: Sequence[str], relative_to: str | None) -> Any:
    """Fig. 4e. ``summary``: model, gene, drivers, mean_ld, r2 (and r2_linear when ``relative_to``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    y_col = "r2_relative" if relative_to else "r2"
    for model in models:
        if model == relative_to:
            continue  # zero by definition
        rows = summary[summary["model"] == model]
        if rows.empty:
            continue
        ld = rows["mean_ld"].fillna(0.0)
        ax.scatter(ld, rows[y_col], s=np.minimum(20 + 15 * rows["drivers"], 200), color=colour(models, model),
                   alpha=0.7, edgecolor="black", lw=0.4, label=model)
        for _, row in rows.iterrows():
            ax.annotate(f"{row['gene']} ({int(row['drivers'])})", (ld[row.name], row[y_col]), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xlabel("mean pairwise LD (r²) of selected variants (0 when fewer than 2)")
    ax.set_ylabel(f"R² minus {relative_to}'s R²" if relative_to else "R² (held-out people)")
    ax.set_title("Drivers: performance vs LD (dot size and label: number of drivers)", fontsize=10)
    ax.legend(fontsize=8, markerscale=0.6)
    fig.tight_layout()
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
            ax.bar(x, shown, width=width, color=colour(models, model), edgecolor="black", lw=0.4,
                   hatch="//" if value == -np.inf else None, label=model if i == 0 else None)
            ax.annotate(f"{int(rows.loc[state, 'observed'])}", (x, shown), ha="center",
                        va="bottom" if shown >= 0 else "top", fontsize=7, xytext=(0, 2 if shown >= 0 else -2),
                        textcoords="offset points")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(range(len(states)), states, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("ln(observed / expected HSVs)")
    ax.set_title("HSV enrichment across chromatin states\n(bar label: HSVs in the state; hatched: none)",
                 fontsize=10)
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
    fig, axes = plt.subplots(1, len(backgrounds), figsize=(1.5 + 2.4 * len(models) * len(backgrounds), 4.0),
                             squeeze=False)
    rng = np.random.default_rng(0)
    shades = ("#1f77b4", "#bbbbbb", "#ff7f0e", "#dddddd")
    for ax, background in zip(axes[0], backgrounds, strict=True):
        width = 0.8 / max(len(groups), 1)
        for i, model in enumerate(models):
            for j, group in enumerate(groups):
                v = values[(values["model"] == model) & (values["background"] == background)
                           & (values["group"] == group)]["value"].dropna().to_numpy()
                if len(v) == 0:
                    continue
                boot = rng.choice(v, size=(1000, len(v))).mean(axis=1)
                lo, hi = np.percentile(boot, [2.5, 97.5])
                x = i + (j - (len(groups) - 1) / 2) * width
                ax.bar(x, v.mean(), width=width, color=shades[j % len(shades)], edgecolor="black", lw=0.4,
                       label=group if i == 0 else None)
                ax.errorbar(x, v.mean(), yerr=[[v.mean() - lo], [hi - v.mean()]], color="black", capsize=2, lw=0.8)
                ax.annotate(f"n={len(v)}", (x, 0), ha="center", va="top", fontsize=6, xytext=(0, -2),
                            textcoords="offset points")
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(range(len(models)), models, fontsize=8)
        ax.set_ylabel("standardised attribution (z-score)")
        ax.set_title(f"{background} sequence", fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle("Gradient × input at selected variants vs matched controls (mean, 95% bootstrap CI)", fontsize=10)
    fig.tight_layout()
    return fig
