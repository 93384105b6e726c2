"""Linear eQTL baselines (``elastic-net``, ``lasso``, ``ridge``): one scikit-learn model per gene
on the 0/1/2 ALT dosages of every SNV in the gene's window, fitted on the train people.

A bundle stores, per gene, the variant keys (``chrom:pos:ref:alt``, 1-based ``pos``), the
coefficients on the original dosage scale (variants dropped by ``VarianceThreshold`` get 0) and
the intercept, in ``weights.safetensors`` (arrays + JSON metadata; never pickle).

Variant effects follow from :class:`~varscore.plugin.contracts.GenotypeBackbone`: the prediction with the ALT
homozygous minus the prediction with every variant homozygous reference, i.e. 2 × the
coefficient. Units are those of the training expression (inverse-normal).
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from varscore.errors import BundleError, InputError, NotFittedError
from varscore.plugin import imputed_dosage, variant_keys
from varscore.plugin.contracts import Backbone, GenotypeBackbone, GenotypeFitResult
from varscore.plugin.hookspecs import hookimpl
from varscore.plugin.options import PluginOptions, option

if TYPE_CHECKING:
    import click

WEIGHTS_FILE = "weights.safetensors"
METADATA_KEY = "varscore_linear"


@dataclass
class GeneWeights:
    """One gene's fitted model: ``coef`` ``(V,)`` float64 per ALT dosage, aligned with
    ``variant_keys`` (``chrom:pos:ref:alt``); ``intercept`` in expression units."""

    gene_id: str
    variant_keys: list[str]
    coef: np.ndarray
    intercept: float
    tune_r2: float = math.nan
    alpha: float = math.nan
    tune_pval: float = math.nan  # two-sided p-value of the tune-people Pearson correlation

    def predict(self, dosages: np.ndarray) -> np.ndarray:
        """``(N, V)`` dosages in ``variant_keys`` order -> ``(N,)``."""
        dosages = np.asarray(dosages, dtype=np.float64)
        if dosages.ndim != 2 or dosages.shape[1] != len(self.coef):
            raise InputError(f"Gene '{self.gene_id}' takes (N, {len(self.coef)}) dosages; got shape {dosages.shape}.")
        return self.intercept + dosages @ self.coef

    @property
    def n_nonzero(self) -> int:
        return int(np.count_nonzero(self.coef))

    def predict_aligned(self, keys: Sequence[str], dosages: np.ndarray) -> tuple[np.ndarray, int]:
        """Predict from ``dosages`` ``(N, K)`` whose columns are ``keys`` (any order, any extra
        variants); model variants absent from ``keys`` count as dosage 0. Returns ``(N,)`` and
        how many non-zero-weight model variants were absent."""
        column = {k: i for i, k in enumerate(keys)}
        out = np.full(len(dosages), self.intercept, dtype=np.float64)
        absent = 0
        for key, weight in zip(self.variant_keys, self.coef, strict=True):
            if weight == 0:
                continue
            if key in column:
                out += weight * np.asarray(dosages[:, column[key]], dtype=np.float64)
            else:
                absent += 1
        return out, absent


def make_pipeline(kind: str, params: dict[str, Any], cv: Any) -> Any:
    """``Pipeline(VarianceThreshold(), <kind>CV)`` with ``cv`` folds (inside the train people)."""
    from sklearn.feature_selection import VarianceThreshold
    from sklearn.linear_model import ElasticNetCV, LassoCV, RidgeCV
    from sklearn.pipeline import Pipeline

    if kind == "elastic-net":
        model: Any = ElasticNetCV(
            l1_ratio=params["l1_ratio"], alphas=int(params["n_alphas"]), max_iter=params["max_iter"], cv=cv
        )
    elif kind == "lasso":
        model = LassoCV(alphas=int(params["n_alphas"]), max_iter=params["max_iter"], cv=cv)
    elif kind == "ridge":
        model = RidgeCV(alphas=np.logspace(-2, 5, params["n_alphas"]), cv=cv)
    else:
        raise InputError(f"Unknown linear model '{kind}'.")
    return Pipeline([("variance", VarianceThreshold()), ("model", model)])


def cv_splits(n: int, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The K-fold split of ``n`` train people used for every gene (shuffled with ``seed``)."""
    from sklearn.model_selection import KFold

    if folds < 2:
        raise InputError(f"The linear models' cross-validation needs cv_folds of at least 2; got {folds}.")
    if n < folds:
        raise InputError(
            f"The linear models' {folds}-fold cross-validation needs at least {folds} train people; got {n} "
            "(a small --train-fraction or cohort): train on more people or lower --param cv_folds."
        )
    return list(KFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros((n, 1))))


