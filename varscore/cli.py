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
@click.option("--check-ref", type=click.Choice(["skip", "flag", "fail"]), default="flag", show_default=True,
              help="REF differing from the FASTA: flag (not scored, INFO VARSCORE_SKIP=ref_mismatch), "
                   "fail (stop), skip (do not compare).")
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
    check_ref: str,
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
        check_ref=check_ref,
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

RECIPES: dict[str, dict[str, Any]] = {
    # the paper's whole-blood Variformer (Drusinsky, Whalen & Pollard): DESIGN.md section 4
    "variformer-blood": {
        "window": 49_152, "lr": 5e-6, "batch_size": 32, "accumulate": 4, "grad_clip": 0.05,
        "patience": 20, "people_per_epoch": 512, "tissue": "Whole Blood", "max_epochs": 150,
    },
}


def _parse_params(items: tuple[str, ...]) -> dict[str, Any]:
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


def _cohort_options(func: Any) -> Any:
    options = [
        click.option("--vcf", required=True, type=click.Path(dir_okay=False, path_type=Path),
                     help="Cohort genotypes (VCF/BCF, indexed for speed)."),
        click.option("--expression", required=True, type=click.Path(dir_okay=False, path_type=Path),
                     help="GTEx-layout expression: #chr start end gene_id, then one column per person."),
        click.option("--genes", "genes_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
                     help="Gene/TSS table (TSV, GTF or GFF3)."),
        click.option("--fasta", required=True, type=click.Path(dir_okay=False, path_type=Path),
                     help="Reference FASTA."),
        click.option("--folds", type=click.Path(dir_okay=False, path_type=Path),
                     help="Fold file (person, replicate, split); default: made with --seed and saved."),
        click.option("--replicate", default=0, show_default=True, help="Which replicate fold to use."),
        click.option("--gene", "gene_names", multiple=True, help="Only this gene (repeatable)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@cli.command()
@_cohort_options
@click.option("--backbone", default="enformer", show_default=True, help="Architecture (see 'varscore plugins').")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Bundle directory to write (training files go to OUTPUT.training/).")
@click.option("--recipe", type=click.Choice(sorted(RECIPES)), help="The paper's settings for a tissue.")
@click.option("--pretrained", type=click.Path(file_okay=False, path_type=Path),
              help="Start from a pre-trained Enformer in this local directory.")
@click.option("--param", "params", multiple=True, help="Backbone hyper-parameter KEY=VALUE (JSON value).")
@click.option("--window", type=int, help="Input window in bp [recipe or backbone default].")
@click.option("--lr", type=float, help="Learning rate [5e-6].")
@click.option("--batch-size", type=int, help="People per batch (one gene per batch) [32].")
@click.option("--accumulate", type=int, help="Gradient accumulation batches [4].")
@click.option("--max-epochs", type=int, help="Maximum epochs [100].")
@click.option("--patience", type=int, help="Early-stopping patience in epochs [20].")
@click.option("--people-per-epoch", type=int, help="People per gene per epoch [512].")
@click.option("--freeze-batchnorm", is_flag=True,
              help="Re-estimate batch-norm statistics over train people of all genes, then keep them fixed "
                   "(batch norms in eval mode) while fine-tuning.")
@click.option("--devices", default=1, show_default=True, help="Devices (GPUs, or CPU processes) for DDP.")
@click.option("--accelerator", default="auto", show_default=True, help="auto, cpu, gpu.")
@click.option("--seed", default=0, show_default=True, help="Seed for folds, sampling and initialisation.")
@click.option("--resume", is_flag=True, help="Continue from OUTPUT.training/checkpoints/last.ckpt.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def finetune(
    vcf: Path, expression: Path, genes_path: Path, fasta: Path, folds: Path | None, replicate: int,
    gene_names: tuple[str, ...], backbone: str, output: Path, recipe: str | None, pretrained: Path | None,
    params: tuple[str, ...], window: int | None, lr: float | None, batch_size: int | None,
    accumulate: int | None, max_epochs: int | None, patience: int | None, people_per_epoch: int | None,
    freeze_batchnorm: bool, devices: int, accelerator: str, seed: int, resume: bool, progress: bool,
) -> None:
    """Fine-tune a sequence model on personal genomes + expression (Variformer), or fit a linear
    baseline per gene on the same folds (--backbone elastic-net, lasso, ridge)."""
    from varscore.bundle import save_bundle, sha256
    from varscore.cohort import write_folds
    from varscore.plugins import get_backbone, get_output_mode
    from varscore.training import CohortInputs, TrainingConfig, load_cohort

    settings = dict(RECIPES.get(recipe or "", {}))
    if recipe and pretrained is None:
        raise click.UsageError(
            f"--recipe {recipe} fine-tunes pre-trained Enformer: pass --pretrained DIR (a local Enformer in "
            "safetensors form). The paper trained it on GTEx v8 WGS + Whole Blood expression (dbGaP phs000424)."
        )
    chosen = {"window": window, "lr": lr, "batch_size": batch_size, "accumulate": accumulate,
              "max_epochs": max_epochs, "patience": patience, "people_per_epoch": people_per_epoch}
    settings.update({k: v for k, v in chosen.items() if v is not None})
    backbone_params = _parse_params(params)
    if pretrained is not None:
        backbone_params.update(pretrained_dir=str(pretrained))
    if "window" in settings:
        backbone_params["window_size"] = settings["window"]
    model = get_backbone(backbone)(**backbone_params)
    if model.input_kind == "genotypes":  # linear baselines: same folds and genes, no training loop
        inputs = CohortInputs(vcf, expression, genes_path, fasta, folds, replicate, list(gene_names) or None)
        _finetune_genotype_model(model, inputs, output, seed)
        return
    training_dir = output.parent / f"{output.name}.training"
    config_fields = {k: settings[k] for k in ("lr", "batch_size", "accumulate", "grad_clip", "max_epochs",
                                              "patience", "people_per_epoch") if k in settings}
    config = TrainingConfig(**config_fields, seed=seed, devices=devices, accelerator=accelerator,
                            freeze_batchnorm=freeze_batchnorm,
                            output_dir=str(training_dir), resume=resume, progress=progress and sys.stderr.isatty())
    inputs = CohortInputs(vcf, expression, genes_path, fasta, folds, replicate, list(gene_names) or None)
    cohort = load_cohort(inputs, model.window_size, fold_seed=seed)
    for line in cohort.report:
        click.echo(line, err=True)
    training_dir.mkdir(parents=True, exist_ok=True)
    folds_path = folds or write_folds(cohort.folds, training_dir / "folds.tsv")
    model.build()
    result = model.finetune(cohort.data, config)
    if not result.is_global_zero:
        return
    data = cohort.data
    people = {split: [data.people[i] for i in getattr(data, split)] for split in ("train", "tune", "test")}
    save_bundle(
        output, name=output.name, backbone=model, output_mode=get_output_mode("scalar")(),
        genes=[g.gene for g in data.genes], reference_fasta=fasta, tissue=settings.get("tissue"),
        metrics={"best_epoch": result.best_epoch, "best_tune_mean_r2": result.best_tune_r2,
                 "history": result.history},
        provenance={"vcf_sha256": sha256(vcf), "expression_sha256": sha256(expression),
                    "training": result.config, "recipe": recipe},
        extra={"train_genes": [g.gene.gene_id for g in data.genes], "people": people,
               "folds": {"file": "folds.tsv", "replicate": replicate}},
        files={"folds.tsv": folds_path},  # the bundle carries its folds, so others reuse them
    )
    click.echo(f"wrote {output} (best epoch {result.best_epoch}, tune mean R2 {result.best_tune_r2:.3f})")


@cli.command()
@_cohort_options
@click.option("-m", "--model", "models_", required=True, multiple=True,
              help="Model bundle (repeat, or use --compare, to put models side by side).")
@click.option("--compare", multiple=True, help="Other bundles evaluated on the same people.")
@click.option("--people", "people_file", type=click.Path(dir_okay=False, path_type=Path),
              help="File with one held-out person per line (default: the first model's test people).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the per-gene TSV here.")
@click.option("--batch-size", default=8, show_default=True)
def evaluate(
    vcf: Path, expression: Path, genes_path: Path, fasta: Path, folds: Path | None, replicate: int,
    gene_names: tuple[str, ...], models_: tuple[str, ...], compare: tuple[str, ...], people_file: Path | None,
    output: Path | None, batch_size: int,
) -> None:
    """Per-gene R2 and Pearson r across held-out people (HOP: train genes, HOGP: other genes)."""
    import pandas as pd

    from varscore.bundle import load_bundle
    from varscore.errors import InputError
    from varscore.evaluate import evaluate_bundle
    from varscore.training import CohortInputs, load_cohort

    bundles = [load_bundle(m) for m in (*models_, *compare)]
    first = bundles[0]
    fold_info = first.manifest.get("folds") or {}
    if folds is None and fold_info.get("file") and (first.path / fold_info["file"]).exists():
        folds, replicate = first.path / fold_info["file"], int(fold_info.get("replicate", replicate))
    inputs = CohortInputs(vcf, expression, genes_path, fasta, folds, replicate, list(gene_names) or None)
    tables = []
    cohort_by_window: dict[int, Any] = {}
    for bundle in bundles:
        window = int(bundle.manifest["window_size"])
        if window not in cohort_by_window:
            cohort_by_window[window] = load_cohort(inputs, window)
        data = cohort_by_window[window].data
        if people_file:
            wanted = [line.strip() for line in people_file.read_text().splitlines() if line.strip()]
        else:
            wanted = (first.manifest.get("people") or {}).get("test") or [data.people[i] for i in data.test]
        index = {p: i for i, p in enumerate(data.people)}
        unknown = [p for p in wanted if p not in index]
        if unknown:
            raise InputError(f"{len(unknown)} held-out people are not in the cohort: {', '.join(unknown[:5])}.")
        tables.append(evaluate_bundle(bundle, data, [index[p] for p in wanted], batch_size).table)
    table = pd.concat(tables, ignore_index=True)
    if output:
        table.to_csv(output, sep="\t", index=False, float_format="%.4f")
    click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    summary = table.groupby(["model", "set"])[["r2", "pearson"]].mean()
    click.echo("\nmean per model and gene set:\n" + summary.to_string(float_format=lambda v: f"{v:.3f}"))


# --- linear baselines (issue 5) ---


def _finetune_genotype_model(model: Any, inputs: Any, output: Path, seed: int) -> None:
    """Fit a genotype (linear) backbone per gene on the train people; write a bundle like the deep
    models' (same folds file, ``train_genes`` and ``people``)."""
    import math

    from varscore.bundle import save_bundle, sha256
    from varscore.cohort import write_folds
    from varscore.plugins import get_output_mode
    from varscore.training import load_cohort

    cohort = load_cohort(inputs, model.window_size, fold_seed=seed)
    for line in cohort.report:
        click.echo(line, err=True)
    training_dir = output.parent / f"{output.name}.training"
    training_dir.mkdir(parents=True, exist_ok=True)
    folds_path = inputs.folds or write_folds(cohort.folds, training_dir / "folds.tsv")
    model.build()
    result = model.finetune(cohort.data)
    if result.imputed_calls:
        click.echo(f"{result.imputed_calls:,} missing genotype calls set to the train people's mean dosage",
                   err=True)
    data = cohort.data
    people = {split: [data.people[i] for i in getattr(data, split)] for split in ("train", "tune", "test")}
    per_gene = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                for row in result.rows]
    mean_r2 = None if math.isnan(result.mean_tune_r2) else result.mean_tune_r2
    save_bundle(
        output, name=output.name, backbone=model, output_mode=get_output_mode("scalar")(),
        genes=[g.gene for g in data.genes], reference_fasta=inputs.fasta,
        metrics={"tune_mean_r2": mean_r2, "per_gene": per_gene, "imputed_calls": result.imputed_calls},
        provenance={"vcf_sha256": sha256(inputs.vcf), "expression_sha256": sha256(inputs.expression), "seed": seed},
        extra={"train_genes": [g.gene.gene_id for g in data.genes], "people": people,
               "folds": {"file": "folds.tsv", "replicate": inputs.replicate}},
        files={"folds.tsv": folds_path},
    )
    shown = "n/a" if mean_r2 is None else f"{mean_r2:.3f}"
    click.echo(f"wrote {output} ({len(data.genes)} genes, tune mean R2 {shown})")


@models.command("export")
@click.argument("name")
@click.option("--format", "format_", type=click.Choice(["predictdb"]), default="predictdb", show_default=True,
              help="predictdb: PrediXcan/PredictDB sqlite (tables weights and extra).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="File to write.")
@click.option("--genome-build", help="Build tag of the variant IDs (GRCh38 -> _b38) [the bundle's, else GRCh38].")
def models_export(name: str, format_: str, output: Path, genome_build: str | None) -> None:
    """Export a linear model bundle (elastic-net, lasso, ridge) for other tools."""
    from varscore.bundle import load_bundle
    from varscore_plugins.linear import export_predictdb

    result = export_predictdb(load_bundle(name), output, genome_build)
    click.echo(f"wrote {result.path} ({result.genes} genes, {result.weights} weights, IDs chr*_*_*_*_{result.build})")


@models.command("import-predictdb")
@click.argument("db", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Bundle directory to write.")
@click.option("--vcf", type=click.Path(dir_okay=False, path_type=Path),
              help="Report how many model SNPs this VCF holds.")
@click.option("--genes", "genes_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Gene/TSS table (TSV, GTF or GFF3) giving the model genes' TSSs.")
@click.option("--backbone", default="elastic-net", show_default=True,
              type=click.Choice(["elastic-net", "lasso", "ridge"]),
              help="Backbone to record when the database does not say.")
def models_import_predictdb(db: Path, output: Path, vcf: Path | None, genes_path: Path | None, backbone: str) -> None:
    """Make a linear model bundle from a PredictDB (PrediXcan) sqlite database."""
    from varscore.bundle import save_bundle, sha256
    from varscore.genome import load_genes
    from varscore.plugins import get_output_mode
    from varscore_plugins.linear import read_predictdb

    imported = read_predictdb(db, vcf=vcf, backbone=backbone)
    for line in imported.report:
        click.echo(line, err=True)
    model_genes = set(imported.backbone.genes)
    genes = [g for g in load_genes(genes_path) if g.gene_id in model_genes] if genes_path else []
    build = {"b38": "GRCh38", "b37": "GRCh37"}.get(imported.build or "")
    save_bundle(output, name=output.name, backbone=imported.backbone, output_mode=get_output_mode("scalar")(),
                genes=genes, genome_build=build, provenance={"predictdb": str(db), "predictdb_sha256": sha256(db)},
                extra={"train_genes": sorted(model_genes)})
    click.echo(f"wrote {output} ({len(model_genes)} genes)")


def main() -> None:
    from varscore.plugins import manager

    try:
        manager.add_commands(cli)
    except VarscoreError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    cli(prog_name="varscore")
