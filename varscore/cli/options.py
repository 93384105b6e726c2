"""Option groups and helpers shared by several commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click


def parse_params(items: tuple[str, ...]) -> dict[str, Any]:
    import json

    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE; got '{item}'", param_hint="--param")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def cohort_options(func: Any) -> Any:
    options = [
        click.option(
            "--vcf",
            required=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="Cohort genotypes (VCF/BCF, indexed for speed).",
        ),
        click.option(
            "--expression",
            required=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="GTEx-layout expression: #chr start end gene_id, then one column per person.",
        ),
        click.option(
            "--genes",
            "genes_path",
            required=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="Gene/TSS table (TSV, GTF or GFF3).",
        ),
        click.option(
            "--fasta", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Reference FASTA."
        ),
        click.option(
            "--folds",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Fold file (person, replicate, split); default: made with --seed and saved.",
        ),
        click.option("--replicate", default=0, show_default=True, help="Which replicate fold to use."),
        click.option("--gene", "gene_names", multiple=True, help="Only this gene (repeatable)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def analysis_options(func: Any) -> Any:
    options = [
        click.option("-m", "--model", required=True, help="Model bundle name or directory."),
        click.option(
            "--vcf",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Cohort VCF/BCF (indexed): its SNVs are scored and give MAFs and genotypes.",
        ),
        click.option(
            "--fasta",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Reference FASTA (default: the one recorded in the model bundle).",
        ),
        click.option("--gene", "gene_names", multiple=True, help="Only this gene (repeatable; default: all)."),
        click.option(
            "--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Sequences per forward pass."
        ),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def analysis_inputs(
    model: str, vcf: Path | None, fasta: Path | None, gene_names: tuple[str, ...], device: str, need_vcf: bool = True
) -> Any:
    """Bundle, scorer, genome, chosen genes and (when a VCF is given) their variants."""
    from types import SimpleNamespace

    from varscore.analysis.ism import ModelScorer, read_gene_variants
    from varscore.errors import InputError
    from varscore.genome.fasta import Genome
    from varscore.models.bundle import load_bundle

    bundle = load_bundle(model)
    fasta = bundle.resolve_reference(fasta)
    if vcf is None and need_vcf:
        raise InputError("This analysis needs the cohort's genotypes: pass --vcf.")
    genes = bundle.genes
    if gene_names:
        wanted = set(gene_names)
        genes = [g for g in genes if g.gene_id in wanted or g.name in wanted]
        unknown = wanted - {g.gene_id for g in genes} - {g.name for g in genes}
        if unknown:
            known = ", ".join(g.label for g in bundle.genes[:10])
            raise InputError(f"Model '{bundle.name}' has no gene {', '.join(sorted(unknown))} (it has {known}).")
    if not genes:
        raise InputError(f"Model '{bundle.name}' lists no genes.")
    scorer = ModelScorer.from_bundle(bundle, device=device)
    genome = Genome(fasta)
    variants = read_gene_variants(vcf, genes, genome, scorer.window_size) if vcf is not None else None
    return SimpleNamespace(bundle=bundle, scorer=scorer, genome=genome, genes=genes, variants=variants)


def write_table(table: Any, output: Path) -> None:
    from varscore.io.outputguard import atomic_file, write_provenance_sidecar
    from varscore.models.bundle import load_bundle

    with atomic_file(output) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    model = click.get_current_context().params.get("model")  # provenance in OUTPUT.provenance.json
    write_provenance_sidecar(output, load_bundle(model) if model else None, ["varscore", *sys.argv[1:]])


def echo_stderr(line: str) -> None:
    click.echo(line, err=True)
