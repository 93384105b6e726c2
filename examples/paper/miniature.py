"""A miniature of two of the paper's training experiments on a simulated cohort, on a CPU:

- Fig. S2 (learning curve): train on 25, 50, 75 and 100 % of the train people (nested fractions,
  ``FinetuneJob.train_fraction`` / ``finetune --train-fraction``), tune and test people unchanged;
- Fig. S12 (loss ablation): the paper's loss (MSE and cross-individual terms, one half each), the
  MSE term alone, the cross-individual term alone (``FinetuneJob.loss`` / ``finetune --loss``).

Each setting is trained once per fold replicate (three train/tune/test splits of the same people,
as the paper's three model replicates) with a tiny Enformer-architecture model from random weights,
and evaluated on that replicate's test people: per gene, R² (sklearn) and Pearson r (scipy) between
observed and predicted expression, then the mean over genes. The table gives the mean over
replicates and their standard deviation, with the epochs trained and the kept (best) epoch.

    OMP_NUM_THREADS=1 python examples/paper/miniature.py --out paper-miniature

It writes ``runs.tsv`` (one row per trained model) and ``table.md`` under ``--out`` and prints the
table. docs/paper-miniature.md records one run and what it does and does not show.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

WINDOW = 2048


@dataclass(frozen=True)
class Setting:
    experiment: str
    label: str
    train_fraction: float = 1.0
    loss: str = "both"


SETTINGS = [
    *(Setting("S2 learning curve", f"{int(f * 100)} % train people", train_fraction=f) for f in (0.25, 0.5, 0.75, 1.0)),
    Setting("S12 loss ablation", "MSE + cross-individual", loss="both"),
    Setting("S12 loss ablation", "MSE only", loss="mse"),
    Setting("S12 loss ablation", "cross-individual only", loss="cross"),
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("paper-miniature"), help="Output directory.")
    parser.add_argument("--people", type=int, default=300, help="People of the simulated cohort.")
    parser.add_argument("--genes", type=int, default=4, help="Genes of the simulated cohort.")
    parser.add_argument("--h2", type=float, default=0.5, help="Cis-heritability of every simulated gene.")
    parser.add_argument("--replicates", type=int, default=3, help="Fold replicates per setting (at most 3).")
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--people-per-epoch", type=int, default=64, help="People per gene per epoch.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the cohort's folds and of the models.")
    parser.add_argument("--threads", type=int, default=1, help="Torch CPU threads.")
    return parser.parse_args()


def simulated_cohort(args: argparse.Namespace) -> Path:
    from varscore.simulate import SimulationConfig, simulate_cohort

    cohort = args.out / "cohort"
    if not (cohort / "cohort.vcf.gz").exists():
        config = SimulationConfig(people=args.people, genes=args.genes, window=WINDOW, seed=4, h2=args.h2)
        simulate_cohort(config, cohort)
    return cohort


def cohort_inputs(cohort: Path, folds: Path, replicate: int) -> Any:
    """The simulated cohort's files with the shared folds, for training and evaluation alike."""
    from varscore.training.cohort import CohortInputs

    return CohortInputs(
        cohort / "cohort.vcf.gz",
        cohort / "cohort.expression.bed.gz",
        cohort / "genes.tsv",
        cohort / "reference.fa",
        folds=folds,
        replicate=replicate,
    )


def train(args: argparse.Namespace, cohort: Path, folds: Path, setting: Setting, replicate: int) -> Path:
    from varscore.training.finetune import FinetuneJob, run_finetune
    from varscore_plugins.enformer import tiny_params

    params = tiny_params(window_size=WINDOW, seed=args.seed, output_heads={"human": 4}, norm_stats="window")
    inputs = cohort_inputs(cohort, folds, replicate)
    name = f"{setting.loss}-{int(setting.train_fraction * 100)}-r{replicate}"
    output = args.out / "models" / name
    if not (output / "varscore.json").exists():
        job = FinetuneJob(
            inputs,
            output,
            backbone="enformer",
            backbone_params={k: v for k, v in params.items() if k != "window_size"},
            settings={
                "window": WINDOW,
                "lr": args.lr,
                "batch_size": 16,
                "accumulate": 1,
                "people_per_epoch": args.people_per_epoch,
                "max_epochs": args.max_epochs,
                "patience": args.patience,
            },
            training={"progress": False, "accelerator": "cpu"},
            seed=args.seed,
            quiet=True,
            train_fraction=setting.train_fraction,
            loss=setting.loss,
        )
        run_finetune(job, echo=lambda line: None)
    return output


