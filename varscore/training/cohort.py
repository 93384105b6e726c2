"""Cohort data for fine-tuning: expression tables (GTEx layout), matching expression columns to VCF
samples, GTEx-style normalisation (TMM + inverse-normal transform), and the people folds and gene
sets every backbone shares."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from varscore.errors import InputError
from varscore.types import Gene, Window

if TYPE_CHECKING:
    from varscore.genome.personal import PersonalWindows

logger = logging.getLogger(__name__)

SPLITS = ("train", "tune", "test")
_SPLIT_ALIASES = {"valid": "tune", "validation": "tune", "val": "tune"}
_BED_COLUMNS = ("chr", "start", "end", "gene_id")
_EXAMPLES = 5


def _examples(names: Sequence[str], limit: int = _EXAMPLES) -> str:
    shown = ", ".join(str(n) for n in list(names)[:limit])
    return shown + ("…" if len(names) > limit else "")


def _duplicates(names: Sequence[str]) -> list[str]:
    series = pd.Series(list(names), dtype=object)
    return sorted(series[series.duplicated()].unique().tolist())


# --------------------------------------------------------------------------------------------
# Expression tables


@dataclass(frozen=True)
class ExpressionData:
    """An expression table in GTEx layout.

    - ``values``: genes × people DataFrame of float64 (index ``gene_id``, columns person IDs, in
      file order).
    - ``coordinates``: DataFrame indexed by ``gene_id`` with ``chrom``, ``start``, ``end`` (BED,
      0-based half-open; GTEx puts the TSS at ``end``).
    """

    values: pd.DataFrame
    coordinates: pd.DataFrame
    path: Path | None = None

    @property
    def people(self) -> list[str]:
        return [str(c) for c in self.values.columns]

    @property
    def genes(self) -> list[str]:
        return [str(g) for g in self.values.index]


def _header(path: Path) -> list[str]:
    import gzip

    opener = gzip.open if path.name.endswith((".gz", ".bgz")) else open
    with opener(path, "rt") as handle:
        return handle.readline().rstrip("\r\n").split("\t")


def read_expression(path: str | Path) -> ExpressionData:
    """Read a GTEx-style expression BED/TSV (plain or gzipped): columns ``#chr start end gene_id``
    then one column of per-gene normalised values per person (e.g. GTEx
    ``*.v8.normalized_expression.bed.gz``)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"Expression file not found: {path}.")
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise InputError(
            f"Cannot read expression file {path}: {exc}. It must be tab-separated text (optionally gzipped)."
        ) from exc
    names = [c.lstrip("#").strip() for c in _header(path)]  # pandas renames repeated columns
    if len(names) != table.shape[1]:
        raise InputError(f"Expression file {path}: the header has {len(names)} columns, the rows {table.shape[1]}.")
    head = [n.lower() for n in names[:4]]
    if head[:1] == ["chrom"]:
        head[0] = "chr"
    if tuple(head) != _BED_COLUMNS or len(names) < 5:
        raise InputError(
            f"Expression file {path} must start with columns '#chr start end gene_id' followed by one column "
            f"per person (GTEx layout); its columns are {_examples(names, 6)}."
        )
    people = names[4:]
    if _duplicates(people):
        raise InputError(
            f"Expression file {path} names these people in more than one column: {_examples(_duplicates(people))}."
        )
    genes = table.iloc[:, 3].astype(str).tolist()
    if _duplicates(genes):
        raise InputError(f"Expression file {path} has more than one row for genes {_examples(_duplicates(genes))}.")
    values = table.iloc[:, 4:].apply(pd.to_numeric, errors="coerce")
    values.columns = pd.Index(people)
    values.index = pd.Index(genes, name="gene_id")
    infinite = np.isinf(values.to_numpy(dtype=np.float64))
    if infinite.any():
        g, p = np.argwhere(infinite)[0]
        raise InputError(
            f"Expression file {path}: {int(infinite.sum())} values are infinite, e.g. gene {genes[g]}, person "
            f"{people[p]}: '{table.iloc[g, 4 + p]}'. Expression must be finite numbers."
        )
    bad = values.isna().to_numpy()
    if bad.any():
        g, p = np.argwhere(bad)[0]
        raise InputError(
            f"Expression file {path}: {int(bad.sum())} values are missing or not numbers, e.g. gene {genes[g]}, "
            f"person {people[p]}: '{table.iloc[g, 4 + p]}'. Remove those genes or people, or impute them."
        )
    try:
        coordinates = pd.DataFrame(
            {
                "chrom": table.iloc[:, 0].astype(str).to_numpy(),
                "start": table.iloc[:, 1].astype(np.int64).to_numpy(),
                "end": table.iloc[:, 2].astype(np.int64).to_numpy(),
            },
            index=values.index,
        )
    except ValueError as exc:
        raise InputError(f"Expression file {path}: start/end must be integers ({exc}).") from exc
    return ExpressionData(values=values.astype(np.float64), coordinates=coordinates, path=path)


TARGETS = ("normalised", "log2tpm")


def read_targets(path: str | Path, targets: str = "normalised") -> ExpressionData:
    """The training targets in ``path``: with ``targets="normalised"`` the GTEx-layout table as
    :func:`read_expression` reads it; with ``"log2tpm"`` ``path`` holds TPM, either in GTEx
    layout or as a gene table (:func:`read_gene_table`: a TSV with the gene ID first, or a GTEx
    GCT), and the values returned are ``log2(TPM + 2)`` (the paper's targets for average
    expression; negative TPM is an error)."""
    if targets not in TARGETS:
        raise InputError(f"Unknown targets '{targets}'. Choose one of: {', '.join(TARGETS)}.")
    if targets == "normalised":
        return read_expression(path)
    values, coordinates = read_tpm(path)
    return ExpressionData(values=np.log2(values + 2.0), coordinates=coordinates, path=Path(path))


