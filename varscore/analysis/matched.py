"""Enrichment of selected variants (HSVs, drivers) for causal variants against matched controls,
stated fully: the test, the matching rule, the controls per variant, and how the result moves
with the matching tolerance.

Matching rule (as :func:`varscore.analysis.hsv.matched_controls`): a control of a selected
variant is a variant of the same gene's pool, not itself selected for that gene, whose distance to
the TSS is within ``distance_bp`` and whose MAF is within ``maf_tolerance`` (absolute) of the
selected variant's.

Permutation test (one-sided, selected enriched). Selected variants with at least one candidate
control are "matched"; the statistic is the number of causal variants among them. One draw picks,
for each matched variant, ``controls_per_variant`` of its candidates uniformly at random (with
replacement; draw ``b`` of variant ``i`` uses ``floor(u[b, i, j] × candidates_i)`` with
``u = default_rng(seed).random((n_perm, matched, controls_per_variant))``) and counts causal
controls divided by ``controls_per_variant``: a matched control set of the same size and make-up.
``p = (1 + #{draws with a count >= the statistic}) / (1 + n_perm)``. Below ``MIN_PAIRS`` matched
variants no p-value is given: the result says "too few pairs".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from varscore.errors import InputError

MIN_PAIRS = 10
N_PERMUTATIONS = 2000
TOLERANCES = (0.005, 0.01, 0.02, 0.05, 0.10)
TEST_NAME = "one-sided permutation test over matched control sets"


def describe_p(p: float, n: int, minimum: int = MIN_PAIRS, what: str = "pairs") -> str:
    """``"p = 0.012"`` or, below ``minimum`` or without a p-value, ``"too few pairs (n = 2 < 10)"``."""
    if n < minimum or math.isnan(p):
        return f"too few {what} (n = {n} < {minimum})" if n < minimum else "no p-value (no controls)"
    return f"p = {p:.2g}"


def matching_rule(maf_tolerance: float, distance_bp: int) -> str:
    return (
        f"same gene, distance to TSS within ±{distance_bp:,} bp and MAF within ±{maf_tolerance:g} "
        "(absolute) of the selected variant; not itself selected"
    )


def candidate_controls(
    selected: pd.DataFrame, pool: pd.DataFrame, maf_tolerance: float, distance_bp: int
) -> list[np.ndarray]:
    """Per selected variant (rows of ``selected``, in order): the positional indices into ``pool``
    of its candidate controls under the matching rule."""
    chosen = set(zip(selected["gene"], selected["key"], strict=True))
    gene = pool["gene"].to_numpy()
    dist = pool["distance_to_tss"].to_numpy(dtype=np.float64)
    maf = pool["maf"].to_numpy(dtype=np.float64)
    eligible = np.array([(g, k) not in chosen for g, k in zip(pool["gene"], pool["key"], strict=True)], dtype=bool)
    out = []
    for g, d, m in zip(selected["gene"], selected["distance_to_tss"], selected["maf"], strict=True):
        ok = (
            eligible
            & (gene == g)
            & (np.abs(dist - float(d)) <= distance_bp)
            & (np.abs(maf - float(m)) <= maf_tolerance + 1e-12)
        )
        out.append(np.flatnonzero(ok))
    return out


@dataclass(frozen=True)
class PermutationEnrichment:
    """``selected`` variants, ``matched`` of them with a candidate control (the rest are left out),
    ``observed`` causal among the matched, ``null_mean`` the mean causal count of the drawn control
    sets, ``p_value`` (NaN below ``MIN_PAIRS`` matched variants), ``median_candidates`` per matched
    variant, and the stated test, matching rule and controls drawn per variant."""

    selected: int
    matched: int
    observed: int
    null_mean: float
    p_value: float
    n_perm: int
    controls_per_variant: int
    median_candidates: float
    maf_tolerance: float
    distance_bp: int
    test: str = TEST_NAME

    @property
    def rule(self) -> str:
        return matching_rule(self.maf_tolerance, self.distance_bp)

    @property
    def too_few(self) -> bool:
        return self.matched < MIN_PAIRS

    def describe(self) -> str:
        return describe_p(self.p_value, self.matched, what="matched variants")


def _causal_flags(frame: pd.DataFrame, causal: set[tuple[str, str]]) -> np.ndarray:
    return np.array([(g, k) in causal for g, k in zip(frame["gene"], frame["key"], strict=True)], dtype=bool)


def permutation_enrichment(
    selected: pd.DataFrame,
    pool: pd.DataFrame,
    causal: Iterable[tuple[str, str]],
    maf_tolerance: float,
    distance_bp: int = 2500,
    n_perm: int = N_PERMUTATIONS,
    controls_per_variant: int = 1,
    seed: int = 0,
) -> PermutationEnrichment:
    """The permutation test of the module docstring. ``selected`` and ``pool``: columns gene, key,
    distance_to_tss, maf (selected variants are unique per gene and key)."""
    if n_perm < 1 or controls_per_variant < 1:
        raise InputError(
            f"Permutations and controls per variant must be at least 1; got {n_perm}, {controls_per_variant}."
        )
    causal_set = set(causal)
    selected = selected.drop_duplicates(["gene", "key"])
    candidates = candidate_controls(selected, pool, maf_tolerance, distance_bp)
    keep = np.array([len(c) > 0 for c in candidates], dtype=bool)
    matched = [c for c in candidates if len(c)]
    observed = int(_causal_flags(selected, causal_set)[keep].sum()) if len(selected) else 0
    pool_causal = _causal_flags(pool, causal_set)
    n_matched = len(matched)
    if n_matched == 0:
        return PermutationEnrichment(
            len(selected),
            0,
            observed,
            math.nan,
            math.nan,
            n_perm,
            controls_per_variant,
            math.nan,
            maf_tolerance,
            distance_bp,
        )
    u = np.random.default_rng(seed).random((n_perm, n_matched, controls_per_variant))
    sizes = np.array([len(c) for c in matched])
    flat = np.concatenate(matched)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    picks = offsets[None, :, None] + np.floor(u * sizes[None, :, None]).astype(np.int64)
    null = pool_causal[flat[picks]].sum(axis=(1, 2)) / controls_per_variant  # (n_perm,)
    p = (1 + int((null >= observed - 1e-9).sum())) / (1 + n_perm) if n_matched >= MIN_PAIRS else math.nan
    return PermutationEnrichment(
        len(selected),
        n_matched,
        observed,
        float(null.mean()),
        p,
        n_perm,
        controls_per_variant,
        float(np.median(sizes)),
        maf_tolerance,
        distance_bp,
    )


def tolerance_sensitivity(
    selected: pd.DataFrame,
    pool: pd.DataFrame,
    causal: Iterable[tuple[str, str]],
    tolerances: Sequence[float] = TOLERANCES,
    distance_bp: int = 2500,
    n_perm: int = N_PERMUTATIONS,
    seed: int = 0,
) -> pd.DataFrame:
    """How the enrichment of ``selected`` moves with the MAF tolerance: per tolerance, the pooled
    one-sided Fisher test (all distinct candidate controls, as :func:`causal_enrichment`) and the
    permutation test (one control per matched variant)."""
    from varscore.analysis.hsv import causal_enrichment, matched_controls

    causal_set = set(causal)
    rows = []
    for tolerance in tolerances:
        controls = matched_controls(selected, pool, tolerance, distance_bp)
        fisher = causal_enrichment(selected, controls, causal_set)
        perm = permutation_enrichment(selected, pool, causal_set, tolerance, distance_bp, n_perm, 1, seed)
        rows.append(
            {
                "maf_tolerance": tolerance,
                "selected": perm.selected,
                "matched": perm.matched,
                "median_candidates": perm.median_candidates,
                "causal_selected": perm.observed,
                "fisher_controls": fisher.controls,
                "fisher_controls_causal": fisher.controls_causal,
                "fisher_p": fisher.p_value if perm.selected >= MIN_PAIRS else math.nan,
                "perm_null_mean": perm.null_mean,
                "perm_p": perm.p_value,
                "verdict": perm.describe(),
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class MatchedEnrichment:
    """The permutation test at one MAF tolerance (``permutation``) and how the enrichment moves
    with the tolerance (``sensitivity``, :func:`tolerance_sensitivity`)."""

    permutation: PermutationEnrichment
    sensitivity: pd.DataFrame

    def lines(self) -> list[str]:
        """The test stated fully, then the tolerance table."""
        perm = self.permutation
        table = self.sensitivity.to_string(index=False, float_format=lambda v: f"{v:.3g}")
        return [
            f"{perm.test} ({perm.n_perm} draws, {perm.controls_per_variant} control per variant; matching: "
            f"{perm.rule}): {perm.observed} causal among {perm.matched} matched variants (of {perm.selected}) vs "
            f"{perm.null_mean:.2f} expected; {perm.describe()}",
            "dependence on the MAF tolerance:",
            *table.splitlines(),
        ]


def matched_enrichment(
    selected: pd.DataFrame, pool: pd.DataFrame, causal: Iterable[tuple[str, str]], maf_tolerance: float
) -> MatchedEnrichment:
    """:func:`permutation_enrichment` of ``selected`` at ``maf_tolerance`` and its
    :func:`tolerance_sensitivity` (``selected``, ``pool``: columns gene, key, distance_to_tss, maf)."""
    causal_set = set(causal)
    return MatchedEnrichment(
        permutation_enrichment(selected, pool, causal_set, maf_tolerance),
        tolerance_sensitivity(selected, pool, causal_set),
    )
