"""The fine-tuning workflow behind ``varscore finetune``, usable from Python:
recipe -> settings -> model -> cohort -> fit -> bundle.

    from varscore.training.finetune import FinetuneJob, run_finetune
    from varscore.training.cohort import CohortInputs

    inputs = CohortInputs(vcf, expression, genes, fasta)
    run_finetune(FinetuneJob(inputs, output=Path("my-model"), backbone="elastic-net"))

Sequence backbones are fine-tuned as Variformers (:mod:`varscore.training.lightning`); genotype backbones
fit each gene on the same folds and write the same kind of bundle (folds file, ``train_genes``,
``people``), so evaluations and analyses treat both alike.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from varscore.errors import InputError
from varscore.models.bundle import BundleMetadata
from varscore.models.hub import FinetuneDefaults, Recipe, default_backbone, finetune_defaults, recipe_names
from varscore.plugin.contracts import Backbone, GenotypeBackbone, SequenceBackbone

if TYPE_CHECKING:
    from varscore.training.cohort import CohortInputs
    from varscore.training.lightning import TrainingConfig

__all__ = [
    "FinetuneDefaults",
    "FinetuneJob",
    "FinetuneResult",
    "OptionError",
    "Recipe",
    "check_from_scratch",
    "default_backbone",
    "finetune_defaults",
    "recipe_names",
    "run_finetune",
]

_TRAINING_SETTINGS = ("lr", "batch_size", "accumulate", "grad_clip", "max_epochs", "patience", "people_per_epoch")

# size hyper-parameters' complement: params that leave a from-scratch model at its full default size
_NOT_SIZE_PARAMS = {
    "window_size",
    "seed",
    "head",
    "output_head",
    "norm_stats",
    "pretrained_dir",
    "dropout_rate",
    "attn_dropout",
    "pos_dropout",
    "use_checkpointing",
    "use_tf_gamma",
    "n_tracks",
}


class OptionError(InputError):
    """The job's options do not fit together (the CLI reports it as a usage error)."""


@dataclass
class FinetuneJob:
    """One fine-tuning run. ``settings`` override the recipe's (window, lr, batch_size, accumulate,
    max_epochs, patience, people_per_epoch); ``training`` holds further
    :class:`~varscore.training.lightning.TrainingConfig` fields (devices, freeze_batchnorm, smooth_epochs, ...)."""

    inputs: CohortInputs
    output: Path
    backbone: str = field(default_factory=default_backbone)  # the catalogue's default
    backbone_params: dict[str, Any] = field(default_factory=dict)
    recipe: str | None = None
    pretrained: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    output_mode: str = "scalar"
    score_stat: str = "SUM"
    seed: int = 0
    from_scratch: bool = False
    replicates: int = 1
    quiet: bool = False
    init_from: str | Path | None = None  # a bundle whose weights the model starts from
    size: str | None = None  # a named size of the backbone (its size_presets), under backbone_params
    # -- the paper's experiments (docs/finetune.md, "Experiments of the paper") --
    train_fraction: float = 1.0  # nested share of the train people (learning curves, Fig. S2)
    loss: str | None = None  # "both", "mse", "cross" (Fig. S12); None: both (mse for reference_genome)
    reference_genome: bool = False  # reference windows, mean log2(TPM + 2) targets (Fig. S3)
    monitor: str | None = None  # MONITORS (Fig. S6); None: r2-train-genes (tune-loss for reference_genome)
    min_delta: float | None = None  # early stopping's minimum improvement; None: 0 (0.01 for reference_genome)
    tune_genes: str | None = None  # monitored tune genes: a file (one gene per line, or gene sets) or a count
    freeze_backbone: bool = False  # train only the head (Fig. S15)


def _split_people(data: Any) -> dict[str, list[str]]:
    return {split: [data.people[i] for i in getattr(data, split)] for split in ("train", "tune", "test")}


def resolved_settings(job: FinetuneJob) -> dict[str, Any]:
    """The recipe's settings with the job's own on top."""
    recipes = finetune_defaults().recipes
    if job.recipe is not None and job.recipe not in recipes:
        raise InputError(f"Unknown recipe '{job.recipe}'. Choose one of: {', '.join(recipe_names())}.")
    settings = dict(recipes[job.recipe].settings) if job.recipe is not None else {}
    settings.update({k: v for k, v in job.settings.items() if v is not None})
    return settings


