"""``varscore annotate --mode variant`` and ``varscore models calibrate``: variant-centred scoring of
every record of a VCF with a track model, streamed (scores are computed while the output VCF is
written, so memory does not grow with the record count), with an optional Parquet detail table
and calibrated quantiles."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from varscore.errors import InputError, VarscoreError
from varscore.genome.fasta import Genome
from varscore.io.infotext import header_text, info_atom
from varscore.io.vcf import (
    DECREASED,
    INCREASED,
    MAX_KEY,
    SCORE_FORMAT,
    SCORE_KEY,
    SKIP_KEY,
    UNCHANGED,
    UNDIRECTED,
    InfoHeader,
    consequence,
    format_float,
    iter_variants,
    write_annotated,
)
from varscore.scoring.calibrate import (
    QUANTILE_KEY,
    BackgroundCollector,
    Calibration,
    load_calibration,
    resolution_warning,
    write_calibration,
)
from varscore.scoring.centred import (
    STATS,
    UNSIGNED_STATS,
    CentredSummary,
    RecordScores,
    ScorerSettings,
    TrackSelection,
    VariantCentredScorer,
    parse_stats,
    read_targets,
    select_tracks,
)
from varscore.scoring.selection import Selection, selected_input

logger = logging.getLogger(__name__)

TOP_KEY = "VARSCORE_TOP"


class ScoringInterrupted(VarscoreError):
    """Variant-centred scoring or calibration was stopped by SIGTERM; ``exit_code`` is the shell's
    ``128 + signal`` (143), which the CLI exits with after printing the message in one line (as
    ``finetune`` does with :class:`varscore.training.lightning.TrainingInterrupted`)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class _StopSignal(BaseException):  # noqa: N818 - a control-flow signal, not an error
    """Raised by the SIGTERM handler to unwind the scoring (a BaseException, so that no
    ``except Exception`` on the way swallows it; ``finally`` blocks and context managers clean up
    the temporary output on the way out)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def stop_on_sigterm(what: str, outcome: str) -> Iterator[None]:
    """While active (main thread only; elsewhere nothing is installed), SIGTERM unwinds the work and
    ends in :class:`ScoringInterrupted`: "``what`` stopped by SIGTERM; ``outcome``". Later SIGTERMs
    while unwinding are ignored; the previous handler is restored on exit."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    armed = [True]

    def handler(signum: int, frame: Any) -> None:
        if armed[0]:
            armed[0] = False
            raise _StopSignal(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except _StopSignal as stop:
        name = signal.Signals(stop.signum).name
        raise ScoringInterrupted(f"{what} stopped by {name}; {outcome}", stop.signum) from None
    finally:
        armed[0] = False
        signal.signal(signal.SIGTERM, previous)


def centred_headers(stat: str, calibrated: bool) -> list[InfoHeader]:
    headers = [
        InfoHeader(
            SCORE_KEY,
            ".",
            "String",
            f"Variant-centred {stat} score of each ALT allele over the whole prediction (GENE .) and over the "
            "exon bins of each overlapping gene, at the chosen track with the largest |DELTA| there "
            "(MODEL is model:track). REF_PRED and ALT_PRED are the statistic of the predicted track (SUM: "
            "coverage summed over bins in the track's units, logSUM: log2 units, D1/D2: distances with REF_PRED 0); "
            "DELTA = ALT_PRED - REF_PRED (D1/D2: the distance). Consequence is the direction of DELTA as a "
            f"Sequence Ontology term: {INCREASED} (DELTA > 0), {DECREASED} (DELTA < 0), {UNCHANGED} (DELTA = 0), "
            f"{UNDIRECTED} (D1/D2: changed, direction not measured); for a track that is not expression it names "
            f"the direction of the predicted signal. Format: {SCORE_FORMAT}",
        ),
        InfoHeader(MAX_KEY, "A", "Float", f"Largest |{stat}| of the allele over the chosen tracks, window and genes"),
        InfoHeader(TOP_KEY, "A", "String", "Where the allele's largest |score| is: STAT|TRACK|GENE (GENE . = window)"),
        InfoHeader(
            SKIP_KEY,
            "1",
            "String",
            "Why the record was not scored: missing_alt, symbolic, ambiguous_ref, ambiguous_alt, "
            "ref_mismatch, not_in_fasta",
        ),
    ]
    if calibrated:
        headers.append(
            InfoHeader(
                QUANTILE_KEY,
                "A",
                "Float",
                "Fraction of the model's background variants with a smaller |score| than "
                "VARSCORE_MAX (same track, statistic and scope)",
            )
        )
    return headers


@dataclass(frozen=True, kw_only=True)
class CentredSettings:
    """How windows centred on variants are scored, shared by :class:`VariantScoringJob` and
    :class:`CalibrateJob`. ``fasta``: the reference (default: the bundle's); ``tracks``: ``all``,
    indices (``0,5,10-12``) or a pattern over the ``targets`` file's descriptions; ``gtf``: genes
    and exons for gene-level scores over exon bins; ``stats``: statistics, the first being the
    headline; ``centring``: a window per variant position (``exact``) or per genome tile of
    ``tile_bins`` output bins (``tiled``); ``batch_size`` windows per forward pass on ``device``
    (``bf16`` autocast on GPU); ``check_ref``: ``flag``, ``fail`` or ``skip`` a REF differing from
    the FASTA."""

    fasta: str | Path | None = None
    tracks: str = "all"
    targets: str | Path | None = None
    gtf: str | Path | None = None
    stats: str | Sequence[str] = STATS
    centring: str = "exact"
    tile_bins: int | None = None
    batch_size: int = 8
    device: str = "auto"
    bf16: bool = False
    check_ref: str = "flag"


@dataclass(frozen=True, kw_only=True)
class VariantScoringJob(CentredSettings):
    """One ``varscore annotate --mode variant`` run: every record of ``vcf`` scored with the track
    model ``model`` in variant-centred windows, written to ``output`` (``-``, ``*.vcf`` or
    ``*.vcf.gz``) and, with ``detail``, every value to a Parquet table::

        run_variant_scoring(VariantScoringJob("in.vcf", "my-track-model", "out.vcf", gtf="genes.gtf"))
    """

    vcf: str | Path = field(kw_only=False)
    model: str | Path = field(kw_only=False)
    output: str | Path = field(default="-", kw_only=False)
    detail: str | Path | None = None
    progress: bool = False
    selection: Selection = field(default_factory=Selection)  # --regions, --shard


@dataclass(frozen=True, kw_only=True)
class CalibrateJob(CentredSettings):
    """One ``varscore models calibrate`` run: the first ``max_records`` scorable records of the
    background ``vcf`` scored with ``model``; their |score| distributions are stored in the bundle
    (or in a calibrated copy at ``output``)."""

    model: str | Path = field(kw_only=False)
    vcf: str | Path = field(kw_only=False)
    output: str | Path | None = field(default=None, kw_only=False)
    max_records: int | None = None


class CalibrationResult(NamedTuple):
    """What :func:`run_calibration` did: the calibrated bundle's ``path``, the ``calibration`` stored
    there and the ``summary`` of scoring the background."""

    path: Path
    calibration: Calibration
    summary: CentredSummary

    def lines(self) -> list[str]:
        return [
            *self.summary.lines(),
            f"calibrated {self.path} on {self.calibration.records} background records "
            f"({len(self.calibration.counts)} keys)",
        ]


def trained_bins_warning(bundle: Any, n_bins: int) -> str | None:
    """One line when ``bundle`` learned only some of its ``n_bins`` output bins (its output mode
    reads only those, e.g. Variformer's centre bin): variant-centred scores read every bin, and the
    others were never fitted to data."""
    trained = bundle.output_mode().reads_bins(n_bins)
    if trained is None:
        return None
    first, stop, _ = trained.indices(n_bins)
    if stop - first >= n_bins:
        return None
    which = f"bin {first}" if stop - first == 1 else f"bins {first}-{stop - 1}"
    return (
        f"model '{bundle.name}' was trained on output {which} of {n_bins} only (its output mode "
        f"'{bundle.spec.output_mode.name}'): variant-centred scores read every bin, and the others were never fitted, "
        "so they may mislead; prefer a model trained on whole tracks (finetune --output-mode track)."
    )


# glibc mallopt parameters: keep freed memory for the next window rather than returning it
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_THRESHOLD = 32 << 20  # glibc's largest
_TRIM_THRESHOLD = 1 << 30


def retain_freed_memory() -> bool:
    """Ask glibc's allocator to keep freed memory in the process (allocations up to 32 MiB from
    the heap, the heap trimmed only above 1 GiB free). Every window allocates and frees the same
    activation-sized buffers; by default glibc returns them to the system and the next window
    faults them in again page by page, which showed as system time (14% of a variant-mode run's
    CPU time, 8% with this). Returns whether the settings took (False off glibc)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    settings = ((_M_MMAP_THRESHOLD, _MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD), (_M_TOP_PAD, 64 << 20))
    return all(mallopt(ctypes.c_int(key), ctypes.c_int(value)) == 1 for key, value in settings)


def open_scorer(bundle: Any, settings: CentredSettings) -> tuple[VariantCentredScorer, TrackSelection]:
    """A :class:`VariantCentredScorer` for a bundle's backbone and the chosen tracks (the process's
    allocator set to keep freed memory: :func:`retain_freed_memory`)."""
    from varscore.genome.exons import load_gene_models

    retain_freed_memory()

    fasta_path = Path(settings.fasta) if settings.fasta else bundle.reference_fasta
    if fasta_path is None:
        raise InputError(f"Model '{bundle.name}' records no reference FASTA: pass one with --fasta.")
    genome = Genome(fasta_path)
    descriptions = read_targets(settings.targets) if settings.targets else None
    # exons beyond a contig are refused
    genes = load_gene_models(settings.gtf, genome.lengths) if settings.gtf else None
    backbone = bundle.sequence_backbone(settings.device, settings.bf16)
    if descriptions is None:  # the track list the bundle holds (e.g. Borzoi's targets.txt)
        from varscore.scoring.detail import model_track_names

        descriptions = model_track_names(bundle)
    return centred_scorer(backbone, genome, settings, genes, descriptions)


def centred_scorer(
    backbone: Any, genome: Genome, settings: CentredSettings, genes: Any, descriptions: Sequence[str] | None
) -> tuple[VariantCentredScorer, TrackSelection]:
    """A :class:`VariantCentredScorer` of a built sequence backbone (``genes``: exon models, or
    None) with the tracks ``settings.tracks`` chosen (``descriptions``: the targets file's)."""
    options = ScorerSettings(
        stats=parse_stats(settings.stats),
        centring=settings.centring,
        tile_bins=settings.tile_bins,
        batch_size=settings.batch_size,
        check_ref=settings.check_ref,
    )
    scorer = VariantCentredScorer(backbone, genome, options, genes)
    selection = select_tracks(settings.tracks, scorer.n_tracks, descriptions)
    scorer.select_tracks(selection.indices)
    return scorer, selection


def headline(record: RecordScores, selection: TrackSelection, stat_index: int = 0) -> list[tuple[float, int, str]]:
    """Per allele: ``(score, track position, gene label or '.')`` with the largest |score| of
    statistic ``stat_index`` over the chosen tracks, the window and the genes."""
    out = []
    for allele in record.alleles:
        scopes = [(".", allele.window)] + [(gene.label, values) for gene, values in allele.genes]
        best: tuple[float, int, str] | None = None
        for label, values in scopes:
            scores = np.asarray(values)[:, stat_index, 2]
            t = int(np.argmax(np.abs(scores)))
            if best is None or abs(scores[t]) > abs(best[0]):
                best = (float(scores[t]), t, label)
        assert best is not None
        out.append(best)
    return out


def format_record(
    record: RecordScores, model: str, selection: TrackSelection, stats: Sequence[str], calibration: Calibration | None
) -> dict[str, str]:
    """The INFO values of one record (see :func:`centred_headers`)."""
    if record.reason is not None:
        return {SKIP_KEY: record.reason}
    entries, maxima, tops, quantiles = [], [], [], []
    tops_of = dict(zip([a.allele for a in record.alleles], headline(record, selection), strict=True))
    for allele in record.alleles:
        for label, values in [(".", allele.window)] + [(g.label, v) for g, v in allele.genes]:
            t = int(np.argmax(np.abs(np.asarray(values)[:, 0, 2])))
            ref_value, alt_value, value = (float(x) for x in np.asarray(values)[t, 0])
            entries.append(
                "|".join(
                    (
                        allele.allele,
                        info_atom(label),
                        info_atom(f"{model}:{selection.names[t]}"),
                        format_float(ref_value),
                        format_float(alt_value),
                        format_float(value),
                        consequence(value, signed=stats[0] not in UNSIGNED_STATS),
                    )
                )
            )
    for alt_allele in record.variant.alts:
        found = tops_of.get(alt_allele.upper())
        if found is None:
            maxima.append(".")
            tops.append(".")
            quantiles.append(".")
            continue
        score, t, label = found
        maxima.append(format_float(abs(score)))
        tops.append("|".join((stats[0], info_atom(selection.names[t]), info_atom(label))))
        if calibration is not None:
            q = calibration.quantile("window" if label == "." else "gene", selection.indices[t], stats[0], score)
            quantiles.append("." if q is None else format_float(q))
    info = {SCORE_KEY: ",".join(entries), MAX_KEY: ",".join(maxima), TOP_KEY: ",".join(tops)}
    if calibration is not None:
        info[QUANTILE_KEY] = ",".join(quantiles)
    return info


class StreamedInfo(Mapping[int, Mapping[str, str]]):
    """INFO values produced on demand, for a writer that asks for records 0, 1, 2, ... in order
    (as :func:`varscore.io.vcf.write_annotated` does): each lookup advances the scoring stream, and
    only the current record is held."""

    def __init__(self, records: Iterator[RecordScores], format_fn: Any, detail: Any = None) -> None:
        self._records = records
        self._format = format_fn
        self._detail = detail
        self._current: tuple[int, dict[str, str]] | None = None
        self._done = False

    def __getitem__(self, index: int) -> Mapping[str, str]:
        while not self._done and (self._current is None or self._current[0] < index):
            record = next(self._records, None)
            if record is None:
                self._done = True
                break
            if self._detail is not None:
                self._detail.add(record)
            self._current = (record.variant.index, self._format(record))
        if self._current is not None and self._current[0] == index and self._current[1]:
            return self._current[1]
        raise KeyError(index)

    def drain(self) -> None:
        """Consume whatever the writer did not ask for (so that every record is counted)."""
        for record in self._records:
            if self._detail is not None:
                self._detail.add(record)

    def __iter__(self) -> Iterator[int]:
        raise TypeError("StreamedInfo is read in record order through lookups only.")

    def __len__(self) -> int:
        raise TypeError("StreamedInfo does not know its length before the stream ends.")


def run_variant_scoring(job: VariantScoringJob) -> CentredSummary:
    """Score every record of ``job.vcf`` in variant-centred windows and write the annotated VCF to
    ``job.output`` (and the detail table to ``job.detail``, Parquet). Returns the summary.

    The input and output are guarded as in gene-window mode: ``-``/pipes spooled, VCF text checked
    before htslib reads it, conflicting ``VARSCORE*`` definitions replaced, the output checked and
    locked before any work, provenance header lines written; SIGTERM ends in
    :class:`ScoringInterrupted` with no partial output left behind."""
    from varscore.io.outputguard import Target, guarded_outputs
    from varscore.io.vcf_prepare import prepared_vcf

    guard = guarded_outputs(
        [Target("-o", job.output), Target("--detail", job.detail)],
        [job.vcf, job.model, job.fasta, job.targets, job.gtf],
    )
    keys = [h.key for h in centred_headers(parse_stats(job.stats)[0], True)]
    outcome = (
        "the VCF written to standard output so far is incomplete: rerun the command to score every record."
        if str(job.output) == "-"
        else f"{job.output} was not written (it appears only once complete): rerun the command to score the VCF."
    )
    with (
        stop_on_sigterm("annotate --mode variant", outcome),
        guard,
        prepared_vcf(job.vcf, replace_keys=keys) as whole,
    ):
        prepared, _ = selected_input(whole, job.selection, (), None)  # a window per record: cut anywhere
        return _annotate_prepared(prepared.path, job)


def _annotate_prepared(vcf: str | Path, job: VariantScoringJob) -> CentredSummary:
    from varscore.io.outputguard import provenance_header_lines
    from varscore.io.progress import progress_iter
    from varscore.models.bundle import load_bundle
    from varscore.scoring.detail import DetailWriter

    bundle = load_bundle(job.model)
    stats = parse_stats(job.stats)
    scorer, selection = open_scorer(bundle, job)
    calibration = load_calibration(bundle)
    if calibration is not None and calibration.centring != job.centring:
        logger.warning(
            "%s was calibrated with %s centring; scoring with %s", bundle.name, calibration.centring, job.centring
        )
    records = progress_iter(scorer.score(iter_variants(vcf)), "annotate --mode variant", "records", job.progress)
    writer = DetailWriter(job.detail, selection.indices, selection.names, stats, bundle=bundle) if job.detail else None
    provenance = provenance_header_lines(bundle)
    warning = trained_bins_warning(bundle, scorer.geometry.n_bins)
    if warning is not None:
        logger.warning(warning)
        provenance.append(f'##varscore_warning="{header_text(warning)}"')
    info = StreamedInfo(iter(records), lambda r: format_record(r, bundle.name, selection, stats, calibration), writer)
    try:
        written = write_annotated(vcf, job.output, info, centred_headers(stats[0], calibration is not None), provenance)
        info.drain()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close()
        scorer.summary.detail_rows = writer.rows
    scorer.summary.records_written = written
    return scorer.summary


def run_calibration(job: CalibrateJob) -> CalibrationResult:
    """Score the background ``job.vcf`` (its first ``max_records`` scorable records) and store the
    |score| distributions in the bundle (or a calibrated copy at ``job.output``). SIGTERM ends in
    :class:`ScoringInterrupted`, the bundle unchanged."""
    from itertools import islice

    from varscore.models.bundle import load_bundle

    target = job.output if job.output is not None else job.model
    with stop_on_sigterm(
        "models calibrate",
        f"{target} was not changed (the calibration is written only once complete): rerun the command.",
    ):
        bundle = load_bundle(job.model)
        stats = parse_stats(job.stats)
        scorer, selection = open_scorer(bundle, job)
        collector = BackgroundCollector(selection.indices, selection.names, stats, job.centring)
        scored = (r for r in scorer.score(iter_variants(job.vcf)) if r.alleles)
        for record in islice(scored, job.max_records):
            collector.add(record)
        calibration = collector.finish()
        coarse = resolution_warning(calibration)
        if coarse is not None:
            logger.warning(coarse)
        return CalibrationResult(write_calibration(bundle, calibration, job.output), calibration, scorer.summary)


__all__ = [
    "QUANTILE_KEY",
    "TOP_KEY",
    "ScoringInterrupted",
    "StreamedInfo",
    "CalibrateJob",
    "CalibrationResult",
    "CentredSettings",
    "VariantScoringJob",
    "centred_headers",
    "format_record",
    "headline",
    "open_scorer",
    "run_calibration",
    "run_variant_scoring",
    "stop_on_sigterm",
]
