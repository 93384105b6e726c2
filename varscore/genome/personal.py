"""Personal genomes built in memory: the variants of each person in a window, read from a VCF,
applied to the reference window's one-hot encoding (dosage or two haplotypes) for many people at
once.

The result equals one-hot encoding ``bcftools consensus -H 1`` and ``-H 2`` of the window for each
person and, in dosage mode, averaging the two. SNVs by default; with ``indels=True`` insertions,
deletions and MNPs too, each haplotype's window then taken so that the TSS keeps its index
(:func:`varscore.genome.edits.edited_window`, README "Indels").
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from varscore.errors import InputError
from varscore.genome.edits import Edit, ReferenceSource, edit_margin, edited_window, window_indices
from varscore.genome.fasta import Genome, match_contigs
from varscore.genome.sequence import one_hot
from varscore.types import Window

logger = logging.getLogger(__name__)

Mode = Literal["dosage", "haplotypes"]
MODES = ("dosage", "haplotypes")
DTYPES = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.uint8))
_BASE_CODE = {"A": 0, "C": 1, "G": 2, "T": 3}
_EXAMPLES = 5


@dataclass(frozen=True)
class GenotypeSummary:
    """What reading a window's genotypes kept, skipped and filled in.

    - ``records``: VCF records whose position lies in the window.
    - ``snvs``: ALT alleles kept (the ``V`` columns of :class:`WindowGenotypes`; indels and MNPs
      included when the reader applies them).
    - ``skipped_non_snv``: ALT alleles skipped because they are not single-base substitutions
      (indels and MNPs unless the reader applies them; symbolic ``<DEL>``, ``*``, N alleles).
    - ``skipped_ref_mismatch``: SNV alleles whose REF differs from the reference base (or whose
      reference base is N); ``mismatch_examples`` lists the first few as ``pos:REF>ALT (ref X)``.
    - ``missing_calls``: allele calls written ``.`` in records with a kept SNV, counted per person
      and haplotype; they are treated as the reference allele.
    - ``people_with_missing``: people with at least one such call.
    - ``overlapping_calls``: haplotypes that carry ALT alleles of two records at one position (with
      indels: whose changed bases overlap, the padding base not counted); the first record (VCF
      order) is applied and the rest dropped, as ``bcftools consensus`` does (personal sequences
      only: genotype matrices keep every record's own calls, see ``WindowGenotypes.record_calls``);
      ``overlap_examples`` lists the first few as ``pos:REF>ALT (person)``.
    """

    records: int = 0
    snvs: int = 0
    skipped_non_snv: int = 0
    skipped_ref_mismatch: int = 0
    missing_calls: int = 0
    people_with_missing: int = 0
    overlapping_calls: int = 0
    mismatch_examples: tuple[str, ...] = ()
    overlap_examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class WindowGenotypes:
    """The SNV genotypes of ``P`` people inside one window.

    - ``window``: the window (0-based half-open) on the reference's contig name.
    - ``samples``: the ``P`` people, in the order the rows below follow.
    - ``positions``: ``(V,)`` int64, 1-based VCF positions; one column per kept ALT allele, in VCF
      order (a multi-allelic record gives one column per SNV ALT allele).
    - ``refs``, ``alts``: ``(V,)`` str, the REF and ALT bases of each column.
    - ``haplotypes``: ``(P, 2, V)`` int8; 1 where the haplotype carries the column's ALT allele,
      0 where it carries another allele, -1 where the call is missing (``.``).
      Unphased genotypes ``a/b`` are stored as written: ``a`` on haplotype 0, ``b`` on haplotype 1
      (what ``bcftools consensus -H 1`` / ``-H 2`` use), so the usual ``0/1`` puts the ALT on
      haplotype 1; dosage is unaffected. Haploid calls are copied to both haplotypes.
    - ``phased``: ``(P,)`` bool; False when one of that person's heterozygous (or half-missing)
      calls in the window is unphased (``/``), i.e. when haplotype mode guesses a phase;
      homozygous and haploid calls need no phase.
    - ``calls``: ``(P, 2, V)`` int8 like ``haplotypes`` but as each record states them, before ALT
      calls colliding with an earlier record's were dropped from ``haplotypes`` (see
      ``GenotypeSummary.overlapping_calls``); None when nothing was dropped. Use
      :attr:`record_calls`.
    - ``summary``: counts of what was kept, skipped and filled in.
    - ``context``: with indels, the ``(L + 2M, 4)`` one-hot reference of the window with ``M``
      flanking bases on each side (deletions pull them in); ``context_start`` is the 0-based
      contig index of its first base. None without indels.
    """

    window: Window
    samples: list[str]
    positions: np.ndarray
    refs: np.ndarray
    alts: np.ndarray
    haplotypes: np.ndarray
    phased: np.ndarray
    summary: GenotypeSummary = field(default_factory=GenotypeSummary)
    context: np.ndarray | None = None
    context_start: int = 0
    calls: np.ndarray | None = None

    @property
    def record_calls(self) -> np.ndarray:
        """``(P, 2, V)`` int8 calls as each VCF record states them (1 ALT, 0 other allele, -1
        missing), also where two records at one position collide on a haplotype: what genotype
        matrices count, whereas ``haplotypes`` holds what personal sequences apply."""
        return self.haplotypes if self.calls is None else self.calls

    @property
    def n_people(self) -> int:
        return len(self.samples)

    @property
    def n_variants(self) -> int:
        return len(self.positions)

    @property
    def offsets(self) -> np.ndarray:
        """``(V,)`` int64: each column's 0-based index inside the window."""
        return self.positions - 1 - self.window.start

    @property
    def is_snv(self) -> np.ndarray:
        """``(V,)`` bool: whether each column is a single-base substitution."""
        return np.array(
            [len(r) == 1 and len(a) == 1 for r, a in zip(self.refs.tolist(), self.alts.tolist(), strict=True)],
            dtype=bool,
        )

    @property
    def alt_codes(self) -> np.ndarray:
        """``(V,)`` int64: each SNV column's ALT base as its one-hot channel (A=0, C=1, G=2, T=3);
        -1 for indel and MNP columns."""
        return np.array([_BASE_CODE[a] if len(a) == 1 else -1 for a in self.alts.tolist()], dtype=np.int64)

    def dosage(self) -> np.ndarray:
        """``(P, V)`` float32 ALT-allele counts 0/1/2 of each record's own genotype (missing calls
        count as reference; calls colliding with another record at the same position are kept),
        the genotype matrix of the linear baselines."""
        return (self.record_calls == 1).sum(axis=1, dtype=np.int8).astype(np.float32)

    def sample_indices(self, people: Sequence[str]) -> np.ndarray:
        """``(B,)`` int64 rows of ``people``; unknown names are an :class:`InputError`."""
        lookup = {name: i for i, name in enumerate(self.samples)}
        unknown = [p for p in people if p not in lookup]
        if unknown:
            raise InputError(
                f"{len(unknown)} people are not among the {len(self.samples)} read for window "
                f"{_window_label(self.window)}: {', '.join(unknown[:_EXAMPLES])}"
                f"{'…' if len(unknown) > _EXAMPLES else ''}. Read their genotypes first."
            )
        return np.array([lookup[p] for p in people], dtype=np.int64)