def build_model(job: FinetuneJob) -> tuple[Backbone, dict[str, Any]]:
    """The (unbuilt) backbone the job asks for, and its parameters."""
    from varscore.plugin.manager import check_output_mode, get_backbone

    settings = resolved_settings(job)
    backbone_class = get_backbone(job.backbone)
    explicit = dict(job.backbone_params)
    if job.pretrained is not None:
        explicit.update(pretrained_dir=str(job.pretrained))
    if "window" in settings:
        explicit["window_size"] = settings["window"]
    params = {**size_preset(backbone_class, job.size), **explicit}
    model = backbone_class(**params)
    # the published size is the full architecture: a random start of it must still be asked for
    check_from_scratch(model, explicit if job.size == "published" else params, job.from_scratch)
    check_output_mode(model, job.output_mode)
    return model, params


def size_preset(backbone_class: type[Backbone], size: str | None) -> dict[str, Any]:
    """The hyper-parameters of ``finetune --size`` (none without a size)."""
    if size is None:
        return {}
    presets = backbone_class.size_presets
    if not presets:
        raise OptionError(f"--size: backbone '{backbone_class.name}' has no named sizes; give its --param values.")
    if size not in presets:
        raise OptionError(
            f"--size {size!r}: backbone '{backbone_class.name}' offers {', '.join(presets)}; got {size!r}."
        )
    return dict(presets[size])


def check_from_scratch(model: Backbone, params: dict[str, Any], from_scratch: bool) -> None:
    """A sequence backbone that can start pre-trained, asked for neither a pre-trained start nor any
    size parameter, would silently train its full architecture from random weights: refuse that
    unless ``from_scratch``."""
    if from_scratch or not model.fine_tunes_from_pretrained:
        return
    if params.get("pretrained_dir") is not None or set(params) - _NOT_SIZE_PARAMS:
        return
    n = finetune_defaults().full_size_weights.get(model.name, "all its default")
    raise OptionError(
        f"--backbone {model.name} without --pretrained would train the full-size architecture ({n} weights) from "
        "random weights, which needs a GPU cluster and far more people than a cohort usually has. Pass --pretrained "
        "DIR (and --recipe) to fine-tune a pre-trained model, give size --param values (e.g. dim, depth) for a "
        "smaller model, or add --from-scratch if the full-size random start is what you want."
    )


logger = logging.getLogger(__name__)


@dataclass
class FinetuneResult:
    """What a fine-tuning run wrote: ``bundle`` (None on a distributed worker, which saves nothing),
    the genes it was trained on, and the tune-set mean R² (None where every gene's is undefined);
    ``best_epoch`` for a trained sequence model (None for genotype models and replicate ensembles,
    which report per replicate as they go)."""

    bundle: Path | None
    genes: int = 0
    tune_mean_r2: float | None = None
    best_epoch: int | None = None
    replicates: int = 1

    def lines(self) -> list[str]:
        """The closing line ``varscore finetune`` prints (none for a worker or a replicate ensemble)."""
        if self.bundle is None or self.replicates > 1:
            return []
        shown = "n/a" if self.tune_mean_r2 is None else f"{self.tune_mean_r2:.3f}"
        if self.best_epoch is not None:
            return [f"wrote {self.bundle} (best epoch {self.best_epoch}, tune mean R2 {shown})"]
        return [f"wrote {self.bundle} ({self.genes} genes, tune mean R2 {shown})"]


def run_finetune(job: FinetuneJob, echo: Callable[[str], None] = logger.info) -> FinetuneResult:
    """Run ``job`` and return what it wrote; ``echo`` receives the data summary and the per-epoch
    lines as they come (the closing line is :meth:`FinetuneResult.lines`)."""
    if job.output_mode == "track" and job.inputs.coverage is None:
        raise OptionError("--output-mode track trains on coverage: pass --coverage (coverage.npz or a bigWig folder).")
    if job.recipe and job.pretrained is None:
        recipe = finetune_defaults().recipes.get(job.recipe)
        if recipe is None:
            raise InputError(f"Unknown recipe '{job.recipe}'. Choose one of: {', '.join(recipe_names())}.")
        raise OptionError(
            f"--recipe {job.recipe} fine-tunes {recipe.pretrained}: pass --pretrained DIR ({recipe.pretrained_form}). "
            f"{recipe.trained_on}"
        )
    model, params = build_model(job)
    if isinstance(model, GenotypeBackbone):  # same folds and genes, one fit per gene, no training loop
        return _fit_genotype_model(model, job, echo)
    if not isinstance(model, SequenceBackbone):
        raise InputError(f"Backbone '{model.name}' is neither a sequence nor a genotype model; it cannot be trained.")
    return _finetune_sequence_model(model, params, job, echo)