def evaluate(cohort: Path, folds: Path, model: Path, replicate: int) -> dict[str, float]:
    """Mean over genes of the test people's R² and Pearson r (NaN genes, e.g. constant predictions,
    left out of the Pearson mean), with the model's epochs and kept epoch."""
    from scipy.stats import pearsonr
    from sklearn.metrics import r2_score

    from varscore.models.bundle import load_bundle
    from varscore.training.cohort import load_cohort

    bundle = load_bundle(model)
    data = load_cohort(cohort_inputs(cohort, folds, replicate), WINDOW).data
    backbone = bundle.backbone()
    r2, r = [], []
    for gene in data.genes:
        pred = backbone.predict(gene.windows.batch(data.test))[:, WINDOW // 128 // 2, 0]
        y = gene.expression[data.test]
        r2.append(float(r2_score(y, pred)))
        r.append(float(pearsonr(y, pred)[0]) if np.ptp(pred) > 0 else math.nan)
    metrics = json.loads((model / "varscore.json").read_text())["metrics"]
    return {
        "test_r2": float(np.mean(r2)),
        "test_pearson": float(np.nanmean(r)) if not all(math.isnan(v) for v in r) else math.nan,
        "epochs": len(metrics["history"]),
        "best_epoch": int(metrics["best_epoch"]),
        "train_people": len(bundle.manifest["people"]["train"]),
    }


def table(runs: pd.DataFrame) -> str:
    rows = [
        "| experiment | setting | train people | test R² (mean ± sd) | test Pearson r (mean ± sd) | epochs | kept epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    for (experiment, label), group in runs.groupby(["experiment", "label"], sort=False):
        rows.append(
            f"| {experiment} | {label} | {group.train_people.mean():.0f} "
            f"| {group.test_r2.mean():.3f} ± {group.test_r2.std(ddof=1):.3f} "
            f"| {group.test_pearson.mean():.3f} ± {group.test_pearson.std(ddof=1):.3f} "
            f"| {group.epochs.mean():.1f} | {group.best_epoch.mean():.1f} |"
        )
    return "\n".join(rows)


def main() -> None:
    import torch

    from varscore.io.vcf import vcf_samples
    from varscore.training.cohort import make_folds, match_samples, read_expression, write_folds

    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    cohort = simulated_cohort(args)
    folds = args.out / "folds.tsv"
    if not folds.exists():
        people = match_samples(
            read_expression(cohort / "cohort.expression.bed.gz").people, vcf_samples(cohort / "cohort.vcf.gz")
        ).people
        write_folds(make_folds(people, n_replicates=3, seed=args.seed), folds)
    rows = []
    trained: dict[tuple[float, str, int], dict[str, float]] = {}
    for setting in SETTINGS:
        for replicate in range(args.replicates):
            key = (setting.train_fraction, setting.loss, replicate)
            if key not in trained:  # 100 % with both terms is in both experiments: trained once
                t0 = time.monotonic()
                model = train(args, cohort, folds, setting, replicate)
                trained[key] = {**evaluate(cohort, folds, model, replicate), "seconds": time.monotonic() - t0}
            rows.append(
                {"experiment": setting.experiment, "label": setting.label, "replicate": replicate, **trained[key]}
            )
            print(f"{setting.experiment} | {setting.label} | replicate {replicate}: {trained[key]}", flush=True)
    runs = pd.DataFrame(rows)
    runs.to_csv(args.out / "runs.tsv", sep="\t", index=False)
    text = table(runs)
    (args.out / "table.md").write_text(text + "\n")
    print(text)
    print(f"total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