def _window_label(window: Window) -> str:
    return f"{window.chrom}:{window.start + 1}-{window.end}"


def reference_codes(reference: str | np.ndarray) -> np.ndarray:
    """``(L,)`` int8 base codes (A=0, C=1, G=2, T=3, anything else 4) of a window given as a string
    or as an ``(L, 4)`` one-hot array."""
    if isinstance(reference, str):
        reference = one_hot(reference)
    array = np.asarray(reference)
    if array.ndim != 2 or array.shape[1] != 4:
        raise InputError(f"A reference window must be a string or an (L, 4) one-hot array; got shape {array.shape}.")
    codes = array.argmax(axis=1).astype(np.int8)
    codes[array.max(axis=1) != 1] = 4
    return codes


def _has_index(path: Path) -> bool:
    return any(Path(f"{path}{suffix}").exists() for suffix in (".tbi", ".csi"))


class GenotypeReader:
    """A VCF/BCF opened once to read the genotypes of many windows for a fixed list of people.

    Uses region queries when the file has a ``.tbi``/``.csi`` index beside it, otherwise scans
    the whole file for every window (logged as a warning: index it with ``tabix -p vcf``).
    ``samples`` picks and orders the people (all the VCF's samples by default). ``indels``: keep
    insertions, deletions and MNPs as well as SNVs (records whose POS lies in the window); off by
    default, since the linear baselines' genotype matrices are SNVs only.
    """

    def __init__(self, path: str | Path, samples: Sequence[str] | None = None, indels: bool = False) -> None:
        from varscore.io.vcf import open_vcf

        self.path = Path(path)
        self.indels = indels
        self._vcf = open_vcf(self.path)
        vcf_samples = list(self._vcf.samples)
        if samples is None:
            self.samples = vcf_samples
        else:
            self.samples = list(samples)
            duplicated = sorted({s for s in self.samples if self.samples.count(s) > 1})
            if duplicated:
                raise InputError(f"People listed more than once: {', '.join(duplicated[:_EXAMPLES])}. List each once.")
            known = set(vcf_samples)
            unknown = [s for s in self.samples if s not in known]
            if unknown:
                more = "…" if len(unknown) > _EXAMPLES else ""
                raise InputError(
                    f"{len(unknown)} of {len(self.samples)} requested people are not samples of VCF "
                    f"{self.path}: {', '.join(unknown[:_EXAMPLES])}{more}. The VCF has "
                    f"{', '.join(vcf_samples[:_EXAMPLES])}{'…' if len(vcf_samples) > _EXAMPLES else ''} "
                    "(match IDs with varscore.training.cohort.match_samples)."
                )
        if not self.samples:
            raise InputError(f"VCF {self.path} has no samples (no genotype columns); personal genomes need genotypes.")
        if samples is not None and len(self.samples) < len(vcf_samples):
            self._vcf.set_samples(self.samples)
        # cyvcf2 returns the kept samples in file order; `_order` puts them in the requested order.
        position = {name: i for i, name in enumerate(self._vcf.samples)}
        self._order = np.array([position[s] for s in self.samples], dtype=np.int64)
        self.indexed = _has_index(self.path)
        self._warned_scan = False
        self._chrom_matches: dict[tuple[str, str], bool] = {}
        #: reference contig name -> the VCF's name for it, for every contig read so far
        self.contig_names: dict[str, str] = {}

    def close(self) -> None:
        self._vcf.close()

    def __enter__(self) -> GenotypeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _records(self, window: Window) -> Iterator[Any]:
        if self.indexed:
            mapping = match_contigs([window.chrom], self._vcf.seqnames)
            if window.chrom not in mapping:
                logger.info("VCF %s has no records on contig %s", self.path, window.chrom)
                return
            self.contig_names[window.chrom] = mapping[window.chrom]
            yield from self._vcf(f"{mapping[window.chrom]}:{max(window.start, 0) + 1}-{window.end}")
            return
        if not self._warned_scan:
            logger.warning(
                "VCF %s has no .tbi/.csi index: scanning the whole file for each window. "
                "Index it (bgzip + 'tabix -p vcf') for speed.",
                self.path,
            )
            self._warned_scan = True
        from cyvcf2 import VCF

        scan = VCF(str(self.path), lazy=True, threads=1)
        if len(self.samples) < len(scan.samples):
            scan.set_samples(self.samples)
        try:
            for record in scan:
                key = (record.CHROM, window.chrom)
                if key not in self._chrom_matches:
                    self._chrom_matches[key] = bool(match_contigs([window.chrom], [record.CHROM]))
                # overlap, as a region query answers: a deletion may start before the window
                if self._chrom_matches[key]:
                    self.contig_names.setdefault(window.chrom, record.CHROM)
                if (
                    self._chrom_matches[key]
                    and record.POS <= window.end
                    and record.POS + len(record.REF) - 1 > window.start
                ):
                    yield record
        finally:
            scan.close()

    def read(self, window: Window, reference: str | np.ndarray | Genome) -> WindowGenotypes:
        """The genotypes of the reader's people inside ``window``.

        ``reference`` is the window's reference sequence (a string of length ``L``, an ``(L, 4)``
        one-hot array, or a :class:`Genome` to fetch it from); REF alleles are checked against it.
        Reading indels needs the :class:`Genome`: deletions pull in bases beyond the window.
        """
        genome = reference if isinstance(reference, Genome) else None
        if self.indels and genome is None:
            raise InputError("Reading indels needs the reference as a Genome (deletions pull in flanking bases).")
        if isinstance(reference, Genome):
            reference = reference.fetch(window)
        ref_codes = reference_codes(reference)
        if len(ref_codes) != window.length:
            raise InputError(
                f"The reference given for window {_window_label(window)} has {len(ref_codes)} bases; "
                f"the window has {window.length}. Pass the window's own sequence."
            )
        n_people = len(self.samples)
        positions: list[int] = []
        refs: list[str] = []
        alts: list[str] = []
        columns: list[np.ndarray] = []
        unphased = np.zeros(n_people, dtype=bool)
        missing_per_person = np.zeros(n_people, dtype=np.int64)
        non_snv = mismatch = 0
        mismatch_examples: list[str] = []

        def take(region: Window) -> int:
            """Add the kept alleles of the records whose POS lies in ``region``; returns how many
            records that was."""
            nonlocal non_snv, mismatch, missing_per_person, unphased
            count = 0
            if region.end <= 0:
                return count  # wholly before the contig
            for record in self._records(region):
                pos = int(record.POS)
                if not region.start < pos <= region.end:
                    continue  # a deletion starting before the region
                count += 1
                ref = record.REF.upper()
                kept: list[tuple[int, str]] = []
                for allele, alt in enumerate(record.ALT, start=1):
                    alt = alt.upper()
                    if self.indels and _is_sequence_change(ref, alt):
                        kept.append((allele, alt))  # REF checked below, against the flanked reference
                        continue
                    if len(ref) != 1 or len(alt) != 1 or alt not in _BASE_CODE or ref not in _BASE_CODE or alt == ref:
                        non_snv += 1
                        continue
                    base = int(ref_codes[pos - 1 - window.start])
                    if _BASE_CODE[ref] != base:
                        mismatch += 1
                        if len(mismatch_examples) < _EXAMPLES:
                            mismatch_examples.append(f"{pos}:{ref}>{alt} (ref {'ACGTN'[base]})")
                        continue
                    kept.append((allele, alt))
                if not kept:
                    continue
                alleles, phased = _alleles(record.genotype.array(), self._order)
                missing = alleles < 0
                missing_per_person += missing.sum(axis=1)
                het = (alleles[:, 0] != alleles[:, 1]) & ~missing.any(axis=1)
                unphased |= (het | missing.any(axis=1) & ~missing.all(axis=1)) & ~phased
                for allele, alt in kept:
                    column = (alleles == allele).astype(np.int8)
                    column[missing] = -1
                    columns.append(column)
                    positions.append(pos)
                    refs.append(ref)
                    alts.append(alt)
            return count

        def first_overlapping(region: Window) -> int:
            """The start to widen ``region`` to so that it holds the POS of every record overlapping
            it (deletions starting before it)."""
            return (
                min([region.start] + [int(r.POS) - 1 for r in self._records(region)])
                if region.end > 0
                else region.start
            )

        try:
            # With indels, a window's bases can come from beyond its ends (deletions pull flanking
            # bases in), where other variants then apply: widen until the variants read so far
            # cannot reach further (far variants shift the window and its bases alike).
            low, high = (first_overlapping(window) if self.indels else window.start), window.end
            records = take(Window(window.chrom, low, high))
            while self.indels:
                reach = edit_margin(Edit.from_vcf(p, r, a) for p, r, a in zip(positions, refs, alts, strict=True))
                if window.start - reach >= low and window.end + reach <= high:
                    break
                if window.start - reach < low:
                    new_low = first_overlapping(Window(window.chrom, window.start - reach, low))
                    take(Window(window.chrom, new_low, low))
                    low = new_low
                if window.end + reach > high:
                    take(Window(window.chrom, high, window.end + reach))
                    high = window.end + reach
        except InputError:
            raise
        except Exception as exc:  # htslib parse errors surface as bare Exceptions
            raise InputError(f"Error reading VCF {self.path} in {_window_label(window)}: {exc}") from exc

        haplotypes = np.stack(columns, axis=2) if columns else np.zeros((n_people, 2, 0), dtype=np.int8)
        position_array = np.array(positions, dtype=np.int64)
        context, context_start = None, 0
        if self.indels and genome is not None:
            edits = [Edit.from_vcf(p, r, a) for p, r, a in zip(positions, refs, alts, strict=True)]
            margin = edit_margin(edits)
            context_start = min(low, window.start - margin) - 1
            context_end = max(high + max((len(r) for r in refs), default=1), window.end + margin) + 1
            context_text = genome.fetch(Window(window.chrom, context_start, context_end))
            keep = np.array(
                [
                    context_text[p - 1 - context_start : p - 1 - context_start + len(r)] == r
                    for p, r in zip(positions, refs, strict=True)
                ],
                dtype=bool,
            )
            for p_, r_, a_ in zip(position_array[~keep], np.array(refs)[~keep], np.array(alts)[~keep], strict=True):
                if len(mismatch_examples) < _EXAMPLES:
                    mismatch_examples.append(f"{p_}:{r_}>{a_}")
            mismatch += int((~keep).sum())
            haplotypes, position_array = haplotypes[:, :, keep], position_array[keep]
            refs = [r for r, k in zip(refs, keep.tolist(), strict=True) if k]
            alts = [a for a, k in zip(alts, keep.tolist(), strict=True) if k]
            kept_edits = [e for e, k in zip(edits, keep.tolist(), strict=True) if k]
            calls = haplotypes.copy()
            overlapping = _drop_overlapping_spans(haplotypes, position_array, kept_edits)
            context = one_hot(context_text)
        else:
            calls = haplotypes.copy()
            overlapping = _drop_overlapping(haplotypes, position_array)
        overlap_examples: list[str] = []
        if overlapping:
            person, _, column = np.nonzero((calls == 1) & (haplotypes != 1))
            for p_, c_ in list(dict.fromkeys(zip(person.tolist(), column.tolist(), strict=True)))[:_EXAMPLES]:
                overlap_examples.append(
                    f"{window.chrom}:{position_array[c_]}:{refs[c_]}>{alts[c_]} ({self.samples[p_]})"
                )
        summary = GenotypeSummary(
            records=records,
            snvs=len(position_array),
            skipped_non_snv=non_snv,
            skipped_ref_mismatch=mismatch,
            missing_calls=int(missing_per_person.sum()),
            people_with_missing=int((missing_per_person > 0).sum()),
            overlapping_calls=overlapping,
            mismatch_examples=tuple(mismatch_examples),
            overlap_examples=tuple(overlap_examples),
        )
        _log_summary(window, summary, self.path)
        return WindowGenotypes(
            window=window,
            samples=list(self.samples),
            positions=position_array,
            refs=np.array(refs, dtype=str),
            alts=np.array(alts, dtype=str),
            haplotypes=haplotypes,
            phased=~unphased,
            summary=summary,
            context=context,
            context_start=context_start,
            calls=calls if overlapping else None,
        )