def _training_config(job: FinetuneJob, settings: dict[str, Any], training_dir: Path) -> TrainingConfig:
    from varscore.training.lightning import TrainingConfig

    fields = {k: settings[k] for k in _TRAINING_SETTINGS if k in settings}
    return TrainingConfig(
        **fields,
        seed=job.seed,
        output_mode=job.output_mode,
        output_dir=str(training_dir),
        **{**job.training, **experiment_settings(job)},
    )


def experiment_settings(job: FinetuneJob) -> dict[str, Any]:
    """The :class:`~varscore.training.lightning.TrainingConfig` fields the job's experiment options
    set (loss weights, monitor, minimum improvement, frozen backbone), after checking that they fit
    together: reference-genome training has no cross-individual term and no personal R² to follow."""
    from varscore.training.lightning import LOSS_WEIGHTS, MONITORS

    if job.loss is not None and job.loss not in LOSS_WEIGHTS:
        raise OptionError(f"Unknown --loss '{job.loss}'. Choose one of: {', '.join(LOSS_WEIGHTS)}.")
    if job.monitor is not None and job.monitor not in MONITORS:
        raise OptionError(f"Unknown --monitor '{job.monitor}'. Choose one of: {', '.join(MONITORS)}.")
    if job.reference_genome:
        if job.loss not in (None, "mse"):
            raise OptionError(
                "--reference-genome trains every person on the same reference window and the same mean target, "
                "so there are no differences between people for the cross-individual loss: use --loss mse."
            )
        if job.monitor not in (None, "tune-loss"):
            raise OptionError(
                "--reference-genome predicts one value per gene, so tune R2 or Pearson r across people is undefined: "
                "use --monitor tune-loss."
            )
    if job.output_mode == "track" and (job.loss not in (None, "both") or job.monitor not in (None, "tune-loss")):
        raise OptionError(
            "--output-mode track trains with --track-loss and follows the tune loss; drop --loss/--monitor."
        )
    if job.tune_genes is not None and job.replicates > 1:
        raise OptionError("--tune-genes monitors one run; train the replicates one by one (--replicate N).")
    if job.monitor == "pearson-tune-genes" and job.tune_genes is None:
        raise OptionError("--monitor pearson-tune-genes needs --tune-genes FILE or N.")
    default_loss, default_monitor = ("mse", "tune-loss") if job.reference_genome else ("both", "r2-train-genes")
    default_delta = 0.01 if job.reference_genome else 0.0
    out: dict[str, Any] = {
        "mse_weight": LOSS_WEIGHTS[job.loss or default_loss],
        "monitor": job.monitor or default_monitor,
        "min_delta": default_delta if job.min_delta is None else job.min_delta,
    }
    if job.freeze_backbone:
        out["freeze_backbone"] = True
    return out


def prepare_cohort(cohort: Any, job: FinetuneJob) -> Any:
    """Apply the job's cohort experiments to a loaded cohort, in place: keep a nested
    ``train_fraction`` of the train people (tune and test people unchanged) and, with
    ``reference_genome``, replace every window by the reference and every target by its split's
    mean. Returns the cohort, with a line on what was done added to its report."""
    import numpy as np

    from varscore.training.cohort import nested_train_subset, reference_only

    data = cohort.data
    if job.train_fraction != 1.0:
        people = [data.people[i] for i in data.train]
        kept = set(nested_train_subset(people, job.train_fraction, job.seed))
        data.train = np.array([i for i in data.train if data.people[i] in kept], dtype=np.int64)
        cohort.report.append(
            f"train fraction {job.train_fraction:g}: {len(data.train)} of {len(people)} train people "
            f"(nested by seed {job.seed}); tune and test people unchanged"
        )
    if job.reference_genome:
        if job.inputs.targets != "log2tpm":
            raise OptionError(
                "--reference-genome trains on the mean log2(TPM + 2) of the train people: pass --targets log2tpm "
                "with TPM values in --expression."
            )
        cohort.data = reference_only(data)
        cohort.report.append(
            "reference-genome training: reference windows only; targets: each split's mean log2(TPM + 2)"
        )
    return cohort


