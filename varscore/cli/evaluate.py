"""``varscore evaluate`` and ``varscore plot-coverage``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from varscore.cli.app import cli
from varscore.cli.options import bundle_fasta, cohort_options_fasta_optional, genes_only_option
from varscore.io.outputguard import writes


@cli.command()
@cohort_options_fasta_optional
@click.option(
    "-m",
    "--model",
    "models_",
    required=True,
    multiple=True,
    help="Model bundle (repeat, or use --compare, to put models side by side).",
)
@click.option("--compare", multiple=True, help="Other bundles evaluated on the same people.")
@click.option(
    "--people",
    "people_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File with one held-out person per line (default: the first model's test people).",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the per-gene TSV here.")
@click.option("--batch-size", default=8, show_default=True)
@click.option(
    "--coverage",
    type=click.Path(path_type=Path),
    help="Observed coverage (coverage.npz or a bigWig folder), for coverage-track models.",
)
@click.option(
    "--bootstrap",
    "n_boot",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Bootstrap resamples of the held-out people for the 95% CIs.",
)
@click.option("--bootstrap-seed", default=0, show_default=True, help="Seed of the bootstrap resamples.")
@click.option(
    "--replicates",
    is_flag=True,
    help="The -m models are fits on different fold replicates: each is evaluated on its own test "
    "people and the summary gives mean ± sd over replicates.",
)
@click.option(
    "--all-people",
    is_flag=True,
    help="Evaluate on every person of this cohort, a cohort the models were not trained on (their "
    "folds and recorded test people are not used).",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="A bar on a terminal, lines in a log.")
@writes(("output", "-o", "file"))
def evaluate(
    vcf: Path,
    expression: Path,
    genes_path: Path,
    fasta: Path | None,
    folds: Path | None,
    replicate: int,
    gene_names: tuple[str, ...],
    models_: tuple[str, ...],
    compare: tuple[str, ...],
    people_file: Path | None,
    output: Path | None,
    batch_size: int,
    coverage: Path | None,
    n_boot: int,
    bootstrap_seed: int,
    replicates: bool,
    all_people: bool,
    progress: bool = True,
) -> None:
    """Per-gene R2 and Pearson r across held-out people (HOP: train genes, HOGP: other genes), with
    bootstrap 95% CIs over the people (r2_lo/r2_hi, pearson_lo/pearson_hi) and Pearson's two-sided
    p-value (pearson_p). With --compare, the paired difference of each compared model from the first
    (same people, same resamples) with its CI, written to OUTPUT's .compare.tsv beside it.

    Coverage-track models (finetune --output-mode track; give --coverage) also get, per gene, the mean
    per-bin Pearson r across people (bin_pearson) and the coefficient of variation across people of
    observed and predicted coverage (cov_observed, cov_predicted, and cov_pearson between the two)."""
    from varscore.training.cohort import CohortInputs
    from varscore.training.evaluate import EvaluateJob, run_evaluation

    fasta = bundle_fasta(models_[0], fasta)
    inputs = CohortInputs(
        vcf, expression, genes_path, fasta, folds, replicate, list(gene_names) or None, coverage=coverage
    )
    job = EvaluateJob(
        inputs,
        models=models_,
        compare=compare,
        people_file=people_file,
        output=output,
        batch_size=batch_size,
        n_boot=n_boot,
        seed=bootstrap_seed,
        replicates=replicates,
        command=["varscore", *sys.argv[1:]],
        all_people=all_people,
        progress=progress,
    )
    for line in run_evaluation(job).lines():
        click.echo(line)


@cli.command("plot-coverage")
@cohort_options_fasta_optional
@click.option("-m", "--model", required=True, help="Coverage-track model bundle (finetune --output-mode track).")
@click.option(
    "--coverage",
    required=True,
    type=click.Path(path_type=Path),
    help="Observed coverage: coverage.npz or a directory of PERSON.bw bigWigs.",
)
@click.option(
    "--people",
    "people_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File with one held-out person per line (default: the model's test people).",
)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PNG to write.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@writes(("output", "-o", "file"))
def plot_coverage_command(
    vcf: Path,
    expression: Path,
    genes_path: Path,
    fasta: Path | None,
    folds: Path | None,
    replicate: int,
    gene_names: tuple[str, ...],
    model: str,
    coverage: Path,
    people_file: Path | None,
    output: Path,
    batch_size: int,
) -> None:
    """Heat map of observed vs predicted coverage (held-out people x bins) for one gene (--genes-only), with
    the coefficient of variation across people; people ranked by observed coverage at the TSS."""
    from varscore.training.cohort import CohortInputs
    from varscore.training.evaluate import PlotCoverageJob, run_plot_coverage

    fasta = bundle_fasta(model, fasta)
    inputs = CohortInputs(
        vcf, expression, genes_path, fasta, folds, replicate, list(gene_names) or None, coverage=coverage
    )
    job = PlotCoverageJob(inputs, model, output, people_file=people_file, batch_size=batch_size)
    for line in run_plot_coverage(job).lines():
        click.echo(line)


@cli.command("rank-genes")
@click.option(
    "-m", "--model", "models_", required=True, multiple=True, help="Sequence-model bundle (repeat for several)."
)
@click.option(
    "--tpm",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Raw TPM per gene and person: a TSV (gene_id, then one column per person), a GTEx GCT or a BED.",
)
@click.option(
    "--genes",
    "genes_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Gene/TSS table (TSV, GTF or GFF3) of the genes to rank (e.g. the test genes).",
)
@click.option("--fasta", type=click.Path(dir_okay=False, path_type=Path), help="Reference FASTA [each model's].")
@genes_only_option()
@click.option(
    "--people",
    "people_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Average over these people, one per line [every person of --tpm].",
)
@click.option("--track", type=click.IntRange(min=0), help="Score this output track [the model's output mode].")
@click.option("--center-bins", type=click.IntRange(min=1), help="Sum this many centre bins of the track [Enformer: 3].")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the per-gene TSV here.")
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@writes(("output", "-o", "file"))
def rank_genes(
    models_: tuple[str, ...],
    tpm: Path,
    genes_path: Path,
    fasta: Path | None,
    gene_names: tuple[str, ...],
    people_file: Path | None,
    track: int | None,
    center_bins: int | None,
    output: Path | None,
    batch_size: int,
    device: str,
) -> None:
    """Rank genes by average expression: each model's prediction from the reference window against
    the mean log2(TPM + 2) over people, with Pearson r and Spearman rho across genes."""
    from varscore.training.gene_ranking import GeneRankingJob, run_gene_ranking

    job = GeneRankingJob(
        models_,
        tpm,
        genes_path,
        fasta=fasta,
        gene_names=list(gene_names) or None,
        people_file=people_file,
        track=track,
        center_bins=center_bins,
        output=output,
        batch_size=batch_size,
        command=["varscore", *sys.argv[1:]],
        device=device,
    )
    for line in run_gene_ranking(job).lines():
        click.echo(line)
