"""High-scoring variants (HSVs), matched control variants, enrichment of a variant set for known
causal variants, and sign agreement of variant weights with a linear model.

HSVs of a gene: the ``k`` variants with the largest ``|ISM|``; ``k`` = the number of non-zero
elastic-net coefficients for that gene, so that every model contributes as many variants as the
linear model selects.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from varscore.errors import InputError

if TYPE_CHECKING:
    from varscore.analysis.inputs import AnalysisInputs
    from varscore.analysis.ism import ModelScorer
    from varscore.analysis.matched import MatchedEnrichment
    from varscore.types import Gene

HSV_MAF_TOLERANCE = 0.005
DRIVER_MAF_TOLERANCE = 0.10
CONTROL_DISTANCE_BP = 2500


def top_k_by_magnitude(weights: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` entries of ``weights`` ``(V,)`` with the largest ``|weight|``, largest
    first; ties keep the earlier index. ``k`` larger than ``V`` gives all ``V``."""
    if k < 0:
        raise InputError(f"k must be >= 0; got {k}.")
    weights = np.asarray(weights, dtype=np.float64)
    order = np.argsort(-np.abs(weights), kind="stable")
    return order[: min(k, len(weights))]


def k_from_linear(linear_backbone: object) -> dict[str, int]:
    """Per gene id: how many variants a genotype model uses (an elastic net's non-zero coefficients)."""
    from varscore.plugin.contracts import GenotypeBackbone

    if not isinstance(linear_backbone, GenotypeBackbone):
        raise InputError("--linear must be a genotype model bundle (e.g. elastic-net, lasso or ridge).")
    return {gene_id: len(linear_backbone.used_variants(gene_id)) for gene_id in linear_backbone.gene_ids()}


def weight_pairs(
    linear_scorer: ModelScorer, genes: Sequence[Gene], ism: pd.DataFrame, only_nonzero: bool = True
) -> pd.DataFrame:
    """The ISM table's variants that ``linear_scorer``'s model weighs (non-zero weights only, with
    ``only_nonzero``): columns gene, key, linear_weight (the additive weight per ALT dosage) and
    model_weight (the ISM delta), in the ISM table's order."""
    weights: dict[tuple[str, str], float] = {}
    for gene in genes:
        per_key = linear_scorer.allele_weights(gene)
        if per_key is None and linear_scorer.has_gene(gene):
            raise InputError(f"Model '{linear_scorer.name}' has no additive per-variant weights to compare signs with.")
        weights.update({(gene.label, key): w for key, w in (per_key or {}).items() if w != 0 or not only_nonzero})
    keep = [(g, k) in weights for g, k in zip(ism["gene"], ism["key"], strict=True)]
    rows = ism[keep]
    return pd.DataFrame(
        {
            "gene": rows["gene"].to_numpy(),
            "key": rows["key"].to_numpy(),
            "linear_weight": [weights[(g, k)] for g, k in zip(rows["gene"], rows["key"], strict=True)],
            "model_weight": rows["delta"].to_numpy(dtype=float),
        }
    )


def high_scoring_variants(ism: pd.DataFrame, k_by_gene: dict[str, int] | int) -> pd.DataFrame:
    """The HSVs of every gene of an ISM table (columns gene, delta, ...): the ``k`` rows of each
    gene with the largest ``|delta|``, with ``hsv_rank`` (1 = largest). ``k_by_gene`` is one ``k``
    for all genes, or a ``k`` per gene label/id (genes it lacks get no HSVs)."""
    parts = []
    for gene, rows in ism.groupby("gene", sort=False):
        k = k_by_gene if isinstance(k_by_gene, int) else k_by_gene.get(str(gene))
        if k is None or k == 0:
            continue
        picked = rows.iloc[top_k_by_magnitude(rows["delta"].to_numpy(), int(k))].copy()
        picked["hsv_rank"] = np.arange(1, len(picked) + 1)
        parts.append(picked)
    if not parts:
        return ism.iloc[0:0].assign(hsv_rank=pd.Series(dtype=int))
    return pd.concat(parts, ignore_index=True)


