"""``varscore ism``, ``hsv``, ``drivers`` and ``attribute``."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from varscore.cli.app import cli
from varscore.cli.options import analysis_options, cache_option, ism_table_option, selection_options
from varscore.io.outputguard import writes

if TYPE_CHECKING:
    from varscore.analysis.inputs import AnalysisInputs, AnalysisResult
    from varscore.scoring.selection import Selection


@cli.command()
@analysis_options
@selection_options(genes=False)
@click.option("--saturation", is_flag=True, help="Every position of the window × 3 alternative bases.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="TSV to write.")
@click.option(
    "--track",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the per-position ISM as a track: .bedGraph, or .bw (bigWig).",
)
@cache_option()
@writes(("output", "-o", "file"), ("track", "--track", "file"))
def ism(
    model: str,
    vcf: Path | None,
    fasta: Path | None,
    gene_names: tuple[str, ...],
    batch_size: int,
    device: str,
    progress: bool,
    saturation: bool,
    output: Path,
    track: Path | None,
    selection: Selection,
    cache_dir: Path | None = None,
) -> None:
    """In-silico mutagenesis of each gene's window: observed SNVs (VCF) or all (--saturation)."""
    from varscore.analysis.ism import IsmJob, run_ism

    job = IsmJob(
        replace(inputs_from_options(model, vcf, fasta, gene_names, device), cache=cache_dir),
        output,
        saturation=saturation,
        track=track,
        batch_size=batch_size,
        progress=show_progress(progress),
        argv=command_argv(),
        selection=selection,
    )
    echo_result(run_ism(job))


@cli.command()
@analysis_options
@click.option("--linear", help="Elastic-net bundle: k per gene = its number of non-zero coefficients.")
@click.option("--k", "k", type=click.IntRange(min=1), help="The same k for every gene (instead of --linear).")
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, path_type=Path),
    help="truth_variants.tsv of a simulated cohort: report enrichment for causal variants.",
)
@click.option(
    "--controls",
    "controls_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the matched control variants (±2.5 kb distance to TSS, MAF within 0.5%).",
)
@click.option(
    "--min-maf",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 0.5),
    help="Remove HSVs whose MAF in the cohort is below this (e.g. 0.01 or 0.05) after picking the top k.",
)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="TSV to write.")
@ism_table_option()
@writes(("output", "-o", "file"), ("controls_out", "--controls", "file"))
def hsv(
    model: str,
    vcf: Path | None,
    fasta: Path | None,
    gene_names: tuple[str, ...],
    batch_size: int,
    device: str,
    progress: bool,
    linear: str | None,
    k: int | None,
    truth: Path | None,
    controls_out: Path | None,
    min_maf: float,
    output: Path,
    ism_table: Path | None = None,
) -> None:
    """High-scoring variants: per gene the k SNVs with the largest |ISM|."""
    from varscore.analysis.hsv import HsvJob, run_hsv

    job = HsvJob(
        inputs_from_options(model, vcf, fasta, gene_names, device),
        output,
        k=k,
        linear=linear,
        truth=truth,
        controls_output=controls_out,
        batch_size=batch_size,
        progress=show_progress(progress),
        argv=command_argv(),
        min_maf=min_maf,
        ism=ism_table,
    )
    echo_result(run_hsv(job))


@cli.command()
@analysis_options
@click.option(
    "--people",
    "people_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Held-out people, one per line (default: the model's recorded test people).",
)
@click.option("--min-gain", default=0.05, show_default=True, help="Least rise of the explained fraction per driver.")
@click.option("--alpha", default=0.01, show_default=True, help="One-sided p threshold, divided by the variant count.")
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, path_type=Path),
    help="truth_variants.tsv of a simulated cohort: report recall and enrichment of causal variants.",
)
@click.option(
    "--summary",
    "summary_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the per-gene summary TSV (explained fraction, mean LD of drivers).",
)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="TSV to write.")
@ism_table_option()
@writes(("output", "-o", "file"), ("summary_out", "--summary", "file"))
def drivers(
    model: str,
    vcf: Path | None,
    fasta: Path | None,
    gene_names: tuple[str, ...],
    batch_size: int,
    device: str,
    progress: bool,
    people_file: Path | None,
    min_gain: float,
    alpha: float,
    truth: Path | None,
    summary_out: Path | None,
    output: Path,
    ism_table: Path | None = None,
) -> None:
    """Driver variants: forward selection of SNVs whose genotype × ISM approximates the model's
    predictions in held-out people."""
    from varscore.analysis.drivers import DriverCriteria, DriversJob, run_drivers

    job = DriversJob(
        inputs_from_options(model, vcf, fasta, gene_names, device),
        output,
        people_file=people_file,
        criteria=DriverCriteria(min_gain=min_gain, alpha=alpha),
        truth=truth,
        summary_output=summary_out,
        batch_size=batch_size,
        progress=show_progress(progress),
        argv=command_argv(),
        ism=ism_table,
    )
    echo_result(run_drivers(job))


@cli.command()
@analysis_options
@click.option(
    "--people",
    "people_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="People for the personal-genome attribution, one per line (default: the model's test people).",
)
@click.option("--reference-only", is_flag=True, help="Only the reference-sequence attribution.")
@click.option(
    "--variants",
    "variants_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="An 'hsv' or 'drivers' TSV: compare their attributions with matched control variants.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Per-position TSV: chrom, pos, gene, reference, personal (standardised attributions).",
)
@writes(("output", "-o", "file"))
def attribute(
    model: str,
    vcf: Path | None,
    fasta: Path | None,
    gene_names: tuple[str, ...],
    batch_size: int,
    device: str,
    progress: bool,
    people_file: Path | None,
    reference_only: bool,
    variants_file: Path | None,
    output: Path,
) -> None:
    """Gradient × input on the reference and on personal genomes (mean over people), |·| max over
    bases, z-scored along the window."""
    from varscore.analysis.attribution import AttributionJob, run_attribution

    job = AttributionJob(
        inputs_from_options(model, vcf, fasta, gene_names, device),
        output,
        people_file=people_file,
        reference_only=reference_only,
        variants_file=variants_file,
        batch_size=batch_size,
        progress=show_progress(progress),
        argv=command_argv(),
    )
    echo_result(run_attribution(job))


def inputs_from_options(
    model: str, vcf: Path | None, fasta: Path | None, gene_names: tuple[str, ...], device: str
) -> AnalysisInputs:
    """The options of :func:`~varscore.cli.options.analysis_options` that say what to analyse."""
    from varscore.analysis.inputs import AnalysisInputs

    return AnalysisInputs(model, vcf, fasta, tuple(gene_names), device)


def show_progress(progress: bool) -> bool:
    """Whether to show progress: a bar on a terminal, timed lines in a log (:mod:`varscore.io.progress`)."""
    return progress


def command_argv() -> list[str]:
    """The command as typed, for the provenance sidecars."""
    return ["varscore", *sys.argv[1:]]


def echo_result(result: AnalysisResult) -> None:
    """Print an analysis' result: its notes (files written) on stderr, its lines on stdout."""
    for note in result.notes():
        click.echo(note, err=True)
    for line in result.lines():
        click.echo(line)
