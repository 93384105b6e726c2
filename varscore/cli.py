"""The ``varscore`` command line. The only module that talks to the user."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from varscore import __version__
from varscore.errors import VarscoreError

logger = logging.getLogger("varscore")


class VarscoreGroup(click.Group):
    """Turns :class:`VarscoreError` into a one-line message (traceback with VARSCORE_DEBUG=1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VarscoreError as exc:
            if os.environ.get("VARSCORE_DEBUG"):
                raise
            raise click.ClickException(str(exc)) from exc


@click.group(cls=VarscoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="varscore")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Score genetic variants by their predicted effect on gene expression."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


# --- simulate command (issue 3) ---


@cli.command()
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (created if missing; files in it are replaced).")
@click.option("--people", default=670, show_default=True, type=int, help="Number of people.")
@click.option("--genes", "n_genes", default=20, show_default=True, type=int,
              help="Genes in the random genome (or spread over --region when no --gene-table).")
@click.option("--fasta", type=click.Path(dir_okay=False, path_type=Path),
              help="Reference FASTA (plain, or bgzipped with .fai/.gzi). Default: a random human-like genome.")
@click.option("--region", help="Part of --fasta to simulate, chr:start-end (1-based, inclusive).")
@click.option("--gene-table", type=click.Path(dir_okay=False, path_type=Path),
              help="TSSs for --fasta: TSV (chrom, tss, strand, gene_id|gene_name; 1-based), GTF or GFF3.")
@click.option("--seed", default=1, show_default=True, type=int, help="Random seed (same seed, same files).")
@click.option("--phased/--unphased", default=True, show_default=True, help="Write phased (0|1) genotypes.")
@click.option("--indels", is_flag=True, help="Add short insertions and deletions (about 1 per 8 SNVs).")
@click.option("--h2", type=float, help="Give every gene this cis-heritability (default: drawn per gene).")
@click.option("--h2-mean", default=0.2, show_default=True, type=float,
              help="Mean cis-heritability of heritable genes (Beta-distributed).")
@click.option("--null-fraction", default=0.25, show_default=True, type=float, help="Share of genes with h2 = 0.")
@click.option("--causal-per-gene", default=3.0, show_default=True, type=float,
              help="Mean number of causal variants of a heritable gene (1-10).")
@click.option("--motif-fraction", default=0.5, show_default=True, type=float,
              help="Share of causal variants chosen because they create or disrupt a JASPAR motif.")
@click.option("--rare-fraction", default=0.3, show_default=True, type=float,
              help="Share of causal variants with MAF < 0.05.")
@click.option("--window", default=49152, show_default=True, type=int,
              help="Model window (bp) centred on each TSS; causal variants lie in its central 80%.")
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
) -> None:
    """Simulate a cohort with known causal variants: genotypes (VCF), expression (GTEx BED), truth."""
    from varscore.simulate import SimulationConfig, simulate_cohort

    config = SimulationConfig(
        people=people, genes=n_genes, fasta=fasta, region=region, gene_table=gene_table, seed=seed,
        phased=phased, indels=indels, window=window, h2=h2, h2_mean=h2_mean, h2_null_fraction=null_fraction,
        causal_per_gene=causal_per_gene, motif_fraction=motif_fraction, rare_fraction=rare_fraction,
    )
    result = simulate_cohort(config, out_dir)
    click.echo(
        f"Simulated {result.people:,} people, {result.genes:,} genes, {result.variants:,} variants; "
        f"{result.causal_variants:,} causal variants, mean realised h2 {result.mean_h2:.3f}."
    )
    click.echo(f"Wrote {result.vcf.name}, {result.expression.name}, {result.truth_variants.name}, "
               f"{result.truth_genes.name}, {result.params.name} and more to {result.out_dir}")


