"""Driver variants: the few variants whose genotype × ISM linear approximation explains a model's
predictions across held-out people, found by forward selection (DESIGN.md §4).

Each variant contributes ``c_v = dosage_v / 2 × ISM_v`` to a person's approximate prediction (ISM
is the homozygous-ALT effect, dosage 0/1/2). Starting from no variants, each step tries every
remaining variant, adds the one whose inclusion gives the approximation ``a = Σ c_v`` the largest
explained fraction of the model's predictions (``R² = pearson(a, prediction)²``, 0 when the
correlation is negative), and stops when that variant fails any of: the explained fraction rises
by more than ``min_gain`` (0.05); the variant's own contribution correlates positively with the
predictions; and that correlation's one-sided p-value is below ``alpha / n`` (0.01 / number of
candidate variants).

Ties: variants whose explained fractions differ by at most ``TIE_TOLERANCE`` (1e-9) at a step,
such as variants in perfect LD (identical dosages give identical fractions, up to float
round-off), are tied; of those the one with the largest ``|ISM|`` is added, then the first in the
ISM table's order (the lowest position). The choice so never depends on round-off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from varscore.errors import InputError

if TYPE_CHECKING:
    from varscore.analysis.hsv import Enrichment
    from varscore.analysis.inputs import AnalysisInputs
    from varscore.analysis.ism import ModelScorer
    from varscore.analysis.matched import MatchedEnrichment


@dataclass(frozen=True)
class Drivers:
    """Forward-selection result for one gene.

    ``selected``: column indices of the drivers in the order chosen. ``explained``: the explained
    fraction after each addition. ``own_r`` / ``own_p``: each driver's own contribution's Pearson r
    with the predictions and its one-sided p-value. ``explained_all``: the explained fraction of
    the approximation using every variant (what the drivers are compared with).
    """

    selected: np.ndarray
    explained: np.ndarray
    own_r: np.ndarray
    own_p: np.ndarray
    explained_all: float
    n_candidates: int
    n_people: int
    thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def final_explained(self) -> float:
        return float(self.explained[-1]) if len(self.explained) else 0.0


TIE_TOLERANCE = 1e-9  # explained fractions this close are tied (module docstring)


def _centred(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=0, keepdims=True)


def explained_fraction(approximation: np.ndarray, predictions: np.ndarray) -> float:
    """``pearson(approximation, predictions)²`` when the correlation is positive, else 0 (also 0
    when either side is constant)."""
    a, y = _centred(np.asarray(approximation, float)), _centred(np.asarray(predictions, float))
    denom = np.sqrt((a @ a) * (y @ y))
    if denom <= 0:
        return 0.0
    r = float(a @ y / denom)
    return r * r if r > 0 else 0.0


def _one_sided_p(r: np.ndarray, n: int) -> np.ndarray:
    """P(R >= r) under no correlation for ``n`` pairs (as ``scipy.stats.pearsonr(alternative="greater")``)."""
    from scipy.stats import beta

    dist = beta(n / 2 - 1, n / 2 - 1, loc=-1, scale=2)
    return np.asarray(dist.sf(np.clip(r, -1.0, 1.0)), dtype=np.float64)


def forward_select_drivers(
    dosage: np.ndarray,
    effects: np.ndarray,
    predictions: np.ndarray,
    min_gain: float = 0.05,
    alpha: float = 0.01,
    max_drivers: int | None = None,
) -> Drivers:
    """Drivers of one gene. ``dosage``: ``(n, V)`` ALT counts 0/1/2 of the ``n`` held-out people;
    ``effects``: ``(V,)`` ISM deltas; ``predictions``: ``(n,)`` the model's predictions for them."""
    g = np.asarray(dosage, dtype=np.float64)
    d = np.asarray(effects, dtype=np.float64)
    y = np.asarray(predictions, dtype=np.float64)
    if g.ndim != 2 or g.shape != (len(y), len(d)):
        raise InputError(
            f"Drivers need dosage (n, V), effects (V,), predictions (n,); got {g.shape}, {d.shape}, {y.shape}."
        )
    n, n_vars = g.shape
    if n < 3:
        raise InputError(f"Driver selection needs at least 3 people; got {n}.")
    contributions = _centred(g * d[None, :] / 2.0)  # (n, V)
    yc = _centred(y)
    y_norm = float(np.sqrt(yc @ yc))
    col_sq = np.einsum("ij,ij->j", contributions, contributions)
    col_dot_y = contributions.T @ yc
    with np.errstate(invalid="ignore", divide="ignore"):
        own_r = np.where(col_sq > 0, col_dot_y / np.sqrt(col_sq) / max(y_norm, 1e-300), np.nan)
    own_p = np.where(np.isnan(own_r), 1.0, _one_sided_p(np.nan_to_num(own_r), n))
    eligible = (own_r > 0) & (own_p < alpha / max(n_vars, 1)) & (y_norm > 0)

    approx = np.zeros(n)
    current = 0.0
    selected: list[int] = []
    explained: list[float] = []
    limit = n_vars if max_drivers is None else max_drivers
    while len(selected) < limit:
        cross = contributions.T @ approx  # (V,)
        norm_sq = approx @ approx + 2 * cross + col_sq
        num = approx @ yc + col_dot_y
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(norm_sq > 1e-300, num / np.sqrt(norm_sq) / max(y_norm, 1e-300), 0.0)
        score = np.where(r > 0, r * r, 0.0)
        score[~eligible] = -np.inf
        score[selected] = -np.inf
        top = float(np.max(score))
        tied = np.flatnonzero(score >= top - TIE_TOLERANCE) if np.isfinite(top) else np.array([0])
        best = int(min(tied, key=lambda j: (-abs(d[j]), j)))  # largest |ISM|, then the first
        if not np.isfinite(score[best]) or score[best] - current <= min_gain:
            break
        selected.append(best)
        approx = approx + contributions[:, best]
        current = float(score[best])
        explained.append(current)
    chosen = np.array(selected, dtype=np.int64)
    return Drivers(
        selected=chosen,
        explained=np.array(explained),
        own_r=own_r[chosen],
        own_p=own_p[chosen],
        explained_all=explained_fraction(contributions.sum(axis=1), y),
        n_candidates=n_vars,
        n_people=n,
        thresholds={"min_gain": min_gain, "alpha": alpha, "p_threshold": alpha / max(n_vars, 1)},
    )


