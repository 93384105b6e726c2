"""``varscore annotate`` and ``varscore track``."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from varscore.cli.app import cli
from varscore.cli.options import cache_option, old_spelling, selection_options
from varscore.io.outputguard import writes

if TYPE_CHECKING:
    from varscore.scoring.selection import Selection


@cli.command()
@click.argument("vcf", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-m",
    "--model",
    required=True,
    help="Model bundle name or directory (see 'varscore models list'); 'none' runs only --annotate.",
)
@click.option(
    "-o",
    "--output",
    default="-",
    show_default=True,
    help="Output VCF: '-' for stdout, *.vcf, or *.vcf.gz (bgzipped + tabix-indexed).",
)
@click.option(
    "--fasta",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Reference FASTA (default: the one recorded in the model bundle).",
)
@click.option(
    "--genes",
    "genes_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Gene/TSS table (TSV, GTF or GFF3) instead of the bundle's genes.",
)
@click.option(
    "--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Alternate windows per forward pass."
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--bf16/--no-bf16", default=False, show_default=True, help="bfloat16 autocast on GPU.")
@click.option("--annotate", "annotators", default="", help="Comma-separated annotators to run as well.")
@click.option(
    "--annotator-opt",
    "annotator_opts",
    multiple=True,
    metavar="NAME.KEY=VALUE",
    help="An annotator option, e.g. motifs.p_threshold=1e-4 or chromhmm.bed=states.bed (repeatable).",
)
@click.option(
    "--check-ref",
    type=click.Choice(["skip", "flag", "fail"]),
    default="flag",
    show_default=True,
    help="REF differing from the FASTA: flag (not scored, INFO VARSCORE_SKIP=ref_mismatch), "
    "fail (stop), skip (do not compare).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run from the genes it finished (kept in OUTPUT.varscore-partial/).",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@click.option(
    "--devices",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Processes to share the genes between (one per GPU with CUDA, else CPU workers); "
    "under torchrun, every launched process takes a share (README: Scale-out).",
)
@click.option(
    "--max-ref-mismatch",
    default=0.05,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Stop when more than this share of checked REF alleles differ from the FASTA (wrong build?).",
)
@click.option("--fail-if-none", is_flag=True, help="Exit with an error when no record can be scored.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary (warnings and errors still show).")
@click.option("--rc", is_flag=True, help="Test-time augmentation: also score reverse-complemented windows, averaged.")
@click.option("--shifts", help="Test-time augmentation: window shifts in bp to average over, e.g. -1,0,1.")
@click.option(
    "--mode",
    type=click.Choice(["gene", "variant"]),
    default="gene",
    show_default=True,
    help="gene: the TSS windows of the model's genes; variant: a window centred on every variant "
    "(track models; docs/variant-centred.md).",
)
@click.option(
    "--tracks",
    default="all",
    show_default=True,
    help="--mode variant: tracks to score: all, indices (0,5,10-12) or a pattern over --targets descriptions.",
)
@click.option(
    "--targets",
    type=click.Path(dir_okay=False, path_type=Path),
    help="--mode variant: targets file naming the model's tracks (tab-separated, 'description' column).",
)
@click.option(
    "--gtf",
    type=click.Path(dir_okay=False, path_type=Path),
    help="--mode variant: GTF/GFF3 with genes and exons, for gene-level scores over exon bins.",
)
@click.option(
    "--stats",
    default="SUM,logSUM,D1,D2",
    show_default=True,
    help="--mode variant: statistics (the first is the VCF headline).",
)
@click.option(
    "--detail",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Parquet table of every score: per (allele, gene) [--mode variant: per allele, gene, track, statistic].",
)
@click.option(
    "--centring",
    type=click.Choice(["exact", "tiled"]),
    default="exact",
    show_default=True,
    help="--mode variant: a window per variant position (exact) or one per genome tile (tiled).",
)
@click.option("--tile-bins", type=click.IntRange(min=1), help="--centring tiled: tile width in output bins.")
@selection_options()
@cache_option("SNV effects")
@writes(("output", "-o", "file"), ("detail", "--detail", "file"))
def annotate(
    vcf: Path,
    model: str,
    output: str,
    fasta: Path | None,
    genes_path: Path | None,
    batch_size: int,
    device: str,
    bf16: bool,
    annotators: str,
    annotator_opts: tuple[str, ...],
    check_ref: str,
    resume: bool,
    progress: bool,
    devices: int,
    max_ref_mismatch: float,
    fail_if_none: bool,
    quiet: bool,
    rc: bool,
    shifts: str | None,
    selection: Selection,
    mode: str = "gene",
    tracks: str = "all",
    targets: Path | None = None,
    gtf: Path | None = None,
    stats: str = "SUM,logSUM,D1,D2",
    detail: Path | None = None,
    centring: str = "exact",
    tile_bins: int | None = None,
    cache_dir: Path | None = None,
) -> None:
    """Add each variant's predicted effect on expression to a VCF (INFO VARSCORE).

    Records come out as they went in, in order; those in a gene window that cannot be scored get
    INFO VARSCORE_SKIP=reason. SNVs, MNPs, insertions and deletions are scored (README: Indels).
    A summary of what happened to every record goes to stderr.
    """
    from varscore.scoring.variant_mode import stop_on_sigterm

    if mode == "variant":
        from varscore.scoring.variant_mode import VariantScoringJob, run_variant_scoring

        if annotators or resume or devices > 1:
            raise click.UsageError("--mode variant does not take --annotate, --resume or --devices yet.")
        if cache_dir is not None:
            raise click.UsageError("--mode variant does not take --cache yet.")
        centred_job = VariantScoringJob(
            vcf,
            model,
            output,
            detail=detail,
            progress=progress and not quiet,
            fasta=fasta,
            tracks=tracks,
            targets=targets,
            gtf=gtf,
            stats=stats,
            centring=centring,
            tile_bins=tile_bins,
            batch_size=batch_size,
            device=device,
            bf16=bf16,
            check_ref=check_ref,
            selection=selection,
        )
        for line in run_variant_scoring(centred_job).lines():
            click.echo(line, err=True)
        return
    from varscore.scoring.ensemble import parse_shifts
    from varscore.scoring.gene_mode import ScoringJob, parse_annotator_options, run_scoring

    job = ScoringJob(
        vcf,
        model,
        output,
        fasta=fasta,
        genes=genes_path,
        batch_size=batch_size,
        device=device,
        bf16=bf16,
        annotators=tuple(a.strip() for a in annotators.split(",") if a.strip()),
        annotator_options=parse_annotator_options(annotator_opts),
        check_ref=check_ref,
        resume=resume,
        devices=devices,
        max_ref_mismatch=max_ref_mismatch,
        fail_if_none=fail_if_none,
        rc=rc,
        shifts=parse_shifts(shifts),
        progress=progress and not quiet,
        argv=["varscore", *sys.argv[1:]],
        detail=detail,
        selection=selection,
        cache=cache_dir,
    )
    # SIGTERM unwinds like Ctrl-C (temporary files are removed on the way out) and ends in one line
    outcome = (
        "the output stream is incomplete"
        if str(output) == "-"
        else f"{output} was not written; rerun with --resume to keep the genes already scored"
    )
    with stop_on_sigterm("annotate", outcome):
        summary = run_scoring(job)
    if os.environ.get("RANK", "0") != "0" or quiet:
        return  # under torchrun, rank 0 writes the output and reports the summary
    for line in summary.lines():
        click.echo(line, err=True)


# --- genome-browser tracks ---


@cli.command()
@click.argument("vcf", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-m", "--model", help="Model bundle to score with; with --from-vcf, whose VARSCORE entries to draw.")
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output directory (created if missing; files in it are replaced).  [required]",
)
@old_spelling("out_dir", "--out", "-o/--output", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--format",
    "formats",
    default="bigwig,bed",
    show_default=True,
    help="Comma-separated: bigwig (bigWig tracks + bigBed of top variants), bedgraph, bed (BED9).",
)
@click.option(
    "--from-vcf",
    is_flag=True,
    help="Draw the VCF's VARSCORE entries instead of scoring (default when no --model is given).",
)
@click.option(
    "--fasta",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Reference FASTA: contig names and lengths (default: the model bundle's).",
)
@click.option(
    "--genes",
    "genes_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Gene/TSS table (TSV, GTF or GFF3) instead of the bundle's genes.",
)
@click.option(
    "--genome",
    help="IGV genome id / UCSC database (hg19, hg38) or FASTA for the session [the bundle's build, else the FASTA].",
)
@click.option(
    "--top",
    default=20,
    show_default=True,
    type=click.IntRange(min=0),
    help="Variants per gene in the BED9, by |delta| (0 = all).",
)
@click.option(
    "--coverage-top",
    default=3,
    show_default=True,
    type=click.IntRange(min=0),
    help="Track models: strongest variants per gene whose ALT and delta coverage are drawn.",
)
@click.option("--hub-email", help="Contact e-mail for hub.txt (UCSC asks for one on public hubs).")
@click.option(
    "--igv-js", default=None, help="Where igv.html loads igv.js from (URL or path relative to -o) [jsdelivr CDN]."
)
@click.option(
    "--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Alternate windows per forward pass."
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--bf16/--no-bf16", default=False, show_default=True, help="bfloat16 autocast on GPU.")
@click.option(
    "--check-ref",
    type=click.Choice(["skip", "flag", "fail"]),
    default="flag",
    show_default=True,
    help="REF differing from the FASTA: flag (not scored), fail (stop), skip (do not compare).",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@selection_options(shard=False)
@cache_option("SNV effects")
@writes(("out_dir", "-o", "folder"))
def track(
    vcf: Path,
    model: str | None,
    out_dir: Path,
    formats: str,
    from_vcf: bool,
    fasta: Path | None,
    genes_path: Path | None,
    genome: str | None,
    top: int,
    coverage_top: int,
    hub_email: str | None,
    igv_js: str | None,
    batch_size: int,
    device: str,
    bf16: bool,
    check_ref: str,
    progress: bool,
    selection: Selection,
    cache_dir: Path | None = None,
) -> None:
    """Genome-browser tracks of variant scores: bigWig/bedGraph, BED9, IGV session, UCSC hub."""
    from varscore.scoring.tracks import TrackJob, run_tracks

    job = TrackJob(
        vcf,
        out_dir,
        model=model,
        formats=formats,
        from_vcf=from_vcf,
        fasta=fasta,
        genes=genes_path,
        genome=genome,
        top=top,
        coverage_top=coverage_top,
        hub_email=hub_email,
        batch_size=batch_size,
        device=device,
        bf16=bf16,
        check_ref=check_ref,
        progress=progress,
        selection=selection,
        cache=cache_dir,
    )
    if igv_js:
        job = dataclasses.replace(job, igv_js=igv_js)
    result = run_tracks(job)
    for line in result.lines():
        click.echo(line, err=True)
    click.echo(result.closing_line())
