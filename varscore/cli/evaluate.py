"""``varscore evaluate`` and ``varscore plot-coverage``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from varscore.cli.app import cli
from varscore.cli.options import cohort_options
from varscore.io.outputguard import writes


@cli.command()
@cohort_options
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
@writes(("output", "-o", "file"))
def evaluate(
    vcf: Path,
    expression: Path,
    genes_path: Path,
    fasta: Path,
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
) -> None:
    """Per-gene R2 and Pearson r across held-out people (HOP: train genes, HOGP: other genes), with
    bootstrap 95% CIs over the people (r2_lo/r2_hi, pearson_lo/pearson_hi) and Pearson's two-sided
    p-value (pearson_p). With --compare, the paired difference of each compared model from the first
    (same people, same resamples) with its CI, written to OUTPUT's .compare.tsv beside it.

    Coverage-track models (finetune --output-mode track; give --coverage) also get, per gene, the mean
    per-bin Pearson r across people (bin_pearson) and the coefficient of variation across people of
    observed and predicted coverage (cov_observed, cov_predicted, and cov_pearson between the two)."""
    import pandas as pd

    from varscore.errors import InputError
    from varscore.models.bundle import load_bundle
    from varscore.training.cohort import held_out_people
    from varscore.training.evaluate import compare_evaluations, evaluate_bundle
    from varscore.training.lightning import CohortInputs, load_cohort
    from varscore.training.uncertainty import replicate_summary, summarise

    bundles = [load_bundle(m) for m in (*models_, *compare)]
    first = bundles[0]
    carried = first.carried_folds()
    if folds is None and carried is not None:
        folds, replicate = carried
    inputs = CohortInputs(vcf, expression, genes_path, fasta, folds, replicate, list(gene_names) or None)
    evaluations = []
    cohort_by_window: dict[tuple[int, int], Any] = {}
    for bundle in bundles:
        window = bundle.window_size
        track_model = bundle.spec.output_mode.name == "track"
        if track_model and coverage is None:
            raise InputError(f"Model '{bundle.name}' predicts coverage tracks: pass --coverage to evaluate it.")
        bins = int(bundle.spec.bin_size or 1) if track_model else 0
        if (window, bins) not in cohort_by_window:
            cohort_by_window[(window, bins)] = load_cohort(
                CohortInputs(**{**inputs.__dict__, "coverage": coverage if track_model else None}),
                window,
                bin_size=bins or None,
            )
        data = cohort_by_window[(window, bins)].data
        own = bundle if replicates and bundle.name in {b.name for b in bundles[: len(models_)]} else first
        wanted = held_out_people(own, people_file, [data.people[i] for i in data.test], data.people)
        index = {p: i for i, p in enumerate(data.people)}
        evaluations.append(
            evaluate_bundle(bundle, data, [index[p] for p in wanted], batch_size, n_boot, bootstrap_seed)
        )
    table = pd.concat([e.table for e in evaluations], ignore_index=True)
    paired = [compare_evaluations(evaluations[0], e, n_boot, bootstrap_seed) for e in evaluations[len(models_) :]]
    paired_table = pd.concat(paired, ignore_index=True) if paired else pd.DataFrame()
    if output:
        from varscore.io.outputguard import atomic_file, write_provenance_sidecar

        with atomic_file(output) as tmp:
            table.to_csv(tmp, sep="\t", index=False, float_format="%.4g", na_rep="NaN")
        write_provenance_sidecar(output, first, ["varscore", *sys.argv[1:]], {"models": [b.name for b in bundles]})
        if not paired_table.empty:
            with atomic_file(output.with_suffix(".compare.tsv")) as tmp:
                paired_table.to_csv(tmp, sep="\t", index=False, float_format="%.4g", na_rep="NaN")
    shown = [
        "model",
        "gene",
        "set",
        "people",
        "r2",
        "r2_lo",
        "r2_hi",
        "pearson",
        "pearson_lo",
        "pearson_hi",
        "pearson_p",
    ]
    click.echo(table[[c for c in shown if c in table]].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    summary = summarise(table)
    click.echo(
        f"\nmean per model and gene set (over genes; r2_n/pearson_n genes used, *_nan genes NaN = constant "
        f"predictions; CIs: {n_boot} bootstrap resamples of people, seed {bootstrap_seed}):\n"
        + summary.to_string(index=False, float_format=lambda v: f"{v:.3f}")
    )
    if not paired_table.empty:
        click.echo(
            f"\npaired difference from {first.name} (model minus {first.name}; 95% bootstrap CI):\n"
            + paired_table[
                ["model", "gene", "people", "d_r2", "d_r2_lo", "d_r2_hi", "d_pearson", "d_pearson_lo", "d_pearson_hi"]
            ].to_string(index=False, float_format=lambda v: f"{v:.3f}")
        )
    if replicates:
        reps = table[table["model"].isin([b.name for b in bundles[: len(models_)]])]
        if reps["replicate"].nunique() < 2:
            raise InputError("--replicates needs -m models fitted on at least 2 different fold replicates.")
        click.echo(
            "\nover fold replicates (mean ± sd of the per-replicate means over genes):\n"
            + replicate_summary(reps).to_string(index=False, float_format=lambda v: f"{v:.3f}")
        )


@cli.command("plot-coverage")
@cohort_options
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
    fasta: Path,
    folds: Path | None,
    replicate: int,
    gene_names: tuple[str, ...],
    model: str,
    coverage: Path,
    people_file: Path | None,
    output: Path,
    batch_size: int,
) -> None:
    """Heat map of observed vs predicted coverage (held-out people x bins) for one gene (--gene), with
    the coefficient of variation across people; people ranked by observed coverage at the TSS."""
    import numpy as np

    from varscore.errors import InputError
    from varscore.models.bundle import load_bundle
    from varscore.training.cohort import held_out_people
    from varscore.training.evaluate import CoverageComparison, columnwise_pearson, compare_coverage, plot_coverage
    from varscore.training.lightning import CohortInputs, load_cohort

    bundle = load_bundle(model)
    if bundle.spec.output_mode.name != "track":
        raise InputError(f"Model '{bundle.name}' does not predict coverage tracks (finetune --output-mode track).")
    if len(gene_names) > 1:
        raise InputError(f"plot-coverage draws one gene; got --gene {len(gene_names)} times.")
    carried = bundle.carried_folds()
    if folds is None and carried is not None:
        folds, replicate = carried
    wanted_genes = list(gene_names) or [bundle.genes[0].gene_id]
    inputs = CohortInputs(vcf, expression, genes_path, fasta, folds, replicate, wanted_genes, coverage=coverage)
    data = load_cohort(inputs, bundle.window_size, bin_size=int(bundle.spec.bin_size or 1)).data
    wanted = held_out_people(bundle, people_file, [data.people[i] for i in data.test], data.people)
    index = {p: i for i, p in enumerate(data.people)}
    comparison = compare_coverage(bundle, bundle.backbone(), data, 0, np.array([index[p] for p in wanted]), batch_size)
    plot_coverage(comparison, output)
    cov_obs, cov_pred = CoverageComparison.cov(comparison.observed), CoverageComparison.cov(comparison.predicted)
    both = np.isfinite(cov_obs) & np.isfinite(cov_pred)
    cov_r = columnwise_pearson(cov_obs[both, None], cov_pred[both, None])[0] if both.sum() > 2 else float("nan")
    click.echo(
        f"wrote {output}: {comparison.gene}, {len(wanted)} people x {comparison.observed.shape[1]} bins; "
        f"mean per-bin Pearson r {np.nanmean(comparison.bin_pearson):.3f}, CoV profile Pearson r {cov_r:.3f}"
    )


# --- linear baselines ---


# --- variant analyses ---
