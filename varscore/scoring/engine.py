"""The scoring engine: variants -> the gene windows that hold them -> one reference pass per
window with the alternates batched -> per-allele, per-gene scores."""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from varscore.errors import InputError
from varscore.genome.edits import Edit, ReferenceSource, edit_margin, edited_window
from varscore.genome.fasta import Genome, match_contigs
from varscore.io.outputguard import atomic_file
from varscore.plugin.contracts import GenotypeBackbone, ISMResult, OutputMode, SequenceBackbone
from varscore.types import Gene, Variant, Window, tss_window

if TYPE_CHECKING:
    from varscore.scoring.effect_cache import EffectCache

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
    """What happened to every record: ``records_read = records_scored + sum(not_scored.values())``
    and, once the output is written, ``records_written = records_read``.

    ``indel_records``: scored records with at least one allele that is not a single-base
    substitution (insertions, deletions, MNPs). ``not_scored["no_model"]`` counts every record
    of an annotators-only run (``--model none``).
    """

    records_read: int = 0
    records_scored: int = 0
    not_scored: Counter[str] = field(default_factory=Counter)
    genes_scored: int = 0
    windows_padded: int = 0
    contig_mapping: dict[str, str] = field(default_factory=dict)
    records_written: int | None = None
    indel_records: int = 0
    annotated: Counter[str] = field(default_factory=Counter)  # INFO key -> records given a value
    ref_checked: int = 0  # records whose REF was compared with the FASTA

    def lines(self) -> list[str]:
        out = [f"records read: {self.records_read}"]
        if self.records_written is not None:
            out.append(f"records written: {self.records_written}")
        out.append(f"records scored: {self.records_scored}")
        if self.indel_records:
            out.append(f"records scored with indel or MNP alleles: {self.indel_records}")
        for reason, count in sorted(self.not_scored.items()):
            out.append(f"not scored ({reason}): {count}")
        for key, count in sorted(self.annotated.items()):
            out.append(f"annotated ({key}): {count}")
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


SKIP_REASONS = (
    "outside_windows",
    "missing_alt",
    "symbolic",
    "ambiguous_ref",
    "ambiguous_alt",
    "ref_mismatch",
)
CHECK_REF_MODES = ("skip", "flag", "fail")


# --- which records and alleles can be scored ---------------------------------------------------


def _is_symbolic(alt: str) -> bool:
    return alt.startswith("<") or alt == "*" or "[" in alt or "]" in alt or "." in alt


def scorable_alleles(variant: Variant) -> list[str]:
    """The ALT alleles of ``variant`` that are plain sequence (A/C/G/T, any case) over a plain REF:
    SNVs, MNPs, insertions, deletions and complex substitutions."""
    if not variant.ref or any(c not in NUCLEOTIDES for c in variant.ref.upper()):
        return []
    return [a for a in variant.alts if a and all(c in NUCLEOTIDES for c in a.upper())]


def unscorable_reason(variant: Variant) -> str | None:
    """Why no ALT allele of ``variant`` can be scored, or None if one can.

    ``missing_alt`` (ALT ``.``), ``ambiguous_ref`` (REF with N or IUPAC codes), ``symbolic``
    (``<DEL>``, ``<*>``, ``*``, breakends), ``ambiguous_alt`` (ALT with N or IUPAC codes).
    """
    alts = [a for a in variant.alts if a and a != "."]
    if not alts:
        return "missing_alt"
    if scorable_alleles(variant):
        return None
    if not variant.ref or any(c not in NUCLEOTIDES for c in variant.ref.upper()):
        return "ambiguous_ref"
    if all(_is_symbolic(a) for a in alts):
        return "symbolic"
    return "ambiguous_alt"


class AlleleJob(NamedTuple):
    """One allele of one record to score for one gene."""

    record: int
    allele: str  # the ALT as upper-case sequence
    edit: Edit


