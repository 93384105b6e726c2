"""The scoring engine: variants -> the gene windows that hold them -> one reference pass per
window with the alternates batched -> per-allele, per-gene scores."""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from varscore.base import ISMResult
from varscore.errors import InputError
from varscore.genome import Genome, match_contigs
from varscore.sequence import one_hot
from varscore.types import Gene, Variant, Window, tss_window

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
    "outside_windows", "missing_alt", "symbolic", "ambiguous_ref", "ambiguous_alt", "ref_mismatch",
)
CHECK_REF_MODES = ("skip", "flag", "fail")


# --- alleles as edits of the reference, and the alternate windows they give --------------------


@dataclass(frozen=True)
class Edit:
    """One ALT allele as a change to the reference contig: the ``deleted`` bases from the 0-based
    contig index ``start`` are replaced by ``inserted`` (upper case A/C/G/T).

    :meth:`from_vcf` trims the bases REF and ALT share at the start (VCF's padding base), then
    those they share at the end, so ``C -> CAG`` at POS 10 is an insertion of ``AG`` before
    index 10 and ``AT -> AC`` an SNV at index POS.
    """

    start: int
    deleted: int
    inserted: str

    @classmethod
    def from_vcf(cls, pos: int, ref: str, alt: str) -> Edit:
        ref, alt = ref.upper(), alt.upper()
        lead = 0
        while lead < min(len(ref), len(alt)) and ref[lead] == alt[lead]:
            lead += 1
        ref, alt = ref[lead:], alt[lead:]
        tail = 0
        while tail < min(len(ref), len(alt)) and ref[-1 - tail] == alt[-1 - tail]:
            tail += 1
        return cls(pos - 1 + lead, len(ref) - tail, alt[: len(alt) - tail])

    @property
    def end(self) -> int:
        """0-based index just past the deleted bases (``start`` for a pure insertion)."""
        return self.start + self.deleted

    @property
    def length_change(self) -> int:
        return len(self.inserted) - self.deleted

    @property
    def is_snv(self) -> bool:
        return self.deleted == 1 and len(self.inserted) == 1

    def anchor_shift(self, anchor: int) -> int:
        """How far the alternate window moves (in the edited contig's coordinates) so that the base
        at 0-based contig index ``anchor`` (the TSS) keeps its index in the window.

        0 when the edit lies downstream of the anchor, ``length_change`` when it lies upstream
        (an insertion right before the anchor base is upstream), and half of it, rounded towards
        zero, when the anchor base itself is deleted or replaced.
        """
        change = self.length_change
        if anchor < self.start:
            return 0
        if anchor >= self.end:
            return change
        return change // 2 if change >= 0 else -((-change) // 2)


class ReferenceSource:
    """One-hot reference bases of ``[start, end)`` of a contig, N (all-zero) off the contig's
    ends; :meth:`bases` slices inside it and fetches from the genome beyond it."""

    def __init__(self, genome: Genome, chrom: str, start: int, end: int) -> None:
        self.genome, self.chrom, self.start, self.end = genome, chrom, start, end
        self.one_hot = genome.window_sequence(Window(chrom, start, end)).one_hot

    @classmethod
    def from_one_hot(cls, one_hot: np.ndarray, start: int) -> ReferenceSource:
        """A source over an ``(L, 4)`` array already in memory (``start``: its first contig index)."""
        source = cls.__new__(cls)
        source.genome, source.chrom = None, ""  # type: ignore[assignment]
        source.start, source.end, source.one_hot = start, start + len(one_hot), one_hot
        return source

    def bases(self, start: int, end: int) -> np.ndarray:
        """``(end - start, 4)`` one-hot of contig indices ``[start, end)``."""
        if self.start <= start and end <= self.end:
            return self.one_hot[start - self.start : end - self.start]
        if self.genome is None:
            raise InputError(
                f"Contig bases {start}-{end} are outside the {self.end - self.start} bp held in memory "
                f"({self.start}-{self.end}); pass a longer flank."
            )
        return self.genome.window_sequence(Window(self.chrom, start, end)).one_hot


def edit_margin(edits: Iterable[Edit]) -> int:
    """Reference bases beyond either end of a window that :func:`edited_window` may read when it
    applies ``edits`` together: the window moves by at most the summed length changes, and so does
    each reference segment inside it."""
    return 2 * sum(abs(e.length_change) for e in edits)


def _alternate_start(window: Window, edits: Sequence[Edit]) -> int:
    """The alternate window's first index in the edited contig's coordinates."""
    anchor = window.start + window.length // 2
    return window.start + sum(e.anchor_shift(anchor) for e in edits)


def edited_window(
    window: Window, edits: Sequence[Edit], reference: ReferenceSource, out: np.ndarray | None = None
) -> np.ndarray:
    """The ``(L, 4)`` one-hot alternate window: ``edits`` applied to the contig, then the
    ``L = window.length`` bases that keep the TSS (index ``L // 2`` of ``window``) at index
    ``L // 2`` (see :meth:`Edit.anchor_shift`; the shifts of several edits add up).

    ``edits`` are sorted and do not overlap (``edits[i].end <= edits[i + 1].start``). Bases
    pushed past an end of the window by an insertion are dropped there; a deletion pulls in the
    flanking reference bases (N off the contig). The edited contig is reference segments and
    inserted alleles in turn; each piece inside the window is one slice copy. ``out``: an
    ``(L, 4)`` float32 array to fill instead of a new one.
    """
    length = window.length
    alt_start = _alternate_start(window, edits)
    alt_end = alt_start + length
    if out is None:
        out = np.empty((length, 4), dtype=np.float32)
    shift = 0  # edited-contig index minus reference index in the current reference segment
    segment_start: int | None = None  # None: the first segment reaches back indefinitely
    for edit in [*edits, None]:
        lo = alt_start if segment_start is None else max(segment_start + shift, alt_start)
        hi = alt_end if edit is None else min(edit.start + shift, alt_end)
        if lo < hi:
            out[lo - alt_start : hi - alt_start] = reference.bases(lo - shift, hi - shift)
        if edit is None:
            break
        first = edit.start + shift
        lo, hi = max(first, alt_start), min(first + len(edit.inserted), alt_end)
        if lo < hi:
            out[lo - alt_start : hi - alt_start] = one_hot(edit.inserted[lo - first : hi - first])
        shift += edit.length_change
        segment_start = edit.end
    return out


