"""The scoring engine: variants -> the gene windows that hold them -> one reference pass per
window with the alternates batched -> per-allele, per-gene scores."""

from __future__ import annotations

import bisect
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from varscore.errors import InputError
from varscore.genome import Genome, match_contigs
from varscore.types import Gene, Variant, tss_window

logger = logging.getLogger(__name__)

NUCLEOTIDES = frozenset("ACGT")


@dataclass(frozen=True)
class AlleleScore:
    """One allele's predicted effect on one gene: ``delta = alt_pred - ref_pred``."""

    allele: str
    gene: str
    ref_pred: float
    alt_pred: float

    @property
    def delta(self) -> float:
        return self.alt_pred - self.ref_pred


@dataclass
class ScoringSummary:
    """What happened to every record: ``records_read = scored + sum(not_scored.values())``."""

    records_read: int = 0
    records_scored: int = 0
    not_scored: Counter[str] = field(default_factory=Counter)
    genes_scored: int = 0
    windows_padded: int = 0
    contig_mapping: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [
            f"records read: {self.records_read}",
            f"records scored: {self.records_scored}",
        ]
        for reason, count in sorted(self.not_scored.items()):
            out.append(f"not scored ({reason}): {count}")
        out.append(f"genes scored: {self.genes_scored}")
        if self.windows_padded:
            out.append(f"gene windows padded with N past a contig end: {self.windows_padded}")
        renamed = {k: v for k, v in self.contig_mapping.items() if k != v}
        if renamed:
            out.append("contigs matched: " + ", ".join(f"{k}->{v}" for k, v in sorted(renamed.items())))
        return out


@dataclass
class ScoringResult:
    """Scores by record index; ``alts`` holds the scored records' ALT alleles when the caller
    has no other copy of them."""

    scores: dict[int, list[AlleleScore]]
    summary: ScoringSummary
    alts: dict[int, tuple[str, ...]] = field(default_factory=dict)


class WindowIndex:
    """Finds the gene windows containing a position (all windows have the same length)."""

    def __init__(self, genes: Sequence[Gene], length: int) -> None:
        self.length = length
        by_chrom: dict[str, list[tuple[int, Gene]]] = defaultdict(list)
        for gene in genes:
            by_chrom[gene.chrom].append((tss_window(gene, length).start, gene))
        self.starts = {c: [s for s, _ in sorted(v, key=lambda t: t[0])] for c, v in by_chrom.items()}
        self.genes = {c: [g for _, g in sorted(v, key=lambda t: t[0])] for c, v in by_chrom.items()}

    @property
    def contigs(self) -> list[str]:
        return list(self.starts)

    def genes_at(self, chrom: str, pos: int) -> list[Gene]:
        """Genes whose window ``[start, start + length)`` holds the 1-based ``pos``."""
        starts = self.starts.get(chrom)
        if not starts:
            return []
        lo = bisect.bisect_left(starts, pos - self.length)
        hi = bisect.bisect_left(starts, pos)
        return self.genes[chrom][lo:hi]


SKIP_REASONS = ("outside_windows", "missing_alt", "symbolic", "ambiguous_ref", "indel", "ref_mismatch")
CHECK_REF_MODES = ("skip", "flag", "fail")


def unscorable_reason(variant: Variant) -> str | None:
    """Why no ALT allele of ``variant`` can be scored as a substitution, or None if one can.

    ``missing_alt`` (ALT ``.``), ``ambiguous_ref`` (REF with N or IUPAC codes), ``symbolic``
    (``<DEL>``, ``<*>``, breakends), ``indel`` (not scored yet).
    """
    alts = [a for a in variant.alts if a and a != "."]
    if not alts:
        return "missing_alt"
    if snv_alleles(variant):
        return None
    if any(c not in NUCLEOTIDES for c in variant.ref.upper()):
        return "ambiguous_ref"
    if all(a.startswith("<") or "[" in a or "]" in a or a == "*" for a in alts):
        return "symbolic"
    return "indel"


