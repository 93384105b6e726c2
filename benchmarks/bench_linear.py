"""Per-gene elastic-net fit time, 700 people × 500 SNVs: scikit-learn ``ElasticNetCV`` (what a
PredictDB-style pipeline runs) against the linear backbone's solver ``fit_enet_cv`` (the same
folds and penalty grid; one precomputed Gram matrix and one warm-started path per fold, folds in
threads, refit warm-started along the path), each with 1 and 2 workers.

Run: ``python benchmarks/bench_linear.py [--genes 5] [--people 700] [--snvs 500]``; prints the
time per gene of each, the ratios, and how far the solutions differ (they must agree).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNetCV

from varscore_plugins.linear import cv_splits, fit_enet_cv


def simulated_gene(rng: np.random.Generator, people: int, snvs: int) -> tuple[np.ndarray, np.ndarray]:
    """Dosages (sum of two haplotypes) with blocks of 10 correlated SNVs (crude LD) and 3 causal
    variants at h² ≈ 0.3."""
    from scipy.stats import norm

    threshold = norm.ppf(1 - rng.uniform(0.02, 0.5, size=snvs))
    x = np.zeros((people, snvs))
    for _ in range(2):
        block = np.repeat(rng.normal(size=(people, snvs // 10 + 1)), 10, axis=1)[:, :snvs]
        x += (0.8 * block + 0.6 * rng.normal(size=(people, snvs))) > threshold
    beta = np.zeros(snvs)
    beta[rng.choice(snvs, 3, replace=False)] = rng.normal(size=3)
    genetic = x @ beta
    y = genetic / (genetic.std() or 1) * np.sqrt(0.3) + rng.normal(size=people) * np.sqrt(0.7)
    return x, y


def fit_sklearn(x: np.ndarray, y: np.ndarray, splits: list, alphas: int, jobs: int) -> tuple[np.ndarray, float]:
    model = ElasticNetCV(l1_ratio=0.5, alphas=alphas, max_iter=2000, cv=splits, n_jobs=jobs).fit(x, y)
    return model.coef_, float(model.alpha_)


def fit_ours(x: np.ndarray, y: np.ndarray, splits: list, alphas: int, jobs: int) -> tuple[np.ndarray, float]:
    coef, _, alpha = fit_enet_cv(x, y, splits, 0.5, alphas, 2000, threads=jobs)
    return coef, alpha


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=5)
    parser.add_argument("--people", type=int, default=700)
    parser.add_argument("--snvs", type=int, default=500)
    parser.add_argument("--alphas", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    genes = [simulated_gene(rng, args.people, args.snvs) for _ in range(args.genes)]
    splits = cv_splits(args.people, 5, seed=0)
    methods = {
        "ElasticNetCV, 1 job": (fit_sklearn, 1),
        "ElasticNetCV, 2 jobs": (fit_sklearn, 2),
        "fit_enet_cv, 1 thread": (fit_ours, 1),
        "fit_enet_cv, 2 threads": (fit_ours, 2),
    }
    times = dict.fromkeys(methods, 0.0)
    worst_diff, same_alpha = 0.0, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for x, y in genes:
            results = {}
            for name, (fit, jobs) in methods.items():
                start = time.perf_counter()
                results[name] = fit(x, y, splits, args.alphas, jobs)
                times[name] += time.perf_counter() - start
            ref_coef, ref_alpha = results["ElasticNetCV, 1 job"]
            for coef, _ in results.values():
                worst_diff = max(worst_diff, float(np.max(np.abs(coef - ref_coef))))
            same_alpha += all(np.isclose(alpha, ref_alpha, rtol=1e-6) for _, alpha in results.values())
    print(
        f"{args.genes} genes, {args.people} people × {args.snvs} SNVs, 5-fold CV, {args.alphas} alphas, "
        f"l1_ratio 0.5, {os.cpu_count()} CPUs"
    )
    for name, total in times.items():
        print(f"  {name:<24s} {total / args.genes * 1000:8.1f} ms per gene")
    base = times["ElasticNetCV, 1 job"]
    print(f"  ratio ElasticNetCV (1 job) / fit_enet_cv (1 thread):  {base / times['fit_enet_cv, 1 thread']:.2f}x")
    print(f"  ratio ElasticNetCV (1 job) / fit_enet_cv (2 threads): {base / times['fit_enet_cv, 2 threads']:.2f}x")
    print(
        f"  ratio ElasticNetCV (2 jobs) / fit_enet_cv (2 threads): "
        f"{times['ElasticNetCV, 2 jobs'] / times['fit_enet_cv, 2 threads']:.2f}x"
    )
    print(f"  same alpha chosen by all for {same_alpha}/{args.genes} genes; max |coef difference| {worst_diff:.2e}")


if __name__ == "__main__":
    main()
