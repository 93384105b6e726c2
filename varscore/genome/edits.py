"""Alleles as edits of the reference contig, and the alternate windows they give: the geometry
shared by variant scoring (:mod:`varscore.scoring.engine`) and personal genomes (:mod:`varscore.genome.personal`).
An alternate window keeps the TSS at index ``L // 2`` whatever the edits' length changes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from varscore.errors import InputError
from varscore.genome.fasta import Genome
from varscore.genome.sequence import one_hot
from varscore.types import Window

__all__ = ["Edit", "ReferenceSource", "edit_margin", "edited_window", "window_indices"]


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