def window_indices(window: Window, edits: Sequence[Edit], positions: np.ndarray) -> np.ndarray:
    """Where reference bases land in the alternate window of :func:`edited_window`:
    ``positions`` ``(S,)`` 0-based contig indices -> ``(S,)`` window indices, -1 for bases the
    edits delete or replace and for bases outside the window."""
    positions = np.asarray(positions, dtype=np.int64)
    if not edits:
        index = positions - window.start
    else:
        starts = np.array([e.start for e in edits], dtype=np.int64)
        ends = np.array([e.end for e in edits], dtype=np.int64)
        shifts = np.concatenate([[0], np.cumsum([e.length_change for e in edits])])
        index = positions + shifts[np.searchsorted(ends, positions, side="right")] - _alternate_start(window, edits)
        last = np.searchsorted(starts, positions, side="right") - 1
        inside = (last >= 0) & (positions < ends[np.maximum(last, 0)])
        index[inside] = -1
    index[(index < 0) | (index >= window.length)] = -1
    return index


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
    tmp = path.with_name(f".{path.name}.part")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(
            f"Cannot write checkpoint {path}: {exc.strerror or exc} (was its folder removed by another run "
            "writing the same output?)."
        ) from exc


def run_plan(
    plan: ScoringPlan,
    backbone: Any,
    output_mode: Any,
    genome: Genome,
    batch_size: int = 8,
    progress: bool = False,
    checkpoint: GeneCheckpoint | None = None,
) -> ScoringResult:
    """Score every planned allele: one reference pass per gene window, alternates batched.

    SNVs go through ``backbone.ism`` (so a backbone's fast ISM applies); other alleles are
    scored on windows built by :func:`edited_window`. ``backbone`` is a built sequence backbone
    with ``window_size == plan.window_size``; ``output_mode`` reduces a prediction to one value
    per sequence. With a ``checkpoint``, finished genes are read back and new ones saved.
    """
    from tqdm.auto import tqdm

    if backbone.window_size != plan.window_size:
        raise InputError(f"Backbone window {backbone.window_size} bp differs from the plan's {plan.window_size} bp.")
    summary = plan.summary
    scores: dict[int, list[AlleleScore]] = defaultdict(list)
    bar = tqdm(total=sum(len(j) for j in plan.jobs.values()), desc="alleles", unit="allele", disable=not progress,
               leave=False)
    for gene_id in list(plan.jobs):
        gene = plan.genes[gene_id]
        done = checkpoint.load(gene_id) if checkpoint is not None else None
        if done is None:
            rows, padded = score_gene(gene, plan.jobs[gene_id], backbone, output_mode, genome, plan.window_size,
                                      batch_size)
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
    backbone: Any,
    output_mode: Any,
    genome: Genome,
    window_size: int,
    batch_size: int = 8,
) -> tuple[list[tuple[int, AlleleScore]], int]:
    """One gene's ``(record, score)`` rows, in ``jobs`` order, and how many bases of its window lie
    off the contig (padded with N)."""
    window = tss_window(gene, window_size)
    window_seq = genome.window_sequence(window)
    snvs = sorted({(job.edit.start - window.start, job.edit.inserted) for job in jobs if _in_window_snv(job.edit, window)})
    features = getattr(output_mode, "features", output_mode.reduce)
    raw = backbone.ism(window_seq.one_hot, snvs, features, batch_size=batch_size)
    result = output_mode.score(raw) if hasattr(output_mode, "score") else raw
    ref_pred = float(result.reference[0])
    alt_of: dict[Edit, float] = {}
    for row, (offset, base) in enumerate(snvs):
        alt_of[Edit(window.start + offset, 1, base)] = float(result.alternates[row, 0])
    others = sorted({job.edit for job in jobs if job.edit not in alt_of}, key=lambda e: (e.start, e.deleted, e.inserted))
    if others:
        margin = max(edit_margin([e]) for e in others)
        source = ReferenceSource(genome, gene.chrom, window.start - margin, window.end + margin)
        for begin in range(0, len(others), batch_size):
            chunk = others[begin : begin + batch_size]
            batch = np.stack([edited_window(window, [edit], source) for edit in chunk])
            reduced = np.asarray(features(backbone.predict(batch)))
            if hasattr(output_mode, "score"):
                reduced = output_mode.score(ISMResult(raw.reference, reduced)).alternates
            for edit, value in zip(chunk, reduced[:, 0], strict=True):
                alt_of[edit] = float(value)
    rows = [(job.record, AlleleScore(job.allele, gene.label, ref_pred, alt_of[job.edit])) for job in jobs]
    return rows, window_seq.padded


def _in_window_snv(edit: Edit, window: Window) -> bool:
    return edit.is_snv and window.start <= edit.start < window.end


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