def snv_alleles(variant: Variant) -> list[str]:
    """The ALT alleles of ``variant`` that are scorable substitutions (SNVs)."""
    if len(variant.ref) != 1 or variant.ref.upper() not in NUCLEOTIDES:
        return []
    return [a for a in variant.alts if len(a) == 1 and a.upper() in NUCLEOTIDES]


@dataclass
class ScoringPlan:
    """Which (record, position, allele) each gene must score; built in one streaming pass.

    ``jobs``: gene_id -> ``[(record index, 1-based pos, ALT)]``; ``variants``: the records that
    will be scored, by index (records outside every window are only counted).
    """

    window_size: int
    genes: dict[str, Gene]
    jobs: dict[str, list[tuple[int, int, str]]]
    variants: dict[int, Variant]
    summary: ScoringSummary
    skipped: dict[int, str] = field(default_factory=dict)  # record -> reason, for records in a window


def plan_scoring(
    variants: Iterable[Variant],
    genes: Sequence[Gene],
    genome: Genome,
    window_size: int,
    check_ref: str = "flag",
) -> ScoringPlan:
    """Stream ``variants`` once, keeping only the SNV alleles inside some gene's window.

    Records that cannot be scored are counted in the summary by reason (:data:`SKIP_REASONS`);
    those inside a window keep their reason in ``plan.skipped`` so the output can flag them.
    ``check_ref``: ``flag`` (a REF that differs from the FASTA is not scored, reason
    ``ref_mismatch``), ``fail`` (stop with an error), ``skip`` (do not compare; score from the
    FASTA's base).
    """
    if check_ref not in CHECK_REF_MODES:
        raise InputError(f"check_ref must be one of {', '.join(CHECK_REF_MODES)}; got '{check_ref}'.")
    if not genes:
        raise InputError("No genes to score: the model bundle lists none and no --genes table was given.")
    summary = ScoringSummary()
    index = WindowIndex(genes, window_size)
    missing = [c for c in index.contigs if genome.resolve(c) is None]
    if missing:
        raise InputError(
            f"The FASTA {genome.path} lacks the contigs of the model's genes: {', '.join(missing)} "
            f"(FASTA has {', '.join(genome.contigs[:5])}). Pass the reference the model was built on with --fasta."
        )
    contig_map: dict[str, str | None] = {}  # VCF contig -> gene contig
    jobs: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    kept: dict[int, Variant] = {}
    skipped: dict[int, str] = {}
    for variant in variants:
        summary.records_read += 1
        if variant.chrom not in contig_map:
            mapped = match_contigs([variant.chrom], index.contigs).get(variant.chrom)
            contig_map[variant.chrom] = mapped
            if mapped is not None:
                summary.contig_mapping[variant.chrom] = mapped
        chrom = contig_map[variant.chrom]
        hits = index.genes_at(chrom, variant.pos) if chrom else []
        if not hits:
            summary.not_scored["outside_windows"] += 1
            continue
        reason = unscorable_reason(variant)
        if reason is None and check_ref != "skip":
            fasta_base = genome.base(hits[0].chrom, variant.pos)
            if fasta_base != variant.ref.upper():
                if check_ref == "fail":
                    raise InputError(
                        f"REF mismatch at {variant.chrom}:{variant.pos}: the VCF says {variant.ref}, the FASTA "
                        f"{genome.path} has {fasta_base}. Wrong genome build? Use --check-ref flag to score the rest."
                    )
                reason = "ref_mismatch"
        if reason is not None:
            summary.not_scored[reason] += 1
            skipped[variant.index] = reason
            continue
        alleles = snv_alleles(variant)
        for gene in hits:
            for allele in alleles:
                jobs[gene.gene_id].append((variant.index, variant.pos, allele.upper()))
        kept[variant.index] = variant
        summary.records_scored += 1
    if summary.records_read and not summary.contig_mapping:
        raise InputError(
            f"0 of {summary.records_read} variants are on contigs the model knows: the VCF has "
            f"{', '.join(sorted(contig_map)[:5])}, the model has {', '.join(index.contigs[:5])}."
        )
    return ScoringPlan(window_size, {g.gene_id: g for g in genes}, dict(jobs), kept, summary, skipped)


