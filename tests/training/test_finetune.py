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

from tests.conftest import cohort_args
from varscore.cli import cli
from varscore.errors import InputError
from varscore.training.cohort import CohortInputs
from varscore.training.evaluate import EvaluateJob, run_evaluation
from varscore.training.finetune import FinetuneJob, OptionError, run_finetune
from varscore.training.lightning import SameGeneBatchSampler, TrainingConfig, variformer_loss
from varscore_plugins.enformer import tiny_params

WINDOW = 2048


def slow_loss(pred: np.ndarray, target: np.ndarray, mse_weight: float = 0.5) -> float:
    mse = sum((p - t) ** 2 for p, t in zip(pred, target, strict=True)) / len(pred)
    pairs = [
        ((pred[i] - pred[j]) - (target[i] - target[j])) ** 2 for i in range(len(pred)) for j in range(i + 1, len(pred))
    ]
    return mse_weight * mse + (1 - mse_weight) * sum(pairs) / len(pairs)


@pytest.mark.parametrize("size", [2, 5, 32])
@pytest.mark.parametrize("mse_weight", [0.5, 0.0, 1.0, 0.3])
def test_loss_equals_explicit_pair_loop(size, mse_weight):
    rng = np.random.default_rng(size)
    pred, target = rng.normal(size=size), rng.normal(size=size)
    got = variformer_loss(
        torch.tensor(pred, dtype=torch.float64), torch.tensor(target, dtype=torch.float64), mse_weight
    ).item()
    assert got == pytest.approx(slow_loss(pred, target, mse_weight), abs=1e-6)


def test_loss_of_shifted_prediction_is_only_mse():
    target = torch.tensor([0.0, 1.0, 3.0])
    assert variformer_loss(target + 2.0, target).item() == pytest.approx(0.5 * 4.0)


def _batches(sampler: SameGeneBatchSampler) -> list[list[int]]:
    return [list(b) for b in sampler]


def test_sampler_single_gene_batches_and_accumulation():
    n_people = 50
    sampler = SameGeneBatchSampler(
        n_genes=4,
        n_people=n_people,
        people=range(40),
        batch_size=4,
        accumulate=3,
        people_per_epoch=30,
        seed=1,
        world=(0, 1),
    )
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
    sampler = SameGeneBatchSampler(
        n_genes=3, n_people=100, people=range(64), batch_size=4, accumulate=2, people_per_epoch=32, seed=7
    )
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


def _model_args() -> list[str]:
    params = tiny_params(window_size=WINDOW, output_heads={"human": 4})
    return [arg for k, v in params.items() if k != "window_size" for arg in ("--param", f"{k}={json.dumps(v)}")]


def _inputs(cohort: Path, folds: Path | None = None) -> CohortInputs:
    return CohortInputs(
        cohort / "cohort.vcf.gz",
        cohort / "cohort.expression.bed.gz",
        cohort / "genes.tsv",
        cohort / "reference.fa",
        folds,
    )


def _job(
    cohort: Path, output: Path, params: dict | None = None, training: dict | None = None, **settings
) -> FinetuneJob:  # type: ignore[type-arg]
    """What ``varscore finetune`` with the cohort, ``--window WINDOW``, the tiny Enformer's --param
    values (plus ``params``), ``--no-progress`` and ``settings`` (lr, batch_size, ...) builds."""
    tiny = {k: v for k, v in tiny_params(window_size=WINDOW, output_heads={"human": 4}).items() if k != "window_size"}
    return FinetuneJob(
        _inputs(cohort),
        output,
        backbone="enformer",
        backbone_params={**tiny, **(params or {})},
        settings={"window": WINDOW, **settings},
        training={"progress": False, **(training or {})},
    )


@pytest.mark.slow
def test_two_process_ddp_finetune_makes_a_bundle_that_scores(cohort: Path, tmp_path: Path):
    model = tmp_path / "models" / "ddp-model"
    cmd = [
        sys.executable,
        "-m",
        "varscore",
        "-vv",
        "finetune",
        *cohort_args(cohort),
        "-o",
        str(model),
        "--window",
        str(WINDOW),
        *_model_args(),
        "--lr",
        "1e-3",
        "--batch-size",
        "4",
        "--accumulate",
        "2",
        "--people-per-epoch",
        "16",
        "--max-epochs",
        "2",
        "--devices",
        "2",
        "--accelerator",
        "cpu",
        "--no-progress",
    ]
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
    from varscore.models.bundle import load_bundle
    from varscore.training.lightning import CohortInputs, load_cohort

    model = tmp_path / "m"
    fit = run_finetune(_job(cohort, model, lr=1e-3, batch_size=4, accumulate=1, people_per_epoch=8, max_epochs=1))
    assert fit.bundle == model and fit.lines()[0].startswith(f"wrote {model} (best epoch 0,")
    table = tmp_path / "eval.tsv"
    evaluation = run_evaluation(EvaluateJob(_inputs(cohort), models=[str(model)], output=table))
    shown = "\n".join(evaluation.lines())
    assert "HOP" in shown and "mean per model" in shown
    assert evaluation.written[0] == table and evaluation.paired.empty
    import pandas as pd

    rows = pd.read_csv(table, sep="\t")
    bundle = load_bundle(model)
    data = load_cohort(
        CohortInputs(
            cohort / "cohort.vcf.gz",
            cohort / "cohort.expression.bed.gz",
            cohort / "genes.tsv",
            cohort / "reference.fa",
            bundle.path / bundle.manifest["folds"]["file"],
        ),
        WINDOW,
    ).data
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
    args = cohort_args(cohort)
    args[args.index("--expression") + 1] = str(bad_expr)
    result = CliRunner().invoke(
        cli, ["finetune", *args, "-o", str(tmp_path / "x"), "--window", str(WINDOW), *_model_args()]
    )
    assert result.exit_code != 0 and "Traceback" not in result.output and "shared" in result.output
    folds = tmp_path / "folds.tsv"
    folds.write_text("person\treplicate\tsplit\nNOBODY\t0\ttrain\n")
    result = CliRunner().invoke(
        cli,
        [
            "finetune",
            *cohort_args(cohort),
            "--folds",
            str(folds),
            "-o",
            str(tmp_path / "y"),
            "--window",
            str(WINDOW),
            *_model_args(),
        ],
    )
    assert result.exit_code != 0 and "NOBODY" in result.output


