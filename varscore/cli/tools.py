"""``varscore examples``, ``simulate``, ``plugins`` and ``plugin new``."""

from __future__ import annotations

from pathlib import Path

import click

from varscore.cli.app import cli
from varscore.cli.options import old_spelling
from varscore.io.outputguard import writes


@cli.group("examples")
def examples_group() -> None:
    """The bundled example cohort and demo models."""


@examples_group.command("path")
@click.option("--models", "which", flag_value="models", help="Print the demo models' folder instead.")
def examples_path(which: str | None) -> None:
    """Print the folder of the example data (cohort.vcf.gz, expression, genes, hg19 FASTA slice)."""
    from varscore.examples import data_dir, models_dir

    click.echo(str(models_dir() if which == "models" else data_dir()))


# --- simulate command ---


@cli.command()
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output directory (created if missing; files in it are replaced).  [required]",
)
@old_spelling("out_dir", "--out", "-o/--output", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--people", default=670, show_default=True, type=int, help="Number of people.")
@click.option(
    "--genes",
    "n_genes",
    default=20,
    show_default=True,
    type=int,
    help="Genes in the random genome (or spread over --region when no --gene-table).",
)
@click.option(
    "--fasta",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Reference FASTA (plain, or bgzipped with .fai/.gzi). Default: a random human-like genome.",
)
@click.option("--region", help="Part of --fasta to simulate, chr:start-end (1-based, inclusive).")
@click.option(
    "--gene-table",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TSSs for --fasta: TSV (chrom, tss, strand, gene_id|gene_name; 1-based), GTF or GFF3.",
)
@click.option("--seed", default=1, show_default=True, type=int, help="Random seed (same seed, same files).")
@click.option("--phased/--unphased", default=True, show_default=True, help="Write phased (0|1) genotypes.")
@click.option("--indels", is_flag=True, help="Add short insertions and deletions (about 1 per 8 SNVs).")
@click.option("--h2", type=float, help="Give every gene this cis-heritability (default: drawn per gene).")
@click.option(
    "--h2-mean",
    default=0.2,
    show_default=True,
    type=float,
    help="Mean cis-heritability of heritable genes (Beta-distributed).",
)
@click.option("--null-fraction", default=0.25, show_default=True, type=float, help="Share of genes with h2 = 0.")
@click.option(
    "--causal-per-gene",
    default=3.0,
    show_default=True,
    type=float,
    help="Mean number of causal variants of a heritable gene (1-10).",
)
@click.option(
    "--motif-fraction",
    default=0.5,
    show_default=True,
    type=float,
    help="Share of causal variants chosen because they create or disrupt a JASPAR motif.",
)
@click.option(
    "--rare-fraction", default=0.3, show_default=True, type=float, help="Share of causal variants with MAF < 0.05."
)
@click.option(
    "--window",
    default=49152,
    show_default=True,
    type=int,
    help="Model window (bp) centred on each TSS; causal variants lie in its central 80%.",
)
@click.option(
    "--coverage",
    is_flag=True,
    help="Also write per-person RNA-seq-like coverage over every gene window (coverage.npz), "
    "for track-mode fine-tuning.",
)
@click.option("--coverage-bin", default=32, show_default=True, type=int, help="Coverage bin size (bp).")
@click.option("--coverage-bigwig", is_flag=True, help="Also write one coverage bigWig per person (implies --coverage).")
@writes(("out_dir", "-o", "folder"))
def simulate(
    out_dir: Path,
    people: int,
    n_genes: int,
    fasta: Path | None,
    region: str | None,
    gene_table: Path | None,
    seed: int,
    phased: bool,
    indels: bool,
    h2: float | None,
    h2_mean: float,
    null_fraction: float,
    causal_per_gene: float,
    motif_fraction: float,
    rare_fraction: float,
    window: int,
    coverage: bool,
    coverage_bin: int,
    coverage_bigwig: bool,
) -> None:
    """Simulate a cohort with known causal variants: genotypes (VCF), expression (GTEx BED), truth."""
    from varscore.simulate import SimulationConfig, simulate_cohort

    config = SimulationConfig(
        people=people,
        genes=n_genes,
        fasta=fasta,
        region=region,
        gene_table=gene_table,
        seed=seed,
        phased=phased,
        indels=indels,
        window=window,
        h2=h2,
        h2_mean=h2_mean,
        h2_null_fraction=null_fraction,
        causal_per_gene=causal_per_gene,
        motif_fraction=motif_fraction,
        rare_fraction=rare_fraction,
        coverage=coverage,
        coverage_bin=coverage_bin,
        coverage_bigwig=coverage_bigwig,
    )
    for line in simulate_cohort(config, out_dir).lines():
        click.echo(line)


@cli.command("plugins")
def plugins_command() -> None:
    """List installed plugins and what each registers."""
    from varscore.plugin.manager import manager

    for name in manager.plugin_names():
        provided = manager.provided_by(name)
        details = "; ".join(f"{kind.replace('_', ' ')}: {', '.join(names)}" for kind, names in provided.items())
        click.echo(f"{name}\t{details or '(registers nothing)'}")


@cli.group("plugin")
def plugin_group() -> None:
    """Start a new plugin package (see docs/plugins.md)."""


@plugin_group.command("new")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(["backbone", "genotype-backbone", "output-mode", "annotator"]),
    default="backbone",
    show_default=True,
    help="What the plugin registers.",
)
@click.option(
    "-o",
    "--output",
    "out_dir",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to create varscore-NAME/ in.",
)
@click.option("--force", is_flag=True, help="Write into an existing non-empty varscore-NAME/.")
@writes(("out_dir", "-o", "folder"))
def plugin_new(name: str, kind: str, out_dir: Path, force: bool) -> None:
    """Write a pip-installable plugin skeleton varscore-NAME/ with passing tests."""
    from varscore.plugin.template import write_plugin

    made = write_plugin(name, out_dir, kind=kind, force=force)
    for relative in made.files:
        click.echo(f"wrote {made.directory / relative}")
    click.echo(f"next: pip install -e {made.directory} && python -m pytest {made.directory / 'tests'}")


@cli.command("merge")
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    default="-",
    show_default=True,
    help="Merged VCF: '-' for stdout, *.vcf, or *.vcf.gz (bgzipped + tabix-indexed).",
)
@click.option(
    "--detail",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Merged detail table (Parquet) of the shards' --detail tables, given among SHARDS with their VCFs.",
)
@writes(("output", "-o", "file"), ("detail", "--detail", "file"))
def merge_command(shards: tuple[Path, ...], output: str, detail: Path | None) -> None:
    """Concatenate the VCFs of 'annotate --shard i/N' runs in shard order (README: Scale-out), and
    with --detail their Parquet detail tables, record numbers as in the unsharded run.

    Refuses a missing or repeated shard and shards whose headers differ (model, options, input)."""
    from varscore.io.merge import MergeJob, run_merge

    for line in run_merge(MergeJob(shards, output, detail)).lines():
        click.echo(line, err=True)