def _provenance(job: FinetuneJob) -> dict[str, Any]:
    from varscore.models.bundle import sha256

    return {
        "vcf_sha256": sha256(job.inputs.vcf),
        "expression_sha256": sha256(job.inputs.expression),
        "recipe": job.recipe,
    }


def _finetune_sequence_model(
    model: SequenceBackbone,
    params: dict[str, Any],
    job: FinetuneJob,
    echo: Callable[[str], None],
) -> FinetuneResult:
    from varscore.models.bundle import BundleMetadata, save_bundle, sha256
    from varscore.plugin.manager import get_backbone, get_output_mode
    from varscore.training.cohort import write_folds
    from varscore.training.lightning import load_cohort

    settings = resolved_settings(job)
    output, inputs = job.output, job.inputs
    start = _init_bundle(model, job.init_from) if job.init_from is not None else None  # before the data
    training_dir = output.parent / f"{output.name}.training"
    config = _training_config(job, settings, training_dir)
    if job.replicates > 1:
        from dataclasses import replace

        from varscore.training.replicates import ReplicateRun, finetune_replicates

        run = ReplicateRun(
            new_backbone=lambda: get_backbone(job.backbone)(**params),
            first=model,
            config=config,
            replicates=range(inputs.replicate, inputs.replicate + job.replicates),
            load=lambda r, f: prepare_cohort(
                load_cohort(
                    replace(inputs, folds=f, replicate=r),
                    model.window_size,
                    fold_seed=job.seed,
                    bin_size=model.bin_size,
                ),
                job,
            ),
            folds=inputs.folds,
            training_dir=training_dir,
            output=output,
            save=dict(
                output_mode=job.output_mode,
                score_stat=job.score_stat,
                fasta=inputs.fasta,
                tissue=settings.get("tissue"),
                provenance=_provenance(job),
            ),
        )
        finetune_replicates(run, echo=echo)
        return FinetuneResult(output, replicates=job.replicates)
    cohort = prepare_cohort(load_cohort(inputs, model.window_size, fold_seed=job.seed, bin_size=model.bin_size), job)
    for line in cohort.report:
        echo(line)
    training_dir.mkdir(parents=True, exist_ok=True)
    folds_path = inputs.folds or write_folds(cohort.folds, training_dir / "folds.tsv")
    if job.tune_genes is not None:
        _add_monitor_genes(cohort, job, folds_path, model, echo)
    model.build()
    if start is not None:
        _warm_start(model, start, echo)
    with epoch_lines(echo, enabled=not job.quiet):
        from varscore.training.trainer import finetune_sequence_backbone

        result = finetune_sequence_backbone(model, cohort.data, config)
    if not result.is_global_zero:
        return FinetuneResult(None)
    data = cohort.data
    mode = get_output_mode("track")(stat=job.score_stat) if job.output_mode == "track" else get_output_mode("scalar")()
    coverage = inputs.coverage
    save_bundle(
        output,
        name=output.name,
        backbone=model,
        output_mode=mode,
        genes=[g.gene for g in data.genes],
        files={"folds.tsv": folds_path},  # the bundle carries its folds, so others reuse them
        about=BundleMetadata(
            reference_fasta=inputs.fasta,
            tissue=settings.get("tissue"),
            metrics={
                "best_epoch": result.best_epoch,
                "best_tune_mean_r2": result.best_tune_r2,
                "history": result.history,
            },
            provenance={
                **_provenance(job),
                "experiment": _experiment(job),
                "coverage_sha256": sha256(coverage) if coverage is not None and coverage.is_file() else None,
                "training": result.config,
            },
            extra={
                "train_genes": [g.gene.gene_id for g in data.genes],
                "people": _split_people(data),
                "folds": {"file": "folds.tsv", "replicate": inputs.replicate},
            },
        ),
    )
    return FinetuneResult(output, genes=len(data.genes), tune_mean_r2=result.best_tune_r2, best_epoch=result.best_epoch)


def _experiment(job: FinetuneJob) -> dict[str, Any]:
    """The experiment options a bundle records (how its training departed from the default)."""
    return {
        "train_fraction": job.train_fraction,
        "targets": job.inputs.targets,
        "reference_genome": job.reference_genome,
        "loss": job.loss,
        "monitor": job.monitor,
        "min_delta": job.min_delta,
        "tune_genes": job.tune_genes,
        "freeze_backbone": job.freeze_backbone,
    }


