"""Option groups and helpers shared by several commands."""

from __future__ import annotations

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


def echo_stderr(line: str) -> None:
    click.echo(line, err=True)