def read_tpm(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """TPM as a genes × people float64 table (index: gene ID) and the genes' coordinates, from a
    GTEx-layout BED (``#chr start end gene_id`` then one column per person), a TSV whose first
    column is the gene ID (``varscore simulate``'s ``cohort.tpm.tsv``) or a GTEx GCT (no
    coordinates: an empty frame). Negative values are an error: normalised values are not TPM."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"TPM table not found: {path}.")
    header = _header(path)
    if len(header) < 2 and not header[0].startswith("#1."):
        raise InputError(
            f"TPM table {path} needs a gene ID column and one column per person (tab-separated); "
            f"its first line has {len(header)} column."
        )
    head = [n.lstrip("#").strip().lower() for n in header[:4]]
    if head[:1] == ["chrom"]:
        head[0] = "chr"
    if tuple(head) == _BED_COLUMNS:
        table = read_expression(path)
        values, coordinates = table.values, table.coordinates
    else:
        values = read_gene_table(path)
        coordinates = pd.DataFrame({"chrom": [], "start": [], "end": []})
    negative = values.to_numpy() < 0
    if negative.any():
        g, p = np.argwhere(negative)[0]
        raise InputError(
            f"TPM table {path} has {int(negative.sum())} negative values (e.g. gene {values.index[g]}, person "
            f"{values.columns[p]}: {values.iat[g, p]:g}): pass raw TPM, not normalised expression."
        )
    return values, coordinates


def read_gene_table(path: str | Path) -> pd.DataFrame:
    """Read a genes × samples table of raw values (TPM or read counts): a TSV whose first column is
    the gene ID, or a GCT (GTEx ``#1.2`` format, ``Name``/``Description`` columns). Returns a
    genes × samples float64 DataFrame indexed by gene ID."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"Gene table not found: {path}.")
    skip = 2 if _header(path)[0].startswith("#1.") else 0
    try:
        table = pd.read_csv(path, sep="\t", skiprows=skip, dtype={0: str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read gene table {path}: {exc}.") from exc
    table = table.set_index(table.columns[0])
    table.index = table.index.astype(str)
    table.index.name = "gene_id"
    if str(table.columns[0]).lower() == "description":
        table = table.drop(columns=table.columns[0])
    numeric = table.apply(pd.to_numeric, errors="coerce")
    if numeric.isna().to_numpy().any() or numeric.shape[1] == 0:
        raise InputError(f"Gene table {path} needs a gene ID column then one numeric column per sample.")
    if np.isinf(numeric.to_numpy(dtype=np.float64)).any():
        raise InputError(f"Gene table {path} holds infinite values ('inf'): values must be finite numbers.")
    if _duplicates(list(numeric.index)):
        raise InputError(
            f"Gene table {path} has more than one row for genes {_examples(_duplicates(list(numeric.index)))}."
        )
    return numeric.astype(np.float64)


# --------------------------------------------------------------------------------------------
# Sample matching

_GTEX_SAMPLE = re.compile(r"^GTEX-[A-Z0-9]+-\d+")
_GTEX_DONOR = re.compile(r"^GTEX-[A-Z0-9]+$")


def gtex_donor_id(sample_id: str) -> str:
    """The donor part of a GTEx sample ID: ``GTEX-1117F-0226-SM-5GZZ7`` → ``GTEX-1117F``."""
    return "-".join(sample_id.split("-")[:2])


@dataclass(frozen=True)
class SampleMatch:
    """People present both in the expression table and in the VCF.

    ``people`` follows the expression table's column order; ``expression_only`` and ``vcf_only``
    list the IDs found on one side only (in their own file order).
    """

    people: list[str]
    expression_only: list[str]
    vcf_only: list[str]

    def report(self) -> str:
        """One line: how many matched and the first few unmatched IDs on each side."""
        text = f"{len(self.people)} people matched between expression and VCF"
        if self.expression_only:
            text += f"; {len(self.expression_only)} only in the expression table ({_examples(self.expression_only)})"
        if self.vcf_only:
            text += f"; {len(self.vcf_only)} only in the VCF ({_examples(self.vcf_only)})"
        by_case = {s.lower(): s for s in self.vcf_only}
        case_only = [f"{p} vs {by_case[p.lower()]}" for p in self.expression_only if p.lower() in by_case]
        if case_only:
            text += (
                f"; {len(case_only)} of those IDs match only up to letter case ({_examples(case_only)}): "
                "make them identical to use those people"
            )
        return text + "."


def _id_hint(expression: Sequence[str], vcf: Sequence[str]) -> str:
    def share(names: Sequence[str], pattern: re.Pattern[str]) -> bool:
        return bool(names) and sum(bool(pattern.match(n)) for n in names) > len(names) / 2

    if share(expression, _GTEX_SAMPLE) and share(vcf, _GTEX_DONOR):
        return (
            " The expression columns look like GTEx sample IDs (GTEX-1117F-0226-SM-5GZZ7) and the VCF uses "
            "donor IDs (GTEX-1117F): rename the columns with varscore.training.cohort.gtex_donor_id."
        )
    if share(vcf, _GTEX_SAMPLE) and share(expression, _GTEX_DONOR):
        return (
            " The VCF uses GTEx sample IDs (GTEX-1117F-0226-SM-5GZZ7) and the expression donor IDs (GTEX-1117F): "
            "rename the VCF samples (bcftools reheader -s) to donor IDs."
        )
    if {n.lower() for n in expression} & {n.lower() for n in vcf}:
        return " Some IDs differ only in letter case: make them identical."
    if {n.strip() for n in expression} & {n.strip() for n in vcf}:
        return " Some IDs differ only in surrounding spaces: remove them."
    return (
        " Both must use the same person IDs; rename one side (e.g. 'bcftools reheader -s' for the VCF) "
        "or check that the files belong to the same cohort."
    )


def match_samples(expression_people: Sequence[str], vcf_samples: Sequence[str]) -> SampleMatch:
    """Match expression columns to VCF samples by identical ID.

    Raises :class:`InputError` when nothing matches (with examples from both sides and a hint,
    e.g. GTEx sample vs donor IDs) or when an ID repeats on one side; never joins by position.
    """
    expression_people = [str(p) for p in expression_people]
    vcf_samples = [str(s) for s in vcf_samples]
    for label, names in (("expression table", expression_people), ("VCF", vcf_samples)):
        if _duplicates(names):
            raise InputError(f"The {label} lists these IDs more than once: {_examples(_duplicates(names))}.")
    in_vcf, in_expression = set(vcf_samples), set(expression_people)
    people = [p for p in expression_people if p in in_vcf]
    if not people:
        raise InputError(
            f"No person ID is shared between the expression table ({len(expression_people)} people, e.g. "
            f"{_examples(expression_people, 3)}) and the VCF ({len(vcf_samples)} samples, e.g. "
            f"{_examples(vcf_samples, 3)})." + _id_hint(expression_people, vcf_samples)
        )
    match = SampleMatch(
        people=people,
        expression_only=[p for p in expression_people if p not in in_vcf],
        vcf_only=[s for s in vcf_samples if s not in in_expression],
    )
    if match.expression_only or match.vcf_only:
        logger.warning("%s", match.report())
    else:
        logger.info("%s", match.report())
    return match


# --------------------------------------------------------------------------------------------
# Normalisation (GTEx eQTL pipeline: expression filter, TMM, inverse-normal transform)


def read_people_file(path: str | Path) -> list[str]:
    """The people of a ``--people`` file, one per line (blank lines skipped). A file naming nobody
    or someone twice is a one-line error: averaging over nobody gave NaN, a repeated person
    counted twice."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"People file not found: {path}.")
    try:
        people = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read the people file {path} (one person per line): {exc}.") from exc
    if not people:
        raise InputError(f"The people file {path} names nobody: give one person per line.")
    repeated = _duplicates(people)
    if repeated:
        raise InputError(f"The people file {path} names {_examples(repeated)} more than once: give each person once.")
    return people


def held_out_people(
    bundle: Any,
    people_file: str | Path | None = None,
    default: Sequence[str] | None = None,
    cohort_people: Sequence[str] | None = None,
) -> list[str]:
    """The people a model is evaluated or analysed on: one per line of ``people_file``, else the
    test people ``bundle``'s manifest records, else ``default`` (e.g. the cohort's own test split).
    With ``cohort_people``, people missing from the cohort are a one-line error."""
    if people_file is not None:
        people = read_people_file(people_file)
    else:
        people = bundle.spec.held_out("test") or list(default or [])
    if not people:
        raise InputError(f"Model '{bundle.name}' records no test people: pass --people FILE (one person per line).")
    if cohort_people is not None:
        known = set(cohort_people)
        unknown = [p for p in people if p not in known]
        if unknown:
            raise InputError(f"{len(unknown)} held-out people are not in the cohort: {', '.join(unknown[:5])}.")
    return people


def inverse_normal_transform(values: np.ndarray, offset: float = 0.5) -> np.ndarray:
    """The package's one rank-based inverse normal transform, of each row across its columns:
    ``Φ⁻¹((rank − c) / (n − 2c + 1))`` with ``c = offset`` and tied values sharing their average
    rank (Blom's family; every choice is monotone in rank and symmetric about 0).

    ``c = 0.5`` (the default), ``(rank − 0.5) / n``: used for expression normalised here, the
    usual choice for eQTL mapping. ``c = 0``, ``rank / (n + 1)``: GTEx's own scripts, used by
    :mod:`varscore.simulate` so that simulated cohorts stay byte-identical to those already made.
    ``values`` is ``(n,)`` or ``(G, n)`` (genes × samples); the result has the same shape, float64.
    """
    from scipy.stats import norm, rankdata

    array = np.asarray(values, dtype=np.float64)
    if array.ndim not in (1, 2) or array.shape[-1] == 0:
        raise InputError(
            f"inverse_normal_transform needs an (n,) or (genes, n) array with n > 0; got shape {array.shape}."
        )
    if np.isnan(array).any():
        raise InputError("inverse_normal_transform got NaN values; remove or impute them first.")
    if not 0.0 <= offset <= 0.5:
        raise InputError(f"inverse_normal_transform offset must be between 0 and 0.5; got {offset}.")
    n = array.shape[-1]
    ranks = rankdata(array, axis=-1)  # average ranks for ties
    return np.asarray(norm.ppf((ranks - offset) / (n - 2 * offset + 1)))


def _tmm_factor(
    obs: np.ndarray,
    ref: np.ndarray,
    lib_obs: float,
    lib_ref: float,
    logratio_trim: float,
    sum_trim: float,
    weighted: bool,
    a_cutoff: float,
) -> float:
    """edgeR's ``.calcFactorTMM`` for one sample against the reference sample."""
    from scipy.stats import rankdata

    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log2((obs / lib_obs) / (ref / lib_ref))
        abs_expr = (np.log2(obs / lib_obs) + np.log2(ref / lib_ref)) / 2
        variance = (lib_obs - obs) / lib_obs / obs + (lib_ref - ref) / lib_ref / ref
    finite = np.isfinite(log_ratio) & np.isfinite(abs_expr) & (abs_expr > a_cutoff)
    log_ratio, abs_expr, variance = log_ratio[finite], abs_expr[finite], variance[finite]
    if log_ratio.size == 0 or np.max(np.abs(log_ratio)) < 1e-6:
        return 1.0
    n = log_ratio.size
    lo_l = np.floor(n * logratio_trim) + 1
    hi_l = n + 1 - lo_l
    lo_s = np.floor(n * sum_trim) + 1
    hi_s = n + 1 - lo_s
    rank_r, rank_e = rankdata(log_ratio), rankdata(abs_expr)
    keep = (rank_r >= lo_l) & (rank_r <= hi_l) & (rank_e >= lo_s) & (rank_e <= hi_s)
    if weighted:
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.nansum(log_ratio[keep] / variance[keep]) / np.nansum(1 / variance[keep])
    else:
        factor = np.mean(log_ratio[keep]) if keep.any() else np.nan
    if not np.isfinite(factor):
        factor = 0.0
    return float(2.0**factor)


def tmm_factors(
    counts: np.ndarray | pd.DataFrame,
    logratio_trim: float = 0.3,
    sum_trim: float = 0.05,
    weighted: bool = True,
    a_cutoff: float = -1e10,
    reference: int | None = None,
) -> np.ndarray:
    """TMM normalisation factors, as edgeR's ``calcNormFactors(method="TMM")``.

    ``counts`` is ``(G, S)`` read counts (genes × samples); returns ``(S,)`` float64 factors whose
    geometric mean is 1. Each sample is compared with a reference sample (by default the one whose
    upper quartile of count/library size is closest to the mean upper quartile): genes' log-ratios
    ``M`` and mean log-expressions ``A`` are trimmed (``logratio_trim`` of ``M`` and ``sum_trim``
    of ``A`` from each end) and the remaining ``M`` averaged with inverse asymptotic-variance
    weights. Library sizes are column sums; effective library size = library size × factor.
    """
    x = np.asarray(counts, dtype=np.float64)
    if x.ndim != 2:
        raise InputError(f"tmm_factors needs a (genes, samples) count matrix; got shape {x.shape}.")
    if np.isnan(x).any() or (x < 0).any():
        raise InputError("Read counts must be non-negative numbers without NaN.")
    lib_size = x.sum(axis=0)
    if (lib_size <= 0).any():
        raise InputError(
            f"Samples at columns {_examples([str(i) for i in np.flatnonzero(lib_size <= 0)])} have no reads; remove them."
        )
    x = x[(x > 0).any(axis=1)]
    n_samples = x.shape[1]
    if x.shape[0] == 0 or n_samples == 1:
        return np.ones(n_samples)
    if reference is None:
        upper = np.quantile(x, 0.75, axis=0) / lib_size  # R's quantile type 7 = numpy's linear
        if np.median(upper) < 1e-20:
            reference = int(np.argmax(np.sqrt(x).sum(axis=0)))
        else:
            reference = int(np.argmin(np.abs(upper - upper.mean())))
    factors = np.array(
        [
            _tmm_factor(
                x[:, i], x[:, reference], lib_size[i], lib_size[reference], logratio_trim, sum_trim, weighted, a_cutoff
            )
            for i in range(n_samples)
        ]
    )
    return factors / np.exp(np.mean(np.log(factors)))


@dataclass(frozen=True)
class NormalisedExpression:
    """GTEx-style normalised expression.

    - ``values``: kept genes × samples DataFrame of inverse-normal-transformed TMM-CPM values.
    - ``norm_factors``: TMM factor per sample (Series, geometric mean 1), computed on all genes.
    - ``dropped_genes``: genes that failed the expression thresholds.
    """

    values: pd.DataFrame
    norm_factors: pd.Series
    dropped_genes: list[str] = field(default_factory=list)


def normalise_expression(
    tpm: pd.DataFrame,
    counts: pd.DataFrame,
    tpm_threshold: float = 0.1,
    count_threshold: int = 6,
    sample_fraction: float = 0.2,
) -> NormalisedExpression:
    """Normalise raw expression as the GTEx eQTL pipeline does.

    ``tpm`` and ``counts`` are genes × samples DataFrames with the same genes and samples. Genes are
    kept when ≥ ``tpm_threshold`` TPM and ≥ ``count_threshold`` reads in at least
    ``sample_fraction`` of samples; counts are TMM-normalised (factors from all genes) to CPM, then
    each kept gene is inverse-normal transformed across samples.
    """
    if set(tpm.index) != set(counts.index) or set(tpm.columns) != set(counts.columns):
        genes = sorted(set(tpm.index) ^ set(counts.index))
        samples = sorted(set(tpm.columns) ^ set(counts.columns))
        raise InputError(
            "TPM and read-count tables must have the same genes and samples; they differ in "
            f"{len(genes)} genes ({_examples(genes)}) and {len(samples)} samples ({_examples(samples)})."
        )
    counts = counts.loc[tpm.index, tpm.columns]
    n = tpm.shape[1]
    expressed = ((tpm >= tpm_threshold).sum(axis=1) >= sample_fraction * n) & (
        (counts >= count_threshold).sum(axis=1) >= sample_fraction * n
    )
    factors = tmm_factors(counts.to_numpy())
    cpm = counts / (counts.sum(axis=0) * factors) * 1e6
    kept = cpm.loc[expressed]
    dropped = [str(g) for g in tpm.index[~expressed.to_numpy()]]
    logger.info(
        "normalisation kept %d of %d genes (%d below %.3g TPM / %d reads in %.0f%% of samples)",
        len(kept),
        len(tpm),
        len(dropped),
        tpm_threshold,
        count_threshold,
        100 * sample_fraction,
    )
    if kept.empty:
        raise InputError(
            f"No gene passes the expression thresholds (≥{tpm_threshold} TPM and ≥{count_threshold} reads in "
            f"≥{100 * sample_fraction:.0f}% of {n} samples). Are the tables TPM and raw read counts?"
        )
    values = pd.DataFrame(inverse_normal_transform(kept.to_numpy()), index=kept.index, columns=kept.columns)
    return NormalisedExpression(
        values=values, norm_factors=pd.Series(factors, index=tpm.columns), dropped_genes=dropped
    )


# --------------------------------------------------------------------------------------------
# Expression matrix for training


@dataclass(frozen=True)
class ExpressionMatrix:
    """Targets for training: ``values`` is ``(G, P)`` float32, rows ``genes``, columns ``people``;
    ``missing_genes`` lists requested genes the expression table lacks (skipped)."""

    values: np.ndarray
    genes: list[str]
    people: list[str]
    missing_genes: list[str] = field(default_factory=list)


def _strip_version(gene_id: str) -> str:
    return gene_id.split(".", 1)[0] if gene_id.startswith("ENS") else gene_id


def expression_matrix(
    expression: ExpressionData,
    genes: Sequence[str | Gene],
    people: Sequence[str],
    missing: Literal["error", "skip"] = "error",
) -> ExpressionMatrix:
    """The ``(G, P)`` float32 expression of ``genes`` (IDs or :class:`Gene`) in ``people``.

    Gene IDs match exactly, or without their Ensembl version (``ENSG…1.5`` vs ``ENSG…1``) when that
    is unambiguous. Genes missing from the table are an :class:`InputError` listing them, or with
    ``missing="skip"`` are logged and left out. People missing from the table are always an error.
    """
    if missing not in ("error", "skip"):
        raise InputError(f"missing must be 'error' or 'skip'; got '{missing}'.")
    table = expression.values
    columns = set(table.columns)
    absent_people = [p for p in people if p not in columns]
    if absent_people:
        raise InputError(
            f"{len(absent_people)} people are not columns of the expression table: {_examples(absent_people)}. "
            "Match them with varscore.training.cohort.match_samples first."
        )
    exact = {str(g): str(g) for g in table.index}
    versionless: dict[str, list[str]] = {}
    for g in table.index:
        versionless.setdefault(_strip_version(str(g)), []).append(str(g))
    rows: list[str] = []
    found: list[str] = []
    absent: list[str] = []
    for gene in genes:
        gene_id = gene.gene_id if isinstance(gene, Gene) else str(gene)
        hit = exact.get(gene_id)
        if hit is None:
            candidates = versionless.get(_strip_version(gene_id), [])
            hit = candidates[0] if len(candidates) == 1 else None
        if hit is None:
            absent.append(gene_id)
        else:
            rows.append(hit)
            found.append(gene_id)
    if absent:
        where = f"expression table {expression.path}" if expression.path else "the expression table"
        if missing == "error" or not found:
            raise InputError(
                f"{len(absent)} of {len(genes)} genes are not in {where}: {_examples(absent)}. "
                "Drop them from the gene list, or pass missing='skip'."
            )
        logger.warning("%d genes not in %s skipped: %s", len(absent), where, _examples(absent))
    values = table.loc[rows, list(people)].to_numpy(dtype=np.float32)
    return ExpressionMatrix(values=values, genes=found, people=list(people), missing_genes=absent)


# --------------------------------------------------------------------------------------------
# Folds of people and gene sets


def _split_sizes(n: int, fractions: Sequence[float], what: str) -> list[int]:
    """Sizes summing to ``n`` in proportion to ``fractions`` (largest remainder)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise InputError(
            f"fractions must be three non-negative numbers (train, tune, test) summing to 1; got {tuple(fractions)}."
        )
    exact = np.array(fractions, dtype=np.float64) * n
    sizes = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - sizes), kind="stable")[: n - sizes.sum()]:
        sizes[i] += 1
    empty = [SPLITS[i] for i in range(3) if fractions[i] > 0 and sizes[i] == 0]
    if empty:
        raise InputError(
            f"{n} {what} are too few to split {tuple(fractions)}: the {', '.join(empty)} set would be empty."
        )
    return sizes.tolist()


def _unique_sorted(names: Sequence[str], what: str) -> list[str]:
    names = [str(n) for n in names]
    if _duplicates(names):
        raise InputError(f"{what} listed more than once: {_examples(_duplicates(names))}.")
    return sorted(names)


def make_folds(
    people: Sequence[str],
    n_replicates: int = 3,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> pd.DataFrame:
    """Random train/tune/test splits of ``people``, one per replicate.

    Returns a DataFrame with columns ``person``, ``replicate`` (0-based int) and ``split``
    (train/tune/test), one row per person × replicate, sorted by replicate, split and person.
    Each replicate is a different permutation drawn from ``seed``; the input order does not matter
    (people are sorted first), so the same people and seed always give the same folds.
    """
    if n_replicates < 1:
        raise InputError(f"n_replicates must be at least 1; got {n_replicates}.")
    ordered = _unique_sorted(people, "People")
    sizes = _split_sizes(len(ordered), fractions, "people")
    labels = np.repeat(np.array(SPLITS), sizes)
    rng = np.random.default_rng(seed)
    frames = []
    for replicate in range(n_replicates):
        permuted = np.array(ordered, dtype=object)[rng.permutation(len(ordered))]
        frames.append(pd.DataFrame({"person": permuted, "replicate": replicate, "split": labels}))
    return _sorted_folds(pd.concat(frames, ignore_index=True))


def _sorted_folds(folds: pd.DataFrame) -> pd.DataFrame:
    order = folds["split"].map({s: i for i, s in enumerate(SPLITS)})
    folds = folds.assign(_order=order).sort_values(["replicate", "_order", "person"], kind="stable")
    return folds.drop(columns="_order").reset_index(drop=True)


def write_folds(folds: pd.DataFrame, path: str | Path) -> Path:
    """Write folds as a TSV (``person replicate split``), atomically; returns the path."""
    from varscore.io.outputguard import atomic_file

    path = Path(path)
    with atomic_file(path) as tmp:
        folds[["person", "replicate", "split"]].to_csv(tmp, sep="\t", index=False)
    return path


def read_folds(path: str | Path, known_people: Sequence[str] | None = None) -> pd.DataFrame:
    """Read folds written by :func:`write_folds`.

    With ``known_people`` (e.g. the matched cohort), a fold file naming people outside it is an
    :class:`InputError` listing a few; known people the file lacks are logged as a warning and
    listed in ``folds.attrs["missing_people"]`` (they belong to no split).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"Folds file not found: {path}. Write one with varscore.training.cohort.write_folds.")
    try:
        folds = pd.read_csv(path, sep="\t", dtype={"person": str, "split": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"Cannot read folds file {path}: {exc}.") from exc
    needed = ["person", "replicate", "split"]
    if any(c not in folds.columns for c in needed):
        raise InputError(
            f"Folds file {path} needs columns person, replicate, split (tab-separated); it has {_examples(list(folds.columns))}."
        )
    folds = folds[needed].copy()
    folds["split"] = folds["split"].str.strip().str.lower().replace(_SPLIT_ALIASES)
    bad = sorted(set(folds["split"]) - set(SPLITS))
    if bad:
        raise InputError(f"Folds file {path}: split must be train, tune or test; got {_examples(bad)}.")
    replicate = pd.to_numeric(folds["replicate"], errors="coerce")
    if replicate.isna().any() or (replicate % 1 != 0).any():
        raise InputError(f"Folds file {path}: replicate must be an integer.")
    folds["replicate"] = replicate.astype(int)
    repeated = folds.duplicated(["person", "replicate"])
    if repeated.any():
        raise InputError(
            f"Folds file {path} puts people in two splits of one replicate: {_examples(folds.loc[repeated, 'person'].tolist())}."
        )
    missing: list[str] = []
    if known_people is not None:
        known = set(known_people)
        unknown = sorted(set(folds["person"]) - known)
        if unknown:
            raise InputError(
                f"Folds file {path} names {len(unknown)} people who are not in the cohort: {_examples(unknown)}. "
                "Use the folds made for this cohort, or make new ones with varscore.training.cohort.make_folds."
            )
        listed = set(folds["person"])
        missing = [p for p in known_people if p not in listed]
        if missing:
            logger.warning(
                "%d people of the cohort are not in folds file %s and are left out: %s",
                len(missing),
                path,
                _examples(missing),
            )
    folds = _sorted_folds(folds)
    folds.attrs["missing_people"] = missing
    return folds


def fold_people(folds: pd.DataFrame, replicate: int, split: str) -> list[str]:
    """The people of one split of one replicate, sorted."""
    if split not in SPLITS:
        raise InputError(f"split must be one of {', '.join(SPLITS)}; got '{split}'.")
    if replicate not in set(folds["replicate"]):
        raise InputError(f"Replicate {replicate} is not in the folds (they have {sorted(set(folds['replicate']))}).")
    rows = folds[(folds["replicate"] == replicate) & (folds["split"] == split)]
    return sorted(rows["person"].astype(str))


def nested_train_subset(people: Sequence[str], fraction: float, seed: int = 0) -> list[str]:
    """A fraction of the train ``people`` (the paper's learning curves, "training with downsampled
    donors"): the first ``round(fraction × n)`` (at least 2) in a random order fixed by ``seed``
    and independent of the input order, returned sorted. For one seed and one set of people the
    subsets of growing fractions are nested (each holds every smaller one)."""
    if not 0.0 < fraction <= 1.0:
        raise InputError(f"The train fraction must be in (0, 1]; got {fraction}.")
    ordered = _unique_sorted(people, "People")
    keep = max(2, int(round(fraction * len(ordered))))
    if keep > len(ordered):
        raise InputError(f"A train fraction needs at least 2 train people; there are {len(ordered)}.")
    order = np.random.default_rng([seed, 25_50_75]).permutation(len(ordered))
    return sorted(ordered[i] for i in order[:keep])


def split_genes(
    genes: Sequence[str | Gene],
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> pd.DataFrame:
    """Random train/tune/test gene sets: a DataFrame with ``gene_id`` and ``set``, sorted by set and
    gene; independent of the input order (genes are sorted first)."""
    ids = _unique_sorted([g.gene_id if isinstance(g, Gene) else str(g) for g in genes], "Genes")
    sizes = _split_sizes(len(ids), fractions, "genes")
    labels = np.repeat(np.array(SPLITS), sizes)
    permuted = np.array(ids, dtype=object)[np.random.default_rng(seed).permutation(len(ids))]
    table = pd.DataFrame({"gene_id": permuted, "set": labels})
    return _sorted_gene_sets(table)


def _sorted_gene_sets(table: pd.DataFrame) -> pd.DataFrame:
    order = table["set"].map({s: i for i, s in enumerate(SPLITS)})
    table = table.assign(_order=order).sort_values(["_order", "gene_id"], kind="stable")
    return table.drop(columns="_order").reset_index(drop=True)


def write_gene_sets(gene_sets: pd.DataFrame, path: str | Path) -> Path:
    """Write gene sets as a TSV (``gene_id set``), atomically; returns the path."""
    from varscore.io.outputguard import atomic_file

    path = Path(path)
    with atomic_file(path) as tmp:
        gene_sets[["gene_id", "set"]].to_csv(tmp, sep="\t", index=False)
    return path


def read_gene_sets(path: str | Path, known_genes: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a ``gene_id<TAB>set`` TSV (set: train/tune/test; ``valid``/``validation`` read as tune).

    With ``known_genes``, genes outside it are an :class:`InputError` listing a few.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"Gene sets file not found: {path}.")
    try:
        table = pd.read_csv(path, sep="\t", dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"Cannot read gene sets file {path}: {exc}.") from exc
    if "gene_id" not in table.columns or "set" not in table.columns:
        raise InputError(
            f"Gene sets file {path} needs columns gene_id and set (tab-separated); it has {_examples(list(table.columns))}."
        )
    table = table[["gene_id", "set"]].copy()
    table["set"] = table["set"].str.strip().str.lower().replace(_SPLIT_ALIASES)
    bad = sorted(set(table["set"]) - set(SPLITS))
    if bad:
        raise InputError(f"Gene sets file {path}: set must be train, tune or test; got {_examples(bad)}.")
    if _duplicates(table["gene_id"].tolist()):
        raise InputError(
            f"Gene sets file {path} lists genes more than once: {_examples(_duplicates(table['gene_id'].tolist()))}."
        )
    if known_genes is not None:
        unknown = sorted(set(table["gene_id"]) - set(known_genes))
        if unknown:
            raise InputError(f"Gene sets file {path} names {len(unknown)} unknown genes: {_examples(unknown)}.")
    return _sorted_gene_sets(table)


# --------------------------------------------------------------------------------------------
# The cohort a model is trained and evaluated on (containers and loader)


@dataclass
class GeneData:
    """One gene's personal windows and expression, people in the cohort's order.

    ``expression``: ``(P,)`` float32; ``windows`` builds ``(B, L, 4)`` batches of those people;
    ``coverage``: ``(P, bins)`` float32 observed coverage over the window's bins (track mode), or None.
    """

    gene: Gene
    windows: PersonalWindows
    expression: np.ndarray
    coverage: np.ndarray | None = None


@dataclass
class FinetuneData:
    """Everything fine-tuning needs: genes (train genes only) and the people's fold split.

    ``train``, ``tune``, ``test``: indices into ``people``; ``monitor_genes``: genes evaluated on
    the tune people for early stopping but not trained on.
    """

    genes: list[GeneData]
    people: list[str]
    train: np.ndarray
    tune: np.ndarray
    test: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    # genes only evaluated on the tune people, never trained on (early stopping on unseen genes)
    monitor_genes: list[GeneData] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.genes:
            raise InputError("No genes to train on.")
        if len(self.train) < 2 or len(self.tune) < 2:
            raise InputError(
                f"Fine-tuning needs at least 2 train and 2 tune people; got {len(self.train)} and {len(self.tune)}."
            )


@dataclass
class CohortInputs:
    """Paths and choices that define a fine-tuning or evaluation cohort."""

    vcf: Path
    expression: Path
    genes: Path
    fasta: Path
    folds: Path | None = None
    replicate: int = 0
    gene_names: Sequence[str] | None = None
    coverage: Path | None = None  # track mode: coverage.npz or a directory of per-person bigWigs
    # "normalised": the expression file's values as they are (e.g. GTEx's inverse-normal values);
    # "log2tpm": the file holds TPM (GTEx layout, or a gene table: TSV / GCT) and the targets are
    # log2(TPM + 2) (see read_targets)
    targets: str = "normalised"


@dataclass
class LoadedCohort:
    """People split into folds and per-gene personal windows + expression."""

    data: FinetuneData
    folds: Any  # pandas DataFrame: person, replicate, split
    report: list[str]


def load_cohort(
    inputs: CohortInputs, window_size: int, fold_seed: int = 0, bin_size: int | None = None, split: bool = True
) -> LoadedCohort:
    """Read the VCF, expression and genes; match people; build per-gene personal windows.

    With ``inputs.coverage`` each gene also gets the people's observed coverage over the window in
    ``bin_size``-bp bins (see :func:`read_coverage`).

    Folds come from ``inputs.folds`` when given (the same file for every backbone); otherwise
    they are made with ``fold_seed`` (80/10/10, 3 replicates); without ``split`` (a cohort
    evaluated whole, ``evaluate --all-people``) and no folds file, every person is in every split
    and ``folds`` is None, so a cohort too small to split is still read. Genes missing from the
    expression file are reported and skipped; people present on one side only are reported.
    """
    from varscore.genome.fasta import Genome, load_genes
    from varscore.genome.personal import GenotypeReader, PersonalWindows
    from varscore.io.vcf import vcf_samples
    from varscore.types import tss_window

    expression = read_targets(inputs.expression, inputs.targets)
    match = match_samples(expression.people, vcf_samples(inputs.vcf))
    people = match.people
    report = [match.report()]
    if inputs.folds:
        folds = read_folds(inputs.folds, known_people=people)
    else:
        folds = make_folds(people, seed=fold_seed) if split else None
    if folds is None and len(people) < 2:
        raise InputError(
            f"Evaluating a cohort needs at least 2 people in both the VCF and the expression; got {len(people)}."
        )
    if folds is None:  # evaluated whole: everyone in every split (train: the people missing calls take the mean of)
        splits: dict[str, list[str]] = {name: list(people) for name in ("train", "tune", "test")}
    else:
        splits = {s: fold_people(folds, inputs.replicate, s) for s in ("train", "tune", "test")}
    position = {p: i for i, p in enumerate(people)}
    genes = load_genes(inputs.genes, names=inputs.gene_names)
    matrix = expression_matrix(expression, genes, people, missing="skip")
    if matrix.missing_genes:
        report.append(f"genes missing from the expression file (skipped): {', '.join(matrix.missing_genes[:10])}")
    kept = {g: i for i, g in enumerate(matrix.genes)}
    genome = Genome(inputs.fasta)
    gene_data = []
    with GenotypeReader(inputs.vcf, samples=people) as reader:
        for gene in genes:
            row = kept.get(gene.gene_id, kept.get(gene.name))
            if row is None:
                continue
            window = tss_window(gene, window_size)
            sequence = genome.window_sequence(window)
            genotypes = reader.read(window, sequence.one_hot)  # REF checked against the same fetch
            gene_data.append(GeneData(gene, PersonalWindows(sequence.one_hot, genotypes), matrix.values[row]))
        report.extend(genotype_report([g.windows.genotypes.summary for g in gene_data], reader.contig_names))
    if inputs.coverage is not None:
        if bin_size is None:
            raise InputError("Coverage needs the model's bin size to be read.")
        windows = {g.gene.gene_id: tss_window(g.gene, window_size) for g in gene_data}
        coverage = read_coverage(inputs.coverage, windows, people, bin_size)
        for g in gene_data:
            g.coverage = coverage[g.gene.gene_id]
    if not gene_data:
        raise InputError(f"None of the genes in {inputs.genes} has expression in {inputs.expression}.")
    report.append(
        f"{len(gene_data)} genes; people: {len(splits['train'])} train, {len(splits['tune'])} tune, "
        f"{len(splits['test'])} test (replicate {inputs.replicate})"
    )
    data = FinetuneData(
        genes=gene_data,
        people=people,
        train=np.array([position[p] for p in splits["train"]], dtype=np.int64),
        tune=np.array([position[p] for p in splits["tune"]], dtype=np.int64),
        test=np.array([position[p] for p in splits["test"]], dtype=np.int64),
    )
    return LoadedCohort(data, folds, report)


def reference_only(data: FinetuneData) -> FinetuneData:
    """The paper's reference-genome training (Fig. S3) on ``data``'s genes and folds: every person's
    window is the reference (no variant applied) and every person's target is the mean of their
    split's values (train people: the mean over the train people; tune and test people: over the
    tune and test people), so the model learns each gene's average expression from its
    reference sequence alone."""
    import dataclasses

    genes = []
    for gene in data.genes:
        genotypes = gene.windows.genotypes
        empty = dataclasses.replace(
            genotypes,
            positions=genotypes.positions[:0],
            refs=genotypes.refs[:0],
            alts=genotypes.alts[:0],
            haplotypes=genotypes.haplotypes[:, :, :0],
            calls=None,
        )
        windows = type(gene.windows)(gene.windows.reference, empty, gene.windows.mode, gene.windows.dtype)
        values = np.asarray(gene.expression, dtype=np.float64)
        target = values.copy()
        for split in (data.train, data.tune, data.test):
            if len(split):
                target[split] = values[split].mean()
        genes.append(GeneData(gene.gene, windows, target.astype(np.float32), gene.coverage))
    return FinetuneData(genes=genes, people=data.people, train=data.train, tune=data.tune, test=data.test)


def genotype_report(summaries: Sequence[Any], contig_names: dict[str, str]) -> list[str]:
    """What reading the genes' windows used and dropped, over all windows
    (:class:`~varscore.genome.personal.GenotypeSummary` each): one line on contig names, one on alleles
    and calls."""

    def total(name: str) -> int:
        return sum(int(getattr(s, name)) for s in summaries)

    def examples(name: str) -> str:
        found = [e for s in summaries for e in getattr(s, name)][:3]
        return f" (e.g. {', '.join(found)})" if found else ""

    renamed = {ref: vcf for ref, vcf in contig_names.items() if ref != vcf}
    lines = []
    if renamed:
        lines.append("contig names: " + ", ".join(f"{ref} (reference) = {vcf} (VCF)" for ref, vcf in renamed.items()))
    elif contig_names:
        lines.append(f"contig names match between reference and VCF ({', '.join(contig_names)})")
    text = (
        f"genotypes in {len(summaries)} gene windows: {total('records')} VCF records, {total('snvs')} SNV alleles "
        f"used, {total('skipped_non_snv')} indel/MNP/symbolic alleles skipped"
    )
    if total("skipped_ref_mismatch"):
        text += (
            f", {total('skipped_ref_mismatch')} SNV alleles skipped for a REF mismatch{examples('mismatch_examples')}"
        )
    if total("missing_calls"):
        text += f", {total('missing_calls')} missing allele calls read as reference"
    if total("overlapping_calls"):
        text += (
            f", {total('overlapping_calls')} haplotype calls colliding with an earlier record at the same position "
            f"left out of personal sequences{examples('overlap_examples')} (sequences apply the first record, as "
            "bcftools consensus; linear models count every record's own dosage)"
        )
    lines.append(text)
    return lines


COVERAGE_NPZ_KEYS = ("people", "gene_id", "chrom", "start", "bin_size", "values")


def read_coverage(
    path: str | Path, windows: dict[str, Window], people: Sequence[str], bin_size: int
) -> dict[str, np.ndarray]:
    """Observed coverage of ``people`` over each gene's window, as the mean per-base depth in
    ``bin_size``-bp bins: ``{gene_id: (P, window length / bin_size) float32}``.

    ``path`` is either a ``coverage.npz`` (as ``varscore simulate --coverage`` writes: ``people``
    ``(P',)``, ``gene_id``/``chrom``/``start`` ``(G,)`` with 0-based window starts, ``bin_size``
    and ``values`` ``(G, P', bins')`` mean depth per bin; its bins must nest in the model's), or a
    directory with one bigWig per person (``PERSON.bw`` / ``.bigWig``) of per-base depth (missing
    values count as 0).
    """
    path = Path(path)
    if path.is_dir():
        return _coverage_from_bigwigs(path, windows, people, bin_size)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in COVERAGE_NPZ_KEYS if k not in npz.files]
            if missing:
                raise InputError(f"Coverage file {path} lacks {', '.join(missing)} (expected {COVERAGE_NPZ_KEYS}).")
            stored = {k: npz[k] for k in COVERAGE_NPZ_KEYS}
    except (OSError, ValueError) as err:
        raise InputError(
            f"Cannot read coverage {path}: {err} (give a coverage.npz or a directory of bigWigs)."
        ) from err
    column = _person_columns([str(p) for p in stored["people"]], people, path)
    rows = {str(g): i for i, g in enumerate(stored["gene_id"])}
    step = int(stored["bin_size"])
    if bin_size % step:
        raise InputError(f"Coverage {path} has {step}-bp bins, which do not nest in the model's {bin_size}-bp bins.")
    out = {}
    for gene_id, window in windows.items():
        if gene_id not in rows:
            raise InputError(f"Coverage {path} has no gene {gene_id}.")
        row = rows[gene_id]
        offset = window.start - int(stored["start"][row])
        n_fine = stored["values"].shape[2]
        if (
            str(stored["chrom"][row]) != window.chrom
            or offset < 0
            or offset % step
            or offset + window.length > n_fine * step
        ):
            raise InputError(
                f"Coverage of {gene_id} in {path} ({stored['chrom'][row]}:{int(stored['start'][row])}+{n_fine * step} bp) "
                f"does not cover the model's window {window.chrom}:{window.start}-{window.end} on its bins."
            )
        first = offset // step
        fine = stored["values"][row][:, first : first + window.length // step][column]
        out[gene_id] = fine.reshape(len(people), -1, bin_size // step).mean(axis=2).astype(np.float32)
    return out


def _person_columns(stored: list[str], people: Sequence[str], source: Path) -> np.ndarray:
    index = {p: i for i, p in enumerate(stored)}
    missing = [p for p in people if p not in index]
    if missing:
        raise InputError(f"Coverage {source} has no data for {len(missing)} people, e.g. {', '.join(missing[:5])}.")
    return np.array([index[p] for p in people], dtype=np.int64)


def _coverage_from_bigwigs(
    directory: Path, windows: dict[str, Window], people: Sequence[str], bin_size: int
) -> dict[str, np.ndarray]:
    import pybigtools

    files = {}
    for person in people:
        found = [directory / f"{person}{suffix}" for suffix in (".bw", ".bigWig", ".bigwig")]
        found = [f for f in found if f.is_file()]
        if not found:
            raise InputError(f"No bigWig for {person} in {directory} (expected {person}.bw).")
        files[person] = found[0]
    out = {gene_id: np.zeros((len(people), w.length // bin_size), dtype=np.float32) for gene_id, w in windows.items()}
    for i, person in enumerate(people):
        reader = pybigtools.open(str(files[person]))
        try:
            sizes = dict(reader.chroms())
            for gene_id, window in windows.items():
                if window.chrom not in sizes:
                    continue  # no coverage on this contig: zero
                start, end = max(window.start, 0), min(window.end, sizes[window.chrom])
                depth = np.zeros(window.length, dtype=np.float64)
                if end > start:
                    values = np.asarray(reader.values(window.chrom, start, end, fillna=0), dtype=np.float64)
                    depth[start - window.start : end - window.start] = np.nan_to_num(values)
                out[gene_id][i] = depth.reshape(-1, bin_size).mean(axis=1)
        finally:
            reader.close()
    return out


__all__ = [
    "COVERAGE_NPZ_KEYS",
    "CohortInputs",
    "FinetuneData",
    "GeneData",
    "LoadedCohort",
    "genotype_report",
    "load_cohort",
    "read_coverage",
    "reference_only",
    "ExpressionData",
    "ExpressionMatrix",
    "NormalisedExpression",
    "SampleMatch",
    "expression_matrix",
    "fold_people",
    "gtex_donor_id",
    "inverse_normal_transform",
    "make_folds",
    "match_samples",
    "nested_train_subset",
    "normalise_expression",
    "read_expression",
    "read_folds",
    "read_gene_sets",
    "read_gene_table",
    "read_targets",
    "split_genes",
    "tmm_factors",
    "write_folds",
    "write_gene_sets",
]
