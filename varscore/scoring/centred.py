"""Variant-centred scoring for track models: the window centred on each variant (``exact``) or the
shared window of the genome tile it falls in (``tiled``), REF and ALT predictions over chosen
tracks, and the SUM / logSUM / D1 / D2 statistics over the whole prediction and over the bins of
each overlapping gene's exons.

Records stream through in file order; records sharing a window (same position in ``exact``
mode, same tile in ``tiled`` mode) form a group with one reference pass. A window's single-base
alternates go through the backbone's :meth:`~varscore.plugin.contracts.Backbone.ism` against that
reference pass when the backbone declares ``fast_ism`` (Enformer's and Borzoi's exact fast ISM);
in ``exact`` mode the other windows (indels only, or a backbone without ``fast_ism``) are batched
into full forward passes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from varscore.errors import InputError
from varscore.genome.edits import Edit, ReferenceSource, edit_margin, edited_window
from varscore.genome.exons import GeneModel, GeneModelIndex
from varscore.genome.fasta import Genome
from varscore.scoring.engine import CHECK_REF_MODES, ScoringSummary, scorable_alleles, unscorable_reason

if TYPE_CHECKING:
    from varscore.plugin.contracts import SequenceBackbone
from varscore.genome.sequence import BASE_INDEX
from varscore.types import Variant, Window

logger = logging.getLogger(__name__)

STATS = ("SUM", "logSUM", "D1", "D2")
#: statistics that are distances (never negative): their sign says nothing of the direction
UNSIGNED_STATS = ("D1", "D2")
CENTRINGS = ("exact", "tiled")
#: values kept per (track, statistic): the REF value, the ALT value and the score
VALUE_FIELDS = ("ref", "alt", "score")
#: windows predicted together before the scores of their groups are given out (``exact``)
FLUSH_WINDOWS = 64


# --- tracks and statistics ---------------------------------------------------------------------


@dataclass(frozen=True)
class TrackSelection:
    """The chosen output tracks: their indices in the model's output and their names."""

    indices: tuple[int, ...]
    names: tuple[str, ...]


def read_targets(path: str | Path) -> list[str]:
    """The ``description`` column of a targets file (tab-separated with a header, one row per
    output track in order, as Enformer's ``targets_human.txt``)."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise InputError(f"Targets file not found: {path}.")
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises many types
        raise InputError(f"Cannot read targets file {path}: {exc}") from exc
    if "description" not in table.columns:
        raise InputError(f"Targets file {path} has no 'description' column (it has {', '.join(table.columns)}).")
    if "index" in table.columns and list(table["index"]) != [str(i) for i in range(len(table))]:
        raise InputError(f"Targets file {path}: its 'index' column is not 0, 1, 2, ... in order.")
    return list(table["description"])


_INDEX_SPEC = re.compile(r"^\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*$")


def select_tracks(spec: str, n_tracks: int, descriptions: Sequence[str] | None = None) -> TrackSelection:
    """Tracks by ``spec``: ``all``; indices and ranges (``0,5,10-12``); or any other text, a
    regular expression searched in the targets' descriptions (e.g. ``CAGE.*blood``)."""
    if descriptions is not None and len(descriptions) != n_tracks:
        raise InputError(f"The targets file lists {len(descriptions)} tracks; the model predicts {n_tracks}.")
    names = list(descriptions) if descriptions is not None else [f"track{i}" for i in range(n_tracks)]
    spec = spec.strip()
    if spec.lower() == "all":
        indices = list(range(n_tracks))
    elif _INDEX_SPEC.match(spec):
        indices = []
        for part in spec.split(","):
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi or lo)
            if first > last or last >= n_tracks:
                raise InputError(f"Track range '{part.strip()}' is outside the model's tracks 0-{n_tracks - 1}.")
            indices.extend(range(first, last + 1))
        indices = list(dict.fromkeys(indices))
    else:
        if descriptions is None:
            raise InputError(f"Tracks '{spec}' is a pattern: pass the targets file (--targets) to match it against.")
        try:
            pattern = re.compile(spec)
        except re.error as exc:
            raise InputError(f"Track pattern '{spec}' is not a valid regular expression: {exc}.") from exc
        indices = [i for i, text in enumerate(descriptions) if pattern.search(text)]
        if not indices:
            raise InputError(f"No track description matches '{spec}'.")
    return TrackSelection(tuple(indices), tuple(names[i] for i in indices))


