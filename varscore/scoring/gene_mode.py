"""The ``varscore annotate`` pipeline: read a VCF, score it with a model bundle (or none), run the
requested annotators and write the VCF back with INFO fields added; long runs checkpoint each
finished gene so that ``--resume`` continues them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from varscore.errors import InputError
from varscore.genome.builds import REF_MISMATCH_MIN_CHECKED, ref_mismatch_error
from varscore.genome.fasta import Genome, load_genes
from varscore.io.infotext import header_text, info_atom, info_value
from varscore.io.outputguard import Target, guarded_outputs, provenance_header_lines
from varscore.io.vcf import (
    MAX_KEY,
    SCORE_HEADERS,
    SCORE_KEY,
    SKIP_KEY,
    InfoHeader,
    consequence,
    format_float,
    iter_variants,
    write_annotated,
)
from varscore.io.vcf_prepare import PreparedVCF, prepared_vcf
from varscore.scoring.calibrate import QUANTILE_KEY, GeneCalibration, load_gene_calibration
from varscore.scoring.engine import (
    AlleleScore,
    GeneCheckpoint,
    ScoringPlan,
    ScoringResult,
    ScoringSummary,
    plan_scoring,
)
from varscore.scoring.selection import Selection, selected_input
from varscore.types import Gene, Variant

logger = logging.getLogger(__name__)

NO_MODEL = "none"
DEFAULT_MAX_REF_MISMATCH = 0.05
CHECKPOINT_SUFFIX = ".varscore-partial"
ANNOTATOR_CHUNK = 10_000


def format_scores(variant_alts: Sequence[str], scores: Sequence[AlleleScore], model: str) -> dict[str, str]:
    """The ``VARSCORE`` and ``VARSCORE_MAX`` INFO values of one record."""
    entries = [
        "|".join(
            (
                info_atom(s.allele),
                info_atom(s.gene),
                info_atom(model),
                format_float(s.ref_pred),
                format_float(s.alt_pred),
                format_float(s.delta),
                consequence(s.delta),
            )
        )
        for s in scores
    ]
    maxima = []
    for alt in variant_alts:
        deltas = [abs(s.delta) for s in scores if s.allele == alt.upper()]
        maxima.append(format_float(max(deltas)) if deltas else ".")
    return {SCORE_KEY: ",".join(entries), MAX_KEY: ",".join(maxima)}


def quantile_header() -> InfoHeader:
    """The ``VARSCORE_Q`` header of gene-window scoring with a calibrated bundle."""
    return InfoHeader(
        QUANTILE_KEY,
        "A",
        "Float",
        "Calibrated quantile of each ALT allele: the fraction of the background variants' |DELTA| in a gene "
        "(varscore models calibrate --mode gene) that is smaller than the |DELTA| of the allele's VARSCORE entry "
        "with the largest |DELTA| (VARSCORE_MAX; the first such entry when several tie), taken in that entry's "
        "gene; . when that gene has no background or the allele is not scored",
    )


def gene_quantiles(scores: Sequence[AlleleScore], calibration: GeneCalibration) -> list[float | None]:
    """Per score (in order) the fraction of its gene's background |DELTA| below its |DELTA| (None:
    no background for the gene)."""
    return [calibration.quantile(s.gene, s.delta) for s in scores]


def format_quantiles(
    variant_alts: Sequence[str], scores: Sequence[AlleleScore], quantiles: Sequence[float | None]
) -> str:
    """The ``VARSCORE_Q`` value of one record: per ALT, the quantile of its entry with the largest
    |DELTA| (the first in ``scores`` order when tied; ``.`` when none or no background)."""
    values = []
    for alt in variant_alts:
        best: tuple[float, float | None] | None = None
        for score, q in zip(scores, quantiles, strict=True):
            if score.allele == alt.upper() and (best is None or abs(score.delta) > best[0]):
                best = (abs(score.delta), q)
        values.append("." if best is None or best[1] is None else format_float(best[1]))
    return ",".join(values)


def parse_annotator_options(options: Sequence[str]) -> dict[str, dict[str, str]]:
    """``["motifs.p_threshold=1e-4", ...]`` -> ``{"motifs": {"p_threshold": "1e-4"}}``."""
    parsed: dict[str, dict[str, str]] = {}
    for option in options:
        name_key, sep, value = option.partition("=")
        name, dot, key = name_key.strip().partition(".")
        if not sep or not dot or not name or not key.strip():
            raise InputError(f"Annotator option '{option}' is not NAME.KEY=VALUE (e.g. motifs.p_threshold=1e-4).")
        parsed.setdefault(name, {})[key.strip()] = value.strip()
    return parsed


def _build_annotators(names: Sequence[str], options: Mapping[str, Mapping[str, str]]) -> list[Any]:
    from varscore.plugin.manager import get_annotator

    unused = sorted(set(options) - set(names))
    if unused:
        raise InputError(
            f"Options are given for annotator(s) {', '.join(unused)} that are not run: add them to --annotate "
            f"(running: {', '.join(names) or 'none'})."
        )
    return [get_annotator(name)(**options.get(name, {})) for name in names]


def checkpoint_dir(output: str | Path) -> Path:
    """Where a run writing ``output`` keeps its finished genes: ``OUTPUT.varscore-partial/``."""
    return Path(f"{output}{CHECKPOINT_SUFFIX}")


@dataclass(frozen=True)
class ScoringJob:
    """One ``varscore annotate`` run (gene-window mode), usable from Python::

        from varscore.scoring.gene_mode import ScoringJob, run_scoring

        summary = run_scoring(ScoringJob("in.vcf.gz", "variformer-demo", "out.vcf.gz", device="cpu"))
        print("\n".join(summary.lines()))

    ``model`` ``None`` (or ``"none"``) runs only ``annotators``. ``output``: ``-`` (stdout),
    ``*.vcf`` or ``*.vcf.gz``; ``vcf`` may be ``-`` (stdin) or a named pipe. ``genes``: a gene/TSS
    table instead of the bundle's genes. ``annotator_options``: ``{annotator: {option: value}}``
    (see :func:`parse_annotator_options`). ``check_ref``: ``flag``, ``fail`` or ``skip`` a REF
    differing from the FASTA; more than ``max_ref_mismatch`` of the checked REF alleles differing
    stops the run (another genome build). ``resume`` continues from the genes an interrupted run
    kept in ``OUTPUT.varscore-partial/``. ``devices`` > 1 (or a ``torchrun`` launch) shares the
    genes between processes. ``fail_if_none``: a run that scores nothing fails instead of warning.
    ``rc`` / ``shifts``: test-time augmentation. ``argv`` (default ``sys.argv``) is recorded in the
    output header. ``cache``: a folder keeping SNV effects between runs
    (:mod:`varscore.scoring.effect_cache`; None: none)."""

    vcf: str | Path
    model: str | Path | None
    output: str | Path = "-"
    fasta: str | Path | None = None
    genes: str | Path | None = None
    batch_size: int = 8
    device: str = "auto"
    bf16: bool = False
    annotators: Sequence[str] = ()
    annotator_options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    check_ref: str = "flag"
    resume: bool = False
    devices: int = 1
    max_ref_mismatch: float = DEFAULT_MAX_REF_MISMATCH
    fail_if_none: bool = False
    rc: bool = False
    shifts: Sequence[int] = (0,)
    progress: bool = False
    argv: Sequence[str] | None = None
    selection: Selection = field(default_factory=Selection)  # --regions, --genes-only, --shard
    detail: str | Path | None = None  # Parquet: one row per (record, allele, gene), see scoring/detail.py
    cache: str | Path | None = None

    @property
    def scores_nothing(self) -> bool:
        """``--model none``: only the annotators run."""
        return self.model is None or str(self.model).lower() == NO_MODEL

    @property
    def augmented(self) -> bool:
        return self.rc or tuple(self.shifts) != (0,)


def run_scoring(job: ScoringJob) -> ScoringSummary:
    """Score every variant of ``job.vcf`` with ``job.model`` and write the annotated VCF to ``job.output``.

    A sequence model writing to a file checkpoints each finished gene in ``OUTPUT.varscore-partial/``
    (removed on success); ``job.resume`` continues from there (an interrupted run leaves no output).
    Several ``devices`` (or a ``torchrun`` launch) share the genes between processes
    (:func:`varscore.scoring.distributed.run_plan_sharded`, checkpointed too); under torchrun only
    rank 0 writes the output. The output path is checked and locked before any work; a VCF whose
    ``##contig`` lengths or REF alleles show another genome build than the model's is refused; a
    run that scores nothing warns, or with ``fail_if_none`` fails. A bundle of several replicates
    scores with their mean and adds their spread (:mod:`varscore.models.ensemble`)."""
    annotator_objs = _build_annotators(job.annotators, job.annotator_options)
    if job.resume and str(job.output) == "-":
        raise InputError("--resume needs an output file (-o OUT.vcf.gz): checkpoints are kept beside it.")
    if not 0.0 <= job.max_ref_mismatch <= 1.0:
        raise InputError(f"--max-ref-mismatch must be a share between 0 and 1; got {job.max_ref_mismatch}.")
    from varscore.scoring.distributed import launched_by_torchrun

    writer = not launched_by_torchrun() or os.environ.get("RANK", "0") == "0"
    outputs = [Target("-o", job.output), Target("--detail", job.detail)]
    guard = guarded_outputs(outputs, [job.vcf, job.fasta, job.genes, job.model], lock=writer)
    keys = [f.key for a in annotator_objs for f in a.info_fields]
    if not job.scores_nothing:
        keys += [SCORE_KEY, MAX_KEY, SKIP_KEY, QUANTILE_KEY]
    with guard, prepared_vcf(job.vcf, replace_keys=keys) as prepared:
        if job.scores_nothing:
            if not annotator_objs:
                raise InputError("--model none scores nothing: name annotators to run with --annotate (e.g. motifs).")
            if job.detail is not None:
                raise InputError("--detail holds model scores: --model none scores nothing to put there.")
            return _annotate_only(prepared, job, annotator_objs)
        return _annotate_with_model(prepared, job, annotator_objs)


@dataclass
class VcfScores:
    """What :func:`score_vcf` found. ``result``: per record index the allele × gene scores and the
    summary; ``variants``: the records those scores belong to, by index; ``skipped``: records not
    scored with their ``VARSCORE_SKIP`` reason; ``spread``: per record the replicates' SD of each
    score (ensembles); ``headers``: the score INFO headers (a genotype model's say what its
    REF_PRED/ALT_PRED mean); ``worker``: a torchrun rank other than 0, which writes nothing."""

    result: ScoringResult
    variants: Mapping[int, Variant]
    genome: Genome | None
    window_size: int | None
    headers: list[Any]
    skipped: dict[int, str] = field(default_factory=dict)
    spread: dict[int, list[float]] = field(default_factory=dict)
    checkpoint: GeneCheckpoint | None = None
    worker: bool = False
    plan: ScoringPlan | None = None  # sequence models: the genes and alleles scored


def score_vcf(prepared: PreparedVCF, bundle: Any, genes: Sequence[Gene], job: ScoringJob) -> VcfScores:
    """Score every record of ``prepared`` with ``bundle`` as ``job`` says (what ``annotate`` and
    ``track`` share; ``job.vcf``, ``model``, ``genes``, ``annotators`` and ``argv`` are not read here).

    Genotype models score the variants they hold (their variant effects; no FASTA needed).
    Sequence models: the VCF's contig lengths are checked against the FASTA, the FASTA against the
    model's reference, the plan against ``check_ref`` / ``max_ref_mismatch``; then the genes are
    scored in one process (ensembles and ``rc``/``shifts`` included, checkpointed beside
    ``job.output`` unless it is ``-``, ``resume`` continuing from there) or shared between
    ``devices`` processes. A run that scores nothing warns, or with ``fail_if_none`` fails."""
    from varscore.genome.builds import check_contig_lengths, model_build

    recorded_build = bundle.manifest.get("genome_build")
    if not genes:
        raise InputError(
            f"Model '{bundle.name}' records no genes (e.g. an imported published model): pass a gene/TSS "
            "table with --genes."
        )
    if bundle.takes_genotypes:
        unused = [
            name for name, given in (("--rc/--shifts", job.augmented), ("--cache", job.cache is not None)) if given
        ]
        if unused:
            logger.warning(
                "%s not used: %s is a genotype model, whose effects come from its weights, not from sequence windows",
                " and ".join(unused),
                bundle.name,
            )
        genome = Genome(Path(job.fasta)) if job.fasta else None
        check_contig_lengths(
            prepared.contig_lengths, genome.lengths if genome else {}, prepared.source, str(job.fasta), recorded_build
        )
        return _score_genotypes(prepared, bundle, genes, genome, job.fail_if_none)
    vcf = prepared.path
    fasta_path = bundle.resolve_reference(job.fasta, check=False)
    genome = Genome(fasta_path)
    # the VCF against the FASTA first (the likelier mistake), then the FASTA against the model's reference
    check_contig_lengths(prepared.contig_lengths, genome.lengths, prepared.source, str(fasta_path), recorded_build)
    bundle.check_reference(fasta_path)
    window_size = bundle.window_size
    # plan in one streaming pass first, so that bad input fails before the model is loaded
    plan = plan_scoring(iter_variants(vcf), genes, genome, window_size, check_ref=job.check_ref)
    _check_contig_mapping(plan.summary, prepared.source)
    summary = plan.summary
    if job.check_ref == "flag" and summary.ref_checked >= REF_MISMATCH_MIN_CHECKED:
        mismatched = summary.not_scored.get("ref_mismatch", 0)
        if mismatched > job.max_ref_mismatch * summary.ref_checked:
            raise ref_mismatch_error(
                mismatched,
                summary.ref_checked,
                job.max_ref_mismatch,
                prepared.source,
                model_build(recorded_build, genome.lengths),
            )
    _report_nothing_scored(summary, genes, window_size, prepared.source, job.fail_if_none)
    from varscore.models.ensemble import replicate_files
    from varscore.scoring.distributed import CheckpointSpec, ShardJob, launched_by_torchrun, run_plan_sharded
    from varscore.scoring.ensemble import PlanRun, score_plan, sd_header

    scored = VcfScores(
        ScoringResult({}, summary),
        plan.variants,
        genome,
        window_size,
        list(SCORE_HEADERS),
        dict(plan.skipped),
        plan=plan,
    )
    sharded = job.devices > 1 or launched_by_torchrun()
    if sharded and job.cache is not None:
        raise InputError("--cache serves runs in one process for now: drop --devices / torchrun, or --cache.")
    if sharded and (job.augmented or len(replicate_files(bundle.manifest)) > 1):
        raise InputError(
            "Replicate ensembles and --rc/--shifts score in one process for now: drop --devices / torchrun."
        )
    fingerprint = None
    if str(job.output) != "-":
        fingerprint = _fingerprint(
            vcf,
            bundle,
            fasta_path,
            genes,
            job.check_ref,
            window_size,
            augment=f"rc={job.rc} shifts={tuple(job.shifts)}" if job.augmented else "",
        )
    if sharded:  # every process loads the model itself
        spec = (
            CheckpointSpec(str(checkpoint_dir(job.output)), fingerprint, job.resume)
            if fingerprint is not None
            else None
        )
        shard_job = ShardJob(job.devices, job.batch_size, job.device, job.bf16, progress=job.progress, checkpoint=spec)
        scored.result = run_plan_sharded(plan, bundle.path, fasta_path, shard_job)
        scored.worker = launched_by_torchrun() and int(os.environ["RANK"]) != 0  # rank 0 writes the output
        if spec is not None and not scored.worker:
            scored.checkpoint = GeneCheckpoint.attach(spec.directory, spec.fingerprint)  # removed once written
        return scored
    if fingerprint is not None:
        scored.checkpoint = GeneCheckpoint(checkpoint_dir(job.output), fingerprint, resume=job.resume)
    run = PlanRun(job.device, job.bf16, job.batch_size, job.progress, job.rc, tuple(job.shifts), job.cache)
    scored.result, ensemble = score_plan(bundle, plan, genome, run, checkpoint=scored.checkpoint)
    scored.spread = ensemble.sd
    if scored.spread:
        scored.headers.append(sd_header())
    return scored


def _score_genotypes(
    prepared: PreparedVCF, bundle: Any, genes: Sequence[Gene], genome: Genome | None, fail_if_none: bool
) -> VcfScores:
    """Genotype models score the variants they hold (their variant effects); no FASTA is needed."""
    from varscore.scoring.engine import score_genotypes

    backbone = bundle.genotype_backbone()
    seen: dict[int, Variant] = {}

    def remember(variants: Iterator[Variant]) -> Iterator[Variant]:
        for variant in variants:
            seen[variant.index] = variant
            yield variant

    result = score_genotypes(remember(iter_variants(prepared.path)), backbone, {g.gene_id: g.label for g in genes})
    _check_contig_mapping(result.summary, prepared.source)
    _report_nothing_scored(result.summary, genes, None, prepared.source, fail_if_none)
    described = dataclasses.replace(
        SCORE_HEADERS[0],
        description=SCORE_HEADERS[0].description.replace(
            "(ALT minus REF prediction of the model on the reference window with the allele applied)",
            f"({backbone.effect_description}; variants outside the model get no entry)",
        ),
    )
    window_size = bundle.spec.window_size
    scored_variants = {index: seen[index] for index in result.scores}
    return VcfScores(result, scored_variants, genome, window_size, [described, SCORE_HEADERS[1]])


def _annotate_with_model(prepared: PreparedVCF, job: ScoringJob, annotator_objs: Sequence[Any]) -> ScoringSummary:
    from varscore.models.bundle import load_bundle
    from varscore.scoring.ensemble import sd_header, sd_info

    bundle = load_bundle(job.model)  # type: ignore[arg-type]  # not None: checked by run_scoring
    calibration = load_gene_calibration(bundle)  # an altered calibration fails before any work
    if calibration is not None and job.augmented:
        logger.warning(
            "%s was calibrated without --rc/--shifts (models calibrate does not augment): VARSCORE_Q compares "
            "this run's augmented scores with unaugmented background scores",
            bundle.name,
        )
    genes = load_genes(job.genes) if job.genes else bundle.genes
    prepared, genes = selected_input(prepared, job.selection, genes, _selection_window(bundle))
    provenance = provenance_header_lines(bundle, job.argv)
    scored = score_vcf(prepared, bundle, genes, job)
    result = scored.result
    if scored.worker:
        return result.summary
    info: dict[int, dict[str, str]] = {
        record: format_scores(scored.variants[record].alts, scores, bundle.name)
        for record, scores in result.scores.items()
    }
    quantiles: dict[int, list[float | None]] | None = None
    if calibration is not None:
        quantiles = {record: gene_quantiles(scores, calibration) for record, scores in result.scores.items()}
        for record, scores in result.scores.items():
            info[record][QUANTILE_KEY] = format_quantiles(scored.variants[record].alts, scores, quantiles[record])
        scored.headers.append(quantile_header())
    for record, value in sd_info(scored.spread).items():
        info[record][sd_header().key] = value
    for record, reason in scored.skipped.items():
        info[record] = {SKIP_KEY: reason}
    windows = _windows(genes, scored.window_size)
    headers = scored.headers + _run_annotators(
        prepared.path, annotator_objs, genes, windows, scored.genome, info, result.summary
    )
    if job.detail is not None:  # before the VCF: an annotated VCF on disk means the run finished
        from varscore.scoring.detail import detail_provenance, gene_detail_table, write_gene_detail

        meta = detail_provenance(bundle, job.argv)
        table = gene_detail_table(scored.variants, result.scores, bundle.name, scored.spread, meta, quantiles)
        write_gene_detail(job.detail, table, bundle, job.argv)
    result.summary.records_written = write_annotated(prepared.path, job.output, info, headers, provenance)
    if scored.checkpoint is not None:
        scored.checkpoint.remove()
    return result.summary


def _selection_window(bundle: Any) -> int | None:
    """The gene-window length a selection groups records by (genotype models: none)."""
    return None if bundle.takes_genotypes else int(bundle.window_size)


def _check_contig_mapping(summary: ScoringSummary, source: str) -> None:
    """Two VCF contigs matched to one model contig (``chr20`` and ``20``) are an error, not a merge."""
    by_target: dict[str, str] = {}
    for name, target in summary.contig_mapping.items():
        other = by_target.setdefault(target, name)
        if other != name:
            raise InputError(
                f"{source} names one contig two ways, '{other}' and '{name}': rename one (bcftools annotate "
                "--rename-chrs) so that every record uses the same name."
            )


def _describe_windows(genes: Sequence[Gene], window_size: int | None, limit: int = 4) -> str:
    from varscore.types import tss_window

    shown = []
    for gene in list(genes)[:limit]:
        if window_size:
            window = tss_window(gene, window_size)
            shown.append(f"{gene.label} {gene.chrom}:{max(window.start + 1, 1)}-{window.end}")
        else:
            shown.append(gene.label)
    more = f" and {len(genes) - limit} more" if len(genes) > limit else ""
    return ", ".join(shown) + more


def _report_nothing_scored(
    summary: ScoringSummary, genes: Sequence[Gene], window_size: int | None, source: str, fail_if_none: bool
) -> None:
    """One warning (an error with ``fail_if_none``) when no record can be scored."""
    if summary.records_scored:
        return
    inside = (
        summary.records_read - summary.not_scored.get("outside_windows", 0) - summary.not_scored.get("not_in_model", 0)
    )
    windows = (
        f"gene windows ({_describe_windows(genes, window_size)})"
        if window_size
        else f"genes ({_describe_windows(genes, None)})"
    )
    if not summary.records_read:
        text = f"{source} has no records: nothing was scored."
    elif not inside:
        text = (
            f"No record of {source} was scored: none of its {summary.records_read} records lies in the model's "
            f"{windows}. Pass --genes GENES.tsv (chrom, tss, strand, gene_id) to score other genes."
        )
    else:
        reasons = ", ".join(
            f"{k} {v}" for k, v in sorted(summary.not_scored.items()) if k not in ("outside_windows", "not_in_model")
        )
        text = (
            f"No record of {source} was scored: {inside} of {summary.records_read} records lie in the model's "
            f"{windows} but none could be scored ({reasons or 'not in the model'})."
        )
    if fail_if_none:
        raise NothingScored(text + " (--fail-if-none)", text)
    logger.warning("%s", text)


class NothingScored(InputError):
    """No record of a VCF could be scored (``fail_if_none``); ``reason`` says why, without the option."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _windows(genes: Sequence[Gene], window_size: int | None) -> dict[str, Any]:
    from varscore.types import tss_window

    return {g.gene_id: tss_window(g, window_size) for g in genes} if window_size else {}


