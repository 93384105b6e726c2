"""``varscore ism``, ``hsv``, ``drivers`` and ``attribute``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from varscore.cli.app import cli
from varscore.cli.options import analysis_inputs, analysis_options, write_table
from varscore.io.outputguard import writes


@cli.command()
@analysis_options
@click.option("--saturation", is_flag=True, help="Every position of the window × 3 alternative bases.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="TSV to write.")
@click.option(
    "--track",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the per-position ISM as a track: .bedGraph, or .bw (bigWig).",
)
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
) -> None:
    """In-silico mutagenesis of each gene's window: observed SNVs (--vcf) or all (--saturation)."""
    from varscore.analysis.ism import alleles_to_score, ism_table, write_ism_track
    from varscore.errors import InputError

    if vcf is None and not saturation:
        raise InputError("Give --vcf (score the cohort's SNVs) or --saturation (every position × 3 bases).")
    run = analysis_inputs(model, vcf, fasta, gene_names, device, need_vcf=False)
    import pandas as pd
    from tqdm.auto import tqdm

    parts = []
    total = alleles_to_score(run.scorer, run.genes, run.variants, saturation)
    with tqdm(total=total, desc="ISM", unit="allele", disable=not (progress and sys.stderr.isatty())) as bar:
        for gene in run.genes:
            variants = run.variants[gene.gene_id] if run.variants is not None else None
            parts.append(
                ism_table(
                    run.scorer,
                    gene,
                    run.genome,
                    variants,
                    saturation=saturation,
                    batch_size=batch_size,
                    advance=bar.update,
                )
            )
    table = pd.concat(parts, ignore_index=True)
    if vcf is None:
        table = table.drop(columns=["maf"])
    write_table(table.drop(columns=["key"]), output)
    click.echo(f"wrote {output} ({len(table):,} substitutions, {len(run.genes)} genes)", err=True)
    if track is not None:
        write_ism_track(table, track, run.genome.lengths)
        click.echo(f"wrote {track}", err=True)


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
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="TSV to write.")
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
    output: Path,
) -> None:
    """High-scoring variants: per gene the k SNVs with the largest |ISM|."""
    from varscore.analysis.hsv import (
        HSV_MAF_TOLERANCE,
        causal_enrichment,
        high_scoring_variants,
        k_from_linear,
        matched_controls,
        read_truth,
        sign_agreement,
        weight_pairs,
    )
    from varscore.analysis.ism import ModelScorer, score_genes
    from varscore.errors import InputError
    from varscore.models.bundle import load_bundle

    if (linear is None) == (k is None):
        raise InputError("Give exactly one of --linear BUNDLE (k = its non-zero coefficients per gene) or --k N.")
    causal = read_truth(str(truth)) if truth is not None else None  # checked before anything is written
    run = analysis_inputs(model, vcf, fasta, gene_names, device)
    ism_scores = score_genes(
        run.scorer, run.variants, run.genome, batch_size=batch_size, progress=progress and sys.stderr.isatty()
    )
    if linear is not None:
        linear_scorer = ModelScorer.from_bundle(load_bundle(linear))
        per_id = k_from_linear(linear_scorer.backbone)
        k_by_gene: dict[str, int] | int = {g.label: per_id[g.gene_id] for g in run.genes if g.gene_id in per_id}
    else:
        k_by_gene = int(k)  # type: ignore[arg-type]
    table = high_scoring_variants(ism_scores, k_by_gene)
    write_table(table.drop(columns=["key"]), output)
    click.echo(f"wrote {output} ({len(table)} HSVs in {table['gene'].nunique()} genes)", err=True)
    controls = matched_controls(table, ism_scores, HSV_MAF_TOLERANCE)
    if controls_out is not None:
        write_table(controls.drop(columns=["key"]), controls_out)
    if linear is not None:
        pairs = weight_pairs(linear_scorer, run.genes, ism_scores, only_nonzero=True)
        agree = sign_agreement(pairs["model_weight"].to_numpy(), pairs["linear_weight"].to_numpy())
        from varscore.analysis.matched import describe_p

        cut = f"|ISM| > {agree.threshold:.3g} and |weight| > {agree.linear_threshold:.3g}, each model's median"
        if agree.n:
            click.echo(
                f"sign agreement with {linear_scorer.name} ({cut}): {agree.agree}/{agree.n} = "
                f"{agree.fraction:.1%} (Fisher's exact test, {describe_p(agree.p_value, agree.n)})"
            )
        else:
            click.echo(
                f"sign agreement with {linear_scorer.name}: no variant has both weights above the thresholds "
                f"({cut}; the linear model has no non-zero weight on the scored variants)"
            )
    if causal is not None:
        result = causal_enrichment(table, controls, causal)
        click.echo(
            f"causal variants: {result.selected_causal}/{result.selected} HSVs vs {result.controls_causal}/"
            f"{result.controls} matched controls; odds ratio {result.odds_ratio:.2f}, "
            f"one-sided Fisher p = {result.p_value:.3g}"
        )
        echo_matched_enrichment(table, ism_scores, causal, HSV_MAF_TOLERANCE)


