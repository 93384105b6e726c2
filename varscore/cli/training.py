"""``varscore finetune``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from varscore.cli.app import cli
from varscore.cli.options import cohort_options, echo_stderr, parse_params
from varscore.io.outputguard import writes
from varscore.models.hub import default_backbone, recipe_names


@cli.command()
@cohort_options
@click.option(
    "--backbone", default=default_backbone(), show_default=True, help="Architecture (see 'varscore plugins')."
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Bundle directory to write (training files go to OUTPUT.training/).",
)
@click.option("--recipe", type=click.Choice(recipe_names()), help="The paper's settings for a tissue.")
@click.option(
    "--pretrained",
    type=click.Path(file_okay=False, path_type=Path),
    help="Start from a pre-trained Enformer or Borzoi in this local directory.",
)
@click.option("--param", "params", multiple=True, help="Backbone hyper-parameter KEY=VALUE (JSON value).")
@click.option("--window", type=int, help="Input window in bp [recipe or backbone default].")
@click.option("--lr", type=float, help="Learning rate [5e-6].")
@click.option("--batch-size", type=int, help="People per batch (one gene per batch) [32].")
@click.option("--accumulate", type=int, help="Gradient accumulation batches [4].")
@click.option("--max-epochs", type=int, help="Maximum epochs [100].")
@click.option("--patience", type=int, help="Early-stopping patience in epochs [20].")
@click.option("--people-per-epoch", type=int, help="People per gene per epoch [512].")
@click.option(
    "--freeze-batchnorm",
    is_flag=True,
    help="Re-estimate batch-norm statistics over train people of all genes, then keep them fixed "
    "(batch norms in eval mode) while fine-tuning.",
)
@click.option(
    "--output-mode",
    type=click.Choice(["scalar", "track"]),
    default="scalar",
    show_default=True,
    help="scalar: one expression value per person; track: per-person coverage over the window's bins "
    "(needs --coverage).",
)
@click.option(
    "--coverage",
    type=click.Path(path_type=Path),
    help="Track mode: coverage.npz (varscore simulate --coverage) or a directory of PERSON.bw bigWigs.",
)
@click.option(
    "--track-loss", type=click.Choice(["poisson", "mse"]), default="poisson", show_default=True, help="Track-mode loss."
)
@click.option(
    "--freeze-trunk-epochs",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Train only the new output layer for this many epochs, then all layers (the paper's Borzoi: 5).",
)
@click.option(
    "--score-stat",
    type=click.Choice(["SUM", "logSUM", "D1", "D2"]),
    default="SUM",
    show_default=True,
    help="Track mode: the statistic 'annotate' reports for a variant (alt vs ref predicted coverage).",
)
@click.option("--devices", default=1, show_default=True, help="Devices (GPUs, or CPU processes) for DDP.")
@click.option("--accelerator", default="auto", show_default=True, help="auto, cpu, gpu.")
@click.option("--seed", default=0, show_default=True, help="Seed for folds, sampling and initialisation.")
@click.option("--resume", is_flag=True, help="Continue from OUTPUT.training/checkpoints/last.ckpt.")
@click.option(
    "--from-scratch",
    is_flag=True,
    help="Train from random weights at the backbone's full default size (without --pretrained or size --param values).",
)
@click.option(
    "--smooth-epochs",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Early stopping and the kept epoch follow tune R2 averaged over this many epochs (eligible once that many have run).",
)
@click.option(
    "--workers",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Data-loader worker processes building batches while the model trains.",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option(
    "--replicates",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Train this many replicate folds (from --replicate on) and save them as one ensemble bundle, "
    "scored by the replicates' mean (training files in OUTPUT.training/replicateN/).",
)
@click.option(
    "--init-from",
    "init_from",
    help="Start from the weights of this model bundle (name or directory) of the same architecture, e.g. to "
    "continue a model with another head pooling or on more genes.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no per-epoch lines.")
@click.option(
    "--size",
    type=click.Choice(["tiny", "small", "published"]),
    help="Named model size of the enformer/borzoi backbone (valid hyper-parameters; --param and --window override "
    "them): tiny (a CPU demo), small, published (the published architecture). See docs/finetune.md.",
)
@click.option(
    "--train-fraction",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, min_open=True),
    help="Train on this share of the train people, nested by --seed (0.25 within 0.5 within 0.75); "
    "tune and test people unchanged (learning curves, Fig. S2).",
)
@click.option(
    "--loss",
    type=click.Choice(["both", "mse", "cross"]),
    help="Loss terms: both (one half each, the paper's), mse only, cross-individual only (Fig. S12) [both].",
)
@click.option(
    "--targets",
    type=click.Choice(["normalised", "log2tpm"]),
    default="normalised",
    show_default=True,
    help="normalised: --expression's values as they are; log2tpm: --expression holds TPM (GTEx layout, "
    "a gene-ID TSV or a GCT) and the targets are log2(TPM + 2).",
)
@click.option(
    "--reference-genome",
    is_flag=True,
    help="Train on reference windows with each split's mean log2(TPM + 2) as target, MSE loss, tune loss "
    "monitored, --min-delta 0.01 (Fig. S3; needs --targets log2tpm).",
)
@click.option(
    "--monitor",
    type=click.Choice(["r2-train-genes", "pearson-tune-genes", "tune-loss"]),
    help="What early stopping and the kept epoch follow (Fig. S6) [r2-train-genes; tune-loss with --reference-genome].",
)
@click.option("--min-delta", type=click.FloatRange(min=0.0), help="Early stopping's minimum improvement [0].")
@click.option(
    "--tune-genes",
    help="Genes evaluated on tune people but not trained on, for --monitor pearson-tune-genes: a file (one "
    "gene per line, or gene sets with gene_id and set) or a number N of other genes of --genes.",
)
@click.option(
    "--freeze-backbone",
    is_flag=True,
    help="Train only the new output layer; the trunk stays as built (Fig. S15; backbones that name their head).",
)
@writes(("output", "-o", "bundle"))
def finetune(
    vcf: Path,
    expression: Path,
    genes_path: Path,
    fasta: Path,
    folds: Path | None,
    replicate: int,
    gene_names: tuple[str, ...],
    backbone: str,
    output: Path,
    recipe: str | None,
    pretrained: Path | None,
    params: tuple[str, ...],
    window: int | None,
    lr: float | None,
    batch_size: int | None,
    accumulate: int | None,
    max_epochs: int | None,
    patience: int | None,
    people_per_epoch: int | None,
    freeze_batchnorm: bool,
    output_mode: str,
    coverage: Path | None,
    track_loss: str,
    freeze_trunk_epochs: int,
    score_stat: str,
    devices: int,
    accelerator: str,
    seed: int,
    resume: bool,
    from_scratch: bool,
    smooth_epochs: int,
    workers: int,
    progress: bool,
    quiet: bool,
    replicates: int = 1,
    init_from: str | None = None,
    size: str | None = None,
    train_fraction: float = 1.0,
    loss: str | None = None,
    targets: str = "normalised",
    reference_genome: bool = False,
    monitor: str | None = None,
    min_delta: float | None = None,
    tune_genes: str | None = None,
    freeze_backbone: bool = False,
) -> None:
    """Fine-tune a sequence model on personal genomes + expression (Variformer), or fit a linear
    baseline per gene on the same folds (--backbone elastic-net, lasso, ridge)."""
    from varscore.training.finetune import FinetuneJob, OptionError, run_finetune
    from varscore.training.lightning import CohortInputs

    inputs = CohortInputs(
        vcf,
        expression,
        genes_path,
        fasta,
        folds,
        replicate,
        list(gene_names) or None,
        coverage=coverage,
        targets=targets,
    )
    job = FinetuneJob(
        inputs,
        output,
        backbone=backbone,
        backbone_params=parse_params(params),
        recipe=recipe,
        pretrained=pretrained,
        settings={
            "window": window,
            "lr": lr,
            "batch_size": batch_size,
            "accumulate": accumulate,
            "max_epochs": max_epochs,
            "patience": patience,
            "people_per_epoch": people_per_epoch,
        },
        training={
            "devices": devices,
            "accelerator": accelerator,
            "freeze_batchnorm": freeze_batchnorm,
            "track_loss": track_loss,
            "freeze_trunk_epochs": freeze_trunk_epochs,
            "smooth_epochs": smooth_epochs,
            "num_workers": workers,
            "resume": resume,
            "progress": progress and not quiet and sys.stderr.isatty(),
        },
        output_mode=output_mode,
        score_stat=score_stat,
        seed=seed,
        from_scratch=from_scratch,
        replicates=replicates,
        quiet=quiet,
        init_from=init_from,
        size=size,
        train_fraction=train_fraction,
        loss=loss,
        reference_genome=reference_genome,
        monitor=monitor,
        min_delta=min_delta,
        tune_genes=tune_genes,
        freeze_backbone=freeze_backbone,
    )
    try:
        result = run_finetune(job, echo=echo_stderr)
    except OptionError as exc:
        raise click.UsageError(str(exc)) from exc
    for line in result.lines():
        click.echo(line)