def monitor_gene_names(job: FinetuneJob, train_ids: list[str]) -> list[str]:
    """The genes ``--tune-genes`` names: a file with one gene ID or name per line (or a gene-sets
    TSV with ``gene_id`` and ``set``, whose ``tune`` rows are taken), or a count N: N genes of the
    gene table that have expression and are not trained on, drawn with the job's seed."""
    import numpy as np

    from varscore.genome.fasta import load_genes
    from varscore.training.cohort import read_gene_sets, read_targets

    spec = str(job.tune_genes)
    if spec.isdigit():
        wanted = int(spec)
        values = read_targets(job.inputs.expression, job.inputs.targets).values
        expressed = {str(g) for g in values.index} | {str(g).split(".", 1)[0] for g in values.index}
        train = set(train_ids)
        candidates = [
            g.gene_id
            for g in load_genes(job.inputs.genes)
            if g.gene_id not in train and (g.gene_id in expressed or g.gene_id.split(".", 1)[0] in expressed)
        ]
        if wanted < 1:
            raise OptionError(f"--tune-genes {spec}: name at least 1 gene (a number N >= 1, or a file).")
        if wanted > len(candidates):
            raise OptionError(
                f"--tune-genes {wanted}: the gene table has {len(candidates)} genes with expression that are not "
                "trained on (train on fewer with --genes-only, or pass a file)."
            )
        order = np.random.default_rng([job.seed, 6]).permutation(len(candidates))
        return [candidates[i] for i in sorted(order[:wanted])]
    path = Path(spec)
    if not path.is_file():
        raise InputError(f"--tune-genes: {spec} is neither a file nor a number of genes.")
    try:
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read --tune-genes {path} (one gene per line, or gene sets): {exc}.") from exc
    if lines and lines[0].split("\t")[:2] == ["gene_id", "set"]:
        sets = read_gene_sets(path)
        names = sets.loc[sets["set"] == "tune", "gene_id"].tolist()
    else:
        names = lines
    if not names:
        raise InputError(f"--tune-genes {path} names no gene.")
    overlap = sorted(set(names) & set(train_ids))
    if overlap:
        raise OptionError(f"--tune-genes {path} names genes that are trained on: {', '.join(overlap[:5])}.")
    return names


def _add_monitor_genes(
    cohort: Any, job: FinetuneJob, folds: Path, model: SequenceBackbone, echo: Callable[[str], None]
) -> None:
    """Load the ``--tune-genes`` genes for the same people and folds and attach them to the cohort
    as monitored genes (evaluated on the tune people, never trained on)."""
    from dataclasses import replace

    from varscore.training.cohort import reference_only
    from varscore.training.lightning import load_cohort

    data = cohort.data
    names = monitor_gene_names(job, [g.gene.gene_id for g in data.genes])
    inputs = replace(job.inputs, folds=folds, gene_names=names)
    monitored = load_cohort(inputs, model.window_size, fold_seed=job.seed, bin_size=model.bin_size).data
    if monitored.people != data.people:
        raise InputError("--tune-genes: the monitored genes' people differ from the train genes' people.")
    if job.reference_genome:
        monitored.train, monitored.tune, monitored.test = data.train, data.tune, data.test
        monitored = reference_only(monitored)
    data.monitor_genes = monitored.genes
    echo(
        f"{len(monitored.genes)} tune genes monitored (not trained on): {', '.join(g.gene.label for g in monitored.genes[:5])}"
    )


def _init_bundle(model: SequenceBackbone, source: str | Path) -> Any:
    """The ``--init-from`` bundle, verified like any bundle and checked to be of ``model``'s
    architecture (before any data is loaded)."""
    from varscore.models.bundle import load_bundle

    bundle = load_bundle(source)
    if bundle.spec.backbone.name != model.name:
        raise OptionError(
            f"--init-from {bundle.name} is a '{bundle.spec.backbone.name}' model; this run trains '{model.name}'."
        )
    if not model.warm_starts:
        raise OptionError(f"--init-from needs a PyTorch backbone; '{model.name}' is not one.")
    return bundle