def filter_by_maf(hsvs: pd.DataFrame, min_maf: float) -> pd.DataFrame:
    """The rows of ``hsvs`` (a table with a ``maf`` column) whose MAF is at least ``min_maf``: the
    HSVs left after removing those with MAF < ``min_maf`` (``hsv_rank`` kept as it was)."""
    if not 0 <= min_maf <= 0.5:
        raise InputError(f"The minimum MAF must be between 0 and 0.5; got {min_maf:g}.")
    if "maf" not in hsvs.columns or hsvs["maf"].isna().any():
        raise InputError("Filtering HSVs by MAF needs every HSV's MAF: score the cohort's variants (--vcf).")
    return hsvs[hsvs["maf"].to_numpy(dtype=np.float64) >= min_maf].reset_index(drop=True)


def matched_controls(
    selected: pd.DataFrame,
    pool: pd.DataFrame,
    maf_tolerance: float,
    distance_bp: int = CONTROL_DISTANCE_BP,
) -> pd.DataFrame:
    """Control variants for each selected variant: variants of ``pool`` (columns gene, key,
    distance_to_tss, maf) of the same gene, not themselves selected, within ``distance_bp`` of the
    selected variant's distance to the TSS and within ``maf_tolerance`` (absolute) of its MAF.

    Returns one row per (selected variant, control): the control's pool row plus
    ``matched_to`` (the selected variant's key). A control may serve several selected variants.
    """
    chosen = set(zip(selected["gene"], selected["key"], strict=True))
    rows = []
    for gene, picked in selected.groupby("gene", sort=False):
        candidates = pool[(pool["gene"] == gene)]
        candidates = candidates[[(gene, k) not in chosen for k in candidates["key"]]]
        dist = candidates["distance_to_tss"].to_numpy()
        maf = candidates["maf"].to_numpy()
        for _, variant in picked.iterrows():
            ok = (np.abs(dist - variant["distance_to_tss"]) <= distance_bp) & (
                np.abs(maf - variant["maf"]) <= maf_tolerance + 1e-12
            )
            rows.append(candidates[ok].assign(matched_to=variant["key"]))
    if not rows:
        return pool.iloc[0:0].assign(matched_to=pd.Series(dtype=str))
    return pd.concat(rows, ignore_index=True)


@dataclass(frozen=True)
class Enrichment:
    """Causal variants among selected variants vs among their matched controls.

    ``odds_ratio`` (Haldane-corrected: +0.5 per cell) and one-sided Fisher exact ``p_value``
    (selected enriched). Controls are counted once per (gene, variant).
    """

    selected: int
    selected_causal: int
    controls: int
    controls_causal: int
    odds_ratio: float
    p_value: float

    @property
    def selected_rate(self) -> float:
        return self.selected_causal / self.selected if self.selected else math.nan

    @property
    def control_rate(self) -> float:
        return self.controls_causal / self.controls if self.controls else math.nan


def causal_enrichment(selected: pd.DataFrame, controls: pd.DataFrame, causal: Iterable[tuple[str, str]]) -> Enrichment:
    """:class:`Enrichment` of ``selected`` (columns gene, key) over ``controls`` for the
    ``causal`` ``(gene, key)`` pairs (a variant is causal for a gene, not for every gene whose
    window holds it)."""
    from scipy.stats import fisher_exact

    causal_set = set(causal)
    sel = set(zip(selected["gene"], selected["key"], strict=True))
    ctl = set(zip(controls["gene"], controls["key"], strict=True)) - sel
    a, b = len(sel & causal_set), len(sel - causal_set)
    c, d = len(ctl & causal_set), len(ctl - causal_set)
    odds = ((a + 0.5) * (d + 0.5)) / ((b + 0.5) * (c + 0.5))
    p = float(fisher_exact([[a, b], [c, d]], alternative="greater")[1]) if (a + b) and (c + d) else math.nan
    return Enrichment(a + b, a, c + d, c, float(odds), p)