def run_plan(
    plan: ScoringPlan,
    backbone: Any,
    output_mode: Any,
    genome: Genome,
    batch_size: int = 8,
    progress: bool = False,
) -> ScoringResult:
    """ISM for every planned allele: one reference pass per gene window, alternates batched.

    ``backbone`` is a built sequence backbone with ``window_size == plan.window_size``;
    ``output_mode`` reduces a prediction to one value per sequence.
    """
    from tqdm.auto import tqdm

    if backbone.window_size != plan.window_size:
        raise InputError(f"Backbone window {backbone.window_size} bp differs from the plan's {plan.window_size} bp.")
    summary = plan.summary
    scores: dict[int, list[AlleleScore]] = defaultdict(list)
    for gene_id in tqdm(list(plan.jobs), desc="genes", unit="gene", disable=not progress, leave=False):
        gene = plan.genes[gene_id]
        window = tss_window(gene, plan.window_size)
        window_seq = genome.window_sequence(window)
        if window_seq.padded:
            summary.windows_padded += 1
        pairs = plan.jobs[gene_id]
        subs = sorted({(window.offset(pos), allele) for _, pos, allele in pairs})
        result = backbone.ism(window_seq.one_hot, subs, output_mode.reduce, batch_size=batch_size)
        row_of = {sub: row for row, sub in enumerate(subs)}
        ref_pred = float(result.reference[0])
        for record, pos, allele in pairs:
            alt_pred = float(result.alternates[row_of[(window.offset(pos), allele)], 0])
            scores[record].append(AlleleScore(allele, gene.label, ref_pred, alt_pred))
        summary.genes_scored += 1
    return ScoringResult(dict(scores), summary)


def score_linear(variants: Iterable[Variant], backbone: Any, gene_labels: dict[str, str] | None = None) -> ScoringResult:
    """Variant effects of a genotype (linear) model: for each ALT allele that is one of a gene
    model's variants, ``REF_PRED`` = the intercept (everyone homozygous reference) and
    ``ALT_PRED`` = intercept + 2 × coefficient (homozygous ALT), matching a sequence model's ISM
    on a window carrying the ALT on both haplotypes. Other records count as ``not_in_model``.
    """
    by_key: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
    for gene_id, weights in backbone.genes.items():
        label = (gene_labels or {}).get(gene_id, gene_id)
        for key, coef in zip(weights.variant_keys, weights.coef, strict=True):
            by_key[key].append((label, float(coef), float(weights.intercept)))
    model_contigs = sorted({key.split(":", 1)[0] for key in by_key})
    contig_map: dict[str, str | None] = {}
    summary = ScoringSummary()
    scores: dict[int, list[AlleleScore]] = defaultdict(list)
    alts: dict[int, tuple[str, ...]] = {}
    for variant in variants:
        summary.records_read += 1
        if variant.chrom not in contig_map:
            contig_map[variant.chrom] = match_contigs([variant.chrom], model_contigs).get(variant.chrom)
            if contig_map[variant.chrom] is not None:
                summary.contig_mapping[variant.chrom] = contig_map[variant.chrom]  # type: ignore[assignment]
        chrom = contig_map[variant.chrom]
        for alt in variant.alts:
            for label, coef, intercept in by_key.get(f"{chrom}:{variant.pos}:{variant.ref}:{alt}", ()):
                scores[variant.index].append(AlleleScore(alt.upper(), label, intercept, intercept + 2.0 * coef))
        if variant.index in scores:
            summary.records_scored += 1
            alts[variant.index] = variant.alts
        else:
            summary.not_scored["not_in_model"] += 1
    summary.genes_scored = len({s.gene for rows in scores.values() for s in rows})
    return ScoringResult(dict(scores), summary, alts)
