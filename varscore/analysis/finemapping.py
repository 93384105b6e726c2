"""Fine-mapped eQTL tables and how well variant weights pick them out (the Variformer paper's
evaluation). Used by the ``finemap`` annotator plugin and by ``varscore report``.

Tables: GTEx CAVIAR (``TISSUE GENE eQTL CHROM POS Probability``), SuSiE (a gene column, a
variant id or chrom + pos, and ``pip``) and DAP-G (gene, variant id, ``variant_pip``); columns are
matched by name (case-insensitive, common aliases), whitespace- or tab-separated. Variant ids in
GTEx style (``chr1_13550_G_A_b38``) or ``chrom:pos:ref:alt`` supply chrom and pos when those
columns are missing.

Evaluation. Per gene: positives are the gene's variants with a posterior of at least
``min_posterior``; each positive gets ``negatives`` distance-matched negatives — the not-yet-used
variants of the gene absent from the fine-mapping table whose distance to the TSS is closest to the
positive's. auROC and auPR (average precision) of ``|weight|`` are computed per gene and over all
genes' pooled variants.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from varscore.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from varscore.types import Gene

FORMATS = ("auto", "caviar", "susie", "dapg")
ALIASES = {
    "gene": ("gene", "gene_id", "phenotype_id", "molecular_trait_id", "gene_name"),
    "variant": ("eqtl", "variant_id", "variant", "snp", "rsid"),
    "chrom": ("chrom", "chr", "chromosome"),
    "pos": ("pos", "position", "bp"),
    "posterior": ("probability", "pip", "variant_pip", "posterior", "posterior_prob"),
    "tissue": ("tissue", "tissue_id"),
}
REQUIRED = {
    "caviar": ("TISSUE", "GENE", "eQTL", "CHROM", "POS", "Probability"),
    "susie": ("gene", "variant_id (or chrom + pos)", "pip"),
    "dapg": ("gene", "variant_id", "variant_pip"),
}
_VARIANT_ID = re.compile(r"^(?:chr)?([0-9A-Za-z]+)[_:](\d+)(?:[_:]([ACGTN]+)[_:]([ACGTN]+))?", re.IGNORECASE)


def norm_chrom(chrom: str) -> str:
    text = str(chrom)
    return text[3:] if text.lower().startswith("chr") else text


def _norm_gene(gene: str) -> str:
    """Gene ids without their Ensembl version (``ENSG00000123.4`` -> ``ENSG00000123``)."""
    text = str(gene)
    return text.split(".")[0] if text.startswith("ENS") else text


# --------------------------------------------------------------------------------------------
# Tables


def read_finemap_table(path: str | Path, fmt: str = "auto", tissue: str | None = None) -> pd.DataFrame:
    """A fine-mapping table as columns gene, chrom, pos, ref, alt, posterior, tissue, method.

    ``fmt`` is ``caviar``, ``susie``, ``dapg`` or ``auto`` (from the columns); ``tissue`` keeps
    only that tissue's rows (tables with a tissue column).
    """
    import pandas as pd

    path = Path(path)
    if fmt not in FORMATS:
        raise InputError(f"Unknown fine-mapping format '{fmt}'. Use one of: {', '.join(FORMATS)}.")
    if not path.is_file():
        raise InputError(f"Fine-mapping table not found: {path}.")
    try:
        raw = pd.read_csv(path, sep=r"\s+", dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read fine-mapping table {path}: {exc}".splitlines()[0]) from exc
    lowered = {str(c).lstrip("#").lower(): c for c in raw.columns}
    found = {key: next((lowered[a] for a in names if a in lowered), None) for key, names in ALIASES.items()}
    if fmt == "auto":
        posterior_name = str(found["posterior"]).lower() if found["posterior"] is not None else ""
        fmt = {"probability": "caviar", "variant_pip": "dapg"}.get(posterior_name, "susie")
    needed = {
        "caviar": ("tissue", "gene", "variant", "chrom", "pos", "posterior"),
        "susie": ("gene", "posterior"),
        "dapg": ("gene", "variant", "posterior"),
    }[fmt]
    missing = [key for key in needed if found[key] is None]
    if fmt == "susie" and found["variant"] is None and (found["chrom"] is None or found["pos"] is None):
        missing.append("variant")
    if missing:
        raise InputError(
            f"Fine-mapping table {path} ({fmt}) lacks column(s) for {', '.join(missing)}: a {fmt} table needs "
            f"{', '.join(REQUIRED[fmt])}. It has: {', '.join(map(str, raw.columns))}."
        )
    table = pd.DataFrame({"gene": raw[found["gene"]].astype(str)})
    ids = raw[found["variant"]].astype(str) if found["variant"] is not None else None
    parsed = ids.str.extract(_VARIANT_ID) if ids is not None else None
    if found["chrom"] is not None and found["pos"] is not None:
        table["chrom"] = raw[found["chrom"]].astype(str)
        pos_text = raw[found["pos"]]
    elif parsed is not None:
        table["chrom"] = parsed[0]
        pos_text = parsed[1]
    else:  # unreachable: the column check above requires one of them
        raise InputError(f"Fine-mapping table {path}: no variant positions.")
    bad = pos_text.isna() | ~pos_text.astype(str).str.fullmatch(r"\d+")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        shown = ids.iloc[row] if ids is not None else pos_text.iloc[row]
        raise InputError(
            f"Fine-mapping table {path}, row {row + 2}: no position in '{shown}' (expected a POS column "
            "or ids like chr1_13550_G_A_b38)."
        )
    table["pos"] = pos_text.astype(np.int64)
    table["chrom"] = table["chrom"].map(norm_chrom)
    table["ref"] = parsed[2].fillna("").str.upper() if parsed is not None else ""
    table["alt"] = parsed[3].fillna("").str.upper() if parsed is not None else ""
    try:
        table["posterior"] = raw[found["posterior"]].astype(float)
    except ValueError as exc:
        raise InputError(f"Fine-mapping table {path}: posterior column '{found['posterior']}' is not numeric.") from exc
    if ((table["posterior"] < 0) | (table["posterior"] > 1)).any():
        raise InputError(f"Fine-mapping table {path}: posteriors must lie in [0, 1].")
    table["tissue"] = raw[found["tissue"]].astype(str) if found["tissue"] is not None else ""
    table["method"] = fmt
    if tissue:
        available = sorted(set(table["tissue"]))
        table = table[table["tissue"] == tissue]
        if table.empty:
            raise InputError(
                f"Fine-mapping table {path} has no rows for tissue '{tissue}' "
                f"(tissues: {', '.join(available[:8]) or 'none'})."
            )
    return table.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Evaluation


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the Mann-Whitney probability that a positive outscores a
    negative, ties counting one half. ``labels`` ``(N,)`` 0/1, ``scores`` ``(N,)``."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for lo, hi in zip(starts, ends, strict=True):
        ranks[order[lo:hi]] = (lo + hi + 1) / 2  # average 1-based rank of the tie group
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision: the sum over distinct score
    thresholds (high to low) of precision × the recall gained there. ``(N,)`` inputs."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    n_pos = int(labels.sum())
    if n_pos == 0:
        return math.nan
    order = np.argsort(-scores, kind="mergesort")
    hits = labels[order].astype(float)
    ranked = scores[order]
    last_of_group = np.r_[ranked[1:] != ranked[:-1], True]
    tp = np.cumsum(hits)[last_of_group]
    seen = (np.arange(1, len(scores) + 1))[last_of_group]
    precision = tp / seen
    recall_gain = np.diff(np.r_[0.0, tp]) / n_pos
    return float((precision * recall_gain).sum())


def matched_negatives(positive_distance: np.ndarray, candidate_distance: np.ndarray, per_positive: int) -> np.ndarray:
    """Indices into ``candidate_distance`` ``(C,)``: for each positive in turn (``(P,)``
    distances to the TSS, in the given order), the ``per_positive`` unused candidates with the
    closest distance (ties: the lower index). Fewer when candidates run out."""
    used = np.zeros(len(candidate_distance), dtype=bool)
    picked: list[int] = []
    for distance in positive_distance:
        free = np.flatnonzero(~used)
        if len(free) == 0:
            break
        gap = np.abs(candidate_distance[free] - distance)
        take = free[np.lexsort((free, gap))[:per_positive]]
        used[take] = True
        picked.extend(int(t) for t in take)
    return np.array(picked, dtype=np.int64)


@dataclass
class FinemapEvaluation:
    """``per_gene``: model, gene, positives, negatives, auroc, aupr. ``overall``: per model the
    pooled auroc/aupr over every gene's positives and negatives, and the mean of the per-gene values."""

    per_gene: pd.DataFrame
    overall: pd.DataFrame