def _warm_start(model: SequenceBackbone, bundle: Any, echo: Callable[[str], None]) -> None:
    """Replace ``model``'s fresh weights by those of ``bundle`` (see :func:`_init_bundle`). Every
    tensor of the bundle must fit the architecture, name for name and shape for shape; tensors
    the architecture adds (e.g. the ``pooled`` read of ``pool="center+sum"``) keep their initial
    values, and ``echo`` names them."""
    from varscore.models.bundle import WEIGHTS
    from varscore.plugin.torch_backbone import TorchSequenceBackbone, read_weights, tensors_missing_from

    model = cast("TorchSequenceBackbone", model)  # warm_starts, checked by _init_bundle
    state = read_weights(bundle.path / WEIGHTS, model.label)
    added = tensors_missing_from(model.model_, state)
    model.load_state({**state, **added}, f"bundle {bundle.path}", error=OptionError)
    echo(f"started from the weights of {bundle.name} ({bundle.path})")
    if added:
        names = sorted(added)
        echo(
            f"{len(names)} tensor(s) that {bundle.name} lacks keep their initial values: "
            f"{', '.join(names[:4])}{', ...' if len(names) > 4 else ''}"
        )


def _fit_genotype_model(model: GenotypeBackbone, job: FinetuneJob, echo: Callable[[str], None]) -> FinetuneResult:
    """Fit a genotype backbone per gene on the train people; write a bundle like the sequence
    models' (same folds file, ``train_genes`` and ``people``)."""
    from varscore.models.bundle import save_bundle
    from varscore.plugin.manager import get_output_mode
    from varscore.training.cohort import write_folds
    from varscore.training.lightning import load_cohort

    inputs, output = job.inputs, job.output
    unused = [
        name
        for name, value in (
            ("--reference-genome", job.reference_genome),
            ("--loss", job.loss),
            ("--monitor", job.monitor),
            ("--min-delta", job.min_delta),
            ("--tune-genes", job.tune_genes),
            ("--freeze-backbone", job.freeze_backbone),
        )
        if value not in (None, False)
    ]
    if unused:
        verb = "applies" if len(unused) == 1 else "apply"
        raise OptionError(f"{', '.join(unused)} {verb} to sequence models; '{model.name}' fits each gene's variants.")
    cohort = prepare_cohort(load_cohort(inputs, model.window_size, fold_seed=job.seed), job)
    for line in cohort.report:
        echo(line)
    training_dir = output.parent / f"{output.name}.training"
    created = not training_dir.exists()
    training_dir.mkdir(parents=True, exist_ok=True)
    try:
        folds_path = inputs.folds or write_folds(cohort.folds, training_dir / "folds.tsv")
        model.build()
        result = model.finetune(cohort.data)
    except BaseException:
        if created:  # a refused or failed fit leaves nothing behind
            shutil.rmtree(training_dir, ignore_errors=True)
        raise
    if result.imputed_calls:
        echo(f"{result.imputed_calls:,} missing genotype calls set to the train people's mean dosage")
    data = cohort.data
    per_gene = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()} for row in result.rows
    ]
    mean_r2 = None if math.isnan(result.mean_tune_r2) else result.mean_tune_r2
    save_bundle(
        output,
        name=output.name,
        backbone=model,
        output_mode=get_output_mode("scalar")(),
        genes=[g.gene for g in data.genes],
        files={"folds.tsv": folds_path},
        about=BundleMetadata(
            reference_fasta=inputs.fasta,
            metrics={"tune_mean_r2": mean_r2, "per_gene": per_gene, "imputed_calls": result.imputed_calls},
            provenance={
                **{k: v for k, v in _provenance(job).items() if k != "recipe"},
                "seed": job.seed,
                "experiment": _experiment(job),
            },
            extra={
                "train_genes": [g.gene.gene_id for g in data.genes],
                "people": _split_people(data),
                "folds": {"file": "folds.tsv", "replicate": inputs.replicate},
            },
        ),
    )
    return FinetuneResult(output, genes=len(data.genes), tune_mean_r2=mean_r2)


class _EchoHandler(logging.Handler):
    def __init__(self, echo: Callable[[str], None]) -> None:
        super().__init__()
        self.echo = echo

    def emit(self, record: logging.LogRecord) -> None:
        self.echo(self.format(record))


@contextlib.contextmanager
def epoch_lines(echo: Callable[[str], None], enabled: bool) -> Iterator[None]:
    """Show the ``varscore.progress`` lines (one per epoch) through ``echo``, once, while active."""
    log = logging.getLogger("varscore.progress")
    handler, saved = _EchoHandler(echo), (log.level, log.propagate)
    if enabled:
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    log.propagate = False  # not a second time through -v's root handler
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]
