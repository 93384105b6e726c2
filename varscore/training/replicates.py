"""Fine-tuning the fold replicates of an ensemble bundle (``finetune --replicates``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from varscore.errors import InputError
from varscore.models.bundle import BundleMetadata
from varscore.models.ensemble import REPLICATE_TEMPLATE, save_ensemble_bundle

logger = logging.getLogger(__name__)


# -- fine-tuning replicate folds ---------------------------------------------------------------


@dataclass(frozen=True)
class ReplicateRun:
    """The fold replicates to train: ``first`` (a built backbone) and ``new_backbone()`` for each
    further one, the ``config`` they share, the ``replicates`` (fold numbers), ``load(replicate,
    folds)`` giving that fold's cohort, the ``folds`` file (None: written for the first and reused),
    the ``training_dir`` for training files, the bundle ``output`` and what ``save`` records in it
    (output mode, score statistic, FASTA, tissue, provenance)."""

    new_backbone: Any
    first: Any
    config: Any
    replicates: Sequence[int]
    load: Any
    folds: Path | None
    training_dir: Path
    output: Path
    save: dict[str, Any] = field(default_factory=dict)


def finetune_replicates(run: ReplicateRun, echo: Any = None) -> Path | None:
    """Fine-tune one model per replicate fold of ``run`` with the existing training and save them
    as one ensemble bundle at ``run.output`` (the first replicate's model as
    ``weights.safetensors``). Returns the bundle (None on processes other than rank 0 of a
    distributed run)."""
    import dataclasses
    import tempfile

    from varscore.plugin.manager import get_output_mode
    from varscore.plugin.torch_backbone import save_weights
    from varscore.training.cohort import write_folds
    from varscore.training.trainer import finetune_sequence_backbone

    new_backbone, first, config, replicates, load = run.new_backbone, run.first, run.config, run.replicates, run.load
    folds, training_dir, output, save = run.folds, run.training_dir, run.output, dict(run.save)
    echo = echo or (lambda line: None)
    training_dir.mkdir(parents=True, exist_ok=True)
    folds_path = folds
    metrics: list[dict[str, Any]] = []
    people: dict[str, dict[str, list[str]]] = {}
    genes: list[Any] | None = None
    paths: list[Path] = []
    is_zero = True
    with tempfile.TemporaryDirectory(prefix=".replicates-", dir=training_dir) as tmp:
        for k, replicate in enumerate(replicates):
            cohort = load(replicate, folds_path)
            if k == 0:
                for line in cohort.report:
                    echo(line)
            if folds_path is None:
                folds_path = write_folds(cohort.folds, training_dir / "folds.tsv")
            data = cohort.data
            ids = [g.gene.gene_id for g in data.genes]
            if genes is not None and ids != [g.gene.gene_id for g in genes]:
                raise InputError(
                    f"Replicate {replicate} trains other genes than the first; replicates must share them."
                )
            genes = list(data.genes)
            model = first if k == 0 else new_backbone()
            model.build()
            result = finetune_sequence_backbone(
                model, data, dataclasses.replace(config, output_dir=str(training_dir / f"replicate{replicate}"))
            )
            is_zero = bool(result.is_global_zero)
            if not is_zero:
                continue
            metrics.append(
                {
                    "replicate": replicate,
                    "best_epoch": result.best_epoch,
                    "best_tune_mean_r2": result.best_tune_r2,
                    "history": result.history,
                }
            )
            people[str(replicate)] = {
                split: [data.people[i] for i in getattr(data, split)] for split in ("train", "tune", "test")
            }
            echo(f"replicate {replicate}: best epoch {result.best_epoch}, tune mean R2 {result.best_tune_r2:.3f}")
            if k:
                paths.append(Path(tmp) / REPLICATE_TEMPLATE.format(k))
                save_weights(model.model_, paths[-1], {"format": "pt", "backbone": model.name})
                del model
        if not is_zero:
            return None
        assert genes is not None and folds_path is not None
        if save.get("output_mode") == "track":
            mode = get_output_mode("track")(stat=save.get("score_stat", "SUM"))
        else:
            mode = get_output_mode("scalar")()
        r2 = [m["best_tune_mean_r2"] for m in metrics]
        bundle = save_ensemble_bundle(
            output,
            first,
            paths,
            name=output.name,
            output_mode=mode,
            genes=[g.gene for g in genes],
            files={"folds.tsv": folds_path},
            about=BundleMetadata(
                reference_fasta=save.get("fasta"),
                tissue=save.get("tissue"),
                metrics={"best_tune_mean_r2": float(np.mean(r2)), "replicates": metrics},
                provenance={**(save.get("provenance") or {}), "training": dict(dataclasses.asdict(config))},
                extra={
                    "train_genes": [g.gene.gene_id for g in genes],
                    "people": people[str(replicates[0])],
                    "replicate_people": people,
                    "folds": {"file": "folds.tsv", "replicates": list(replicates)},
                },
            ),
        )
    echo(f"wrote {bundle} ({len(metrics)} replicates, tune mean R2 {np.mean(r2):.3f})")
    return bundle