def echo_matched_enrichment(selected: Any, pool: Any, causal: Any, tolerance: float) -> None:
    """The permutation test over matched control sets and its dependence on the MAF tolerance."""
    from varscore.analysis.matched import permutation_enrichment, tolerance_sensitivity

    perm = permutation_enrichment(selected, pool, causal, tolerance)
    click.echo(
        f"{perm.test} ({perm.n_perm} draws, {perm.controls_per_variant} control per variant; matching: "
        f"{perm.rule}): {perm.observed} causal among {perm.matched} matched variants (of {perm.selected}) vs "
        f"{perm.null_mean:.2f} expected; {perm.describe()}"
    )
    click.echo(
        "dependence on the MAF tolerance:\n"
        + tolerance_sensitivity(selected, pool, causal).to_string(index=False, float_format=lambda v: f"{v:.3g}")
    )


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
) -> None:
    """Driver variants: forward selection of SNVs whose genotype × ISM approximates the model's
    predictions in held-out people."""
    from varscore.analysis.drivers import find_drivers
    from varscore.analysis.hsv import DRIVER_MAF_TOLERANCE, causal_enrichment, matched_controls, read_truth
    from varscore.analysis.ism import held_out_people, score_genes

    run = analysis_inputs(model, vcf, fasta, gene_names, device)
    people = held_out_people(run.bundle, people_file)
    show = progress and sys.stderr.isatty()
    ism_scores = score_genes(run.scorer, run.variants, run.genome, batch_size=batch_size, progress=show)
    table, summary = find_drivers(
        run.scorer,
        run.variants,
        ism_scores,
        people,
        min_gain=min_gain,
        alpha=alpha,
        batch_size=batch_size,
        progress=show,
    )
    write_table(table.drop(columns=["key"]) if len(table) else table, output)
    if summary_out is not None:
        write_table(summary, summary_out)
    click.echo(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if len(summary) and summary["mean_ld"].isna().any():
        from varscore.analysis.drivers import LD_NAN_REASON

        click.echo(f"({LD_NAN_REASON}: {int(summary['mean_ld'].isna().sum())} of {len(summary)} genes)")
    if truth is not None and len(table):
        causal = read_truth(str(truth))
        found = sum((g, k) in causal for g, k in zip(table["gene"], table["key"], strict=True))
        result = causal_enrichment(table, matched_controls(table, ism_scores, DRIVER_MAF_TOLERANCE), causal)
        click.echo(
            f"causal variants: {found}/{len(table)} drivers; {result.controls_causal}/{result.controls} "
            f"matched controls; one-sided Fisher p = {result.p_value:.3g}"
        )
        echo_matched_enrichment(table, ism_scores, causal, DRIVER_MAF_TOLERANCE)


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
    import pandas as pd
    from tqdm.auto import tqdm

    from varscore.analysis.attribution import attribute_gene, attribution_table
    from varscore.analysis.hsv import DRIVER_MAF_TOLERANCE, HSV_MAF_TOLERANCE, matched_controls
    from varscore.analysis.ism import held_out_people
    from varscore.errors import InputError

    run = analysis_inputs(model, vcf, fasta, gene_names, device)
    people = None if reference_only else held_out_people(run.bundle, people_file)
    results = {}
    for gv in tqdm(
        list(run.variants.values()), desc="attribution", unit="gene", disable=not (progress and sys.stderr.isatty())
    ):
        rows = gv.people_rows(people) if people else None
        results[gv.gene.label] = attribute_gene(run.scorer, gv, rows, batch_size=batch_size)
    write_table(pd.concat([attribution_table(a) for a in results.values()], ignore_index=True), output)
    click.echo(f"wrote {output}", err=True)
    if variants_file is None:
        return
    chosen = pd.read_csv(variants_file, sep="\t")
    missing = {"chrom", "pos", "ref", "alt", "gene"} - set(chosen.columns)
    if missing:
        raise InputError(f"{variants_file} lacks columns {', '.join(sorted(missing))}: give an 'hsv' or 'drivers' TSV.")
    chosen["key"] = (
        chosen["chrom"].astype(str) + ":" + chosen["pos"].astype(str) + ":" + chosen["ref"] + ":" + chosen["alt"]
    )
    chosen = chosen[chosen["gene"].isin(results)]
    pool = pd.concat([gv.table for gv in run.variants.values()], ignore_index=True)
    tolerance = DRIVER_MAF_TOLERANCE if "driver_rank" in chosen.columns else HSV_MAF_TOLERANCE
    controls = matched_controls(chosen, pool, tolerance)
    which = "reference" if reference_only else "personal"
    for label, frame in (("selected", chosen), ("controls", controls.drop_duplicates(["gene", "key"]))):
        values = (
            pd.concat([pd.Series(results[g].at(rows["pos"].to_numpy(), which)) for g, rows in frame.groupby("gene")])
            if len(frame)
            else pd.Series(dtype=float)
        )
        click.echo(f"{label}: {len(frame)} variants, mean standardised attribution ({which}) {values.mean():.3f}")
