"""Evaluation across held-out people: per-gene R² (as sklearn ``r2_score``) and Pearson r (as
``scipy.stats.pearsonr``); HOP = the model's train genes, HOGP = genes it was not trained on.

The workflows behind ``varscore evaluate`` and ``varscore plot-coverage``, usable from Python:

    from varscore.training.cohort import CohortInputs
    from varscore.training.evaluate import EvaluateJob, run_evaluation

    result = run_evaluation(EvaluateJob(CohortInputs(vcf, expression, genes, fasta), models=["my-model"]))
    result.table, result.summary, result.paired
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from varscore.errors import InputError
from varscore.models.bundle import ModelBundle, load_bundle
from varscore.training.cohort import CohortInputs, held_out_people
from varscore.training.lightning import FinetuneData, GeneData, load_cohort, per_gene_metrics
from varscore.training.uncertainty import (
    N_BOOT,
    SEED,
    bootstrap_indices,
    gene_uncertainty,
    pearson_p,
    replicate_summary,
    summarise,
)

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
        return summarise(self.table)


def evaluate_bundle(
    bundle: ModelBundle,
    data: FinetuneData,
    people: Sequence[int] | None = None,
    batch_size: int = 8,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    progress: bool = False,
) -> Evaluation:
    """Per-gene metrics of ``bundle`` on ``people`` (default: the data's test people), with
    bootstrap CIs from ``n_boot`` resamples of those people (``seed``); coverage-track bundles are
    evaluated by :func:`evaluate_track_bundle`. ``progress``: see :mod:`varscore.io.progress`."""
    from varscore.io.progress import progress_iter

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
    for gene_data in progress_iter(data.genes, f"evaluate {bundle.name}", "genes", progress):
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


# --- the evaluate workflow ---

#: The per-gene columns ``varscore evaluate`` prints (all of them go to the TSV).
SHOWN_COLUMNS = (
    "model",
    "gene",
    "set",
    "people",
    "r2",
    "r2_lo",
    "r2_hi",
    "pearson",
    "pearson_lo",
    "pearson_hi",
    "pearson_p",
)
PAIRED_COLUMNS = ("model", "gene", "people", "d_r2", "d_r2_lo", "d_r2_hi", "d_pearson", "d_pearson_lo", "d_pearson_hi")


@dataclass
class EvaluateJob:
    """One evaluation: the ``models`` (bundle names or directories) and the ``compare`` bundles on
    the same held-out people (``people_file``, one per line; default: the first model's test
    people), with ``n_boot`` bootstrap resamples (``seed``) for the CIs. ``inputs.coverage`` is the
    observed coverage coverage-track models need; ``inputs.folds`` defaults to the first model's.
    With ``replicates`` the ``models`` are fits on different fold replicates, each evaluated on its
    own test people. With ``all_people`` (another cohort than the models were trained on) every
    person of ``inputs`` is evaluated and the models' folds are not used. ``output``: the per-gene
    TSV (with ``.provenance.json`` and, with ``compare``, ``.compare.tsv`` beside it); ``command`` is
    recorded in the provenance (None: this process's); ``progress``: see :mod:`varscore.io.progress`."""

    inputs: CohortInputs
    models: Sequence[str | Path]
    compare: Sequence[str | Path] = ()
    people_file: Path | None = None
    output: Path | None = None
    batch_size: int = 8
    n_boot: int = N_BOOT
    seed: int = SEED
    replicates: bool = False
    command: Sequence[str] | None = None
    all_people: bool = False  # another cohort: every person of it, the models' folds not used
    progress: bool = False


@dataclass
class EvaluationResult:
    """What :func:`run_evaluation` found. ``table``: one row per model and gene (see
    :class:`Evaluation`); ``summary``: means per model and gene set; ``paired``: each compared
    model's paired difference from ``reference`` per gene (empty without ``compare``);
    ``replicate_summary``: mean ± sd over fold replicates (None without ``replicates``);
    ``written``: the files written."""

    table: pd.DataFrame
    summary: pd.DataFrame
    paired: pd.DataFrame
    reference: str
    n_boot: int
    seed: int
    replicate_summary: pd.DataFrame | None = None
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What ``varscore evaluate`` prints: the per-gene table, the summary, the paired
        differences and the replicate summary."""
        shown = self.table[[c for c in SHOWN_COLUMNS if c in self.table]]
        blocks = [
            *self.notes,
            shown.to_string(index=False, float_format=lambda v: f"{v:.3g}"),
            f"\nmean per model and gene set (over genes; r2_n/pearson_n genes used, *_nan genes NaN = constant "
            f"predictions; CIs: {self.n_boot} bootstrap resamples of people, seed {self.seed}):\n"
            + self.summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"),
        ]
        if not self.paired.empty:
            blocks.append(
                f"\npaired difference from {self.reference} (model minus {self.reference}; 95% bootstrap CI):\n"
                + self.paired[list(PAIRED_COLUMNS)].to_string(index=False, float_format=lambda v: f"{v:.3f}")
            )
        if self.replicate_summary is not None:
            blocks.append(
                "\nover fold replicates (mean ± sd of the per-replicate means over genes):\n"
                + self.replicate_summary.to_string(index=False, float_format=lambda v: f"{v:.3f}")
            )
        return [line for block in blocks for line in block.split("\n")]


def run_evaluation(job: EvaluateJob) -> EvaluationResult:
    """Evaluate ``job``'s models on the held-out people (one cohort load per window and bin size),
    compare the ``compare`` models with the first, and write ``job.output`` when given."""
    if not job.models:
        raise InputError("Evaluation needs at least one model; got none.")
    bundles = [load_bundle(m) for m in (*job.models, *job.compare)]
    first, own_fits = bundles[0], {b.name for b in bundles[: len(job.models)]}
    if job.all_people and job.people_file is not None:
        raise InputError("Give --people FILE or --all-people, not both.")
    inputs = job.inputs if job.all_people else _with_carried_folds(job.inputs, first)
    evaluations = []
    cohorts: dict[tuple[int, int], Any] = {}  # by (window, bin size)
    for bundle in bundles:
        track_model = bundle.spec.output_mode.name == "track"
        if track_model and inputs.coverage is None:
            raise InputError(f"Model '{bundle.name}' predicts coverage tracks: pass --coverage to evaluate it.")
        bins = int(bundle.spec.bin_size or 1) if track_model else 0
        key = (bundle.window_size, bins)
        if key not in cohorts:
            loaded = replace(inputs, coverage=inputs.coverage if track_model else None)
            # every person of another cohort is evaluated: no split is made (a small one cannot be split)
            cohorts[key] = load_cohort(loaded, bundle.window_size, bin_size=bins or None, split=not job.all_people)
        data = cohorts[key].data
        own = bundle if job.replicates and bundle.name in own_fits else first
        if job.all_people:
            wanted = list(data.people)
        else:
            wanted = held_out_people(own, job.people_file, [data.people[i] for i in data.test], data.people)
        index = {p: i for i, p in enumerate(data.people)}
        chosen = [index[p] for p in wanted]
        evaluations.append(evaluate_bundle(bundle, data, chosen, job.batch_size, job.n_boot, job.seed, job.progress))
    table = pd.concat([e.table for e in evaluations], ignore_index=True)
    paired = [compare_evaluations(evaluations[0], e, job.n_boot, job.seed) for e in evaluations[len(job.models) :]]
    result = EvaluationResult(
        table=table,
        summary=summarise(table),
        paired=pd.concat(paired, ignore_index=True) if paired else pd.DataFrame(),
        reference=first.name,
        n_boot=job.n_boot,
        seed=job.seed,
    )
    if job.all_people:
        result.notes = _seen_people_notes(bundles, cohorts)
    if job.output is not None:
        result.written = _write_evaluation(result, job.output, bundles, job.command)
    if job.replicates:
        reps = table[table["model"].isin(own_fits)]
        if reps["replicate"].nunique() < 2:
            raise InputError("--replicates needs -m models fitted on at least 2 different fold replicates.")
        result.replicate_summary = replicate_summary(reps)
    return result


def _seen_people_notes(bundles: Sequence[ModelBundle], cohorts: dict[tuple[int, int], Any]) -> list[str]:
    """With ``all_people``: one line per model whose recorded train or tune people share names
    with the evaluation cohort's people (the same people seen in training, or a name clash)."""
    people = {p for cohort in cohorts.values() for p in cohort.data.people}
    notes = []
    for bundle in bundles:
        seen = people & set(bundle.spec.held_out("train") + bundle.spec.held_out("tune"))
        if seen:
            notes.append(
                f"note: {len(seen)} of the {len(people)} people evaluated share their names with {bundle.name}'s "
                f"train/tune people (e.g. {', '.join(sorted(seen)[:3])}): not held out if they are the same people."
            )
    return notes


def _with_carried_folds(inputs: CohortInputs, bundle: ModelBundle) -> CohortInputs:
    """``inputs`` with the folds file (and replicate) ``bundle`` carries, unless folds were given."""
    carried = bundle.carried_folds()
    if inputs.folds is None and carried is not None:
        folds, replicate = carried
        return replace(inputs, folds=folds, replicate=replicate)
    return inputs


def _write_evaluation(
    result: EvaluationResult, output: Path, bundles: Sequence[ModelBundle], command: Sequence[str] | None
) -> list[Path]:
    """The per-gene TSV, its provenance sidecar and (with compared models) ``.compare.tsv``."""
    from varscore.io.outputguard import atomic_file, write_provenance_sidecar

    with atomic_file(output) as tmp:
        result.table.to_csv(tmp, sep="\t", index=False, float_format="%.4g", na_rep="NaN")
    sidecar = write_provenance_sidecar(output, bundles[0], command, {"models": [b.name for b in bundles]})
    written = [Path(output), sidecar]
    if not result.paired.empty:
        compare_path = Path(output).with_suffix(".compare.tsv")
        with atomic_file(compare_path) as tmp:
            result.paired.to_csv(tmp, sep="\t", index=False, float_format="%.4g", na_rep="NaN")
        written.append(compare_path)
    return written


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

    @property
    def cov_pearson(self) -> float:
        """Pearson r over bins of the observed and predicted CoV profiles (:meth:`cov`), over the
        bins where both are defined; NaN with 2 or fewer such bins."""
        observed, predicted = self.cov(self.observed), self.cov(self.predicted)
        both = np.isfinite(observed) & np.isfinite(predicted)
        if both.sum() <= 2:
            return math.nan
        return float(columnwise_pearson(observed[both, None], predicted[both, None])[0])

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
        per_bin = comparison.bin_pearson
        rows.append(
            {
                **row,
                "bin_pearson": float(np.nanmean(per_bin)) if np.isfinite(per_bin).any() else np.nan,
                "cov_observed": float(np.nanmean(cov_obs)) if np.isfinite(cov_obs).any() else np.nan,
                "cov_predicted": float(np.nanmean(cov_pred)) if np.isfinite(cov_pred).any() else np.nan,
                "cov_pearson": comparison.cov_pearson,
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


# --- the plot-coverage workflow ---


@dataclass
class PlotCoverageJob:
    """One coverage heat map: ``model`` (a coverage-track bundle) on one gene of ``inputs``
    (``inputs.gene_names``: at most one; default the model's first gene) against the observed
    ``inputs.coverage``, for the held-out people (``people_file``, else the model's test people),
    written as PNG to ``output``."""

    inputs: CohortInputs
    model: str | Path
    output: Path
    people_file: Path | None = None
    batch_size: int = 8


@dataclass
class CoveragePlot:
    """What :func:`run_plot_coverage` drew: the comparison behind it and the PNG written."""

    comparison: CoverageComparison
    path: Path

    @property
    def mean_bin_pearson(self) -> float:
        """Mean over bins of the per-bin Pearson r across people (NaN bins left out)."""
        return float(np.nanmean(self.comparison.bin_pearson))

    def lines(self) -> list[str]:
        """What ``varscore plot-coverage`` prints."""
        c = self.comparison
        return [
            f"wrote {self.path}: {c.gene}, {len(c.people)} people x {c.observed.shape[1]} bins; "
            f"mean per-bin Pearson r {self.mean_bin_pearson:.3f}, CoV profile Pearson r {c.cov_pearson:.3f}"
        ]


def run_plot_coverage(job: PlotCoverageJob) -> CoveragePlot:
    """Compare ``job.model``'s predicted coverage with the observed on one gene and draw it
    (:func:`plot_coverage`)."""

    bundle = load_bundle(job.model)
    if bundle.spec.output_mode.name != "track":
        raise InputError(f"Model '{bundle.name}' does not predict coverage tracks (finetune --output-mode track).")
    gene_names = list(job.inputs.gene_names or [])
    if len(gene_names) > 1:
        raise InputError(f"plot-coverage draws one gene; got {len(gene_names)} genes (--genes-only).")
    if job.inputs.coverage is None:
        raise InputError("plot-coverage compares with observed coverage: pass --coverage (coverage.npz or bigWigs).")
    inputs = replace(_with_carried_folds(job.inputs, bundle), gene_names=gene_names or [bundle.genes[0].gene_id])
    data = load_cohort(inputs, bundle.window_size, bin_size=int(bundle.spec.bin_size or 1)).data
    wanted = held_out_people(bundle, job.people_file, [data.people[i] for i in data.test], data.people)
    index = {p: i for i, p in enumerate(data.people)}
    people = np.array([index[p] for p in wanted])
    comparison = compare_coverage(bundle, bundle.backbone(), data, 0, people, job.batch_size)
    path = plot_coverage(comparison, job.output)
    return CoveragePlot(comparison, path)