def _chunks(variants: Iterator[Variant], size: int) -> Iterator[list[Variant]]:
    while chunk := list(islice(variants, size)):
        yield chunk


def _run_annotators(
    vcf: str | Path,
    annotators: Sequence[Any],
    genes: Sequence[Gene],
    windows: dict[str, Any],
    genome: Genome | None,
    info: dict[int, dict[str, str]],
    summary: ScoringSummary,
) -> list[InfoHeader]:
    """Run ``annotators`` over every record (streamed in chunks), adding their INFO values to
    ``info``; returns their header lines."""
    if not annotators:
        return []
    from varscore.plugin.contracts import AnnotationContext

    context = AnnotationContext(genes=list(genes), windows=windows, fasta=genome)
    headers = [InfoHeader(f.key, f.number, f.type, f.description) for a in annotators for f in a.info_fields]
    for chunk in _chunks(iter_variants(vcf), ANNOTATOR_CHUNK):
        records_of: dict[str, list[int]] = {}
        for variant in chunk:
            records_of.setdefault(variant.key, []).append(variant.index)
        for annotator in annotators:
            frame = annotator.annotate(chunk, context)
            for field_ in annotator.info_fields:
                if field_.key not in frame.columns:
                    continue
                values = frame[field_.key].dropna()
                for key, value in values[~values.index.duplicated()].items():
                    for record in records_of.get(str(key), ()):
                        info.setdefault(record, {})[field_.key] = info_value(value)
                        summary.annotated[field_.key] += 1
    return headers


