"""Variformer fine-tuning: loss, single-gene batches (also under DDP), fine-tune -> bundle ->
annotate, and evaluation metrics against sklearn/scipy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy.stats import pearsonr
from sklearn.metrics import r2_score

from varscore.cli import cli
from varscore.errors import InputError
from varscore.training import SameGeneBatchSampler, TrainingConfig, variformer_loss
from varscore_plugins.enformer import tiny_params

WINDOW = 2048


def slow_loss(pred: np.ndarray, target: np.ndarray, mse_weight: float = 0.5) -> float:
    mse = sum((p - t) ** 2 for p, t in zip(pred, target, strict=True)) / len(pred)
    pairs = [((pred[i] - pred[j]) - (target[i] - target[j])) ** 2
             for i in range(len(pred)) for j in range(i + 1, len(pred))]
    return mse_weight * mse + (1 - mse_weight) * sum(pairs) / len(pairs)


@pytest.mark.parametrize("size", [2, 5, 32])
@pytest.mark.parametrize("mse_weight", [0.5, 0.0, 1.0, 0.3])
def test_loss_equals_explicit_pair_loop(size, mse_weight):
    rng = np.random.default_rng(size)
    pred, target = rng.normal(size=size), rng.normal(size=size)
    got = variformer_loss(torch.tensor(pred, dtype=torch.float64), torch.tensor(target, dtype=torch.float64),
                          mse_weight).item()
    assert got == pytest.approx(slow_loss(pred, target, mse_weight), abs=1e-6)


def test_loss_of_shifted_prediction_is_only_mse():
    target = torch.tensor([0.0, 1.0, 3.0])
    assert variformer_loss(target + 2.0, target).item() == pytest.approx(0.5 * 4.0)


def _batches(sampler: SameGeneBatchSampler) -> list[list[int]]:
    return [list(b) for b in sampler]


def test_sampler_single_gene_batches_and_accumulation():
    n_people = 50
    sampler = SameGeneBatchSampler(n_genes=4, n_people=n_people, people=range(40), batch_size=4, accumulate=3,
                                   people_per_epoch=30, seed=1, rank=0, world_size=1)
    batches = _batches(sampler)
    assert len(batches) == len(sampler) == 4 * 24 // 4  # 30 people rounded down to 2 steps of 12
    genes = [{i // n_people for i in b} for b in batches]
    assert all(len(g) == 1 for g in genes)
    for step in range(0, len(batches), 3):
        assert len(set.union(*genes[step : step + 3])) == 1  # same gene across accumulated batches
        people = [i % n_people for b in batches[step : step + 3] for i in b]
        assert len(set(people)) == len(people) and max(people) < 40  # different train people
    assert _batches(sampler) != batches  # a new epoch reshuffles
    sampler.set_epoch(0)
    assert _batches(sampler) == batches  # deterministic by (seed, epoch)


def _ddp_worker(rank: int, world: int, store: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    sampler = SameGeneBatchSampler(n_genes=3, n_people=100, people=range(64), batch_size=4, accumulate=2,
                                   people_per_epoch=32, seed=7)
    batches = _batches(sampler)
    Path(out, f"rank{rank}.json").write_text(json.dumps({"batches": batches, "len": len(sampler)}))
    dist.barrier()
    dist.destroy_process_group()


def test_sampler_under_two_process_gloo_ddp(tmp_path: Path):
    torch.multiprocessing.spawn(_ddp_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    runs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert runs[0]["len"] == runs[1]["len"] == len(runs[0]["batches"]) == len(runs[1]["batches"]) == 3 * 32 // 8
    for r in runs:
        assert all(len({i // 100 for i in b}) == 1 for b in r["batches"])
    # at every optimizer step both ranks work on the same gene with different people
    for step in range(0, len(runs[0]["batches"]), 2):
        chunk = [sum(r["batches"][step : step + 2], []) for r in runs]
        assert {i // 100 for i in chunk[0]} == {i // 100 for i in chunk[1]}
        assert not set(chunk[0]) & set(chunk[1])


def test_training_config_rejects_bad_values():
    with pytest.raises(InputError, match="batch_size=1"):
        TrainingConfig(batch_size=1)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    from varscore.simulate import SimulationConfig, simulate_cohort

    out = tmp_path_factory.mktemp("cohort")
    simulate_cohort(SimulationConfig(people=80, genes=3, window=WINDOW, seed=4, h2=0.5), out)
    return out


def _cohort_args(cohort: Path) -> list[str]:
    return ["--vcf", str(cohort / "cohort.vcf.gz"), "--expression", str(cohort / "cohort.expression.bed.gz"),
            "--genes", str(cohort / "genes.tsv"), "--fasta", str(cohort / "reference.fa")]


def _model_args() -> list[str]:
    params = tiny_params(window_size=WINDOW, output_heads={"human": 4})
    return [arg for k, v in params.items() if k != "window_size" for arg in ("--param", f"{k}={json.dumps(v)}")]


@pytest.mark.slow
def test_two_process_ddp_finetune_makes_a_bundle_that_scores(cohort: Path, tmp_path: Path):
    model = tmp_path / "models" / "ddp-model"
    cmd = [sys.executable, "-m", "varscore", "finetune", *_cohort_args(cohort), "-o", str(model),
           "--window", str(WINDOW), *_model_args(), "--lr", "1e-3", "--batch-size", "4", "--accumulate", "2",
           "--people-per-epoch", "16", "--max-epochs", "2", "--devices", "2", "--accelerator", "cpu",
           "--no-progress"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "world_size: 2" in run.stderr or "distributed_backend=gloo" in run.stderr
    manifest = json.loads((model / "varscore.json").read_text())
    assert manifest["backbone"]["name"] == "enformer" and len(manifest["metrics"]["history"]) == 2
    assert set(manifest["people"]) == {"train", "tune", "test"}
    metrics = (model.parent / "ddp-model.training" / "metrics.csv").read_text().splitlines()
    assert metrics[0].startswith("epoch") and len(metrics) == 3
    out = tmp_path / "scored.vcf.gz"
    result = CliRunner().invoke(cli, ["annotate", str(cohort / "cohort.vcf.gz"), "-m", str(model), "-o", str(out)])
    assert result.exit_code == 0, result.output
    scored = int(result.output.split("records scored: ")[1].split()[0])
    assert scored > 0 and "genes scored: 0" not in result.output


def test_finetune_then_evaluate_matches_sklearn_and_scipy(cohort: Path, tmp_path: Path):
    from varscore.bundle import load_bundle
    from varscore.training import CohortInputs, load_cohort

    model = tmp_path / "m"
    runner = CliRunner()
    result = runner.invoke(cli, ["finetune", *_cohort_args(cohort), "-o", str(model), "--window", str(WINDOW),
                                 *_model_args(), "--lr", "1e-3", "--batch-size", "4", "--accumulate", "1",
                                 "--people-per-epoch", "8", "--max-epochs", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    table = tmp_path / "eval.tsv"
    result = runner.invoke(cli, ["evaluate", *_cohort_args(cohort), "-m", str(model), "-o", str(table)])
    assert result.exit_code == 0, result.output
    assert "HOP" in result.output and "mean per model" in result.output
    import pandas as pd

    rows = pd.read_csv(table, sep="\t")
    bundle = load_bundle(model)
    data = load_cohort(CohortInputs(cohort / "cohort.vcf.gz", cohort / "cohort.expression.bed.gz",
                                    cohort / "genes.tsv", cohort / "reference.fa",
                                    bundle.path / bundle.manifest["folds"]["file"]), WINDOW).data
    backbone = bundle.backbone()
    test = [data.people.index(p) for p in bundle.manifest["people"]["test"]]
    checked = 0
    for gene in data.genes:
        x = gene.windows.batch(test)
        pred = backbone.predict(x)[:, WINDOW // 128 // 2, 0]
        y = gene.expression[test]
        row = rows[rows.gene == gene.gene.label].iloc[0]
        assert row.r2 == pytest.approx(r2_score(y, pred), abs=1e-3)
        if np.ptp(pred) > 0:  # a gene without variants in its window gets one prediction for all
            assert row.pearson == pytest.approx(pearsonr(y, pred)[0], abs=1e-3)
            checked += 1
        else:
            assert np.isnan(row.pearson)
    assert checked >= 1


def test_mismatched_samples_and_unknown_fold_people_fail_clearly(cohort: Path, tmp_path: Path):
    import gzip

    bad_expr = tmp_path / "expr.bed"
    with gzip.open(cohort / "cohort.expression.bed.gz", "rt") as handle:
        lines = handle.read().splitlines()
    header = lines[0].split("\t")
    lines[0] = "\t".join(header[:4] + [f"GTEX-{name}" for name in header[4:]])
    bad_expr.write_text("\n".join(lines) + "\n")
    args = _cohort_args(cohort)
    args[args.index("--expression") + 1] = str(bad_expr)
    result = CliRunner().invoke(cli, ["finetune", *args, "-o", str(tmp_path / "x"), "--window", str(WINDOW),
                                      *_model_args()])
    assert result.exit_code != 0 and "Traceback" not in result.output and "shared" in result.output
    folds = tmp_path / "folds.tsv"
    folds.write_text("person\treplicate\tsplit\nNOBODY\t0\ttrain\n")
    result = CliRunner().invoke(cli, ["finetune", *_cohort_args(cohort), "--folds", str(folds), "-o",
                                      str(tmp_path / "y"), "--window", str(WINDOW), *_model_args()])
    assert result.exit_code != 0 and "NOBODY" in result.output


def test_calibrated_batchnorm_stays_fixed_while_fine_tuning(cohort: Path, tmp_path: Path):
    """--freeze-batchnorm: statistics re-estimated over train people, then unchanged by training."""
    from varscore.bundle import load_bundle
    from varscore.training import PersonGeneDataset, _calibrate_batchnorm, eval_batches

    model = tmp_path / "frozen"
    result = CliRunner().invoke(cli, ["finetune", *_cohort_args(cohort), "-o", str(model), "--window", str(WINDOW),
                                      *_model_args(), "--lr", "1e-3", "--batch-size", "4", "--accumulate", "1",
                                      "--people-per-epoch", "8", "--max-epochs", "2", "--freeze-batchnorm",
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    bundle = load_bundle(model)
    trained = bundle.backbone().torch_module()
    norms = [m for m in trained.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and not all(torch.allclose(m.running_var, torch.ones_like(m.running_var)) for m in norms)
    # the stored statistics are those of calibrating the *initial* model: training never moved them
    from varscore.training import CohortInputs, load_cohort
    from varscore_plugins.enformer import EnformerBackbone

    data = load_cohort(CohortInputs(cohort / "cohort.vcf.gz", cohort / "cohort.expression.bed.gz",
                                    cohort / "genes.tsv", cohort / "reference.fa",
                                    bundle.path / "folds.tsv"), WINDOW).data
    initial = EnformerBackbone(**bundle.manifest["backbone"]["params"]).build().torch_module()
    _calibrate_batchnorm(initial, PersonGeneDataset(data), eval_batches(len(data.people), range(len(data.genes)),
                                                                        data.train, 4))
    fresh = [m for m in initial.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for before, after in zip(fresh, norms, strict=True):
        assert torch.allclose(before.running_mean, after.running_mean, atol=1e-5)
        assert torch.allclose(before.running_var, after.running_var, rtol=1e-4, atol=1e-5)