def read_truth(path: str) -> set[tuple[str, str]]:
    """``(gene, key)`` pairs of a simulation's ``truth_variants.tsv`` (gene by name and by id)."""
    if not Path(path).is_file():
        raise InputError(f"Truth table not found: {path}.")
    try:
        table = pd.read_csv(path, sep="\t", dtype={"chrom": str, "ref": str, "alt": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(
            f"Cannot read truth table {path}: {exc} (expected a varscore simulate truth_variants.tsv)."
        ) from exc
    needed = {"gene_id", "chrom", "pos", "ref", "alt"}
    if not needed <= set(table.columns):
        raise InputError(
            f"{path} lacks columns {', '.join(sorted(needed - set(table.columns)))}: "
            "expected a varscore simulate truth_variants.tsv."
        )
    pos = pd.to_numeric(table["pos"], errors="coerce")
    if table.empty or pos.isna().any() or (pos % 1 != 0).any() or table[list(needed)].isna().any().any():
        raise InputError(
            f"{path} has no variants, or rows with an empty field or a non-integer pos: "
            "expected a varscore simulate truth_variants.tsv."
        )
    table["pos"] = pos.astype(np.int64)
    keys = table["chrom"].astype(str) + ":" + table["pos"].astype(str) + ":" + table["ref"] + ":" + table["alt"]
    pairs = set(zip(table["gene_id"].astype(str), keys, strict=True))
    if "gene_name" in table.columns:
        pairs |= set(zip(table["gene_name"].astype(str), keys, strict=True))
    return pairs


@dataclass(frozen=True)
class SignAgreement:
    """Sign agreement of two models' variant weights over variants where both ``|weight|`` exceed
    ``threshold``: ``agree`` of ``n``; ``p_value`` is Fisher's exact test (two-sided) of the 2×2
    table of signs."""

    n: int
    agree: int
    threshold: float
    p_value: float
    linear_threshold: float = math.nan  # the linear weights' own threshold when it differs

    @property
    def fraction(self) -> float:
        return self.agree / self.n if self.n else math.nan


def sign_agreement(
    model_weights: Sequence[float] | np.ndarray,
    linear_weights: Sequence[float] | np.ndarray,
    threshold: float | None = None,
    quantile: float = 0.5,
) -> SignAgreement:
    """Compare the signs of ``model_weights`` ``(V,)`` (ISM deltas) and ``linear_weights`` ``(V,)``
    (e.g. elastic-net coefficients), aligned by variant, keeping pairs where both exceed
    ``threshold`` in magnitude, or by default (``threshold=None``) where each exceeds its own
    model's ``quantile`` of its non-zero ``|weights|`` (the two models' units differ)."""
    from scipy.stats import fisher_exact

    x = np.asarray(model_weights, dtype=np.float64)
    y = np.asarray(linear_weights, dtype=np.float64)
    if x.shape != y.shape:
        raise InputError(f"Weights must be aligned: got {x.shape} and {y.shape}.")

    def scale(w: np.ndarray) -> float:
        nonzero = np.abs(w[np.isfinite(w) & (w != 0)])
        return float(np.quantile(nonzero, quantile)) if nonzero.size else math.inf

    tx, ty = (threshold, threshold) if threshold is not None else (scale(x), scale(y))
    keep = (np.abs(x) > tx) & (np.abs(y) > ty)
    sx, sy = x[keep] > 0, y[keep] > 0
    table = [[int(np.sum(sx & sy)), int(np.sum(sx & ~sy))], [int(np.sum(~sx & sy)), int(np.sum(~sx & ~sy))]]
    p = float(fisher_exact(table)[1]) if keep.sum() else math.nan
    return SignAgreement(int(keep.sum()), int(np.sum(sx == sy)), tx, p, ty)


@dataclass(frozen=True)
class HsvJob:
    """One ``varscore hsv`` run: the ``k`` SNVs with the largest ``|ISM|`` per gene, with ``k``
    either given or, from ``linear`` (a genotype model bundle), the gene's number of non-zero
    coefficients (exactly one of the two); written to ``output``, their matched controls to
    ``controls_output``. With ``linear``, the sign agreement of the two models' weights; with
    ``truth`` (a simulation's truth_variants.tsv), the enrichment for causal variants. ``argv``
    is the command recorded in the provenance sidecars (None: this process's). ``ism``: a table
    ``varscore ism --vcf`` wrote with the same model, used instead of computing the ISM again."""

    inputs: AnalysisInputs
    output: Path
    k: int | None = None
    linear: str | None = None
    truth: Path | None = None
    controls_output: Path | None = None
    batch_size: int = 8
    progress: bool = False
    argv: Sequence[str] | None = None
    min_maf: float = 0.0  # HSVs with a lower MAF are removed after the top k are picked
    ism: Path | None = None


@dataclass
class HsvResult:
    """``hsvs``: the HSV rows (ISM columns, ``key`` and ``hsv_rank``) written to ``output``;
    ``controls``: their matched controls. ``sign`` (with a linear model, named ``linear_name``),
    ``enrichment`` and ``matched`` (with a truth table) are None when not asked for."""

    hsvs: pd.DataFrame
    controls: pd.DataFrame
    output: Path
    linear_name: str | None = None
    sign: SignAgreement | None = None
    enrichment: Enrichment | None = None
    matched: MatchedEnrichment | None = None
    min_maf: float = 0.0
    removed: int = 0  # HSVs removed for a MAF below min_maf

    def lines(self) -> list[str]:
        """What the command prints on stdout: sign agreement and causal enrichment."""
        from varscore.analysis.matched import describe_p

        lines = []
        if self.sign is not None:
            agree = self.sign
            cut = f"|ISM| > {agree.threshold:.3g} and |weight| > {agree.linear_threshold:.3g}, each model's median"
            if agree.n:
                lines.append(
                    f"sign agreement with {self.linear_name} ({cut}): {agree.agree}/{agree.n} = "
                    f"{agree.fraction:.1%} (Fisher's exact test, {describe_p(agree.p_value, agree.n)})"
                )
            else:
                lines.append(
                    f"sign agreement with {self.linear_name}: no variant has both weights above the thresholds "
                    f"({cut}; the linear model has no non-zero weight on the scored variants)"
                )
        if self.enrichment is not None:
            result = self.enrichment
            lines.append(
                f"causal variants: {result.selected_causal}/{result.selected} HSVs vs {result.controls_causal}/"
                f"{result.controls} matched controls; odds ratio {result.odds_ratio:.2f}, "
                f"one-sided Fisher p = {result.p_value:.3g}"
            )
        if self.matched is not None:
            lines.extend(self.matched.lines())
        return lines

    def notes(self) -> list[str]:
        """What the command prints on stderr: the table written."""
        removed = f"; {self.removed} with MAF < {self.min_maf:g} removed" if self.min_maf > 0 else ""
        return [f"wrote {self.output} ({len(self.hsvs)} HSVs in {self.hsvs['gene'].nunique()} genes{removed})"]


def run_hsv(job: HsvJob) -> HsvResult:
    """Run ``job``; see :class:`HsvJob`."""
    from varscore.analysis.inputs import write_table
    from varscore.analysis.ism import ModelScorer, gene_ism
    from varscore.analysis.matched import matched_enrichment
    from varscore.models.bundle import load_bundle

    if (job.linear is None) == (job.k is None):
        raise InputError("Give exactly one of --linear BUNDLE (k = its non-zero coefficients per gene) or --k N.")
    causal = read_truth(str(job.truth)) if job.truth is not None else None  # checked before anything is written
    filter_by_maf(pd.DataFrame({"maf": []}), job.min_maf)  # the threshold checked before the ISM
    run = job.inputs.load()
    ism_scores = gene_ism(run, job.ism, batch_size=job.batch_size, progress=job.progress)
    linear_scorer = ModelScorer.from_bundle(load_bundle(job.linear)) if job.linear is not None else None
    k_by_gene: dict[str, int] | int
    if linear_scorer is not None:
        per_id = k_from_linear(linear_scorer.backbone)
        k_by_gene = {g.label: per_id[g.gene_id] for g in run.genes if g.gene_id in per_id}
    else:
        k_by_gene = int(job.k or 0)
    table = high_scoring_variants(ism_scores, k_by_gene)
    picked = len(table)
    if job.min_maf > 0:
        table = filter_by_maf(table, job.min_maf)
    write_table(table.drop(columns=["key"]), job.output, run.bundle, job.argv)
    controls = matched_controls(table, ism_scores, HSV_MAF_TOLERANCE)
    if job.controls_output is not None:
        write_table(controls.drop(columns=["key"]), job.controls_output, run.bundle, job.argv)
    result = HsvResult(table, controls, job.output, min_maf=job.min_maf, removed=picked - len(table))
    if linear_scorer is not None:
        pairs = weight_pairs(linear_scorer, run.genes, ism_scores, only_nonzero=True)
        result.linear_name = linear_scorer.name
        result.sign = sign_agreement(pairs["model_weight"].to_numpy(), pairs["linear_weight"].to_numpy())
    if causal is not None:
        result.enrichment = causal_enrichment(table, controls, causal)
        result.matched = matched_enrichment(table, ism_scores, causal, HSV_MAF_TOLERANCE)
    return result