@cli.command()
@click.argument("vcf", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-m", "--model", required=True, help="Model bundle name or directory (see 'varscore models list').")
@click.option("-o", "--output", default="-", show_default=True,
              help="Output VCF: '-' for stdout, *.vcf, or *.vcf.gz (bgzipped + tabix-indexed).")
@click.option("--fasta", type=click.Path(dir_okay=False, path_type=Path),
              help="Reference FASTA (default: the one recorded in the model bundle).")
@click.option("--genes", "genes_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Gene/TSS table (TSV, GTF or GFF3) instead of the bundle's genes.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Alternate windows per forward pass.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--bf16/--no-bf16", default=False, show_default=True, help="bfloat16 autocast on GPU.")
@click.option("--annotate", "annotators", default="", help="Comma-separated annotators to run as well.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
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
    progress: bool,
) -> None:
    """Add each variant's predicted effect on expression to a VCF (INFO VARSCORE)."""
    from varscore.annotate import annotate_vcf

    summary = annotate_vcf(
        vcf,
        model,
        output,
        fasta=fasta,
        genes_path=genes_path,
        batch_size=batch_size,
        device=device,
        bf16=bf16,
        annotators=[a.strip() for a in annotators.split(",") if a.strip()],
        progress=progress and sys.stderr.isatty(),
    )
    for line in summary.lines():
        click.echo(line, err=True)


@cli.command("plugins")
def plugins_command() -> None:
    """List installed plugins and what each registers."""
    from varscore.plugins import manager

    for name in manager.plugin_names():
        provided = manager.provided_by(name)
        details = "; ".join(f"{kind.replace('_', ' ')}: {', '.join(names)}" for kind, names in provided.items())
        click.echo(f"{name}\t{details or '(registers nothing)'}")


@cli.group()
def models() -> None:
    """List, inspect, install and create model bundles."""


@models.command("list")
def models_list() -> None:
    """Model bundles found on the search path."""
    from varscore.bundle import list_models, search_path

    found = list_models()
    if not found:
        dirs = ", ".join(str(d) for d in search_path())
        click.echo(f"No model bundles found (searched {dirs}).", err=True)
    for name, path in found:
        click.echo(f"{name}\t{path}")


@models.command("info")
@click.argument("name")
def models_info(name: str) -> None:
    """Show a bundle's manifest (without its gene list)."""
    import json

    from varscore.bundle import load_bundle

    bundle = load_bundle(name)
    shown = {k: v for k, v in bundle.manifest.items() if k != "genes"}
    shown["genes"] = f"{len(bundle.manifest.get('genes', []))} genes"
    click.echo(f"path: {bundle.path}")
    click.echo(json.dumps(shown, indent=2))


@models.command("install")
@click.argument("source")
@click.option("--sha256", "expected", help="Expected sha256 of weights.safetensors.")
@click.option("--name", help="Install under this name (default: the directory name).")
def models_install(source: str, expected: str | None, name: str | None) -> None:
    """Copy a bundle directory into the user cache, checking its weights' sha256."""
    from varscore.bundle import install_bundle

    dest = install_bundle(source, expected, name)
    click.echo(f"installed {dest}")


@models.command("from-enformer")
@click.argument("pretrained_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Bundle directory to write.")
@click.option("--genes", "genes_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Gene/TSS table (TSV, GTF or GFF3).")
@click.option("--fasta", type=click.Path(dir_okay=False, path_type=Path), help="Reference FASTA to record.")
@click.option("--track", default=4950, show_default=True, help="Output track (4950 = CAGE:blood, adult, pool1).")
@click.option("--center-bins", default=3, show_default=True, help="Centre bins summed into the score.")
@click.option("--head", "output_head", default="human", show_default=True, help="Enformer output head.")
@click.option("--window", default=196608, show_default=True, help="Input window in bp.")
def models_from_enformer(
    pretrained_dir: Path,
    output: Path,
    genes_path: Path,
    fasta: Path | None,
    track: int,
    center_bins: int,
    output_head: str,
    window: int,
) -> None:
    """Make a bundle from a pre-trained Enformer in a local directory (config.json + model.safetensors)."""
    from varscore.bundle import save_bundle
    from varscore.genome import load_genes
    from varscore.plugins import get_backbone, get_output_mode

    genes = load_genes(genes_path)
    backbone = get_backbone("enformer")(
        head="pretrained", pretrained_dir=str(pretrained_dir), output_head=output_head, window_size=window
    ).build()
    mode = get_output_mode("scalar")(track=track, center_bins=center_bins)
    save_bundle(output, name=output.name, backbone=backbone, output_mode=mode, genes=genes,
                reference_fasta=fasta, provenance={"pretrained_dir": str(pretrained_dir)})
    click.echo(f"wrote {output}")


def main() -> None:
    from varscore.plugins import manager

    try:
        manager.add_commands(cli)
    except VarscoreError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    cli(prog_name="varscore")