def _annotate_only(prepared: PreparedVCF, job: ScoringJob, annotators: Sequence[Any]) -> ScoringSummary:
    """``--model none``: annotators only, over every record (of ``job.selection``)."""
    prepared, _ = selected_input(prepared, job.selection, (), None)
    vcf = prepared.path
    genome = Genome(Path(job.fasta)) if job.fasta else None
    if genome is not None:
        from varscore.genome.builds import check_contig_lengths

        check_contig_lengths(prepared.contig_lengths, genome.lengths, prepared.source, str(job.fasta))
    genes = load_genes(job.genes) if job.genes else []
    summary = ScoringSummary()
    for _ in iter_variants(vcf):
        summary.records_read += 1
    if summary.records_read:
        summary.not_scored["no_model"] = summary.records_read
    info: dict[int, dict[str, str]] = {}
    headers = _run_annotators(vcf, annotators, genes, {}, genome, info, summary)
    provenance = provenance_header_lines(None, job.argv)
    if not sum(summary.annotated.values()):
        warning = (
            f"--model none: the annotators ({', '.join(a.name for a in annotators)}) gave none of the "
            f"{summary.records_read:,} records of {prepared.source} a value; the output is the input with their "
            "header lines only."
        )
        logger.warning(warning)
        provenance.append(f'##varscore_warning="{header_text(warning)}"')
    summary.records_written = write_annotated(vcf, job.output, info, headers, provenance)
    return summary


