"""``varscore report``."""

from __future__ import annotations

from pathlib import Path

import click

from varscore.cli.app import cli
from varscore.cli.options import cache_option, genes_only_option, input_vcf, ism_table_option
from varscore.io.outputguard import writes


@cli.command()
@click.option("-m", "--model", required=True, help="Model bundle to report on.")
@click.option("--compare", multiple=True, help="Other bundles shown beside it (repeatable).")
@click.option("--linear", help="Elastic-net bundle for k per gene and sign agreement [first linear --compare].")
@input_vcf()
@click.option(
    "--expression",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="GTEx-layout expression BED of the same people.",
)
@click.option(
    "--genes",
    "genes_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Gene/TSS table (TSV, GTF or GFF3).",
)
@click.option("--fasta", type=click.Path(dir_okay=False, path_type=Path), help="Reference FASTA [the model's].")
@genes_only_option()
@click.option(
    "--people",
    "people_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Held-out people, one per line [the model's test people].",
)
@click.option("--k", "k", type=click.IntRange(min=1), help="HSVs per gene when there is no linear model [10].")
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, path_type=Path),
    help="truth_variants.tsv of a simulated cohort: enrichment of HSVs/drivers for causal variants.",
)
@click.option("--motifs", help="Motif source for motif-change marks and rates (JASPAR2024, or a motif file).")
@click.option("--chromhmm", type=click.Path(dir_okay=False, path_type=Path), help="ChromHMM segmentation BED.")
@click.option("--finemap", type=click.Path(dir_okay=False, path_type=Path), help="Fine-mapped eQTL table.")
@click.option(
    "--attribution",
    is_flag=True,
    help="Also compute gradient × input at HSVs/drivers vs controls (slow: one backward pass per person).",
)
@click.option(
    "--hsv-min-maf",
    help="Also repeat the HSV enrichments without the HSVs whose MAF is below each of these "
    "(comma-separated, e.g. 0.01,0.05).",
)
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for index.html, the figures (PNG + PDF) and tables (TSV).",
)
@ism_table_option(multiple=True)
@cache_option()
@writes(("output", "-o", "folder"))
def report(
    model: str,
    compare: tuple[str, ...],
    linear: str | None,
    vcf: Path,
    expression: Path,
    genes_path: Path,
    fasta: Path | None,
    gene_names: tuple[str, ...],
    people_file: Path | None,
    k: int | None,
    truth: Path | None,
    motifs: str | None,
    chromhmm: Path | None,
    finemap: Path | None,
    attribution: bool,
    hsv_min_maf: str | None,
    batch_size: int,
    device: str,
    progress: bool,
    output: Path,
    ism_tables: tuple[Path, ...] = (),
    cache_dir: Path | None = None,
) -> None:
    """Figures of the paper for a model (and models to compare) on a cohort, in one HTML page."""
    from varscore.analysis.report import ReportConfig, build_report
    from varscore.cli.analysis import echo_result, show_progress

    config = ReportConfig(
        model=model,
        vcf=vcf,
        expression=expression,
        genes=genes_path,
        fasta=fasta,
        out_dir=output,
        compare=list(compare),
        linear=linear,
        people_file=people_file,
        gene_names=list(gene_names) or None,
        k=k,
        truth=truth,
        motifs=motifs,
        chromhmm=chromhmm,
        finemap=finemap,
        attribution=attribution,
        hsv_min_maf=parse_maf_list(hsv_min_maf),
        batch_size=batch_size,
        device=device,
        progress=show_progress(progress),
        ism=list(ism_tables),
        cache=cache_dir,
    )
    echo_result(build_report(config))


def parse_maf_list(text: str | None) -> list[float]:
    """``--hsv-min-maf 0.01,0.05`` -> ``[0.01, 0.05]``; each between 0 and 0.5 (else a one-line error)."""
    if not text:
        return []
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise click.BadParameter(f"'{part.strip()}' is not a number.", param_hint="--hsv-min-maf") from None
        if not 0 < value <= 0.5:
            raise click.BadParameter(f"each MAF must be in (0, 0.5]; got {value:g}.", param_hint="--hsv-min-maf")
        values.append(value)
    return values