def test_calibrated_batchnorm_stays_fixed_while_fine_tuning(cohort: Path, tmp_path: Path):
    """--freeze-batchnorm: statistics re-estimated over train people, then unchanged by training."""
    from varscore.models.bundle import load_bundle
    from varscore.training.lightning import PersonGeneDataset, eval_batches
    from varscore.training.trainer import _calibrate_batchnorm

    model = tmp_path / "frozen"
    job = _job(
        cohort,
        model,
        training={"freeze_batchnorm": True},
        lr=1e-3,
        batch_size=4,
        accumulate=1,
        people_per_epoch=8,
        max_epochs=2,
    )
    assert run_finetune(job).bundle == model
    bundle = load_bundle(model)
    trained = bundle.backbone().torch_module()
    norms = [m for m in trained.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and not all(torch.allclose(m.running_var, torch.ones_like(m.running_var)) for m in norms)
    # the stored statistics are those of calibrating the *initial* model: training never moved them
    from varscore.training.lightning import CohortInputs, load_cohort
    from varscore_plugins.enformer import EnformerBackbone

    data = load_cohort(
        CohortInputs(
            cohort / "cohort.vcf.gz",
            cohort / "cohort.expression.bed.gz",
            cohort / "genes.tsv",
            cohort / "reference.fa",
            bundle.path / "folds.tsv",
        ),
        WINDOW,
    ).data
    initial = EnformerBackbone(**bundle.manifest["backbone"]["params"]).build().torch_module()
    _calibrate_batchnorm(
        initial, PersonGeneDataset(data), eval_batches(len(data.people), range(len(data.genes)), data.train, 4)
    )
    fresh = [m for m in initial.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for before, after in zip(fresh, norms, strict=True):
        assert torch.allclose(before.running_mean, after.running_mean, atol=1e-5)
        assert torch.allclose(before.running_var, after.running_var, rtol=1e-4, atol=1e-5)


# --- resume, signals, logs -------------------------------------------------------------------

_RESUME_ARGS = [
    "--lr",
    "1e-3",
    "--batch-size",
    "4",
    "--accumulate",
    "1",
    "--people-per-epoch",
    "4",
    "--max-epochs",
    "4",
    "--patience",
    "10",
]


def _finetune_cmd(cohort: Path, model: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "varscore",
        "finetune",
        *cohort_args(cohort),
        "-o",
        str(model),
        "--window",
        str(WINDOW),
        *_model_args(),
        *_RESUME_ARGS,
        *extra,
    ]


def _one_thread_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run_until_epoch(cmd: list[str], epoch: int, signum: int, cwd: Path) -> tuple[int, list[str]]:
    """Run ``cmd``; send ``signum`` as soon as it reports the end of ``epoch``; return its exit
    status and its stderr lines."""
    import signal as _signal

    proc = subprocess.Popen(
        cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=cwd, env=_one_thread_env()
    )
    lines: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line.rstrip("\n"))
        if line.startswith(f"epoch {epoch}/"):
            proc.send_signal(signum)
    assert signum in (_signal.SIGTERM, _signal.SIGINT)
    return proc.wait(timeout=120), lines


def _epoch_lines(lines: list[str]) -> list[int]:
    return [int(line.split()[1].split("/")[0]) for line in lines if line.startswith("epoch ")]


def _bundle_state(model: Path) -> tuple[dict, dict]:
    from safetensors.numpy import load_file

    manifest = json.loads((model / "varscore.json").read_text())
    return load_file(str(model / "weights.safetensors")), manifest["metrics"]


@pytest.mark.slow
def test_killed_and_resumed_run_equals_an_uninterrupted_one(cohort: Path, tmp_path: Path):
    """SIGTERM after epoch 1 (exit 143, checkpoint kept, no bundle), resume, SIGINT after epoch 2
    (exit 130), resume again: metrics, best epoch and final weights equal one uninterrupted run's."""
    import signal as _signal

    whole, parts = tmp_path / "whole", tmp_path / "parts"
    log = tmp_path / "whole.stderr"
    with open(log, "w") as handle:  # stderr redirected to a file, not a terminal
        code = subprocess.run(
            _finetune_cmd(cohort, whole),
            stdout=subprocess.DEVNULL,
            stderr=handle,
            timeout=300,
            env=_one_thread_env(),
            cwd=tmp_path,
        ).returncode
    lines = log.read_text().splitlines()
    assert code == 0, lines[-20:]
    # one line per epoch, nothing twice, no Lightning advert
    assert _epoch_lines(lines) == list(range(4))
    assert len(lines) == len(set(lines))
    assert not [
        line for line in lines if "Tip" in line or "GPU available" in line or "litlogger" in line or "Traceback" in line
    ]

    code, lines = _run_until_epoch(_finetune_cmd(cohort, parts), 1, _signal.SIGTERM, tmp_path)
    assert code == 143, lines[-5:]
    assert "SIGTERM" in lines[-1] and "--resume" in lines[-1]
    assert not (parts / "varscore.json").exists()
    checkpoint = tmp_path / "parts.training" / "checkpoints" / "last.ckpt"
    state = torch.load(checkpoint, weights_only=True)["varscore_training"]
    first = len(state["history"])
    assert 1 <= first <= 2  # the epoch that was running when the signal came is not kept

    code, lines = _run_until_epoch(_finetune_cmd(cohort, parts, "--resume"), 2, _signal.SIGINT, tmp_path)
    assert code == 130, lines[-5:]
    assert _epoch_lines(lines)[0] == first  # continued after the checkpointed epoch
    assert "SIGINT" in lines[-1] and not (parts / "varscore.json").exists()

    run = subprocess.run(
        _finetune_cmd(cohort, parts, "--resume"),
        capture_output=True,
        text=True,
        timeout=300,
        env=_one_thread_env(),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert _epoch_lines(run.stderr.splitlines())[-1] == 3
    weights_whole, metrics_whole = _bundle_state(whole)
    weights_parts, metrics_parts = _bundle_state(parts)
    assert metrics_parts == metrics_whole and len(metrics_whole["history"]) == 4
    assert sorted(weights_parts) == sorted(weights_whole)
    for key, value in weights_whole.items():
        np.testing.assert_array_equal(weights_parts[key], value, err_msg=key)
    assert (tmp_path / "whole.training" / "metrics.csv").read_text() == (
        tmp_path / "parts.training" / "metrics.csv"
    ).read_text()


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_smoothed_scores_equal_a_trailing_mean_loop():
    from varscore.training.lightning import smoothed_scores

    scores = [0.1, float("nan"), 0.3, -0.2, 0.5, float("nan"), float("nan")]
    for window in (1, 2, 3):
        expected = []
        for e in range(len(scores)):
            part = [v for v in scores[max(0, e - window + 1) : e + 1] if v == v]
            expected.append(sum(part) / len(part) if part else float("nan"))
        np.testing.assert_allclose(smoothed_scores(scores, window), expected, equal_nan=True)
    assert smoothed_scores([0.1, 0.9, 0.1], 1) == [0.1, 0.9, 0.1]


def test_epoch_line_before_any_epoch_is_eligible(caplog: pytest.LogCaptureFixture):
    """With --smooth-epochs, the first epochs' lines say no epoch is kept yet (not "epoch -1, -inf")."""
    from varscore.training.lightning import TrainingConfig, _log_epoch

    row = {"epoch": 0.0, "tune_mean_r2": 0.05, "tune_mean_pearson": 0.2, "train_loss": 1.3}
    config = TrainingConfig(max_epochs=24, smooth_epochs=5)
    with caplog.at_level("INFO", logger="varscore.progress"):
        _log_epoch(row, (-1, float("-inf")), float("nan"), config, 1.0)
        _log_epoch({**row, "epoch": 4.0}, (4, 0.03), 0.05, config, 1.0)
    first, later = (r.getMessage() for r in caplog.records)
    assert "best epoch: none yet (smoothing over 5 epochs)" in first and "-inf" not in first
    assert first.startswith("epoch 0/24: train loss 1.3000, tune R2 0.0500")
    assert "best epoch 4 (tune R2 0.0500)" in later


def test_batched_dataset_equals_per_person_items(cohort: Path):
    from varscore.training.lightning import (
        BatchedPersonGeneDataset,
        CohortInputs,
        PersonGeneDataset,
        _collate,
        load_cohort,
    )

    data = load_cohort(
        CohortInputs(
            cohort / "cohort.vcf.gz", cohort / "cohort.expression.bed.gz", cohort / "genes.tsv", cohort / "reference.fa"
        ),
        WINDOW,
    ).data
    per_item, batched = PersonGeneDataset(data), BatchedPersonGeneDataset(data)
    n = len(data.people)
    for indices in ([1 * n + 3, 1 * n + 0, 1 * n + 7], [0 * n + 5, 2 * n + 5, 0 * n + 1]):  # one gene; mixed
        want = _collate([per_item[i] for i in indices])
        got = _collate(batched.__getitems__(indices))
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    # a DataLoader with a batch sampler goes through __getitems__ and yields the same batches
    from torch.utils.data import DataLoader

    batches = [[2 * n + 1, 2 * n + 2], [0 * n + 4, 0 * n + 9]]
    fast = list(DataLoader(batched, batch_sampler=batches, collate_fn=_collate))  # type: ignore[arg-type]
    slow = list(DataLoader(per_item, batch_sampler=batches, collate_fn=_collate))  # type: ignore[arg-type]
    for f, s in zip(fast, slow, strict=True):
        for a, b in zip(f, s, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_full_size_random_start_needs_from_scratch(cohort: Path, tmp_path: Path):
    result = CliRunner().invoke(
        cli, ["finetune", *cohort_args(cohort), "-o", str(tmp_path / "big"), "--backbone", "enformer"]
    )
    assert result.exit_code == 2 and "--from-scratch" in result.output and "250 M" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "big.training").exists()


def test_smoothed_early_stopping_and_quiet(cohort: Path, tmp_path: Path, one_thread):
    """--smooth-epochs 2 --patience 1: the kept epoch is the first maximum of the trailing 2-epoch
    mean of tune R², training stops one epoch after it; --quiet prints no epoch line."""
    from varscore.training.lightning import smoothed_scores

    model = tmp_path / "smooth"
    job = _job(
        cohort,
        model,
        training={"smooth_epochs": 2},
        lr=3e-3,
        batch_size=4,
        accumulate=1,
        people_per_epoch=4,
        max_epochs=6,
        patience=1,
    )
    job.quiet = True
    echoed: list[str] = []
    run_finetune(job, echo=echoed.append)
    assert not [line for line in echoed if "epoch 0/" in line]
    metrics = json.loads((model / "varscore.json").read_text())["metrics"]
    r2 = [row["tune_mean_r2"] for row in metrics["history"]]
    smooth = smoothed_scores(r2, 2)
    best = 1 + int(np.argmax(smooth[1:]))  # epoch 0's one-epoch "average" is not eligible
    assert metrics["best_epoch"] == best and metrics["best_tune_mean_r2"] == pytest.approx(r2[best])
    assert len(r2) == min(6, best + 2)


def test_init_from_starts_from_a_bundles_weights(cohort: Path, tmp_path: Path):
    """A warm start keeps the bundle's weights (a run at lr 1e-12 ends where the bundle was), a cold
    start at the same lr ends near its random initialisation, and a bundle of another backbone is refused."""
    from safetensors.numpy import load_file

    def run(out: Path, lr: float, init_from: Path | None = None, **params: object) -> str:
        """Fine-tune one quiet epoch; returns the lines echoed."""
        job = _job(cohort, out, params, lr=lr, batch_size=4, accumulate=1, people_per_epoch=8, max_epochs=1)
        job.quiet, job.init_from = True, init_from
        echoed: list[str] = []
        assert run_finetune(job, echo=echoed.append).bundle == out
        return "\n".join(echoed)

    trained = tmp_path / "a"
    run(trained, 3e-3)
    warm, cold = tmp_path / "warm", tmp_path / "cold"
    assert "started from the weights of a" in run(warm, 1e-12, trained)
    run(cold, 1e-12)
    a, w, c = (load_file(str(p / "weights.safetensors")) for p in (trained, warm, cold))
    assert set(a) == set(w) == set(c)
    # learned weights only: batch-norm running statistics and batch counters move in any training epoch
    weights = [k for k in a if "running_" not in k and "num_batches_tracked" not in k]
    assert len(weights) > 10
    assert max(float(np.abs(w[k] - a[k]).max()) for k in weights) < 1e-6
    assert max(float(np.abs(c[k] - a[k]).max()) for k in weights) > 1e-3
    other = tmp_path / "en"
    fit = run_finetune(FinetuneJob(_inputs(cohort), other, backbone="elastic-net", settings={"window": WINDOW}))
    assert fit.bundle == other and fit.lines()[0].startswith(f"wrote {other} (3 genes, tune mean R2 ")
    with pytest.raises(OptionError, match="is a 'elastic-net' model"):
        run(tmp_path / "bad", 1e-3, other)

    # a head that adds a tensor (center+sum's pooled read) starts from the bundle; the new tensor
    # keeps its initial value (zero), and the run says so
    grown = tmp_path / "grown"
    echoed = run(grown, 1e-12, trained, pool="center+sum")
    assert "1 tensor(s) that a lacks keep their initial values: to_tracks.pooled.weight" in echoed
    g = load_file(str(grown / "weights.safetensors"))
    assert set(g) == set(a) | {"to_tracks.pooled.weight"}
    assert max(float(np.abs(g[k] - a[k]).max()) for k in weights) < 1e-6
    assert float(np.abs(g["to_tracks.pooled.weight"]).max()) < 1e-6
    # a bundle whose tensors do not fit (another width) is a one-line usage error
    with pytest.raises(OptionError, match="do not fit the") as refused:
        run(tmp_path / "narrow", 1e-12, trained, dim=24)
    assert "of another shape" in str(refused.value) and "\n" not in str(refused.value)


def test_catalogue_supplies_the_default_backbone_and_the_recipes(tmp_path: Path):
    """The core names no built-in model: the default backbone and the paper's recipes are catalogue data."""
    from varscore.training.finetune import default_backbone, recipe_names, resolved_settings

    job = FinetuneJob(_inputs(tmp_path), tmp_path / "m", recipe="variformer-blood", settings={"lr": 1e-4})
    assert job.backbone == default_backbone() == "enformer" and recipe_names() == ["variformer-blood"]
    assert resolved_settings(job) == {
        "window": 49_152,
        "lr": 1e-4,
        "batch_size": 32,
        "accumulate": 4,
        "grad_clip": 0.05,
        "patience": 20,
        "people_per_epoch": 512,
        "tissue": "Whole Blood",
        "max_epochs": 150,
    }
    with pytest.raises(OptionError, match="fine-tunes pre-trained Enformer: pass --pretrained DIR"):
        run_finetune(job)
    result = CliRunner().invoke(cli, ["finetune", "--help"])
    assert "[default: enformer]" in result.output and "[variformer-blood]" in result.output


#: The published architectures (Enformer: Avsec et al. 2021 / enformer-pytorch's EnformerConfig of
#: the official weights; Borzoi: Linder et al. 2025 / borzoi-pytorch's config), as --size published
#: must give them.
PUBLISHED = {
    "enformer": {"window_size": 196_608, "dim": 1536, "depth": 11, "heads": 8, "attn_dim_key": 64},
    "borzoi": {"window_size": 524_288, "dim": 1536, "depth": 8, "heads": 8, "attn_dim_key": 64, "attn_dim_value": 192},
}
NO_COHORT = CohortInputs(Path("in.vcf"), Path("expr.bed"), Path("genes.tsv"), Path("ref.fa"))  # not read


@pytest.mark.parametrize("backbone", ["enformer", "borzoi"])
def test_size_presets_build_valid_models_and_options_override_them(backbone: str, tmp_path: Path, one_thread):
    from varscore.plugin.manager import get_backbone
    from varscore.training.finetune import build_model

    presets = get_backbone(backbone).size_presets
    assert list(presets) == ["tiny", "small", "published"]
    for size in ("tiny", "small"):
        model, params = build_model(FinetuneJob(NO_COHORT, tmp_path / size, backbone=backbone, size=size))
        assert {k: params[k] for k in presets[size]} == presets[size]
        model.build()
        out = np.asarray(model.predict(np.zeros((2, model.window_size, 4), np.float32)))  # type: ignore[attr-defined]
        assert out.shape == (2, model.window_size // model.bin_size, 1) and np.isfinite(out).all()
    # explicit --param and --window win over the preset
    job = FinetuneJob(
        NO_COHORT,
        tmp_path / "o",
        backbone=backbone,
        size="tiny",
        backbone_params={"depth": 3},
        settings={"window": 8192},
    )
    _, params = build_model(job)
    assert params["depth"] == 3 and params["window_size"] == 8192 and params["dim"] == presets["tiny"]["dim"]


@pytest.mark.parametrize("backbone", ["enformer", "borzoi"])
def test_the_published_size_is_the_published_architecture_and_is_not_a_silent_random_start(
    backbone: str, tmp_path: Path
) -> None:
    from varscore.training.finetune import build_model

    job = FinetuneJob(NO_COHORT, tmp_path / "big", backbone=backbone, size="published")
    with pytest.raises(OptionError, match="--from-scratch"):
        build_model(job)
    model, params = build_model(
        FinetuneJob(NO_COHORT, tmp_path / "big", backbone=backbone, size="published", from_scratch=True)
    )
    assert {k: params[k] for k in PUBLISHED[backbone]} == PUBLISHED[backbone]
    assert model.window_size == PUBLISHED[backbone]["window_size"]  # validated, never built


def test_a_size_the_backbone_does_not_offer_is_one_line(tmp_path: Path) -> None:
    from varscore.training.finetune import build_model

    with pytest.raises(OptionError, match="backbone 'elastic-net' has no named sizes"):
        build_model(FinetuneJob(NO_COHORT, tmp_path / "o", backbone="elastic-net", size="tiny"))
    with pytest.raises(OptionError, match="offers tiny, small, published; got 'huge'"):
        build_model(FinetuneJob(NO_COHORT, tmp_path / "o", backbone="enformer", size="huge"))
    result = CliRunner().invoke(cli, ["finetune", "--help"])
    assert result.exit_code == 0 and "--size [tiny|small|published]" in result.output


# -- the paper's experiments: nested train fractions, loss ablation, log2(TPM + 2) targets,
# -- reference-genome training, what early stopping monitors, frozen backbone


def _numpy_loss(pred: np.ndarray, target: np.ndarray, terms: str) -> float:
    """The paper's loss written out: MSE, the mean over unique pairs of the squared difference of
    predicted and observed differences, and their weighted sum (one half each)."""
    mse = float(np.mean((pred - target) ** 2))
    i, j = np.triu_indices(len(pred), k=1)
    cross = float(np.mean(((pred[i] - pred[j]) - (target[i] - target[j])) ** 2))
    return {"both": 0.5 * mse + 0.5 * cross, "mse": mse, "cross": cross}[terms]


@pytest.mark.parametrize("terms", ["both", "mse", "cross"])
def test_each_loss_setting_equals_the_explicit_loss(terms: str, tmp_path: Path):
    from varscore.training.finetune import experiment_settings

    rng = np.random.default_rng(5)
    pred, target = rng.normal(size=7), rng.normal(size=7)
    job = FinetuneJob(_inputs(tmp_path), tmp_path / "m", loss=terms)
    weight = experiment_settings(job)["mse_weight"]
    got = variformer_loss(torch.tensor(pred), torch.tensor(target), weight).item()
    assert got == pytest.approx(_numpy_loss(pred, target, terms), rel=1e-6)
    # reference-genome training uses the MSE term alone; the cross-individual term is refused there
    reference = FinetuneJob(_inputs(tmp_path), tmp_path / "m", reference_genome=True)
    assert experiment_settings(reference) == {"mse_weight": 1.0, "monitor": "tune-loss", "min_delta": 0.01}
    if terms != "mse":
        reference.loss = terms
        with pytest.raises(OptionError, match="use --loss mse"):
            experiment_settings(reference)


def test_train_fractions_are_nested_and_leave_tune_and_test_people_alone(cohort: Path, tmp_path: Path):
    from varscore.training.finetune import prepare_cohort
    from varscore.training.lightning import load_cohort

    full = load_cohort(_inputs(cohort), WINDOW).data
    kept = []
    for fraction in (0.25, 0.5, 0.75, 1.0):
        job = FinetuneJob(_inputs(cohort), tmp_path / "m", train_fraction=fraction)
        loaded = prepare_cohort(load_cohort(_inputs(cohort), WINDOW), job)
        data = loaded.data
        assert data.people == full.people
        np.testing.assert_array_equal(data.tune, full.tune)
        np.testing.assert_array_equal(data.test, full.test)
        assert len(data.train) == round(fraction * len(full.train))
        kept.append(set(data.train.tolist()))
        if fraction < 1:
            assert f"{len(data.train)} of {len(full.train)} train people" in loaded.report[-1]
    assert kept[-1] == set(full.train.tolist())
    assert kept[0] < kept[1] < kept[2] < kept[3]


def test_log2tpm_and_reference_genome_targets_equal_pandas(cohort: Path, tmp_path: Path):
    """--targets log2tpm: each person's target is log2(TPM + 2) of cohort.tpm.tsv; --reference-genome:
    every window is the reference and each split's target is its people's mean of those values."""
    import dataclasses

    import pandas as pd

    from varscore.training.finetune import prepare_cohort
    from varscore.training.lightning import load_cohort

    inputs = dataclasses.replace(_inputs(cohort), expression=cohort / "cohort.tpm.tsv", targets="log2tpm")
    data = load_cohort(inputs, WINDOW).data
    log2 = np.log2(pd.read_csv(cohort / "cohort.tpm.tsv", sep="\t", index_col="gene_id") + 2)
    for gene in data.genes:
        np.testing.assert_allclose(gene.expression, log2.loc[gene.gene.gene_id, data.people], rtol=1e-6)
    job = FinetuneJob(inputs, tmp_path / "m", reference_genome=True, train_fraction=0.5)
    reference = prepare_cohort(load_cohort(inputs, WINDOW), job).data
    everyone = np.arange(len(reference.people))
    for gene in reference.genes:
        row = log2.loc[gene.gene.gene_id]
        windows = gene.windows.batch(everyone)
        assert np.array_equal(windows, np.broadcast_to(gene.windows.reference, windows.shape))
        assert not np.array_equal(
            load_cohort(_inputs(cohort), WINDOW).data.genes[0].windows.batch(everyone), windows
        )  # the personal windows do differ
        for split in (reference.train, reference.tune, reference.test):
            people = [reference.people[i] for i in split]
            np.testing.assert_allclose(gene.expression[split], row[people].mean(), rtol=1e-6)
    with pytest.raises(OptionError, match="--targets log2tpm"):
        prepare_cohort(
            load_cohort(_inputs(cohort), WINDOW), FinetuneJob(_inputs(cohort), tmp_path, reference_genome=True)
        )


def test_reference_genome_training_sees_only_reference_windows(cohort: Path, tmp_path: Path, monkeypatch):
    import dataclasses

    import varscore.training.trainer as trainer
    from varscore.training.lightning import load_cohort

    seen: list[np.ndarray] = []
    original = trainer._collate

    def recording(batch):  # type: ignore[no-untyped-def]
        out = original(batch)
        seen.append(out[0].numpy())
        return out

    monkeypatch.setattr(trainer, "_collate", recording)
    inputs = dataclasses.replace(_inputs(cohort), expression=cohort / "cohort.tpm.tsv", targets="log2tpm")
    job = _job(cohort, tmp_path / "ref", lr=1e-3, batch_size=4, accumulate=1, people_per_epoch=8, max_epochs=2)
    job.inputs, job.reference_genome, job.quiet = inputs, True, True
    run_finetune(job)
    references = [g.windows.reference for g in load_cohort(inputs, WINDOW).data.genes]
    assert len(seen) > 6
    for x in seen:
        assert any(np.array_equal(x, np.broadcast_to(r, x.shape)) for r in references)
    manifest = json.loads((tmp_path / "ref" / "varscore.json").read_text())
    history = manifest["metrics"]["history"]
    assert all("tune_loss" in row for row in history)
    assert manifest["provenance"]["experiment"]["reference_genome"] is True


def test_improvement_epoch_follows_min_delta():
    from varscore.training.lightning import improvement_epoch

    scores = [0.10, 0.30, 0.305, 0.31, 0.50, 0.505]
    assert improvement_epoch(scores, 0) == 5
    assert improvement_epoch(scores, 0, min_delta=0.01) == 4  # 0.305, 0.31 and 0.505 are too small a gain
    assert improvement_epoch(scores, 0, min_delta=0.5) == 0
    assert improvement_epoch([float("nan"), 0.2], 0) == 1
    assert improvement_epoch(scores, 6) == -1


def test_pearson_over_tune_genes_is_monitored_and_equals_scipy(cohort: Path, tmp_path: Path):
    """--monitor pearson-tune-genes: a gene left out of training is evaluated on the tune people each
    epoch; its Pearson r equals scipy's on the kept model's predictions, and the kept epoch is the
    one where that r is highest."""
    from varscore.models.bundle import load_bundle
    from varscore.training.lightning import load_cohort

    genes = cohort / "tune-genes.txt"
    genes.write_text("SIMG0003\n")
    job = _job(cohort, tmp_path / "mon", lr=3e-3, batch_size=4, accumulate=1, people_per_epoch=8, max_epochs=3)
    job.inputs.gene_names = ["SIMG0001", "SIMG0002"]
    job.tune_genes, job.monitor, job.quiet = str(genes), "pearson-tune-genes", True
    run_finetune(job)
    manifest = json.loads((tmp_path / "mon" / "varscore.json").read_text())
    history = manifest["metrics"]["history"]
    monitored = [row["tune_genes_mean_pearson"] for row in history]
    best = manifest["metrics"]["best_epoch"]
    assert best == int(np.nanargmax(monitored))
    bundle = load_bundle(tmp_path / "mon")
    assert bundle.manifest["train_genes"] == ["SIMG0001", "SIMG0002"]
    data = load_cohort(dataclasses_replace(_inputs(cohort), folds=tmp_path / "mon.training" / "folds.tsv"), WINDOW).data
    gene = next(g for g in data.genes if g.gene.gene_id == "SIMG0003")
    pred = bundle.backbone().predict(gene.windows.batch(data.tune))[:, WINDOW // 128 // 2, 0]
    assert monitored[best] == pytest.approx(pearsonr(gene.expression[data.tune], pred)[0], abs=1e-4)
    r2 = [
        r2_score(g.expression[data.tune], bundle.backbone().predict(g.windows.batch(data.tune))[:, 8, 0])
        for g in data.genes
        if g.gene.gene_id != "SIMG0003"
    ]
    assert history[best]["tune_mean_r2"] == pytest.approx(np.mean(r2), abs=1e-4)
    unmonitored = _job(cohort, tmp_path / "nomon", max_epochs=1)
    unmonitored.monitor = "pearson-tune-genes"
    with pytest.raises(OptionError, match="needs --tune-genes"):
        run_finetune(unmonitored)
    assert not (tmp_path / "nomon.training").exists()


def dataclasses_replace(inputs: CohortInputs, **changes: object) -> CohortInputs:
    import dataclasses

    return dataclasses.replace(inputs, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("backbone", ["enformer", "borzoi"])
def test_frozen_backbone_keeps_every_trunk_tensor(backbone: str, cohort: Path, tmp_path: Path):
    """--freeze-backbone: after training, every tensor of the trunk (weights and batch-norm
    statistics) is bit-identical to the freshly built model's; the head's weights have moved."""
    from safetensors.numpy import load_file

    from varscore.plugin.manager import get_backbone
    from varscore_plugins.borzoi import tiny_params as borzoi_params

    def job(out: Path, epochs: int) -> FinetuneJob:
        made = _job(cohort, out, lr=1e-2, batch_size=4, accumulate=1, people_per_epoch=8, max_epochs=epochs)
        if backbone == "borzoi":
            made.backbone = "borzoi"
            made.backbone_params = {k: v for k, v in borzoi_params(window_size=WINDOW).items() if k != "window_size"}
        made.quiet = True
        return made

    frozen = job(tmp_path / "frozen", 2)
    frozen.freeze_backbone = True
    run_finetune(frozen)
    trained = load_file(str(tmp_path / "frozen" / "weights.safetensors"))
    fresh = get_backbone(backbone)(**frozen.backbone_params, window_size=WINDOW).build()
    fresh.save(tmp_path / "fresh")
    initial = load_file(str(tmp_path / "fresh" / "weights.safetensors"))
    assert set(trained) == set(initial)
    head = [k for k in trained if k.startswith(("to_tracks.", "human_head."))]
    trunk = [k for k in trained if k not in head]
    assert head and len(trunk) > 20 and any("running_mean" in k for k in trunk)
    for key in trunk:
        assert np.array_equal(trained[key], initial[key]), key
    assert any(not np.array_equal(trained[k], initial[k]) for k in head)
    # without the flag the trunk trains
    run_finetune(job(tmp_path / "free", 1))
    free = load_file(str(tmp_path / "free" / "weights.safetensors"))
    assert any(not np.array_equal(free[k], initial[k]) for k in trunk)


def test_experiment_options_reach_the_job(tmp_path: Path, monkeypatch):
    import varscore.training.finetune as finetune

    jobs: list[FinetuneJob] = []

    def capture(job: FinetuneJob, echo: object = None) -> finetune.FinetuneResult:
        jobs.append(job)
        return finetune.FinetuneResult(None)

    monkeypatch.setattr(finetune, "run_finetune", capture)
    base = ["finetune", *cohort_args(tmp_path), "-o", str(tmp_path / "m")]
    extra = ["--train-fraction", "0.25", "--loss", "cross", "--targets", "log2tpm", "--monitor", "pearson-tune-genes"]
    extra += ["--tune-genes", "5", "--min-delta", "0.02", "--freeze-backbone", "--reference-genome"]
    result = CliRunner().invoke(cli, [*base, *extra])
    assert result.exit_code == 0, result.output
    job = jobs[0]
    assert (job.train_fraction, job.loss, job.inputs.targets, job.monitor) == (
        0.25,
        "cross",
        "log2tpm",
        "pearson-tune-genes",
    )
    assert (job.tune_genes, job.min_delta, job.freeze_backbone, job.reference_genome) == ("5", 0.02, True, True)
    refused = CliRunner().invoke(cli, [*base, "--train-fraction", "0"])
    assert refused.exit_code == 2 and "--train-fraction" in refused.output and "Traceback" not in refused.output


def test_tune_genes_from_a_count_a_list_or_gene_sets(cohort: Path, tmp_path: Path):
    from varscore.training.finetune import monitor_gene_names

    job = FinetuneJob(_inputs(cohort), tmp_path / "m", tune_genes="2", seed=1)
    drawn = monitor_gene_names(job, ["SIMG0001"])
    assert len(drawn) == 2 and set(drawn) <= {"SIMG0002", "SIMG0003"}
    job.tune_genes = "3"
    with pytest.raises(OptionError, match="has 2 genes with expression that are not trained on"):
        monitor_gene_names(job, ["SIMG0001"])
    sets = tmp_path / "sets.tsv"
    sets.write_text("gene_id\tset\nSIMG0001\ttrain\nSIMG0003\tvalid\n")
    job.tune_genes = str(sets)
    assert monitor_gene_names(job, ["SIMG0001"]) == ["SIMG0003"]
    listed = tmp_path / "list.txt"
    listed.write_text("SimGene2\nSIMG0001\n")
    job.tune_genes = str(listed)
    with pytest.raises(OptionError, match="trained on: SIMG0001"):
        monitor_gene_names(job, ["SIMG0001"])


def test_no_epoch_with_a_defined_score_writes_no_model(cohort: Path, tmp_path: Path, monkeypatch):
    """Every epoch's monitored score NaN (constant predictions, too few tune people to correlate):
    the model was written as 'best epoch -1, tune mean R2 -inf'; now a one-line error, no bundle."""
    import math

    from varscore.training.trainer import VariformerModule

    monkeypatch.setattr(VariformerModule, "score", lambda self, row: math.nan)
    job = _job(cohort, tmp_path / "nan", batch_size=4, accumulate=1, people_per_epoch=8, max_epochs=2)
    job.quiet = True
    with pytest.raises(InputError, match="No epoch of 2 had a defined 'r2-train-genes' score") as caught:
        run_finetune(job)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "nan").exists()


def test_tune_genes_zero_or_an_unreadable_file_is_one_line(cohort: Path, tmp_path: Path):
    from varscore.training.finetune import monitor_gene_names

    job = FinetuneJob(_inputs(cohort), tmp_path / "m", tune_genes="0", seed=1)
    with pytest.raises(OptionError, match="--tune-genes 0: name at least 1 gene"):  # was: 'the table has 2 genes'
        monitor_gene_names(job, ["SIMG0001"])
    binary = tmp_path / "genes.bin"
    binary.write_bytes(b"\x1f\x8b\x08\x00\xff\xfe")
    job.tune_genes = str(binary)
    with pytest.raises(InputError, match="Cannot read --tune-genes"):  # a UnicodeDecodeError traceback before
        monitor_gene_names(job, ["SIMG0001"])