def _fingerprint(
    vcf: str | Path,
    bundle: Any,
    fasta: Path,
    genes: Sequence[Gene],
    check_ref: str,
    window_size: int,
    augment: str = "",
) -> str:
    """A digest of everything the scores depend on: the VCF's bytes, the bundle's manifest and
    weights, the FASTA, the genes and the options."""
    digest = hashlib.sha256()
    with open(vcf, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    for path in sorted(Path(bundle.path).iterdir()):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    fasta_stat = fasta.stat()
    digest.update(
        json.dumps(
            {
                "fasta": [str(fasta.resolve()), fasta_stat.st_size, fasta_stat.st_mtime_ns],
                "genes": [dataclasses.astuple(g) for g in genes],
                "check_ref": check_ref,
                "window_size": window_size,
                **({"augment": augment} if augment else {}),
            }
        ).encode()
    )
    return digest.hexdigest()


@dataclass(frozen=True)
class GeneCalibrateJob:
    """One ``varscore models calibrate --mode gene`` run: the background ``vcf`` scored with
    ``model`` as gene-window ``annotate`` scores it (:func:`score_vcf`: same windows, genes,
    replicates, REF checks), the |DELTA| of its first ``max_records`` scored records stored per
    gene in the bundle (or in a calibrated copy at ``output``). ``genes``: a gene/TSS table
    instead of the bundle's genes (then annotate with the same table)."""

    model: str | Path
    vcf: str | Path
    output: str | Path | None = None
    fasta: str | Path | None = None
    genes: str | Path | None = None
    batch_size: int = 8
    device: str = "auto"
    bf16: bool = False
    check_ref: str = "flag"
    max_records: int | None = None
    progress: bool = False


@dataclass(frozen=True)
class GeneCalibrationResult:
    """What :func:`run_gene_calibration` did: the calibrated bundle's ``path``, the gene-window
    ``calibration`` stored there and the ``summary`` of scoring the background."""

    path: Path
    calibration: GeneCalibration
    summary: ScoringSummary

    def lines(self) -> list[str]:
        return [
            *self.summary.lines(),
            f"calibrated {self.path} for gene-window scoring on {self.calibration.records} background records "
            f"({len(self.calibration.counts)} genes)",
        ]


def run_gene_calibration(job: GeneCalibrateJob) -> GeneCalibrationResult:
    """Score the background ``job.vcf`` in gene windows and store each gene's background |DELTA|
    in the bundle (keeping a variant-centred calibration it holds). A background with no scorable
    record in any gene window is refused; one with fewer than
    :data:`~varscore.scoring.calibrate.MIN_BACKGROUND` scores for a gene is warned about. SIGTERM
    ends in :class:`~varscore.scoring.variant_mode.ScoringInterrupted`, the bundle unchanged."""
    from varscore.models.bundle import load_bundle
    from varscore.scoring.calibrate import GeneBackgroundCollector, resolution_warning, write_calibration
    from varscore.scoring.variant_mode import stop_on_sigterm

    target = job.output if job.output is not None else job.model
    scoring = ScoringJob(
        job.vcf,
        job.model,
        "-",  # nothing is written but the calibration: no checkpoints
        fasta=job.fasta,
        batch_size=job.batch_size,
        device=job.device,
        bf16=job.bf16,
        check_ref=job.check_ref,
        fail_if_none=True,
        progress=job.progress,
    )
    with (
        stop_on_sigterm(
            "models calibrate",
            f"{target} was not changed (the calibration is written only once complete): rerun the command.",
        ),
        prepared_vcf(job.vcf) as prepared,
    ):
        bundle = load_bundle(job.model)
        genes = load_genes(job.genes) if job.genes else bundle.genes
        try:
            scored = score_vcf(prepared, bundle, genes, scoring)
        except NothingScored as exc:
            raise InputError(f"{exc.reason} Nothing to calibrate on: give a background with variants there.") from None
        collector = GeneBackgroundCollector()
        for record in islice(sorted(r for r, scores in scored.result.scores.items() if scores), job.max_records):
            collector.add(scored.result.scores[record])
        calibration = collector.finish()
        coarse = resolution_warning(calibration)
        if coarse is not None:
            logger.warning(coarse)
        path = write_calibration(bundle, calibration, job.output)
        return GeneCalibrationResult(path, calibration, scored.result.summary)
