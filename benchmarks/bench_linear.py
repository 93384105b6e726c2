"""Per-gene elastic-net fit time, 700 people × 500 SNVs: scikit-learn ``ElasticNetCV`` as the
linear backbone runs it, against the same CV (same folds, same alpha grid) done by hand with one
precomputed Gram matrix per fold and warm-started coordinate descent along the path.

Run: ``python benchmarks/bench_linear.py [--genes 5] [--people 700] [--snvs 500]``; prints the
time per gene of each, their ratio, and the largest coefficient difference (they must agree).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet, ElasticNetCV, enet_path

from varscore_plugins.linear import cv_splits


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


def fit_sklearn(x: np.ndarray, y: np.ndarray, splits: list, alphas: int, l1_ratio: float) -> tuple[np.ndarray, float]:
    model = ElasticNetCV(l1_ratio=l1_ratio, alphas=alphas, max_iter=2000, cv=splits).fit(x, y)
    return model.coef_, float(model.alpha_)


def fit_gram(x: np.ndarray, y: np.ndarray, splits: list, alphas: int, l1_ratio: float) -> tuple[np.ndarray, float]:
    """The same CV: alpha grid from the full data (as ElasticNetCV), per fold a centred Gram and
    one warm-started path, then a refit at the best alpha."""
    n = len(y)
    xc, yc = x - x.mean(axis=0), y - y.mean()
    alpha_max = np.max(np.abs(xc.T @ yc)) / (n * l1_ratio)
    grid = np.geomspace(alpha_max, alpha_max * 1e-3, alphas)
    mse = np.zeros(alphas)
    for train, test in splits:
        xt, yt = x[train], y[train]
        mx, my = xt.mean(axis=0), yt.mean()
        xt, yt = xt - mx, yt - my
        gram, xy = xt.T @ xt, xt.T @ yt
        _, coefs, _ = enet_path(xt, yt, l1_ratio=l1_ratio, alphas=grid, precompute=gram, Xy=xy, max_iter=2000,
                                check_input=False)
        pred = (x[test] - mx) @ coefs + my  # (n_test, alphas)
        mse += ((pred - y[test, None]) ** 2).mean(axis=0)
    best = float(grid[int(np.argmin(mse))])
    gram = xc.T @ xc
    model = ElasticNet(alpha=best, l1_ratio=l1_ratio, max_iter=2000, precompute=gram, fit_intercept=False)
    model.fit(xc, yc, check_input=False)
    return model.coef_, best


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
    times = {"ElasticNetCV": 0.0, "Gram + warm start": 0.0}
    worst_diff, same_alpha = 0.0, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for x, y in genes:
            start = time.perf_counter()
            coef_a, alpha_a = fit_sklearn(x, y, splits, args.alphas, 0.5)
            times["ElasticNetCV"] += time.perf_counter() - start
            start = time.perf_counter()
            coef_b, alpha_b = fit_gram(x, y, splits, args.alphas, 0.5)
            times["Gram + warm start"] += time.perf_counter() - start
            worst_diff = max(worst_diff, float(np.max(np.abs(coef_a - coef_b))))
            same_alpha += int(np.isclose(alpha_a, alpha_b, rtol=1e-6))
    print(f"{args.genes} genes, {args.people} people × {args.snvs} SNVs, 5-fold CV, {args.alphas} alphas, l1_ratio 0.5")
    for name, total in times.items():
        print(f"  {name:<20s} {total / args.genes * 1000:8.1f} ms per gene")
    print(f"  ratio ElasticNetCV / Gram: {times['ElasticNetCV'] / times['Gram + warm start']:.2f}x")
    print(f"  same alpha chosen for {same_alpha}/{args.genes} genes; max |coef difference| {worst_diff:.2e}")


if __name__ == "__main__":
    main()
