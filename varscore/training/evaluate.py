"""Evaluation across held-out people: per-gene R² (as sklearn ``r2_score``) and Pearson r (as
``scipy.stats.pearsonr``); HOP = the model's train genes, HOGP = genes it was not trained on."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from varscore.errors import InputError
from varscore.models.bundle import ModelBundle
from varscore.training.lightning import FinetuneData, GeneData, per_gene_metrics
from varscore.training.uncertainty import N_BOOT, SEED, bootstrap_indices, gene_uncertainty, pearson_p

if TYPE_CHECKING:
    from varscore.plugin.contracts import Backbone


@dataclass
class Evaluation:
    """``table``: one row per gene — model, gene, set (HOP/HOGP), people, r2, pearson, their
    bootstrap 95% CIs over the held-out people (``r2_lo``/``r2_hi``, ``pearson_lo``/``pearson_hi``;
    see :mod:`varscore.training.uncertainty`) and ``pearson_p`` (two-sided). ``predictions``: model, gene,
    person, observed, predicted (what the table was computed from; paired comparisons use it)."""

    table: pd.DataFrame
    predictions: pd.DataFrame | None = None

    def summary(self) -> pd.DataFrame:
        """Means over genes per model and gene set, with the genes used and the NaN count."""
        from varscore.training.uncertainty import summarise

        return summarise(self.table)


def evaluate_bundle(
    bundle: ModelBundle,
    data: FinetuneData,
    people: Sequence[int] | None = None,
    batch_size: int = 8,
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> Evaluation:
    """Per-gene metrics of ``bundle`` on ``people`` (default: the data's test people), with
    bootstrap CIs from ``n_boot`` resamples of those people (``seed``); coverage-track bundles are
    evaluated by :func:`evaluate_track_bundle`."""
    if bundle.spec.output_mode.name == "track":
        return evaluate_track_bundle(bundle, data, people, batch_size, n_boot, seed)
    backbone = bundle.backbone()
    mode = bundle.output_mode()
    if backbone.window_size != data.genes[0].windows.reference.shape[0]:
        raise InputError(
            f"Model '{bundle.name}' takes {backbone.window_size}-bp windows; the cohort was loaded with "
            f"{data.genes[0].windows.reference.shape[0]}-bp windows."
        )
    chosen, trained = _held_out(bundle, data, people)
    indices = bootstrap_indices(len(chosen), n_boot, seed)
    rows, predictions = [], []
    for gene_data in data.genes:
        if not backbone.has_gene(gene_data.gene.gene_id):
            continue  # a per-gene (genotype) model has nothing to say about other genes
        pred = backbone.predict_people(gene_data, chosen, data.train, mode, batch_size)
        rows.append(_metrics_row(bundle, gene_data, trained, pred, gene_data.expression[chosen], indices))
        predictions.append(_prediction_rows(bundle, gene_data, data, chosen, pred))
    return Evaluation(pd.DataFrame(rows), pd.concat(predictions, ignore_index=True) if predictions else None)


def _prediction_rows(
    bundle: ModelBundle, gene_data: GeneData, data: FinetuneData, chosen: np.ndarray, predicted: np.ndarray
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": bundle.name,
            "gene": gene_data.gene.label,
            "person": [data.people[i] for i in chosen],
            "observed": np.asarray(gene_data.expression[chosen], np.float64),
            "predicted": np.asarray(predicted, np.float64),
        }
    )


def compare_evaluations(
    reference: Evaluation, other: Evaluation, n_boot: int = N_BOOT, seed: int = SEED
) -> pd.DataFrame:
    """Paired per-gene differences ``other − reference`` (R² and Pearson r) on the people both were
    evaluated on, with bootstrap CIs (the same resamples of people for both models) and a two-sided
    bootstrap p-value (``d_r2_p``, ``d_pearson_p``); see :func:`varscore.training.uncertainty.paired_difference`."""
    from varscore.training.uncertainty import paired_difference

    if reference.predictions is None or other.predictions is None:
        raise InputError("Paired comparisons need the predictions of both evaluations.")
    rows = []
    a_all, b_all = reference.predictions, other.predictions
    for gene in dict.fromkeys(a_all["gene"]):
        a = a_all[a_all["gene"] == gene].set_index("person")
        b = b_all[b_all["gene"] == gene].set_index("person")
        if b.empty:
            continue
        people = [p for p in a.index if p in b.index]
        if len(people) < 2:
            continue
        observed = a.loc[people, "observed"].to_numpy()
        indices = bootstrap_indices(len(people), n_boot, seed)
        rows.append(
            {
                "model": str(b["model"].iloc[0]),
                "reference": str(a["model"].iloc[0]),
                "gene": gene,
                "people": len(people),
                **paired_difference(
                    observed, a.loc[people, "predicted"].to_numpy(), b.loc[people, "predicted"].to_numpy(), indices
                ),
            }
        )
    return pd.DataFrame(rows)


def _held_out(bundle: ModelBundle, data: FinetuneData, people: Sequence[int] | None) -> tuple[np.ndarray, set[str]]:
    """The people to evaluate on (default: the data's test people) and the bundle's train genes."""
    chosen = np.asarray(data.test if people is None else people, dtype=np.int64)
    if len(chosen) < 2:
        raise InputError(f"Evaluation needs at least 2 held-out people; got {len(chosen)}.")
    trained = bundle.spec.trained_genes
    return chosen, trained


def _metrics_row(
    bundle: ModelBundle,
    gene_data: GeneData,
    trained: set[str],
    predicted: np.ndarray,
    observed: np.ndarray,
    indices: np.ndarray,
) -> dict[str, Any]:
    """One gene's row: model, gene, HOP (trained gene) or HOGP, people, R² and Pearson with
    bootstrap CIs and the Pearson p-value."""
    ((r2, pearson),) = per_gene_metrics(np.zeros(len(observed), dtype=np.int64), predicted, observed, 1)
    spread = gene_uncertainty(observed, predicted, indices)
    replicate = bundle.spec.folds.replicate if bundle.spec.folds is not None else None
    return {
        "model": bundle.name,
        "gene": gene_data.gene.label,
        "set": "HOP" if gene_data.gene.gene_id in trained else "HOGP",
        "people": len(observed),
        "r2": r2,
        "pearson": pearson if not math.isnan(pearson) else np.nan,
        "r2_lo": spread["r2_lo"],
        "r2_hi": spread["r2_hi"],
        "pearson_lo": spread["pearson_lo"],
        "pearson_hi": spread["pearson_hi"],
        "pearson_p": pearson_p(pearson, len(observed)) if not math.isnan(pearson) else np.nan,
        "replicate": np.nan if replicate is None else int(replicate),
    }


# --- coverage-track models ---


TSS_RANK_BP = 1_000  # heat-map rows are ranked by observed coverage within this distance of the TSS


@dataclass
class CoverageComparison:
    """Observed and predicted coverage of one gene's window for held-out people.

    ``observed``, ``predicted``: ``(P, bins)``; ``people``: their ids (rows); ``window_start``:
    0-based start of the window; ``bin_size`` in bp. Per-bin statistics across people are
    properties: :attr:`bin_pearson` ``(bins,)``, :meth:`cov` ``(bins,)``.
    """

    gene: str
    people: list[str]
    observed: np.ndarray
    predicted: np.ndarray
    chrom: str
    window_start: int
    bin_size: int
    tss: int

    @property
    def bin_pearson(self) -> np.ndarray:
        """Pearson r across people of observed vs predicted coverage in each bin, ``(bins,)``
        (NaN where either side is constant)."""
        return columnwise_pearson(self.observed, self.predicted)

    @staticmethod
    def cov(values: np.ndarray) -> np.ndarray:
        """Coefficient of variation across people per bin, ``std (ddof=1) / mean``: ``(P, bins)`` ->
        ``(bins,)`` (NaN where the mean is 0)."""
        mean = values.mean(axis=0)
        std = values.std(axis=0, ddof=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(mean > 0, std / np.where(mean > 0, mean, 1.0), np.nan)


def columnwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each column of ``a`` with the same column of ``b`` (``(P, K)`` each) ->
    ``(K,)``; NaN where a column is constant."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    da, db = a - a.mean(axis=0), b - b.mean(axis=0)
    denominator = np.sqrt((da**2).sum(axis=0) * (db**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (da * db).sum(axis=0) / np.where(denominator > 0, denominator, 1.0), np.nan)


def compare_coverage(
    bundle: ModelBundle,
    backbone: Backbone,
    data: FinetuneData,
    gene_index: int,
    people: np.ndarray,
    batch_size: int = 8,
) -> CoverageComparison:
    """Predicted (the bundle's track) and observed coverage of ``people`` for one gene."""
    from varscore.types import tss_window

    gene_data = data.genes[gene_index]
    if gene_data.coverage is None:
        raise InputError(f"No observed coverage for {gene_data.gene.label}: pass --coverage.")
    track = int(bundle.spec.output_mode.params.get("track", 0))
    out = []
    for start in range(0, len(people), batch_size):
        batch = gene_data.windows.batch(people[start : start + batch_size]).astype(np.float32, copy=False)
        out.append(backbone.predict(batch)[:, :, track])
    window = tss_window(gene_data.gene, gene_data.windows.reference.shape[0])
    return CoverageComparison(
        gene=gene_data.gene.label,
        people=[data.people[i] for i in people],
        observed=np.asarray(gene_data.coverage[people], dtype=np.float64),
        predicted=np.concatenate(out).astype(np.float64),
        chrom=window.chrom,
        window_start=window.start,
        bin_size=int(bundle.spec.bin_size or backbone.bin_size),
        tss=gene_data.gene.tss,
    )


def evaluate_track_bundle(
    bundle: ModelBundle,
    data: FinetuneData,
    people: Sequence[int] | None = None,
    batch_size: int = 8,
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> Evaluation:
    """Per-gene metrics of a coverage-track bundle across held-out people: ``r2``/``pearson`` of
    each person's total coverage over the window, ``bin_pearson`` (mean over bins of the per-bin
    Pearson r across people, bins where both sides vary), and the coefficient of variation across
    people per bin: ``cov_observed``/``cov_predicted`` (means over bins) and ``cov_pearson`` (Pearson
    r of the two CoV profiles over bins)."""
    backbone = bundle.backbone()
    chosen, trained = _held_out(bundle, data, people)
    indices = bootstrap_indices(len(chosen), n_boot, seed)
    rows, predictions = [], []
    for index, gene_data in enumerate(data.genes):
        comparison = compare_coverage(bundle, backbone, data, index, chosen, batch_size)
        row = _metrics_row(
            bundle, gene_data, trained, comparison.predicted.sum(axis=1), comparison.observed.sum(axis=1), indices
        )
        predictions.append(
            pd.DataFrame(
                {
                    "model": bundle.name,
                    "gene": gene_data.gene.label,
                    "person": comparison.people,
                    "observed": comparison.observed.sum(axis=1),
                    "predicted": comparison.predicted.sum(axis=1),
                }
            )
        )
        cov_obs, cov_pred = CoverageComparison.cov(comparison.observed), CoverageComparison.cov(comparison.predicted)
        both = np.isfinite(cov_obs) & np.isfinite(cov_pred)
        cov_r = columnwise_pearson(cov_obs[both, None], cov_pred[both, None])[0] if both.sum() > 2 else math.nan
        per_bin = comparison.bin_pearson
        rows.append(
            {
                **row,
                "bin_pearson": float(np.nanmean(per_bin)) if np.isfinite(per_bin).any() else np.nan,
                "cov_observed": float(np.nanmean(cov_obs)) if np.isfinite(cov_obs).any() else np.nan,
                "cov_predicted": float(np.nanmean(cov_pred)) if np.isfinite(cov_pred).any() else np.nan,
                "cov_pearson": cov_r,
            }
        )
    return Evaluation(pd.DataFrame(rows), pd.concat(predictions, ignore_index=True) if predictions else None)


def plot_coverage(comparison: CoverageComparison, path: str | Path, title: str | None = None) -> Path:
    """Heat maps of observed and predicted coverage (people × bins, one colour scale, people
    sorted from highest to lowest observed coverage within ``TSS_RANK_BP`` of the TSS), each with
    its coefficient of variation across people beneath (each on its own scale); written as PNG to
    ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    tss_bin = (comparison.tss - 1 - comparison.window_start) // comparison.bin_size
    reach = max(TSS_RANK_BP // comparison.bin_size, 0)
    near_tss = comparison.observed[:, max(tss_bin - reach, 0) : tss_bin + reach + 1].mean(axis=1)
    order = np.argsort(-near_tss, kind="stable")
    observed, predicted = np.log1p(comparison.observed[order]), np.log1p(comparison.predicted[order])
    n_bins = observed.shape[1]
    kb = (comparison.window_start + comparison.bin_size * np.arange(n_bins + 1) - (comparison.tss - 1)) / 1000
    vmax = float(np.percentile(np.concatenate([observed.ravel(), predicted.ravel()]), 99.5)) or 1.0
    figure, axes = plt.subplots(
        4, 2, figsize=(11, 8), sharex="col", width_ratios=[40, 1], height_ratios=[3, 1, 3, 1], layout="constrained"
    )
    for row, (label, values, raw) in enumerate(
        (("Observed", observed, comparison.observed), ("Predicted", predicted, comparison.predicted))
    ):
        heat = axes[2 * row, 0].pcolormesh(
            kb, np.arange(values.shape[0] + 1), values, cmap="BuPu", vmin=0, vmax=vmax, shading="flat"
        )
        axes[2 * row, 0].invert_yaxis()
        axes[2 * row, 0].yaxis.set_major_locator(MaxNLocator(integer=True))
        axes[2 * row, 0].set_ylabel(f"{label}\nheld-out people\n(rank: observed near TSS)")
        figure.colorbar(heat, cax=axes[2 * row, 1], label="log(1 + depth)")
        cov = CoverageComparison.cov(raw)
        centres = (kb[:-1] + kb[1:]) / 2
        axes[2 * row + 1, 0].plot(centres, cov, color="#5e3c99", linewidth=0.8)
        axes[2 * row + 1, 0].set_ylabel(f"CoV\n({label.lower()})")
        top = float(np.nanmax(cov)) if np.isfinite(cov).any() else 0.0
        axes[2 * row + 1, 0].set_ylim(0, top * 1.1 or 1.0)
        axes[2 * row + 1, 1].axis("off")
    for ax in axes[:, 0]:
        ax.axvline(0, color="#e66101", linewidth=0.8, linestyle="--")
    axes[3, 0].set_xlabel(f"position relative to the TSS of {comparison.gene} (kb, {comparison.chrom})")
    figure.suptitle(
        title
        or f"{comparison.gene}: observed vs predicted coverage of {len(comparison.people)} "
        "held-out people (dashed: TSS; CoV = coefficient of variation across people)"
    )
    from varscore.io.outputguard import atomic_file

    path = Path(path)
    try:
        with atomic_file(path) as tmp:
            figure.savefig(tmp, dpi=130, format=path.suffix.lstrip(".").lower() or "png")
    finally:
        plt.close(figure)
    return path
