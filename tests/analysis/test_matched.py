"""Permutation enrichment over matched control sets against a slow reference loop; "too few
pairs" below the minimum count; the tolerance sensitivity table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import fisher_exact

from varscore.analysis.hsv import sign_agreement
from varscore.analysis.matched import (
    MIN_PAIRS,
    describe_p,
    permutation_enrichment,
    tolerance_sensitivity,
)


def toy_cohort(seed: int, n_genes: int = 4, per_gene: int = 60):
    rng = np.random.default_rng(seed)
    pool = pd.DataFrame(
        {
            "gene": np.repeat([f"G{i}" for i in range(n_genes)], per_gene),
            "key": [f"v{i}" for i in range(n_genes * per_gene)],
            "distance_to_tss": rng.integers(-8000, 8000, n_genes * per_gene),
            "maf": rng.uniform(0.01, 0.5, n_genes * per_gene).round(3),
        }
    )
    causal_rows = rng.choice(len(pool), 30, replace=False)
    causal = set(zip(pool["gene"].iloc[causal_rows], pool["key"].iloc[causal_rows], strict=True))
    # selected: half of the causal variants plus random others
    picked = list(causal_rows[:12]) + list(rng.choice(len(pool), 14, replace=False))
    selected = pool.iloc[sorted(set(picked))].reset_index(drop=True)
    return selected, pool, causal


def slow_permutation_p(selected, pool, causal, tol, distance, n_perm, k, seed):
    chosen = {(r.gene, r.key) for r in selected.itertuples()}
    candidates, observed = [], 0
    for sel in selected.itertuples():
        cands = []
        for j, row in enumerate(pool.itertuples()):
            if (
                row.gene == sel.gene
                and (row.gene, row.key) not in chosen
                and abs(row.distance_to_tss - sel.distance_to_tss) <= distance
                and abs(row.maf - sel.maf) <= tol + 1e-12
            ):
                cands.append(j)
        if cands:
            candidates.append(cands)
            observed += (sel.gene, sel.key) in causal
    u = np.random.default_rng(seed).random((n_perm, len(candidates), k))
    at_least = 0
    nulls = []
    for b in range(n_perm):
        count = 0
        for i, cands in enumerate(candidates):
            for j in range(k):
                row = pool.iloc[cands[int(math.floor(u[b, i, j] * len(cands)))]]
                count += (row["gene"], row["key"]) in causal
        nulls.append(count / k)
        at_least += count / k >= observed
    return (1 + at_least) / (1 + n_perm), observed, len(candidates), float(np.mean(nulls))


@pytest.mark.parametrize(("seed", "tol", "k"), [(0, 0.05, 1), (1, 0.02, 3), (2, 0.1, 2)])
def test_permutation_enrichment_equals_a_slow_reference(seed, tol, k):
    selected, pool, causal = toy_cohort(seed)
    fast = permutation_enrichment(
        selected, pool, causal, tol, distance_bp=3000, n_perm=150, controls_per_variant=k, seed=seed
    )
    p, observed, matched, null_mean = slow_permutation_p(selected, pool, causal, tol, 3000, 150, k, seed)
    assert (fast.observed, fast.matched) == (observed, matched)
    assert fast.matched >= MIN_PAIRS
    assert fast.p_value == pytest.approx(p, abs=1e-12)
    assert fast.null_mean == pytest.approx(null_mean, abs=1e-12)
    assert fast.controls_per_variant == k and "permutation" in fast.test
    assert "MAF within" in fast.rule and "3,000 bp" in fast.rule


def test_planted_enrichment_is_found_and_null_selection_is_not():
    selected, pool, causal = toy_cohort(5)
    enriched = permutation_enrichment(selected, pool, causal, 0.05, 3000, n_perm=999, seed=0)
    assert enriched.p_value < 0.01  # 12 of ~26 selected are causal vs 30 of 240 in the pool
    rng = np.random.default_rng(9)
    null_p = []
    for rep in range(20):
        random_selected = pool.iloc[rng.choice(len(pool), 25, replace=False)]
        null_p.append(permutation_enrichment(random_selected, pool, causal, 0.05, 3000, n_perm=199, seed=rep).p_value)
    assert np.mean(np.array(null_p) < 0.05) <= 0.15  # a random selection is rarely "enriched"


def test_too_few_pairs_give_no_p_value():
    selected, pool, causal = toy_cohort(0)
    few = permutation_enrichment(selected.iloc[:3], pool, causal, 0.05, 3000, n_perm=50)
    assert few.matched == 3 and math.isnan(few.p_value) and few.too_few
    assert few.describe() == f"too few matched variants (n = 3 < {MIN_PAIRS})"
    agree = sign_agreement([1.0, -1.0], [0.5, -0.5], 0.05)  # 2 pairs: Fisher gives p = 1, meaninglessly
    assert agree.n == 2
    assert describe_p(agree.p_value, agree.n) == f"too few pairs (n = 2 < {MIN_PAIRS})"
    assert describe_p(0.0123, 40) == "p = 0.012"


def test_tolerance_table_reports_fisher_and_permutation_per_tolerance():
    selected, pool, causal = toy_cohort(3)
    table = tolerance_sensitivity(selected, pool, causal, (0.005, 0.05, 0.2), distance_bp=3000, n_perm=99)
    assert table["maf_tolerance"].tolist() == [0.005, 0.05, 0.2]
    assert table["median_candidates"].is_monotonic_increasing  # looser matching, more candidates
    assert table["matched"].is_monotonic_increasing
    row = table.iloc[-1]
    from varscore.analysis.hsv import causal_enrichment, matched_controls

    fisher = causal_enrichment(selected, matched_controls(selected, pool, 0.2, 3000), causal)
    assert row["fisher_p"] == pytest.approx(fisher.p_value)
    a, b = fisher.selected_causal, fisher.selected - fisher.selected_causal
    c, d = fisher.controls_causal, fisher.controls - fisher.controls_causal
    assert row["fisher_p"] == pytest.approx(fisher_exact([[a, b], [c, d]], alternative="greater")[1])
    for r in table.itertuples():
        assert r.verdict == describe_p(r.perm_p, r.matched, what="matched variants")


@pytest.mark.slow
def test_hsv_states_the_tests_and_the_tolerance_table(tmp_path):
    from varscore.analysis.hsv import HsvJob, run_hsv
    from varscore.analysis.inputs import AnalysisInputs
    from varscore.examples import data_dir, models_dir

    inputs = AnalysisInputs(
        str(models_dir() / "variformer-demo"), data_dir() / "cohort.vcf.gz", gene_names=("SNAP25", "MKKS")
    )
    job = HsvJob(
        inputs,
        tmp_path / "hsv.tsv",
        linear=str(models_dir() / "elastic-net-demo"),
        truth=data_dir() / "truth_variants.tsv",
    )
    result = run_hsv(job)
    output = "\n".join(result.lines()) + "\n"
    # each model's median |weight| is its threshold: 3 pairs on the demo, below the minimum for a p-value
    assert result.sign is not None and result.sign.n == 3
    assert "sign agreement" in output and f"too few pairs (n = 3 < {MIN_PAIRS})" in output
    assert "one-sided permutation test over matched control sets (2000 draws, 1 control per variant" in output
    assert "MAF within ±0.005" in output
    table_lines = output.split("dependence on the MAF tolerance:\n")[1].splitlines()
    assert table_lines[0].split()[:3] == ["maf_tolerance", "selected", "matched"]
    assert [float(line.split()[0]) for line in table_lines[1:6]] == [0.005, 0.01, 0.02, 0.05, 0.1]