def evaluate_finemap(
    weights: pd.DataFrame,
    finemapped: pd.DataFrame,
    genes: Mapping[str, Gene],
    min_posterior: float = 0.1,
    negatives: int = 5,
) -> FinemapEvaluation:
    """auROC and auPR of ``|delta|`` for fine-mapped eQTLs against distance-matched negatives.

    ``weights``: columns model, gene, chrom, pos, delta (alleles of one site keep the largest
    ``|delta|``). ``finemapped``: from :func:`read_finemap_table`. ``genes`` maps each gene name
    used in ``weights`` to its :class:`~varscore.types.Gene` (for the TSS).
    """
    import pandas as pd

    if negatives < 1:
        raise InputError(f"negatives per positive must be at least 1; got {negatives}.")
    fm = finemapped.assign(gene_key=finemapped["gene"].map(_norm_gene))
    sites = weights.assign(chrom=weights["chrom"].map(norm_chrom), magnitude=weights["delta"].abs())
    sites = sites.groupby(["model", "gene", "chrom", "pos"], as_index=False)["magnitude"].max()
    rows = []
    pooled: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for (model, gene_name), site_rows in sites.groupby(["model", "gene"], sort=True):
        gene = genes.get(str(gene_name))
        if gene is None:
            raise InputError(
                f"Gene '{gene_name}' of the weights is not in the gene table: pass the table it comes from."
            )
        keys = {_norm_gene(gene.gene_id), _norm_gene(gene.name)} - {""}
        table = fm[fm["gene_key"].isin(keys)]
        posterior = dict(zip(zip(table["chrom"], table["pos"], strict=True), table["posterior"], strict=True))
        site_keys = list(zip(site_rows["chrom"], site_rows["pos"], strict=True))
        post = np.array([posterior.get(k, math.nan) for k in site_keys])
        is_pos = post >= min_posterior
        is_candidate = np.isnan(post)
        distance = np.abs(site_rows["pos"].to_numpy() - gene.tss).astype(float)
        magnitude = site_rows["magnitude"].to_numpy()
        pos_idx = np.flatnonzero(is_pos)
        cand_idx = np.flatnonzero(is_candidate)
        neg_idx = cand_idx[matched_negatives(distance[pos_idx], distance[cand_idx], negatives)]
        if len(pos_idx) == 0 or len(neg_idx) == 0:
            continue
        labels = np.r_[np.ones(len(pos_idx)), np.zeros(len(neg_idx))]
        scores = np.r_[magnitude[pos_idx], magnitude[neg_idx]]
        rows.append(
            (model, gene_name, len(pos_idx), len(neg_idx), auroc(labels, scores), average_precision(labels, scores))
        )
        pooled.setdefault(str(model), ([], []))[0].append(labels)
        pooled[str(model)][1].append(scores)
    per_gene = pd.DataFrame(rows, columns=["model", "gene", "positives", "negatives", "auroc", "aupr"])
    overall_rows = []
    for model, (label_parts, score_parts) in sorted(pooled.items()):
        labels, scores = np.concatenate(label_parts), np.concatenate(score_parts)
        genes_rows = per_gene[per_gene["model"] == model]
        overall_rows.append(
            (
                model,
                len(genes_rows),
                int(labels.sum()),
                int((labels == 0).sum()),
                auroc(labels, scores),
                average_precision(labels, scores),
                float(genes_rows["auroc"].mean()),
                float(genes_rows["aupr"].mean()),
            )
        )
    overall = pd.DataFrame(
        overall_rows,
        columns=["model", "genes", "positives", "negatives", "auroc", "aupr", "mean_gene_auroc", "mean_gene_aupr"],
    )
    return FinemapEvaluation(per_gene, overall)