def _alleles(genotype: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(P, 2)`` int16 allele indices (-1 missing) and ``(P,)`` bool phased, in requested order,
    from cyvcf2's ``(N, ploidy + 1)`` genotype array (-2 pads haploid calls)."""
    # Fancy indexing copies: cyvcf2 reuses the record's buffer for the next record.
    genotype = np.asarray(genotype)[order]
    phased = genotype[:, -1].astype(bool)
    calls = genotype[:, :-1]
    if calls.shape[1] == 1:
        calls = np.repeat(calls, 2, axis=1)
    alleles = calls[:, :2].copy()
    haploid = alleles[:, 1] == -2
    alleles[haploid, 1] = alleles[haploid, 0]
    phased |= haploid
    return alleles, phased


def _is_sequence_change(ref: str, alt: str) -> bool:
    return bool(ref) and bool(alt) and ref != alt and all(c in _BASE_CODE for c in ref + alt)


def _drop_overlapping_spans(haplotypes: np.ndarray, positions: np.ndarray, edits: Sequence[Edit]) -> int:
    """Per haplotype, apply records in POS order (VCF order among equals) and drop an ALT whose
    changed bases (REF and ALT trimmed of shared leading and trailing bases) start before the end
    of the changed bases of one already applied (in place), as ``bcftools consensus`` does;
    returns how many calls were dropped."""
    order = np.argsort(positions, kind="stable")
    frozen = np.full(haplotypes.shape[:2], np.iinfo(np.int64).min, dtype=np.int64)  # end of applied changes
    dropped = 0
    for column in order.tolist():
        edit = edits[column]
        carried = haplotypes[:, :, column] == 1
        clash = carried & (edit.start < frozen)
        dropped += int(clash.sum())
        haplotypes[:, :, column][clash] = 0
        applied = carried & ~clash
        frozen[applied] = np.maximum(frozen[applied], edit.end)
    return dropped


def _drop_overlapping(haplotypes: np.ndarray, positions: np.ndarray) -> int:
    """Keep, per haplotype, only the first ALT carried at a position (in place); returns how many
    calls were dropped."""
    unique, counts = np.unique(positions, return_counts=True)
    dropped = 0
    for pos in unique[counts > 1]:
        cols = np.flatnonzero(positions == pos)
        carried = haplotypes[:, :, cols] == 1  # (P, 2, k)
        later = carried & (np.cumsum(carried, axis=2) > 1)
        dropped += int(later.sum())
        block = haplotypes[:, :, cols]
        block[later] = 0
        haplotypes[:, :, cols] = block
    return dropped


def _log_summary(window: Window, summary: GenotypeSummary, path: Path) -> None:
    label = _window_label(window)
    if summary.skipped_ref_mismatch:
        logger.warning(
            "%s in %s: %d SNV alleles skipped because REF differs from the reference (e.g. %s); "
            "is the VCF on the same genome build as the FASTA?",
            label,
            path,
            summary.skipped_ref_mismatch,
            ", ".join(summary.mismatch_examples),
        )
    if summary.missing_calls:
        logger.info(
            "%s in %s: %d missing allele calls in %d people treated as reference",
            label,
            path,
            summary.missing_calls,
            summary.people_with_missing,
        )
    if summary.skipped_non_snv:
        logger.info(
            "%s in %s: %d non-SNV ALT alleles skipped (read with indels=True to apply indels and MNPs)",
            label,
            path,
            summary.skipped_non_snv,
        )
    if summary.overlapping_calls:
        logger.info(
            "%s in %s: %d haplotype calls at already-altered positions dropped", label, path, summary.overlapping_calls
        )


def read_window_genotypes(
    vcf: str | Path,
    window: Window,
    reference: str | np.ndarray | Genome,
    samples: Sequence[str] | None = None,
) -> WindowGenotypes:
    """The SNV genotypes of ``samples`` (all by default) inside ``window``; see
    :meth:`GenotypeReader.read`. Open a :class:`GenotypeReader` instead to read many windows."""
    with GenotypeReader(vcf, samples) as reader:
        return reader.read(window, reference)


def _check_dtype(dtype: Any) -> np.dtype:
    resolved = np.dtype(dtype)
    if resolved not in DTYPES:
        raise InputError(f"dtype must be float32, float16 or uint8; got {resolved}.")
    return resolved


def personal_one_hot(
    reference: np.ndarray,
    genotypes: WindowGenotypes,
    mode: Mode = "dosage",
    people: Sequence[int] | np.ndarray | None = None,
    dtype: Any = np.float32,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Personal one-hot windows: the reference with each person's variants applied.

    ``reference`` is the window's ``(L, 4)`` one-hot encoding; ``people`` selects rows of
    ``genotypes`` (a batch; all ``P`` by default, giving ``B = P``). Missing calls stay reference.

    A haplotype carrying an indel (or MNP; read with ``GenotypeReader(indels=True)``) is the
    window of its edited sequence that keeps the TSS at index ``L // 2`` (insertions trimmed at
    the window edge on their side of the TSS, deletions filled from the flank beyond it; see
    :func:`varscore.genome.edits.edited_window`), with its SNVs applied there. Its dosage window is
    the mean of the two haplotypes' one-hots as they are written, so an unphased heterozygous
    indel ``0/1`` averages the reference window and the indel's window, and an unphased person
    with two heterozygous indels gets the as-written (``a`` on haplotype 0) phase.

    - ``mode="dosage"``: ``(B, L, 4)``, the mean of the two haplotypes' one-hot encodings, so a base
      is 0, 0.5 or 1 (0 / 1 / 2 allele counts with ``dtype=uint8``, i.e. 2 × dosage).
    - ``mode="haplotypes"``: ``(B, 2, L, 4)``, each haplotype's one-hot (unphased ``a/b`` as
      written: see :class:`WindowGenotypes`).

    ``dtype`` is float32 (default), float16 (exact for these values, half the memory) or uint8.
    ``out``, an array of the result's shape and dtype, is filled and returned instead of a new
    one: reusing a buffer avoids first-touch page faults, which dominate the cost of a fresh
    array of hundreds of MB. Vectorised over all people and variants at once.
    """
    if mode not in MODES:
        raise InputError(f"Unknown personal-genome mode '{mode}'. Choose one of: {', '.join(MODES)}.")
    out_dtype = _check_dtype(dtype)
    reference = np.asarray(reference)
    length = genotypes.window.length
    if reference.shape != (length, 4):
        raise InputError(
            f"reference must be the window's (L, 4) one-hot with L = {length}; got shape {reference.shape}."
        )
    haplotypes = genotypes.haplotypes if people is None else genotypes.haplotypes[np.asarray(people, dtype=np.int64)]
    n = haplotypes.shape[0]
    shape = (n, 2, length, 4) if mode == "haplotypes" else (n, length, 4)
    if out is None:
        out = np.empty(shape, dtype=out_dtype)
    elif out.shape != shape or out.dtype != out_dtype:
        raise InputError(f"out must have shape {shape} and dtype {out_dtype}; got {out.shape} {out.dtype}.")
    is_snv = genotypes.is_snv
    # SNVs read beyond the window matter only to haplotypes with indels (rebuilt below)
    snv_columns = np.flatnonzero(is_snv & (genotypes.offsets >= 0) & (genotypes.offsets < length))
    offsets = genotypes.offsets[snv_columns]
    alt_one_hot = np.eye(4, dtype=np.float32)[genotypes.alt_codes[snv_columns]]  # (S, 4)
    snv_haplotypes = haplotypes[:, :, snv_columns]
    scale = 2.0 if mode == "dosage" and out_dtype == np.uint8 else 1.0
    reference32 = reference.astype(np.float32, copy=False)
    # Cast once: broadcasting a float32 source into a float16 array is ~50x slower than a same-dtype copy.
    out[:] = (reference32 * np.float32(scale)).astype(out_dtype)
    if mode == "haplotypes":
        for h in (0, 1):
            person, column = np.nonzero(snv_haplotypes[:, h, :] == 1)
            out[person, h, offsets[column]] = alt_one_hot[column]
    else:
        for h in (0, 1):
            # (person, offset) pairs are unique within one haplotype (overlaps were dropped on
            # reading), so buffered fancy-index updates do not lose increments.
            person, column = np.nonzero(snv_haplotypes[:, h, :] == 1)
            where = offsets[column]
            delta = np.float32(scale / 2) * (alt_one_hot[column] - reference32[where])
            out[person, where] = (out[person, where].astype(np.float32) + delta).astype(out_dtype)
    if not is_snv.all():
        _apply_indel_haplotypes(out, genotypes, haplotypes, mode, np.float32(scale))
    return out


_INDEL_PEOPLE_CHUNK = 64


def _apply_indel_haplotypes(
    out: np.ndarray, genotypes: WindowGenotypes, haplotypes: np.ndarray, mode: str, scale: np.float32
) -> None:
    """Rebuild (in ``out``) the windows of people with a haplotype carrying an indel or MNP: each
    haplotype's window is laid out from its carried indels (:func:`edited_window`, slice
    copies), then its SNVs are placed where their reference bases landed
    (:func:`window_indices`)."""
    indel_columns = np.flatnonzero(~genotypes.is_snv)
    carriers = np.flatnonzero((haplotypes[:, :, indel_columns] == 1).any(axis=(1, 2)))
    if carriers.size == 0:
        return
    if genotypes.context is None:
        raise InputError("These genotypes hold indels but no flanking reference: read them with a Genome.")
    window = genotypes.window
    source = ReferenceSource.from_one_hot(genotypes.context.astype(np.float32, copy=False), genotypes.context_start)
    edits = [
        Edit.from_vcf(int(p), r, a)
        for p, r, a in zip(genotypes.positions, genotypes.refs.tolist(), genotypes.alts.tolist(), strict=True)
    ]
    start_of = np.array([e.start for e in edits], dtype=np.int64)
    snv_columns = np.flatnonzero(genotypes.is_snv)
    snv_positions = genotypes.positions[snv_columns] - 1  # (S,) 0-based contig indices
    snv_one_hot = np.eye(4, dtype=np.float32)[genotypes.alt_codes[snv_columns]]
    carried_indels = haplotypes[:, :, indel_columns] == 1
    carried_snvs = haplotypes[:, :, snv_columns] == 1
    for begin in range(0, carriers.size, _INDEL_PEOPLE_CHUNK):
        people = carriers[begin : begin + _INDEL_PEOPLE_CHUNK]
        block = np.empty((people.size, 2, window.length, 4), dtype=np.float32)
        for row, person in enumerate(people.tolist()):
            for h in (0, 1):
                columns = indel_columns[carried_indels[person, h]]
                applied = [edits[c] for c in columns[np.argsort(start_of[columns], kind="stable")]]
                edited_window(window, applied, source, out=block[row, h])
                snvs = np.flatnonzero(carried_snvs[person, h])
                where = window_indices(window, applied, snv_positions[snvs])
                landed = where >= 0
                block[row, h, where[landed]] = snv_one_hot[snvs[landed]]
        if mode == "haplotypes":
            out[people] = block.astype(out.dtype, copy=False)
        else:
            out[people] = ((block[:, 0] + block[:, 1]) * (scale / 2)).astype(out.dtype, copy=False)


class PersonalWindows:
    """Personal one-hot windows of one gene for many people, built on demand.

    A Dataset-like view for training loops: ``len()`` people, ``windows[i]`` / ``person(i)`` one
    person's window, ``batch(indices)`` several people's (the same gene) at once.
    Shapes: ``(L, 4)`` per person and ``(B, L, 4)`` per batch in dosage mode; ``(2, L, 4)`` and
    ``(B, 2, L, 4)`` in haplotype mode.
    """

    def __init__(
        self,
        reference_one_hot: np.ndarray,
        genotypes: WindowGenotypes,
        mode: Mode = "dosage",
        dtype: Any = np.float32,
    ) -> None:
        if mode not in MODES:
            raise InputError(f"Unknown personal-genome mode '{mode}'. Choose one of: {', '.join(MODES)}.")
        self.reference = np.asarray(reference_one_hot)
        if self.reference.shape != (genotypes.window.length, 4):
            raise InputError(
                f"reference_one_hot must be (L, 4) with L = {genotypes.window.length}; got {self.reference.shape}."
            )
        self.genotypes = genotypes
        self.mode: Mode = mode
        self.dtype = _check_dtype(dtype)

    @property
    def samples(self) -> list[str]:
        return self.genotypes.samples

    def __len__(self) -> int:
        return self.genotypes.n_people

    def __getitem__(self, index: int) -> np.ndarray:
        return self.person(index)

    def _check(self, indices: np.ndarray) -> None:
        n = len(self)
        bad = indices[(indices < -n) | (indices >= n)]
        if bad.size:
            raise IndexError(f"person index {int(bad[0])} is out of range for {n} people")

    def person(self, index: int) -> np.ndarray:
        """One person's window: ``(L, 4)`` (dosage) or ``(2, L, 4)`` (haplotypes)."""
        return self.batch([index])[0]

    def batch(self, indices: Sequence[int] | np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Several people's windows: ``(B, L, 4)`` (dosage) or ``(B, 2, L, 4)`` (haplotypes),
        written into ``out`` when given (see :func:`personal_one_hot`)."""
        rows = np.asarray(indices, dtype=np.int64).reshape(-1)
        self._check(rows)
        return personal_one_hot(self.reference, self.genotypes, self.mode, people=rows, dtype=self.dtype, out=out)


def variant_keys(genotypes: WindowGenotypes) -> list[str]:
    """``chrom:pos:ref:alt`` of each column of ``genotypes``."""
    chrom = genotypes.window.chrom
    return [
        f"{chrom}:{int(p)}:{r}:{a}" for p, r, a in zip(genotypes.positions, genotypes.refs, genotypes.alts, strict=True)
    ]


def imputed_dosage(genotypes: WindowGenotypes, train: np.ndarray) -> tuple[np.ndarray, int]:
    """``(P, V)`` float64 ALT dosages 0/1/2 with missing genotypes (either haplotype ``.``) set to
    the column's mean over the non-missing ``train`` people; also the number of calls imputed.

    Dosages count each VCF record's own calls (:attr:`WindowGenotypes.record_calls`), also where
    split multi-allelic or duplicate records at one position collide on a haplotype, which personal
    sequences resolve by applying the first record only."""
    haplotypes = np.asarray(getattr(genotypes, "record_calls", genotypes.haplotypes))  # a bare haplotype holder too
    dosage = (haplotypes == 1).sum(axis=1).astype(np.float64)
    missing = (haplotypes < 0).any(axis=1)
    n_missing = int(missing.sum())
    if n_missing:
        train_rows = np.zeros(len(dosage), dtype=bool)
        train_rows[train] = True
        observed = ~missing & train_rows[:, None]
        counts = observed.sum(axis=0)
        means = np.where(counts > 0, (dosage * observed).sum(axis=0) / np.maximum(counts, 1), 0.0)
        dosage = np.where(missing, means[None, :], dosage)
    return dosage, n_missing


__all__ = [
    "GenotypeReader",
    "GenotypeSummary",
    "PersonalWindows",
    "WindowGenotypes",
    "imputed_dosage",
    "personal_one_hot",
    "read_window_genotypes",
    "reference_codes",
    "variant_keys",
]