def fit_gene(
    kind: str, params: dict[str, Any], x: np.ndarray, y: np.ndarray, splits: Sequence[tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, float, float]:
    """Fit one gene: ``x`` ``(n, V)`` train dosages, ``y`` ``(n,)``. Returns the coefficients
    ``(V,)`` on the dosage scale, the intercept and the chosen penalty.

    Elastic net and lasso use :func:`fit_enet_cv` (the same cross-validation as scikit-learn's
    ``ElasticNetCV``, computed faster) unless the ``solver`` param is ``"sklearn"``."""
    from sklearn.exceptions import ConvergenceWarning

    coef = np.zeros(x.shape[1])
    if x.shape[1] == 0 or np.all(np.var(x, axis=0) == 0):
        return coef, float(np.mean(y)), math.nan  # nothing varies: predict the train mean
    if kind in ("elastic-net", "lasso") and params.get("solver", "gram") == "gram":
        kept = np.var(x, axis=0) > 0  # VarianceThreshold(0)
        l1_ratio = 1.0 if kind == "lasso" else float(params["l1_ratio"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            coef[kept], intercept, alpha = fit_enet_cv(
                x[:, kept],
                y,
                splits,
                l1_ratio,
                int(params["n_alphas"]),
                int(params["max_iter"]),
                int(params.get("threads", 0)),
            )
        return coef, intercept, alpha
    pipe = make_pipeline(kind, params, list(splits))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(x, y)
    kept = pipe.named_steps["variance"].get_support()
    model = pipe.named_steps["model"]
    coef[kept] = np.ravel(model.coef_)
    return coef, float(model.intercept_), float(model.alpha_)


def alpha_grid(x: np.ndarray, y: np.ndarray, l1_ratio: float, n_alphas: int, eps: float = 1e-3) -> np.ndarray:
    """``ElasticNetCV``'s penalty grid: ``n_alphas`` log-spaced values from the smallest penalty
    that zeroes every coefficient (on centred data) down to ``eps`` times it."""
    xc, yc = x - x.mean(axis=0), y - y.mean()
    alpha_max = float(np.max(np.abs(xc.T @ yc))) / (len(y) * l1_ratio)
    if alpha_max <= np.finfo(float).resolution:
        return np.full(n_alphas, np.finfo(float).resolution)
    return np.geomspace(alpha_max, alpha_max * eps, n_alphas)


def _fold_mse(
    x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, grid: np.ndarray, l1_ratio: float, max_iter: int
) -> np.ndarray:
    """Held-out mean squared error along the whole penalty path for one CV fold."""
    from sklearn.linear_model import enet_path

    xt, yt = x[train], y[train]
    mx, my = xt.mean(axis=0), yt.mean()
    xt, yt = np.asfortranarray(xt - mx), yt - my
    _, coefs, _ = enet_path(
        xt, yt, l1_ratio=l1_ratio, alphas=grid, precompute=xt.T @ xt, Xy=xt.T @ yt, max_iter=max_iter, check_input=False
    )
    pred = (x[test] - mx) @ coefs + my  # (n_test, n_alphas)
    return ((pred - y[test, None]) ** 2).mean(axis=0)


def fit_enet_cv(
    x: np.ndarray,
    y: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    l1_ratio: float,
    n_alphas: int,
    max_iter: int = 2000,
    threads: int = 0,
) -> tuple[np.ndarray, float, float]:
    """Cross-validated elastic net, the same procedure as ``ElasticNetCV(l1_ratio, alphas=n_alphas,
    cv=splits)``: penalty grid from all people, per fold one warm-started coordinate-descent path
    on a precomputed Gram matrix, the penalty with the lowest mean held-out MSE, then a refit on all
    people warm-started along the path down to that penalty. Folds run in ``threads`` threads
    (0: one per fold up to the CPU count; the solver releases the GIL). Returns coefficients,
    intercept and penalty; they agree with ``ElasticNetCV`` to the solver's tolerance."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    from sklearn.linear_model import enet_path

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    grid = alpha_grid(x, y, l1_ratio, n_alphas)
    workers = threads or min(len(splits), os.cpu_count() or 1)

    def fold(split: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return _fold_mse(x, y, split[0], split[1], grid, l1_ratio, max_iter)

    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            mse = np.mean(list(pool.map(fold, splits)), axis=0)
    else:
        mse = np.mean([fold(split) for split in splits], axis=0)
    best = int(np.argmin(mse))
    mx, my = x.mean(axis=0), y.mean()
    xc, yc = np.asfortranarray(x - mx), y - my
    _, coefs, _ = enet_path(
        xc,
        yc,
        l1_ratio=l1_ratio,
        alphas=grid[: best + 1],
        precompute=xc.T @ xc,
        Xy=xc.T @ yc,
        max_iter=max_iter,
        check_input=False,
    )
    coef = coefs[:, -1]
    return coef, float(my - mx @ coef), float(grid[best])


def pearson_pvalue(r: float, n: int) -> float:
    """Two-sided p-value of a Pearson correlation ``r`` over ``n`` pairs (t test, ``n - 2`` d.f.)."""
    from scipy.stats import t as student_t

    if math.isnan(r) or n < 3:
        return math.nan
    if abs(r) >= 1.0:
        return 0.0
    stat = r * math.sqrt((n - 2) / (1.0 - r * r))
    return float(2.0 * student_t.sf(abs(stat), n - 2))


def bh_qvalues(pvalues: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg q-values; NaN p-values stay NaN and do not count as tests."""
    p = np.asarray(pvalues, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if ok.size:
        order = ok[np.argsort(p[ok])]
        ranked = p[order] * ok.size / np.arange(1, ok.size + 1)
        q[order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    return q


class LinearBackbone(GenotypeBackbone):
    """Per-gene penalised linear regression on window SNV dosages (the paper's baselines).

    ``predict(batch, gene=None)``: ``batch`` ``(N, V)`` dosages in the gene's ``variant_keys``
    order -> ``(N, 1)``; ``gene`` may be left out when the model holds exactly one gene.
    """

    effect_description: ClassVar[str] = (
        "linear model: REF_PRED = intercept, ALT_PRED = intercept + 2 x coefficient, i.e. homozygous ALT vs "
        "homozygous REF"
    )
    output_modes: ClassVar[tuple[str, ...]] = ("scalar",)
    trainable: ClassVar[bool] = True

    @dataclass
    class Options(PluginOptions):
        window_size: int = option(49_152, "Window around the TSS whose SNVs are the predictors (bp).")
        cv_folds: int = option(5, "Cross-validation folds choosing the penalty.")
        n_alphas: int = option(50, "Penalties tried.")
        l1_ratio: float = option(0.5, "Elastic-net mixing (1: lasso); elastic-net only.")
        max_iter: int = option(2000, "Coordinate-descent iterations.")
        seed: int = option(0, "Seed of the fold assignment.")
        solver: str = option("gram", "'gram' (fast, ElasticNetCV's path) or 'sklearn'.")
        threads: int = option(0, "Threads of the gram solver (0: all).")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.model_: dict[str, GeneWeights] | None = None

    @property
    def window_size(self) -> int:
        return int(self.params["window_size"])

    @property
    def genes(self) -> dict[str, GeneWeights]:
        self._require_built()
        assert self.model_ is not None
        return self.model_

    def build(self) -> LinearBackbone:
        """An empty model (no genes); :meth:`fit_gene_matrix` or :meth:`finetune` fill it."""
        self.model_ = {}
        return self

    def gene_weights(self, gene: str | None = None) -> GeneWeights:
        genes = self.genes
        if gene is None:
            if len(genes) != 1:
                raise InputError(f"Model '{self.name}' holds {len(genes)} genes: say which gene to predict.")
            return next(iter(genes.values()))
        if gene not in genes:
            raise InputError(f"Model '{self.name}' has no gene '{gene}'.")
        return genes[gene]

    @property
    def n_variants(self) -> int:
        """Variants of the only gene (what ``check_backbone`` feeds ``predict``)."""
        return len(self.gene_weights().coef)

    def gene_ids(self) -> list[str]:
        return list(self.genes)

    def variant_keys(self, gene_id: str) -> list[str]:
        return list(self.gene_weights(gene_id).variant_keys)

    def predict_dosages(self, gene_id: str, dosages: np.ndarray) -> np.ndarray:
        return self.gene_weights(gene_id).predict(dosages)

    def allele_weights(self, gene_id: str) -> dict[str, float]:
        weights = self.gene_weights(gene_id)
        return {key: float(c) for key, c in zip(weights.variant_keys, weights.coef, strict=True)}

    def predict_aligned(self, gene_id: str, keys: Sequence[str], dosages: np.ndarray) -> tuple[np.ndarray, int]:
        return self.gene_weights(gene_id).predict_aligned(keys, dosages)

    def predict(self, batch: np.ndarray, gene: str | None = None) -> np.ndarray:
        if not self.genes:
            raise NotFittedError(f"Model '{self.name}' has no fitted genes yet.")
        return super().predict(batch, gene)

    def fit_gene_matrix(
        self,
        gene_id: str,
        keys: Sequence[str],
        x: np.ndarray,
        y: np.ndarray,
        splits: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> GeneWeights:
        """Fit one gene on ``x`` ``(n, V)`` dosages and ``y`` ``(n,)``; CV folds default to
        :func:`cv_splits` with the ``seed`` param."""
        if x.shape != (len(y), len(keys)):
            raise InputError(f"Dosages {x.shape} do not match {len(y)} people × {len(keys)} variants.")
        if splits is None:
            splits = cv_splits(len(y), int(self.params["cv_folds"]), int(self.params["seed"]))
        coef, intercept, alpha = fit_gene(self.name, self.params, x, y, splits)
        weights = GeneWeights(gene_id, list(keys), coef, intercept, alpha=alpha)
        self.genes[gene_id] = weights
        return weights

    def finetune(self, data: Any, config: Any = None) -> LinearFitResult:
        """Fit every gene of a :class:`~varscore.training.lightning.FinetuneData` on its train people (CV
        inside them, the same split for every gene); record each gene's R² on the tune people."""
        from varscore.training.lightning import per_gene_metrics

        if self.model_ is None:
            self.build()
        train, tune = np.asarray(data.train), np.asarray(data.tune)
        splits = cv_splits(len(train), int(self.params["cv_folds"]), int(self.params["seed"]))
        rows, imputed = [], 0
        for gene_data in data.genes:
            genotypes = gene_data.windows.genotypes
            dosage, n_missing = imputed_dosage(genotypes, train)
            imputed += n_missing
            y = np.asarray(gene_data.expression, dtype=np.float64)
            weights = self.fit_gene_matrix(
                gene_data.gene.gene_id, variant_keys(genotypes), dosage[train], y[train], splits
            )
            pred = weights.predict(dosage[tune])
            ((r2, pearson),) = per_gene_metrics(np.zeros(len(tune), dtype=np.int64), pred, y[tune], 1)
            weights.tune_r2 = r2
            weights.tune_pval = pearson_pvalue(pearson, len(tune))
            rows.append(
                {
                    "gene": gene_data.gene.gene_id,
                    "variants": len(weights.coef),
                    "nonzero": weights.n_nonzero,
                    "alpha": weights.alpha,
                    "tune_r2": r2,
                    "tune_pearson": pearson,
                }
            )
        r2s = [r["tune_r2"] for r in rows if not math.isnan(r["tune_r2"])]
        return LinearFitResult(rows, float(np.mean(r2s)) if r2s else math.nan, imputed)

    fit_cohort = finetune

    def save(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        genes = list(self.genes.values())
        tensors: dict[str, np.ndarray] = {
            "intercepts": np.array([g.intercept for g in genes], dtype=np.float64),
            "tune_r2": np.array([g.tune_r2 for g in genes], dtype=np.float64),
            "alphas": np.array([g.alpha for g in genes], dtype=np.float64),
            "tune_pval": np.array([g.tune_pval for g in genes], dtype=np.float64),
            "offsets": np.cumsum([0] + [len(g.coef) for g in genes]).astype(np.int64),
            "coef": (np.concatenate([g.coef for g in genes]) if genes else np.zeros(0)).astype(np.float64),
        }
        meta = {"genes": [g.gene_id for g in genes], "variant_keys": [k for g in genes for k in g.variant_keys]}
        Path(directory).mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(Path(directory) / WEIGHTS_FILE), metadata={METADATA_KEY: json.dumps(meta)})

    def load(self, directory: Path) -> LinearBackbone:
        from safetensors import safe_open

        path = Path(directory) / WEIGHTS_FILE
        if not path.exists():
            raise InputError(f"{path} does not exist: not a linear model bundle.")
        try:
            with safe_open(str(path), framework="numpy") as handle:
                raw = (handle.metadata() or {}).get(METADATA_KEY)
                if raw is None:
                    raise InputError(f"{path} has no '{METADATA_KEY}' metadata: not written by a linear backbone.")
                meta = json.loads(raw)
                t = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
            offsets, keys = t["offsets"], meta["variant_keys"]
            model: dict[str, GeneWeights] = {}
            for i, gene_id in enumerate(meta["genes"]):
                lo, hi = int(offsets[i]), int(offsets[i + 1])
                model[gene_id] = GeneWeights(
                    gene_id,
                    keys[lo:hi],
                    t["coef"][lo:hi].copy(),
                    float(t["intercepts"][i]),
                    float(t["tune_r2"][i]),
                    float(t["alphas"][i]),
                )
                if "tune_pval" in t:  # bundles written before p-values were recorded lack it
                    model[gene_id].tune_pval = float(t["tune_pval"][i])
        except InputError:
            raise
        except Exception as exc:  # safetensors' own errors, a JSON or key error from a foreign file
            raise BundleError(
                f"{path} is not a linear model's weights file ({type(exc).__name__}: {exc}); re-save the bundle."
            ) from exc
        self.model_ = model
        return self


class LinearFitResult(GenotypeFitResult):
    """Per-gene fit summary (``rows``: gene, variants, nonzero, alpha, tune_r2, tune_pearson)."""


class ElasticNetBackbone(LinearBackbone):
    name: ClassVar[str] = "elastic-net"


class LassoBackbone(LinearBackbone):
    name: ClassVar[str] = "lasso"


class RidgeBackbone(LinearBackbone):
    name: ClassVar[str] = "ridge"


@hookimpl
def register_backbones(register: Callable[[type[Backbone]], None]) -> None:
    register(ElasticNetBackbone)
    register(LassoBackbone)
    register(RidgeBackbone)


# --- PredictDB (PrediXcan) sqlite export / import ---

PREDICTDB_SCHEMA = (
    # GTEx v8 PredictDB's columns; rsid holds the varID too (varscore keeps no dbSNP IDs), as in GTEx v8 MASHR models
    "CREATE TABLE weights (gene TEXT, rsid TEXT, varID TEXT, ref_allele CHARACTER, eff_allele CHARACTER, "
    "weight DOUBLE)",
    'CREATE TABLE extra (gene TEXT, genename TEXT, "n.snps.in.model" INTEGER, "pred.perf.R2" DOUBLE, '
    '"pred.perf.pval" DOUBLE, "pred.perf.qval" DOUBLE)',
    # varscore's own tables (PrediXcan tools ignore them): intercepts and how IDs were written
    "CREATE TABLE varscore_model (gene TEXT, intercept DOUBLE, alpha DOUBLE)",
    "CREATE TABLE varscore_meta (key TEXT, value TEXT)",
)
_BUILD_SUFFIX = {
    "grch38": "b38",
    "hg38": "b38",
    "b38": "b38",
    "38": "b38",
    "grch37": "b37",
    "hg19": "b37",
    "b37": "b37",
    "37": "b37",
}


def build_suffix(genome_build: str | None) -> str:
    """PredictDB's build tag (``b38``/``b37``) for a bundle's genome build; ``b38`` when unknown."""
    if not genome_build:
        return "b38"
    suffix = _BUILD_SUFFIX.get(str(genome_build).lower())
    if suffix is None:
        raise InputError(f"Unknown genome build '{genome_build}': use GRCh38/hg38 or GRCh37/hg19.")
    return suffix


def predictdb_id(key: str, suffix: str) -> str:
    """``chrom:pos:ref:alt`` -> ``chr{c}_{pos}_{ref}_{alt}_{suffix}`` (GTEx v8 ``varID``)."""
    chrom, pos, ref, alt = key.split(":")
    bare = chrom[3:] if chrom.startswith("chr") else chrom
    return f"chr{bare}_{pos}_{ref}_{alt}_{suffix}"


def parse_predictdb_id(rsid: str) -> tuple[str, int, str, str, str] | None:
    """``chr1_123_A_G_b38`` -> ``("1", 123, "A", "G", "b38")``; ``None`` for other IDs (rsIDs)."""
    parts = rsid.split("_")
    if len(parts) != 5 or not parts[0].startswith("chr") or not parts[1].isdigit():
        return None
    return parts[0][3:], int(parts[1]), parts[2], parts[3], parts[4]


@dataclass
class PredictDBExport:
    path: Path
    genes: int
    weights: int
    build: str


def export_predictdb(bundle: Any, path: str | Path, genome_build: str | None = None) -> PredictDBExport:
    """Write a linear bundle as a PredictDB sqlite (only non-zero weights, as PrediXcan expects).

    ``eff_allele`` is the ALT (the counted allele); ``pred.perf.R2`` is the tune R²,
    ``pred.perf.pval`` the two-sided p-value of the tune-people Pearson correlation (as
    PredictDB's ``cor.test``) and ``pred.perf.qval`` its Benjamini-Hochberg q-value across the
    exported genes (NULL where unknown). Intercepts go to ``varscore_model``.
    """
    import sqlite3

    from varscore.plugin import atomic_file

    backbone = bundle.backbone()
    if not isinstance(backbone, LinearBackbone):
        raise InputError(f"Model '{bundle.name}' is a '{backbone.name}' model; only linear models export to PredictDB.")
    suffix = build_suffix(genome_build or bundle.manifest.get("genome_build"))
    names = {g["gene_id"]: g.get("name") or g["gene_id"] for g in bundle.manifest.get("genes", [])}
    chroms = {k.split(":")[0] for g in backbone.genes.values() for k in g.variant_keys}
    chr_style = "chr" if any(c.startswith("chr") for c in chroms) else ""
    n_weights = 0
    with atomic_file(Path(path)) as tmp:
        with contextlib.closing(sqlite3.connect(tmp)) as db:
            for statement in PREDICTDB_SCHEMA:
                db.execute(statement)
            pvals = tune_pvalues(bundle, backbone)
            qvals = bh_qvalues([pvals[g] for g in backbone.genes])
            for gene, qvalue in zip(backbone.genes.values(), qvals, strict=True):
                rows = []
                for key, weight in zip(gene.variant_keys, gene.coef, strict=True):
                    if weight != 0:
                        _, _, ref, alt = key.split(":")
                        var_id = predictdb_id(key, suffix)
                        rows.append((gene.gene_id, var_id, var_id, ref, alt, float(weight)))
                db.executemany(
                    "INSERT INTO weights (gene, rsid, varID, ref_allele, eff_allele, weight) VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                n_weights += len(rows)
                r2 = None if math.isnan(gene.tune_r2) else gene.tune_r2
                pval, qval = (None if math.isnan(v) else v for v in (pvals[gene.gene_id], float(qvalue)))
                db.execute(
                    "INSERT INTO extra VALUES (?, ?, ?, ?, ?, ?)",
                    (gene.gene_id, names.get(gene.gene_id, gene.gene_id), len(rows), r2, pval, qval),
                )
                alpha = None if math.isnan(gene.alpha) else gene.alpha
                db.execute("INSERT INTO varscore_model VALUES (?, ?, ?)", (gene.gene_id, gene.intercept, alpha))
            meta = {
                "backbone": backbone.name,
                "build": suffix,
                "chrom_style": chr_style,
                "window_size": str(backbone.window_size),
                "source_bundle": bundle.name,
            }
            db.executemany("INSERT INTO varscore_meta VALUES (?, ?)", sorted(meta.items()))
            db.execute("CREATE INDEX weights_gene ON weights (gene)")
            db.commit()
    return PredictDBExport(Path(path), len(backbone.genes), n_weights, suffix)


@dataclass
class CovarianceExport:
    path: Path
    genes: int
    rows: int
    people: int
    missing: int


def _bare(chrom: str) -> str:
    return chrom[3:] if chrom.startswith("chr") else chrom


def cohort_dosages(vcf: str | Path, keys: set[str], people: Sequence[str] | None) -> tuple[dict[str, np.ndarray], int]:
    """ALT dosages (0/1/2) of ``people`` (all samples when None) at ``keys`` (``chrom:pos:ref:alt``;
    ``chr`` prefixes ignored), each VCF record's own ALT counted as training counts it; missing calls
    take the mean of the people's calls. Returns the dosages by key and the number of people."""
    from cyvcf2 import VCF

    path = Path(vcf)
    if not path.is_file():
        raise InputError(f"VCF file not found: {path}.")
    wanted = {}
    for key in keys:
        chrom, pos, ref, alt = key.split(":")
        wanted[(_bare(chrom), int(pos), ref, alt)] = key
    try:
        reader = VCF(str(path), lazy=True, threads=1)
    except Exception as exc:  # cyvcf2 raises bare Exception for unreadable files
        raise InputError(f"{path} is not a readable VCF/BCF file ({exc}).") from exc
    try:
        samples = list(reader.samples)
        if people is not None:
            absent = [p for p in people if p not in set(samples)]
            if absent:
                raise InputError(
                    f"{path} lacks {len(absent)} of the model's {len(people)} train people (e.g. {absent[0]})."
                )
            columns = np.array([samples.index(p) for p in people], dtype=np.int64)
        else:
            columns = np.arange(len(samples))
        found: dict[str, np.ndarray] = {}
        for record in reader:
            if not record.ALT:
                continue
            for index, alt in enumerate(record.ALT, start=1):
                hit = wanted.get((_bare(record.CHROM), int(record.POS), record.REF, alt))
                if hit is None or hit in found:
                    continue
                calls = np.asarray(record.genotype.array()[:, :2], dtype=np.int64)[columns]
                dosage = ((calls == index).sum(axis=1)).astype(np.float64)
                dosage[(calls < 0).any(axis=1)] = np.nan
                if np.isnan(dosage).all():
                    dosage[:] = 0.0
                dosage[np.isnan(dosage)] = np.nanmean(dosage)
                found[hit] = dosage
    finally:
        reader.close()
    return found, len(columns)


def export_covariance(
    bundle: Any, vcf: str | Path, path: str | Path, genome_build: str | None = None
) -> CovarianceExport:
    """The SNP covariance file S-PrediXcan and MultiXcan read beside a PredictDB: gzip text,
    header ``GENE RSID1 RSID2 VALUE``, per gene every pair (diagonal included, weights order) of
    its non-zero-weight SNPs, ``VALUE`` the sample covariance (``n - 1`` denominator, as R's
    ``cov`` and ``numpy.cov``) of their ALT dosages in the bundle's train people in ``vcf``
    (all of its samples when the bundle records none). IDs are the weights' ``rsid``/``varID``."""
    import gzip

    from varscore.plugin import atomic_file

    backbone = bundle.backbone()
    if not isinstance(backbone, LinearBackbone):
        raise InputError(f"Model '{bundle.name}' is a '{backbone.name}' model; only linear models export to PredictDB.")
    suffix = build_suffix(genome_build or bundle.manifest.get("genome_build"))
    train = (bundle.manifest.get("people") or {}).get("train") or None
    keys = {k for g in backbone.genes.values() for k, w in zip(g.variant_keys, g.coef, strict=True) if w != 0}
    dosages, n_people = cohort_dosages(vcf, keys, train)
    if n_people < 2:
        raise InputError(f"A covariance needs at least 2 people; {vcf} has {n_people} of the model's.")
    rows = 0
    with atomic_file(Path(path)) as tmp, gzip.open(tmp, "wt") as out:
        out.write("GENE RSID1 RSID2 VALUE\n")
        for gene in backbone.genes.values():
            kept = [k for k, w in zip(gene.variant_keys, gene.coef, strict=True) if w != 0 and k in dosages]
            if not kept:
                continue
            matrix = np.atleast_2d(np.cov(np.stack([dosages[k] for k in kept]), ddof=1))
            ids = [predictdb_id(k, suffix) for k in kept]
            for i in range(len(kept)):
                for j in range(i, len(kept)):
                    out.write(f"{gene.gene_id} {ids[i]} {ids[j]} {matrix[i, j]:.15g}\n")
                    rows += 1
    return CovarianceExport(Path(path), len(backbone.genes), rows, n_people, len(keys - set(dosages)))


def tune_pvalues(bundle: Any, backbone: LinearBackbone) -> dict[str, float]:
    """Per gene id: the two-sided p-value of the tune-people Pearson correlation. Bundles whose
    weights file records it (``tune_pval``) give it directly; older bundles (the bundled
    ``elastic-net-demo`` among them) recorded only the correlation, in the manifest's
    ``metrics.per_gene`` (``tune_pearson``), with the tune people in ``people.tune``: the p-value
    follows from those two (NaN where neither is known)."""
    recorded = {
        str(row.get("gene")): row.get("tune_pearson")
        for row in (bundle.manifest.get("metrics") or {}).get("per_gene") or []
        if isinstance(row, dict)
    }
    n_tune = len((bundle.manifest.get("people") or {}).get("tune") or [])
    out = {}
    for gene_id, gene in backbone.genes.items():
        pval = gene.tune_pval
        pearson = recorded.get(gene_id)
        if math.isnan(pval) and isinstance(pearson, int | float) and n_tune >= 3:
            pval = pearson_pvalue(float(pearson), n_tune)
        out[gene_id] = pval
    return out


@dataclass
class PredictDBImport:
    """An imported PredictDB: the backbone, gene names, build and what the import noticed."""

    backbone: LinearBackbone
    gene_names: dict[str, str]
    build: str | None
    report: list[str]


def read_predictdb(path: str | Path, vcf: str | Path | None = None, backbone: str = "elastic-net") -> PredictDBImport:
    """Read a PredictDB sqlite into a linear backbone; with ``vcf``, report how many model SNPs
    the VCF has (and why none match when none do)."""
    import sqlite3

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist.")
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not {"weights", "extra"} <= tables:
                raise InputError(f"{path} is not a PredictDB database: it lacks the 'weights' and/or 'extra' table.")
            columns = {r[1] for r in db.execute("PRAGMA table_info(weights)")}
            id_column = "varID" if "varID" in columns else "rsid"  # GTEx v8: varID; rsid may be a dbSNP ID
            weights = db.execute(f"SELECT {id_column}, gene, weight, ref_allele, eff_allele FROM weights").fetchall()
            extra = db.execute('SELECT gene, genename, "pred.perf.R2" FROM extra').fetchall()
            meta = (
                dict(db.execute("SELECT key, value FROM varscore_meta").fetchall()) if "varscore_meta" in tables else {}
            )
            model_rows = (
                db.execute("SELECT gene, intercept, alpha FROM varscore_model").fetchall()
                if "varscore_model" in tables
                else []
            )
    except sqlite3.Error as exc:
        raise InputError(f"{path} is not a readable PredictDB (SQLite) database: {exc}.") from exc
    report: list[str] = []
    chrom_style = meta.get("chrom_style")
    if chrom_style is None:
        chrom_style = _vcf_chrom_style(vcf) if vcf else "chr"
    intercepts = {g: (float(i), math.nan if a is None else float(a)) for g, i, a in model_rows}
    if not model_rows:
        report.append("no intercepts stored (a PrediXcan model): predictions are sums of weight × dosage.")
    per_gene: dict[str, tuple[list[str], list[float], float]] = {}
    unparsed, flipped, builds = 0, 0, set()
    for rsid, gene, weight, ref_allele, eff_allele in weights:
        parsed = parse_predictdb_id(str(rsid))
        if parsed is None:
            unparsed += 1
            continue
        chrom, pos, ref, alt, id_build = parsed
        builds.add(id_build)
        keys, coefs, shift = per_gene.setdefault(gene, ([], [], 0.0))
        w = float(weight)
        if eff_allele == ref and ref_allele == alt:  # weight counts the REF allele: w·(2 − alt dosage)
            flipped += 1
            per_gene[gene] = (keys, coefs, shift + 2 * w)
            w = -w
        keys.append(f"{chrom_style}{chrom}:{pos}:{ref}:{alt}")
        coefs.append(w)
    if unparsed:
        report.append(
            f"{unparsed:,} of {len(weights):,} weights have IDs that are not chr_pos_ref_alt_build (e.g. rsIDs, "
            "as in GTEx v7 models): they were skipped; use a GTEx v8+ (varID) model."
        )
    if weights and unparsed == len(weights):
        raise InputError(f"{path}: no weight has a chr_pos_ref_alt_build ID, so no variant can be placed.")
    if flipped:
        report.append(f"{flipped:,} weights count the REF allele; converted to ALT dosage.")
    model = _backbone_class(meta.get("backbone", backbone))(
        window_size=int(meta.get("window_size", LinearBackbone.default_params["window_size"]))
    ).build()
    tune_r2 = {g: (math.nan if r is None else float(r)) for g, _, r in extra}
    for gene in [*tune_r2, *intercepts]:  # genes whose model kept no SNP still predict their intercept
        per_gene.setdefault(gene, ([], [], 0.0))
    for gene, (keys, coefs, shift) in per_gene.items():
        intercept, alpha = intercepts.get(gene, (0.0, math.nan))
        model.genes[gene] = GeneWeights(
            gene, keys, np.array(coefs, dtype=np.float64), intercept + shift, tune_r2.get(gene, math.nan), alpha
        )
    build: str | None = meta.get("build") or (next(iter(builds)) if len(builds) == 1 else None)
    if vcf is not None:
        report.extend(_match_report(model, vcf, build))
    return PredictDBImport(model, {g: n for g, n, _ in extra if n}, build, report)


def _backbone_class(name: str) -> type[LinearBackbone]:
    classes = {c.name: c for c in (ElasticNetBackbone, LassoBackbone, RidgeBackbone)}
    if name not in classes:
        raise InputError(f"Unknown linear backbone '{name}'. Choose one of: {', '.join(classes)}.")
    return classes[name]


def _vcf_chrom_style(vcf: str | Path) -> str:
    from varscore.io.vcf import open_vcf

    reader = open_vcf(vcf)
    try:
        return "chr" if any(str(c).startswith("chr") for c in reader.seqnames) else ""
    finally:
        reader.close()


def _match_report(model: LinearBackbone, vcf: str | Path, build: str | None) -> list[str]:
    """How many model SNPs (non-zero weights) the VCF holds, and a diagnosis when none."""
    from varscore.io.vcf import open_vcf

    wanted = {k for g in model.genes.values() for k, w in zip(g.variant_keys, g.coef, strict=True) if w != 0}
    positions = {(k.split(":")[0], int(k.split(":")[1])) for k in wanted}
    found, found_pos, vcf_chroms = set(), set(), set()
    reader = open_vcf(vcf)
    try:
        vcf_chroms = set(map(str, reader.seqnames))
        for record in reader:
            site = (record.CHROM, record.POS)
            if site not in positions:
                continue
            found_pos.add(site)
            for alt in record.ALT:
                key = f"{record.CHROM}:{record.POS}:{record.REF}:{alt}"
                if key in wanted:
                    found.add(key)
    finally:
        reader.close()
    share = len(found) / max(len(wanted), 1)
    lines = [f"{len(found):,} of {len(wanted):,} model SNPs ({share:.1%}) are in {Path(vcf).name}."]
    if wanted and not found:
        model_chroms = {c for c, _ in positions}
        if not model_chroms & vcf_chroms:
            lines.append(
                f"No model chromosome ({', '.join(sorted(model_chroms)[:3])}) is a VCF contig "
                f"({', '.join(sorted(vcf_chroms)[:3])}): the chromosome names differ (chr prefix?)."
            )
        elif found_pos:
            lines.append("Positions match but alleles do not: REF/ALT are swapped or on the other strand.")
        else:
            lines.append(
                f"No model position is in the VCF: the model's IDs are build {build or 'unknown'}; the VCF is "
                "probably on another genome build (lift it over, or use a model for the VCF's build)."
            )
    return lines


@hookimpl
def register_commands(cli: click.Group) -> None:
    """``varscore models export`` and ``varscore models import-predictdb`` (PrediXcan/PredictDB sqlite)."""
    import click

    from varscore.plugin import writes

    models = cli.commands.get("models")
    if not isinstance(models, click.Group):  # a command line without the models group
        return

    @models.command("export")
    @click.argument("name")
    @click.option(
        "--format",
        "format_",
        type=click.Choice(["predictdb"]),
        default="predictdb",
        show_default=True,
        help="predictdb: PrediXcan/PredictDB sqlite (tables weights and extra).",
    )
    @click.option(
        "-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="File to write."
    )
    @click.option("--genome-build", help="Build tag of the variant IDs (GRCh38 -> _b38) [the bundle's, else GRCh38].")
    @click.option(
        "--covariance",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also write the SNP covariance file S-PrediXcan/MultiXcan read (gzip text; needs --vcf).",
    )
    @click.option(
        "--vcf",
        type=click.Path(dir_okay=False, path_type=Path),
        help="The training cohort's VCF: the covariance of the train people's dosages.",
    )
    @writes(("output", "-o", "file"), ("covariance", "--covariance", "file"))
    def models_export(
        name: str, format_: str, output: Path, genome_build: str | None, covariance: Path | None, vcf: Path | None
    ) -> None:
        """Export a linear model bundle (elastic-net, lasso, ridge) for other tools."""
        from varscore.models.bundle import load_bundle

        if covariance is not None and vcf is None:
            raise click.UsageError("--covariance needs --vcf: the cohort whose dosages it is computed from.")
        bundle = load_bundle(name)
        result = export_predictdb(bundle, output, genome_build)
        click.echo(
            f"wrote {result.path} ({result.genes} genes, {result.weights} weights, IDs chr*_*_*_*_{result.build})"
        )
        if covariance is not None and vcf is not None:
            cov = export_covariance(bundle, vcf, covariance, genome_build)
            missing = f"; {cov.missing} model SNPs are not in {vcf} and have no rows" if cov.missing else ""
            click.echo(f"wrote {cov.path} ({cov.rows} SNP pairs of {cov.genes} genes, {cov.people} people{missing})")

    @models.command("import-predictdb")
    @click.argument("db", type=click.Path(dir_okay=False, path_type=Path))
    @click.option(
        "-o",
        "--output",
        required=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Bundle directory to write.",
    )
    @click.option(
        "--vcf", type=click.Path(dir_okay=False, path_type=Path), help="Report how many model SNPs this VCF holds."
    )
    @click.option(
        "--genes",
        "genes_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Gene/TSS table (TSV, GTF or GFF3) giving the model genes' TSSs.",
    )
    @click.option(
        "--backbone",
        default="elastic-net",
        show_default=True,
        type=click.Choice(["elastic-net", "lasso", "ridge"]),
        help="Backbone to record when the database does not say.",
    )
    @writes(("output", "-o", "bundle"))
    def models_import_predictdb(
        db: Path, output: Path, vcf: Path | None, genes_path: Path | None, backbone: str
    ) -> None:
        """Make a linear model bundle from a PredictDB (PrediXcan) sqlite database."""
        from varscore.genome.fasta import load_genes
        from varscore.models.bundle import BundleMetadata, save_bundle, sha256
        from varscore.plugin.manager import get_output_mode

        imported = read_predictdb(db, vcf=vcf, backbone=backbone)
        for line in imported.report:
            click.echo(line, err=True)
        model_genes = set(imported.backbone.genes)
        genes = [g for g in load_genes(genes_path) if g.gene_id in model_genes] if genes_path else []
        build = {"b38": "GRCh38", "b37": "GRCh37"}.get(imported.build or "")
        save_bundle(
            output,
            name=output.name,
            backbone=imported.backbone,
            output_mode=get_output_mode("scalar")(),
            genes=genes,
            about=BundleMetadata(
                genome_build=build,
                provenance={"predictdb": str(db), "predictdb_sha256": sha256(db)},
                extra={"train_genes": sorted(model_genes)},
            ),
        )
        click.echo(f"wrote {output} ({len(model_genes)} genes)")