@dataclass
class ScoringPlan:
    """Which alleles each gene must score; built in one streaming pass.

    ``jobs``: gene_id -> :class:`AlleleJob` list; ``variants``: the records that will be scored,
    by index (records outside every window are only counted).
    """

    window_size: int
    genes: dict[str, Gene]
    jobs: dict[str, list[AlleleJob]]
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
    """Stream ``variants`` once, keeping the sequence alleles of records whose POS lies in some
    gene's window.

    Records that cannot be scored are counted in the summary by reason (:data:`SKIP_REASONS`);
    those inside a window keep their reason in ``plan.skipped`` so the output can flag them.
    ``check_ref``: ``flag`` (a REF that differs from the FASTA is not scored, reason
    ``ref_mismatch``), ``fail`` (stop with an error), ``skip`` (do not compare; the allele
    replaces as many FASTA bases as REF has).
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
    jobs: dict[str, list[AlleleJob]] = defaultdict(list)
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
            fasta_ref = genome.fetch(Window(hits[0].chrom, variant.pos - 1, variant.pos - 1 + len(variant.ref)))
            summary.ref_checked += 1
            if fasta_ref != variant.ref.upper():
                if check_ref == "fail":
                    raise InputError(
                        f"REF mismatch at {variant.chrom}:{variant.pos}: the VCF says {variant.ref}, the FASTA "
                        f"{genome.path} has {fasta_ref}. Wrong genome build? Use --check-ref flag to score the rest."
                    )
                reason = "ref_mismatch"
        if reason is not None:
            summary.not_scored[reason] += 1
            skipped[variant.index] = reason
            continue
        alleles = [(a.upper(), Edit.from_vcf(variant.pos, variant.ref, a)) for a in scorable_alleles(variant)]
        for gene in hits:
            for allele, edit in alleles:
                jobs[gene.gene_id].append(AlleleJob(variant.index, allele, edit))
        kept[variant.index] = variant
        summary.records_scored += 1
        if any(not edit.is_snv for _, edit in alleles):
            summary.indel_records += 1
    if summary.records_read and not summary.contig_mapping:
        raise InputError(
            f"0 of {summary.records_read} variants are on contigs the model knows: the VCF has "
            f"{', '.join(sorted(contig_map)[:5])}, the model has {', '.join(index.contigs[:5])}."
        )
    return ScoringPlan(window_size, {g.gene_id: g for g in genes}, dict(jobs), kept, summary, skipped)


# --- running a plan, with checkpoints ----------------------------------------------------------


class GeneCheckpoint:
    """Finished genes' scores in a directory, one JSON file per gene, so that an interrupted run
    can continue (``varscore annotate --resume``).

    ``fingerprint`` identifies the inputs (VCF, model, FASTA, genes, options); a directory made
    for other inputs is refused when resuming and cleared otherwise.
    """

    MANIFEST = "checkpoint.json"

    def __init__(self, directory: str | Path, fingerprint: str, resume: bool) -> None:
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        manifest = self.directory / self.MANIFEST
        if resume and manifest.exists():
            found = _read_json(manifest).get("fingerprint")
            if found != fingerprint:
                raise InputError(
                    f"The checkpoint {self.directory} was made for other inputs or options; rerun without "
                    "--resume to start over (it is then replaced)."
                )
            for stale in self.directory.glob(".*.part"):  # a killed run's half-written file
                stale.unlink(missing_ok=True)
            logger.info("resuming from %s: %d genes done", self.directory, len(self.finished()))
            return
        try:
            if self.directory.exists():
                shutil.rmtree(self.directory)
            self.directory.mkdir(parents=True)
        except OSError as exc:
            raise InputError(f"Cannot make the checkpoint folder {self.directory}: {exc.strerror or exc}.") from exc
        _write_atomically(manifest, json.dumps({"fingerprint": fingerprint}))

    @classmethod
    def attach(cls, directory: str | Path, fingerprint: str) -> GeneCheckpoint:
        """The checkpoint another process opened in ``directory`` (a sharded run's rank 0), neither
        validated nor cleared again."""
        checkpoint = cls.__new__(cls)
        checkpoint.directory, checkpoint.fingerprint = Path(directory), fingerprint
        return checkpoint

    def _path(self, gene_id: str) -> Path:
        return self.directory / (hashlib.sha1(gene_id.encode()).hexdigest()[:16] + ".json")

    def finished(self) -> list[Path]:
        return [p for p in self.directory.glob("*.json") if p.name != self.MANIFEST]

    def load(self, gene_id: str) -> tuple[list[tuple[int, AlleleScore]], int] | None:
        """A finished gene's ``(record, score)`` rows and its window's padded base count, or None."""
        path = self._path(gene_id)
        if not path.exists():
            return None
        data = _read_json(path)
        if data.get("gene_id") != gene_id or data.get("fingerprint") != self.fingerprint:
            return None  # another gene's (hash collision) or another run's file: scored again
        rows = [(int(r), AlleleScore(a, data["label"], float(ref), float(alt))) for r, a, ref, alt in data["rows"]]
        return rows, int(data["padded"])

    def save(self, gene_id: str, label: str, rows: Sequence[tuple[int, AlleleScore]], padded: int) -> None:
        data = {
            "fingerprint": self.fingerprint,
            "gene_id": gene_id,
            "label": label,
            "padded": padded,
            "rows": [[r, s.allele, s.ref_pred, s.alt_pred] for r, s in rows],  # JSON floats round-trip
        }
        _write_atomically(self._path(gene_id), json.dumps(data))

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _read_json(path: Path) -> dict[str, Any]:
    """A checkpoint file; a damaged one (a truncated write, another program's file) is an InputError."""
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except (OSError, ValueError) as exc:
        raise InputError(
            f"The checkpoint file {path} is damaged or truncated ({exc}); rerun without --resume to start over."
        ) from exc


def _write_atomically(path: Path, text: str) -> None:
    try:
        with atomic_file(path, make_folder=False) as tmp:
            tmp.write_text(text)
    except OSError as exc:
        raise InputError(
            f"Cannot write checkpoint {path}: {exc.strerror or exc} (was its folder removed by another run "
            "writing the same output?)."
        ) from exc


def run_plan(
    plan: ScoringPlan,
    backbone: SequenceBackbone,
    output_mode: OutputMode,
    genome: Genome,
    batch_size: int = 8,
    progress: bool = False,
    checkpoint: GeneCheckpoint | None = None,
    cache: EffectCache | None = None,
) -> ScoringResult:
    """Score every planned allele: one reference pass per gene window, alternates batched.

    SNVs go through ``backbone.ism`` (so a backbone's fast ISM applies); other alleles are
    scored on windows built by :func:`edited_window`. ``backbone`` is a built sequence backbone
    with ``window_size == plan.window_size``; ``output_mode`` reduces a prediction to one value
    per sequence. With a ``checkpoint``, finished genes are read back and new ones saved; with a
    ``cache``, SNV effects computed before are read from it (:mod:`varscore.scoring.effect_cache`).
    """
    from varscore.io.progress import Progress

    if backbone.window_size != plan.window_size:
        raise InputError(f"Backbone window {backbone.window_size} bp differs from the plan's {plan.window_size} bp.")
    summary = plan.summary
    scores: dict[int, list[AlleleScore]] = defaultdict(list)
    bar = Progress(sum(len(j) for j in plan.jobs.values()), "annotate", "alleles", progress)
    for gene_id in list(plan.jobs):
        gene = plan.genes[gene_id]
        done = checkpoint.load(gene_id) if checkpoint is not None else None
        if done is None:
            rows, padded = score_gene(
                gene, plan.jobs[gene_id], backbone, output_mode, genome, plan.window_size, batch_size, cache
            )
            if checkpoint is not None:
                checkpoint.save(gene_id, gene.label, rows, padded)
        else:
            rows, padded = done
        for record, score in rows:
            scores[record].append(score)
        summary.windows_padded += int(padded > 0)
        summary.genes_scored += 1
        bar.update(len(plan.jobs[gene_id]))
    bar.close()
    return ScoringResult(dict(scores), summary)


def score_gene(
    gene: Gene,
    jobs: Sequence[AlleleJob],
    backbone: SequenceBackbone,
    output_mode: OutputMode,
    genome: Genome,
    window_size: int,
    batch_size: int = 8,
    cache: EffectCache | None = None,
) -> tuple[list[tuple[int, AlleleScore]], int]:
    """One gene's ``(record, score)`` rows, in ``jobs`` order, and how many bases of its window lie
    off the contig (padded with N); SNV effects through ``cache`` when given."""
    window = tss_window(gene, window_size)
    window_seq = genome.window_sequence(window)
    snvs = sorted(
        {(job.edit.start - window.start, job.edit.inserted) for job in jobs if _in_window_snv(job.edit, window)}
    )
    features = output_mode.features
    if cache is None:
        raw = backbone.ism(window_seq.one_hot, snvs, features, batch_size=batch_size)
    else:
        raw = ISMResult(
            *cache.ism(
                lambda ref, subs: backbone.ism(ref, subs, features, batch_size=batch_size),
                window_seq.one_hot,
                snvs,
                "features",
            )
        )
    result = output_mode.score(raw)
    ref_pred = float(result.reference[0])
    alt_of: dict[Edit, float] = {}
    for row, (offset, base) in enumerate(snvs):
        alt_of[Edit(window.start + offset, 1, base)] = float(result.alternates[row, 0])
    others = sorted(
        {job.edit for job in jobs if job.edit not in alt_of}, key=lambda e: (e.start, e.deleted, e.inserted)
    )
    if others:
        margin = max(edit_margin([e]) for e in others)
        source = ReferenceSource(genome, gene.chrom, window.start - margin, window.end + margin)
        for begin in range(0, len(others), batch_size):
            chunk = others[begin : begin + batch_size]
            batch = np.stack([edited_window(window, [edit], source) for edit in chunk])
            reduced = output_mode.score(
                ISMResult(raw.reference, np.asarray(features(backbone.predict(batch))))
            ).alternates
            for edit, value in zip(chunk, reduced[:, 0], strict=True):
                alt_of[edit] = float(value)
    rows = [(job.record, AlleleScore(job.allele, gene.label, ref_pred, alt_of[job.edit])) for job in jobs]
    return rows, window_seq.padded


def _in_window_snv(edit: Edit, window: Window) -> bool:
    return edit.is_snv and window.start <= edit.start < window.end


def score_genotypes(
    variants: Iterable[Variant], backbone: GenotypeBackbone, gene_labels: dict[str, str] | None = None
) -> ScoringResult:
    """Variant effects of a genotype model (:meth:`~varscore.plugin.contracts.GenotypeBackbone.variant_effects`):
    for each ALT allele that is one of a gene model's variants, ``REF_PRED`` = the prediction with
    everyone homozygous reference and ``ALT_PRED`` = with that ALT homozygous, matching a sequence
    model's ISM on a window carrying the ALT on both haplotypes. Other records count as
    ``not_in_model``."""
    by_key: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
    for gene_id in backbone.gene_ids():
        label = (gene_labels or {}).get(gene_id, gene_id)
        for effect in backbone.variant_effects(gene_id):
            by_key[effect.key].append((label, effect.ref_pred, effect.alt_pred))
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
            for label, ref_pred, alt_pred in by_key.get(f"{chrom}:{variant.pos}:{variant.ref}:{alt}", ()):
                scores[variant.index].append(AlleleScore(alt.upper(), label, ref_pred, alt_pred))
        if variant.index in scores:
            summary.records_scored += 1
            alts[variant.index] = variant.alts
        else:
            summary.not_scored["not_in_model"] += 1
    summary.genes_scored = len({s.gene for rows in scores.values() for s in rows})
    return ScoringResult(dict(scores), summary, alts)