def drivers_table(ism: pd.DataFrame, drivers: Drivers) -> pd.DataFrame:
    """The driver rows of one gene's ISM table (rows aligned with the dosage columns), with
    ``driver_rank``, ``explained`` (cumulative), ``own_r`` and ``own_p``."""
    rows = ism.iloc[drivers.selected].copy()
    rows["driver_rank"] = np.arange(1, len(rows) + 1)
    rows["explained"] = drivers.explained
    rows["own_r"] = drivers.own_r
    rows["own_p"] = drivers.own_p
    rows["explained_all"] = drivers.explained_all
    return rows


def ld_pairs(dosage: np.ndarray) -> int:
    """Pairs of varying columns of ``dosage`` ``(n, K)`` that :func:`mean_pairwise_ld` averages over."""
    x = np.asarray(dosage, dtype=np.float64)
    k = int((x.std(axis=0) > 0).sum()) if x.ndim == 2 and x.shape[0] else 0
    return k * (k - 1) // 2


LD_NAN_REASON = "mean_ld is NaN where fewer than 2 drivers vary in the people (no pair to correlate)"


def mean_pairwise_ld(dosage: np.ndarray) -> float:
    """Mean pairwise r² between the columns of ``dosage`` ``(n, K)`` (NaN with fewer than 2 varying
    columns: no pair to correlate; see :data:`LD_NAN_REASON`)."""
    x = np.asarray(dosage, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        return float("nan")
    x = x[:, x.std(axis=0) > 0]
    if x.shape[1] < 2:
        return float("nan")
    corr = np.atleast_2d(np.corrcoef(x, rowvar=False))
    upper = corr[np.triu_indices_from(corr, k=1)]
    return float(np.mean(upper**2))


@dataclass(frozen=True)
class DriverCriteria:
    """When forward selection stops (module docstring): a driver must raise the explained fraction
    by more than ``min_gain`` and its own contribution's one-sided p must be below ``alpha`` / the
    number of candidate variants."""

    min_gain: float = 0.05
    alpha: float = 0.01


def find_drivers(
    scorer: ModelScorer,
    variants: dict[str, Any],
    ism: pd.DataFrame,
    people: list[str],
    criteria: DriverCriteria | None = None,
    batch_size: int = 8,
    progress: bool = False,
    predictions: dict[str, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drivers of every gene in ``variants`` (gene id -> :class:`~varscore.analysis.ism.GeneVariants`)
    for ``scorer``'s model on ``people``, using the ISM deltas of ``ism`` (one gene's rows in the
    order of its variants' columns), selected under ``criteria`` (None: the defaults).
    ``predictions`` (gene label -> ``(len(people),)``) skips predicting again when the caller has them.

    Returns the driver rows (the ISM columns plus driver_rank, explained, own_r, own_p,
    explained_all) and a per-gene summary (gene, people, candidates, drivers, explained,
    explained_all, mean_ld, ld_pairs; ``mean_ld`` is NaN when ``ld_pairs`` is 0, i.e. fewer
    than 2 varying drivers).
    """
    from varscore.io.progress import progress_iter

    criteria = criteria or DriverCriteria()
    rows, summary = [], []
    for gv in progress_iter(list(variants.values()), f"drivers {scorer.name}", "genes", progress):
        gene_ism = ism[ism["gene"] == gv.gene.label]
        if list(gene_ism["key"]) != list(gv.table["key"]):
            raise InputError(f"The ISM table of {gv.gene.label} does not match its variants; score them together.")
        people_rows = gv.people_rows(people)
        if predictions is not None and gv.gene.label in predictions:
            predicted = np.asarray(predictions[gv.gene.label])
        else:
            predicted = scorer.predict_people(gv, people_rows, batch_size=batch_size)
        result = forward_select_drivers(
            gv.dosage[people_rows],
            gene_ism["delta"].to_numpy(),
            predicted,
            min_gain=criteria.min_gain,
            alpha=criteria.alpha,
        )
        rows.append(drivers_table(gene_ism, result))
        summary.append(
            {
                "gene": gv.gene.label,
                "people": result.n_people,
                "candidates": result.n_candidates,
                "drivers": len(result.selected),
                "explained": result.final_explained,
                "explained_all": result.explained_all,
                "mean_ld": mean_pairwise_ld(gv.dosage[:, result.selected]),
                "ld_pairs": ld_pairs(gv.dosage[:, result.selected]),
            }
        )
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    return table, pd.DataFrame(summary)


@dataclass(frozen=True)
class DriversJob:
    """One ``varscore drivers`` run: driver variants of each gene on the held-out people
    (``people_file``, one per line; None: the model's recorded test people) under ``criteria``,
    written to ``output``, the per-gene summary to ``summary_output``; with ``truth`` (a
    simulation's truth_variants.tsv), recall and enrichment of causal variants. ``argv`` is the
    command recorded in the provenance sidecars (None: this process's)."""

    inputs: AnalysisInputs
    output: Path
    people_file: Path | None = None
    criteria: DriverCriteria = field(default_factory=DriverCriteria)
    truth: Path | None = None
    summary_output: Path | None = None
    batch_size: int = 8
    progress: bool = False
    argv: Sequence[str] | None = None
    ism: Path | None = None  # a table `varscore ism --vcf` wrote with the same model, instead of computing it


@dataclass
class DriversResult:
    """``drivers``: the driver rows (see :func:`find_drivers`; with ``key``) written to ``output``;
    ``summary``: one row per gene. With a truth table: ``causal_found`` drivers are causal,
    ``enrichment`` against matched controls and the ``matched`` permutation test (else None)."""

    drivers: pd.DataFrame
    summary: pd.DataFrame
    output: Path
    causal_found: int | None = None
    enrichment: Enrichment | None = None
    matched: MatchedEnrichment | None = None

    def lines(self) -> list[str]:
        """What the command prints on stdout: the per-gene summary and the causal enrichment."""
        summary = self.summary
        lines = summary.to_string(index=False, float_format=lambda v: f"{v:.3f}").splitlines()
        if len(summary) and summary["mean_ld"].isna().any():
            lines.append(f"({LD_NAN_REASON}: {int(summary['mean_ld'].isna().sum())} of {len(summary)} genes)")
        if self.enrichment is not None:
            result = self.enrichment
            lines.append(
                f"causal variants: {self.causal_found}/{len(self.drivers)} drivers; {result.controls_causal}/"
                f"{result.controls} matched controls; one-sided Fisher p = {result.p_value:.3g}"
            )
        if self.matched is not None:
            lines.extend(self.matched.lines())
        return lines

    def notes(self) -> list[str]:
        """What the command prints on stderr: nothing."""
        return []


def run_drivers(job: DriversJob) -> DriversResult:
    """Run ``job``; see :class:`DriversJob`."""
    from varscore.analysis.hsv import DRIVER_MAF_TOLERANCE, causal_enrichment, matched_controls, read_truth
    from varscore.analysis.inputs import write_table
    from varscore.analysis.ism import gene_ism, held_out_people
    from varscore.analysis.matched import matched_enrichment

    run = job.inputs.load()
    variants = run.cohort_variants()
    people = held_out_people(run.bundle, job.people_file)
    ism_scores = gene_ism(run, job.ism, batch_size=job.batch_size, progress=job.progress)
    table, summary = find_drivers(
        run.scorer, variants, ism_scores, people, job.criteria, batch_size=job.batch_size, progress=job.progress
    )
    write_table(table.drop(columns=["key"]) if len(table) else table, job.output, run.bundle, job.argv)
    if job.summary_output is not None:
        write_table(summary, job.summary_output, run.bundle, job.argv)
    result = DriversResult(table, summary, job.output)
    if job.truth is not None and len(table):
        causal = read_truth(str(job.truth))
        result.causal_found = sum((g, k) in causal for g, k in zip(table["gene"], table["key"], strict=True))
        result.enrichment = causal_enrichment(table, matched_controls(table, ism_scores, DRIVER_MAF_TOLERANCE), causal)
        result.matched = matched_enrichment(table, ism_scores, causal, DRIVER_MAF_TOLERANCE)
    return result
