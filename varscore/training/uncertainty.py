"""Uncertainty of per-gene accuracy across held-out people: percentile bootstrap over people
(seeded), Pearson p-values, paired model differences, and summaries over genes that count what
they average.

The bootstrap draws ``n_boot`` resamples of the ``n`` held-out people with replacement
(:func:`bootstrap_indices`, ``numpy.random.default_rng(seed)``); every gene and every model is
resampled with the same people, so a paired difference (model B minus model A on the same
resample) has a bootstrap distribution of its own. A 95% interval is the 2.5th and 97.5th
percentile of the replicates where the statistic is defined (resamples whose observed or
predicted values are constant give no Pearson r); fewer than ``MIN_DEFINED`` defined replicates
give NaN bounds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from varscore.errors import InputError

N_BOOT = 1000
SEED = 0
LEVEL = 0.95
MIN_DEFINED = 20


def bootstrap_indices(n: int, n_boot: int = N_BOOT, seed: int = SEED) -> np.ndarray:
    """``(n_boot, n)`` indices of people drawn with replacement (``default_rng(seed).integers``)."""
    if n < 2:
        raise InputError(f"The bootstrap needs at least 2 people; got {n}.")
    if n_boot < 1:
        raise InputError(f"--bootstrap must be at least 1; got {n_boot}.")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def r2_rows(observed: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """R² (as sklearn ``r2_score``) of each row of ``(B, n)`` arrays; NaN where observed is constant."""
    y, p = np.asarray(observed, np.float64), np.asarray(predicted, np.float64)
    ss_tot = ((y - y.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1)
    ss_res = ((y - p) ** 2).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)


def pearson_rows(observed: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Pearson r of each row of ``(B, n)`` arrays; NaN where either side is constant."""
    y, p = np.asarray(observed, np.float64), np.asarray(predicted, np.float64)
    yc, pc = y - y.mean(axis=-1, keepdims=True), p - p.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((yc**2).sum(axis=-1) * (pc**2).sum(axis=-1))
    ok = (np.ptp(y, axis=-1) > 0) & (np.ptp(p, axis=-1) > 0)  # the rule of per_gene_metrics
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.clip(np.where(ok, (yc * pc).sum(axis=-1) / np.where(ok, denominator, 1.0), np.nan), -1.0, 1.0)


def pearson_p(r: float, n: int) -> float:
    """Two-sided p-value of Pearson's r over ``n`` pairs (as ``scipy.stats.pearsonr``); NaN for NaN r."""
    from scipy.stats import beta

    if math.isnan(r) or n < 3:
        return math.nan
    dist = beta(n / 2 - 1, n / 2 - 1, loc=-1, scale=2)
    return float(min(1.0, 2 * dist.sf(abs(r))))


def percentile_ci(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of the defined (finite) replicates; NaN when fewer than ``MIN_DEFINED``."""
    finite = np.asarray(values, np.float64)
    finite = finite[np.isfinite(finite)]
    if len(finite) < MIN_DEFINED:
        return math.nan, math.nan
    lo, hi = np.percentile(finite, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def gene_uncertainty(
    observed: np.ndarray, predicted: np.ndarray, indices: np.ndarray, level: float = LEVEL
) -> dict[str, float]:
    """Bootstrap CIs of R² and Pearson r of one gene and the Pearson p-value (all people)."""
    y, p = np.asarray(observed, np.float64), np.asarray(predicted, np.float64)
    r = pearson_rows(y, p)[()]
    r2_lo, r2_hi = percentile_ci(r2_rows(y[indices], p[indices]), level)
    r_lo, r_hi = percentile_ci(pearson_rows(y[indices], p[indices]), level)
    return {
        "r2_lo": r2_lo,
        "r2_hi": r2_hi,
        "pearson_lo": r_lo,
        "pearson_hi": r_hi,
        "pearson_p": pearson_p(float(r), len(y)),
    }


def paired_difference(
    observed: np.ndarray, predicted_a: np.ndarray, predicted_b: np.ndarray, indices: np.ndarray, level: float = LEVEL
) -> dict[str, float]:
    """B minus A on the same people: R² and Pearson r differences with bootstrap CIs (the same
    resamples for both models) and the share of resamples where B is not better (``p_boot``,
    a one-sided bootstrap p-value that B is better; a two-sided one is twice the smaller tail)."""
    y, a, b = (np.asarray(v, np.float64) for v in (observed, predicted_a, predicted_b))
    out: dict[str, float] = {}
    for name, fn in (("r2", r2_rows), ("pearson", pearson_rows)):
        full = float(fn(y, b)[()] - fn(y, a)[()])
        boot = fn(y[indices], b[indices]) - fn(y[indices], a[indices])
        lo, hi = percentile_ci(boot, level)
        finite = boot[np.isfinite(boot)]
        tail = min(float((finite <= 0).mean()), float((finite >= 0).mean())) if len(finite) >= MIN_DEFINED else math.nan
        out.update(
            {
                f"d_{name}": full,
                f"d_{name}_lo": lo,
                f"d_{name}_hi": hi,
                f"d_{name}_p": min(1.0, 2 * tail) if not math.isnan(tail) else math.nan,
            }
        )
    return out


def summarise(
    table: pd.DataFrame, metrics: Sequence[str] = ("r2", "pearson"), by: Sequence[str] = ("model", "set")
) -> pd.DataFrame:
    """Per group: ``genes``, and per metric the mean over the genes where it is defined
    (``METRIC_mean``), how many that is (``METRIC_n``) and how many are NaN (``METRIC_nan``:
    constant predictions or observations)."""
    rows = []
    for key, part in table.groupby(list(by), sort=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        row["genes"] = len(part)
        for metric in metrics:
            values = part[metric].to_numpy(dtype=np.float64)
            defined = values[np.isfinite(values)]
            row[f"{metric}_mean"] = float(defined.mean()) if len(defined) else math.nan
            row[f"{metric}_n"] = len(defined)
            row[f"{metric}_nan"] = len(values) - len(defined)
        rows.append(row)
    return pd.DataFrame(rows)


def replicate_summary(table: pd.DataFrame, metrics: Sequence[str] = ("r2", "pearson")) -> pd.DataFrame:
    """Across fold replicates (column ``replicate``): per gene set, the mean over genes in each
    replicate, then their mean ± sd (ddof=1) over replicates, with the replicate count."""
    per = summarise(table, metrics, by=("replicate", "set"))
    rows = []
    for gene_set, part in per.groupby("set", sort=False):
        row: dict[str, object] = {"set": gene_set, "replicates": len(part)}
        for metric in metrics:
            values = part[f"{metric}_mean"].to_numpy(dtype=np.float64)
            values = values[np.isfinite(values)]
            row[f"{metric}_mean"] = float(values.mean()) if len(values) else math.nan
            row[f"{metric}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            row[f"{metric}_nan"] = int(part[f"{metric}_nan"].sum())
        rows.append(row)
    return pd.DataFrame(rows)