def parse_stats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"SUM,D2"`` -> ``("SUM", "D2")``; each must be one of :data:`STATS`."""
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    bad = [s for s in items if s not in STATS]
    if bad or not items:
        raise InputError(f"Unknown statistic(s) {', '.join(bad) or '(none)'}: choose from {', '.join(STATS)}.")
    return tuple(dict.fromkeys(items))


def statistics(reference: np.ndarray, alternates: np.ndarray, stats: Sequence[str]) -> np.ndarray:
    """Baskerville's SNP statistics over bins, every track at once.

    ``reference``: ``(bins, T)``; ``alternates``: ``(M, bins, T)``. Returns ``(M, T, S, 3)``
    float64: REF value, ALT value and score per statistic — SUM: ``Σ ref``, ``Σ alt``, their
    difference; logSUM: the same of ``log2(x + 1)``; D1 / D2: 0, the L1 / L2 distance between
    the ALT and REF tracks, that distance (as the track output mode scores them).
    """
    ref = np.asarray(reference, dtype=np.float64)
    alt = np.asarray(alternates, dtype=np.float64)
    out = np.zeros((alt.shape[0], alt.shape[2], len(stats), 3))
    for k, stat in enumerate(stats):
        if stat in ("SUM", "logSUM"):
            r, a = (ref, alt) if stat == "SUM" else (np.log2(ref + 1), np.log2(alt + 1))
            out[:, :, k, 0] = r.sum(axis=0)[None]
            out[:, :, k, 1] = a.sum(axis=1)
            out[:, :, k, 2] = out[:, :, k, 1] - out[:, :, k, 0]
        elif stat in ("D1", "D2"):
            diff = alt - ref[None]
            distance = np.abs(diff).sum(axis=1) if stat == "D1" else np.sqrt((diff**2).sum(axis=1))
            out[:, :, k, 1] = out[:, :, k, 2] = distance
        else:
            raise InputError(f"Unknown statistic {stat!r}: choose from {', '.join(STATS)}.")
    return out


# --- window geometry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Geometry:
    """Where a model's ``n_bins`` output bins of ``bin_size`` bp lie in its ``length``-bp window:
    centred, from window index ``offset`` (Enformer predicts the central 114,688 bp of 196,608)."""

    length: int
    bin_size: int
    n_bins: int

    @property
    def offset(self) -> int:
        return (self.length - self.n_bins * self.bin_size) // 2

    def predicted(self, window_start: int) -> tuple[int, int]:
        """The contig interval ``[start, end)`` the bins of the window at ``window_start`` cover."""
        first = window_start + self.offset
        return first, first + self.n_bins * self.bin_size

    def bin_mask(self, window_start: int, intervals: Iterable[tuple[int, int]]) -> np.ndarray:
        """``(n_bins,)`` bool: the bins that overlap any of the contig ``intervals``."""
        first, _ = self.predicted(window_start)
        mask = np.zeros(self.n_bins, dtype=bool)
        for start, end in intervals:
            lo = max((start - first) // self.bin_size, 0)
            hi = min(-((first - end) // self.bin_size), self.n_bins)  # ceil((end - first) / bin_size)
            if lo < hi:
                mask[lo:hi] = True
        return mask


def window_start(pos: int, length: int, centring: str, tile: int) -> int:
    """0-based start of the window scoring a record at 1-based ``pos``.

    ``exact``: the record's POS base at window index ``length // 2``. ``tiled``: the contig is cut
    into tiles of ``tile`` bp (``[k·tile, (k+1)·tile)``); the window is centred on the middle of
    the tile holding POS, so a variant lies at most ``tile / 2`` bp from the centre.
    """
    if centring == "exact":
        return pos - 1 - length // 2
    k = (pos - 1) // tile
    return k * tile + tile // 2 - length // 2


# --- results -----------------------------------------------------------------------------------


@dataclass
class AlleleValues:
    """One ALT allele's values: ``window`` ``(T, S, 3)`` over all bins; ``genes`` one ``(T, S, 3)``
    per overlapping gene with exon bins in the prediction (see :data:`VALUE_FIELDS`)."""

    allele: str
    edit: Edit
    window: np.ndarray
    genes: list[tuple[GeneModel, np.ndarray]] = field(default_factory=list)


@dataclass
class RecordScores:
    """What became of one record: scored alleles, or the reason it was not scored."""

    variant: Variant
    reason: str | None = None
    window_start: int | None = None
    alleles: list[AlleleValues] = field(default_factory=list)


@dataclass
class CentredSummary(ScoringSummary):
    """:class:`ScoringSummary` plus the passes variant-centred scoring took."""

    centring: str = "exact"
    reference_passes: int = 0
    alternate_windows: int = 0
    ism_alternates: int = 0
    detail_rows: int = 0
    genes_seen: set[str] = field(default_factory=set)

    def lines(self) -> list[str]:
        self.genes_scored = len(self.genes_seen)
        out = super().lines()
        out.append(
            f"centring: {self.centring}; reference passes: {self.reference_passes}; "
            f"alternate windows: {self.alternate_windows} ({self.ism_alternates} through the exact ISM)"
        )
        if self.detail_rows:
            out.append(f"detail rows: {self.detail_rows}")
        return out


@dataclass
class _Group:
    chrom: str  # FASTA contig name
    start: int  # window start
    records: list[tuple[RecordScores, list[tuple[str, Edit]]]] = field(default_factory=list)


# --- the scorer --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScorerSettings:
    """How a :class:`VariantCentredScorer` scores: ``tracks``, output track indices (default all);
    ``stats``, statistics (:data:`STATS`); ``centring`` (:data:`CENTRINGS`); ``tile_bins``, the tile
    width in bins for ``tiled`` centring (default an eighth of the model's bins, at least 1);
    ``batch_size``, windows per forward pass; ``check_ref`` (flag, skip or fail)."""

    tracks: Sequence[int] | None = None
    stats: Sequence[str] = STATS
    centring: str = "exact"
    tile_bins: int | None = None
    batch_size: int = 8
    check_ref: str = "flag"


class VariantCentredScorer:
    """Scores records in variant-centred windows with a built sequence backbone, as ``settings``
    say (:class:`ScorerSettings`); ``genes``: gene models for gene-level values (none: window-level
    only).

    A window's single-base alternates go through the backbone's exact fast ISM from the window's
    one reference pass when the backbone declares ``fast_ism`` (Enformer, Borzoi), in both
    centrings; other alleles, and every allele of other backbones, through full forward passes of
    the edited windows (batched across consecutive windows in ``exact`` mode).
    """

    def __init__(
        self,
        backbone: SequenceBackbone,
        genome: Genome,
        settings: ScorerSettings | None = None,
        genes: Sequence[GeneModel] | None = None,
    ) -> None:
        settings = settings or ScorerSettings()
        centring, check_ref, batch_size = settings.centring, settings.check_ref, settings.batch_size
        if centring not in CENTRINGS:
            raise InputError(f"centring must be one of {', '.join(CENTRINGS)}; got '{centring}'.")
        if check_ref not in CHECK_REF_MODES:
            raise InputError(f"check_ref must be one of {', '.join(CHECK_REF_MODES)}; got '{check_ref}'.")
        if batch_size < 1:
            raise InputError(f"batch size must be >= 1; got {batch_size}.")
        self.backbone, self.genome = backbone, genome
        self.stats = parse_stats(settings.stats)
        self.centring, self.batch_size, self.check_ref = centring, batch_size, check_ref
        self.fast_ism = bool(backbone.fast_ism)
        self.length = int(backbone.window_size)
        probe = np.asarray(backbone.predict(np.zeros((1, self.length, 4), dtype=np.float32)))
        if probe.ndim != 3:
            raise InputError(
                f"Variant-centred scoring needs a track model ((N, bins, tracks) output); got {probe.shape}."
            )
        self.geometry = Geometry(self.length, int(backbone.bin_size), int(probe.shape[1]))
        self.n_tracks = int(probe.shape[2])
        self.select_tracks(range(self.n_tracks) if settings.tracks is None else settings.tracks)
        bins = settings.tile_bins if settings.tile_bins is not None else max(1, self.geometry.n_bins // 8)
        if not 1 <= bins <= self.geometry.n_bins:
            raise InputError(f"tile bins must be between 1 and {self.geometry.n_bins}; got {bins}.")
        self.tile = bins * self.geometry.bin_size
        self.gene_index = GeneModelIndex(genes) if genes else None
        self.summary = CentredSummary(centring=centring)

    def select_tracks(self, tracks: Iterable[int]) -> None:
        """Score these output tracks (indices into the model's output)."""
        chosen = np.asarray(list(tracks), dtype=np.int64)
        if not len(chosen) or chosen.min() < 0 or chosen.max() >= self.n_tracks:
            raise InputError(f"Tracks must be between 0 and {self.n_tracks - 1}; got {chosen.tolist()}.")
        self.tracks = chosen

    # -- prediction
    def _predict(self, windows: list[np.ndarray]) -> np.ndarray:
        """``(N, bins, T)`` float32 of the chosen tracks for a list of ``(L, 4)`` windows."""
        parts = []
        for begin in range(0, len(windows), self.batch_size):
            batch = np.stack(windows[begin : begin + self.batch_size]).astype(np.float32, copy=False)
            parts.append(np.asarray(self.backbone.predict(batch))[:, :, self.tracks].astype(np.float32))
        return np.concatenate(parts) if parts else np.empty((0, self.geometry.n_bins, len(self.tracks)), np.float32)

    def _reduce(self, prediction: np.ndarray) -> np.ndarray:
        prediction = np.asarray(prediction)
        return prediction[:, :, self.tracks].reshape(len(prediction), -1)

    def _window(self, group: _Group) -> Window:
        return Window(group.chrom, group.start, group.start + self.length)

    def _alternate_windows(self, group: _Group, reference: np.ndarray, edits: Sequence[Edit]) -> list[np.ndarray]:
        window = self._window(group)
        others = [e for e in edits if not self._is_window_snv(e, window)]
        source = None
        if others:
            margin = edit_margin([max(others, key=lambda e: abs(e.length_change))])
            source = ReferenceSource(self.genome, group.chrom, window.start - margin, window.end + margin)
        out = []
        for edit in edits:
            if self._is_window_snv(edit, window):
                alt = reference.copy()
                alt[edit.start - window.start] = 0.0
                alt[edit.start - window.start, BASE_INDEX[edit.inserted]] = 1.0
                out.append(alt)
            else:
                assert source is not None
                out.append(edited_window(window, [edit], source))
        return out

    @staticmethod
    def _is_window_snv(edit: Edit, window: Window) -> bool:
        return edit.is_snv and window.start <= edit.start < window.end

    def _distinct_edits(self, group: _Group) -> list[Edit]:
        return list(dict.fromkeys(edit for _, alleles in group.records for _, edit in alleles))

    def _predict_groups(self, groups: Sequence[_Group]) -> list[tuple[np.ndarray, dict[Edit, np.ndarray]]]:
        """Each group's reference prediction ``(bins, T)`` and its alleles' predictions.

        ``tiled``, and ``exact`` windows with single-base alternates on a ``fast_ism`` backbone:
        one reference pass per window and its SNVs through :meth:`_predict_window`. The other
        ``exact`` windows: the reference and every alternate as full forward passes, batched
        across windows."""
        out: list[tuple[np.ndarray, dict[Edit, np.ndarray]] | None] = [None] * len(groups)
        windows: list[np.ndarray] = []
        layout = []
        for index, group in enumerate(groups):
            window = self._window(group)
            edits = self._distinct_edits(group)
            if self.centring == "tiled" or (self.fast_ism and any(self._is_window_snv(e, window) for e in edits)):
                out[index] = self._predict_window(group)
                continue
            sequence = self.genome.window_sequence(window)
            self.summary.windows_padded += int(sequence.padded > 0)
            layout.append((index, len(windows), edits))
            windows.append(sequence.one_hot)
            windows.extend(self._alternate_windows(group, sequence.one_hot, edits))
        predicted = self._predict(windows)
        self.summary.reference_passes += len(layout)
        self.summary.alternate_windows += len(windows) - len(layout)
        for index, at, edits in layout:
            out[index] = (predicted[at], {e: predicted[at + 1 + i] for i, e in enumerate(edits)})
        return [item for item in out if item is not None]

    def _predict_window(self, group: _Group) -> tuple[np.ndarray, dict[Edit, np.ndarray]]:
        """One window: its reference pass, its single-base alternates through the backbone's
        :meth:`~varscore.plugin.contracts.Backbone.ism` from that pass, its other alleles as full
        forward passes of the edited windows."""
        window = self._window(group)
        sequence = self.genome.window_sequence(window)
        self.summary.windows_padded += int(sequence.padded > 0)
        edits = self._distinct_edits(group)
        snvs = [e for e in edits if self._is_window_snv(e, window)]
        others = [e for e in edits if not self._is_window_snv(e, window)]
        shape = (self.geometry.n_bins, len(self.tracks))
        values: dict[Edit, np.ndarray] = {}
        if snvs:
            result = self.backbone.ism(
                sequence.one_hot,
                [(e.start - window.start, e.inserted) for e in snvs],
                self._reduce,
                batch_size=self.batch_size,
            )
            reference = np.asarray(result.reference, dtype=np.float32).reshape(shape)
            for edit, row in zip(snvs, np.asarray(result.alternates, dtype=np.float32), strict=True):
                values[edit] = row.reshape(shape)
            self.summary.ism_alternates += len(snvs)
        else:
            reference = self._predict([sequence.one_hot])[0]
        if others:
            for edit, prediction in zip(
                others, self._predict(self._alternate_windows(group, sequence.one_hot, others)), strict=True
            ):
                values[edit] = prediction
        self.summary.reference_passes += 1
        self.summary.alternate_windows += len(edits)
        return reference, values

    # -- statistics of a group
    def _group_scores(self, group: _Group, reference: np.ndarray, alternates: dict[Edit, np.ndarray]) -> None:
        if "logSUM" in self.stats:
            lowest = min([float(reference.min())] + [float(a.min()) for a in alternates.values()])
            if lowest <= -1:
                raise InputError(
                    f"logSUM takes log2(x + 1) of the predictions, but the model predicts {lowest:.3g} near "
                    f"{group.chrom}:{group.start + self.length // 2 + 1}; choose SUM, D1 or D2 for this model."
                )
        edits = list(alternates)
        stacked = np.stack([alternates[e] for e in edits])
        window_values = statistics(reference, stacked, self.stats)
        gene_values: list[tuple[GeneModel, np.ndarray]] = []
        if self.gene_index is not None:
            first, last = self.geometry.predicted(group.start)
            for gene in self.gene_index.overlapping(group.chrom, first, last):
                mask = self.geometry.bin_mask(group.start, gene.exons)
                if mask.any():
                    gene_values.append((gene, statistics(reference[mask], stacked[:, mask], self.stats)))
                    self.summary.genes_seen.add(gene.gene_id)
        row_of = {e: i for i, e in enumerate(edits)}
        for record, alleles in group.records:
            record.window_start = group.start
            for allele, edit in alleles:
                row = row_of[edit]
                record.alleles.append(
                    AlleleValues(allele, edit, window_values[row], [(g, v[row]) for g, v in gene_values])
                )

    # -- streaming
    def _check(self, variant: Variant) -> tuple[str | None, str | None]:
        """``(FASTA contig, None)`` for a record to score, or ``(contig, reason)``."""
        chrom = self.genome.resolve(variant.chrom)
        if chrom is None:
            return None, "not_in_fasta"
        if variant.chrom != chrom or variant.chrom not in self.summary.contig_mapping:
            self.summary.contig_mapping[variant.chrom] = chrom
        reason = unscorable_reason(variant)
        if reason is None and self.check_ref != "skip":
            fasta_ref = self.genome.fetch(Window(chrom, variant.pos - 1, variant.pos - 1 + len(variant.ref)))
            if fasta_ref != variant.ref.upper():
                if self.check_ref == "fail":
                    raise InputError(
                        f"REF mismatch at {variant.chrom}:{variant.pos}: the VCF says {variant.ref}, the FASTA "
                        f"{self.genome.path} has {fasta_ref}. Wrong genome build? Use --check-ref flag to score the rest."
                    )
                reason = "ref_mismatch"
        return chrom, reason

    def score(self, variants: Iterable[Variant]) -> Iterator[RecordScores]:
        """Every record of ``variants``, in order, with its alleles' values or the reason it was
        not scored; the counts go to :attr:`summary`."""
        pending: list[RecordScores] = []  # records not yet given out, in order
        closed: list[_Group] = []
        group: _Group | None = None
        n_windows = 0
        for variant in variants:
            self.summary.records_read += 1
            chrom, reason = self._check(variant)
            record = RecordScores(variant, reason)
            pending.append(record)
            if reason is not None:
                self.summary.not_scored[reason] += 1
                continue
            assert chrom is not None
            start = window_start(variant.pos, self.length, self.centring, self.tile)
            alleles = [(a.upper(), Edit.from_vcf(variant.pos, variant.ref, a)) for a in scorable_alleles(variant)]
            self.summary.records_scored += 1
            self.summary.indel_records += int(any(not edit.is_snv for _, edit in alleles))
            if group is None or (group.chrom, group.start) != (chrom, start):
                if group is not None:
                    closed.append(group)
                    n_windows += 1 + len(self._distinct_edits(group))
                    if self.centring == "tiled" or n_windows >= max(FLUSH_WINDOWS, self.batch_size):
                        yield from self._flush(closed, pending)
                        closed, n_windows = [], 0
                group = _Group(chrom, start)
            group.records.append((record, alleles))
        if group is not None:
            closed.append(group)
        yield from self._flush(closed, pending, final=True)

    def _flush(self, groups: list[_Group], pending: list[RecordScores], final: bool = False) -> Iterator[RecordScores]:
        """Score ``groups`` and give out the pending records up to the last of them (all, if ``final``)."""
        for group, (reference, alternates) in zip(groups, self._predict_groups(groups), strict=True):
            self._group_scores(group, reference, alternates)
        upto = len(pending)
        if groups and not final:
            last = groups[-1].records[-1][0]
            upto = next(i for i in range(len(pending) - 1, -1, -1) if pending[i] is last) + 1
        out = pending[:upto]
        del pending[:upto]
        yield from out


__all__ = [
    "CENTRINGS",
    "STATS",
    "AlleleValues",
    "CentredSummary",
    "Geometry",
    "RecordScores",
    "ScorerSettings",
    "TrackSelection",
    "VariantCentredScorer",
    "parse_stats",
    "read_targets",
    "select_tracks",
    "statistics",
    "window_start",
]
