"""Tests of the Borzoi backbone on tiny random models (no downloads): conformance, borzoi-pytorch's own
forward as the reference, pre-trained loading, and track-mode fine-tuning -> annotate -> evaluate."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import cohort_args, optional_import

torch = pytest.importorskip("torch")
borzoi_pytorch = optional_import("borzoi_pytorch", "pip install -e .[borzoi]")

from click.testing import CliRunner  # noqa: E402

from varscore.cli import cli  # noqa: E402
from varscore.errors import BundleError, InputError, NotFittedError  # noqa: E402
from varscore.plugin.conformance import check_backbone  # noqa: E402
from varscore_plugins.borzoi import BorzoiBackbone, tiny_params  # noqa: E402
from varscore_plugins.outputs import ScalarOutput, TrackOutput  # noqa: E402

WINDOW = 2048
BINS = WINDOW // 32


def _one_hot(rng: np.random.Generator, n: int, length: int = WINDOW) -> np.ndarray:
    """``(n, length, 4)`` float32."""
    return np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(n, length))]


@pytest.fixture(scope="module")
def scalar_model() -> BorzoiBackbone:
    return BorzoiBackbone(**tiny_params()).build()


def test_scalar_and_track_heads_pass_check_backbone():
    check_backbone(BorzoiBackbone, tiny_params())
    check_backbone(BorzoiBackbone, tiny_params(head="track", n_tracks=2), output_mode=TrackOutput(track=1))


def test_predict_matches_borzoi_pytorch_forward_on_channels_first_input():
    """The package's own forward (channels-first, softplus human head) on the same weights."""
    import inspect

    from borzoi_pytorch.pytorch_borzoi_transformer import get_positional_embed

    backbone = BorzoiBackbone(**tiny_params(head="track", n_tracks=3, seed=5)).build()
    model = backbone.model_
    x = _one_hot(np.random.default_rng(1), 2)
    with torch.inference_mode():
        expected = model(torch.from_numpy(x).transpose(1, 2)).transpose(1, 2).numpy()  # Borzoi.forward
    np.testing.assert_allclose(backbone.predict(x), expected, rtol=1e-5, atol=1e-6)
    assert expected.shape == (2, BINS, 3) and np.all(expected >= 0)
    # the relative-position table fits the transformer's WINDOW / 128 positions
    attention = next(m for m in model.modules() if type(m).__name__ == "Attention")
    n, features = WINDOW // 128, attention.num_rel_pos_features
    if "seq_len_train" in inspect.signature(get_positional_embed).parameters:  # borzoi-pytorch >= 0.5
        table = get_positional_embed(n, n, features, "cpu")
    else:
        table = get_positional_embed(n, features, "cpu")
    assert attention.positions.shape[0] == 2 * n - 1 and torch.equal(attention.positions, table)


def test_scalar_head_is_linear_and_track_head_softplus():
    x = _one_hot(np.random.default_rng(2), 2)
    for head, positive in (("scalar", False), ("track", True)):
        backbone = BorzoiBackbone(**tiny_params(head=head)).build()
        with torch.no_grad():
            backbone.head_module().bias.fill_(-5.0)
        pred = backbone.predict(x)
        assert pred.shape == (2, BINS, 1)
        assert bool(np.all(pred > 0)) is positive  # softplus keeps coverage positive; the scalar head is linear
        assert backbone.head_module().out_channels == 1


def test_ism_through_output_modes_equals_direct_predictions(scalar_model):
    rng = np.random.default_rng(3)
    reference = _one_hot(rng, 1)[0]
    subs = [(5, "A"), (WINDOW // 2, "C"), (WINDOW - 3, "G")]
    for mode in (ScalarOutput(stat="SUM"), ScalarOutput(center_bins=3), ScalarOutput(stat="D2")):
        result = mode.score(scalar_model.ism(reference, subs, mode.features, batch_size=2))
        ref_features = mode.features(scalar_model.predict(reference[None]))[0]
        for row, (offset, base) in enumerate(subs):
            edited = reference.copy()
            edited[offset] = np.eye(4, dtype=np.float32)["ACGT".index(base)]
            alt = mode.features(scalar_model.predict(edited[None]))[0]
            if mode.stat == "D2":
                expected = np.sqrt(((alt - ref_features) ** 2).sum())
            else:
                expected = alt[0] - ref_features[0]
            # equal up to float32 round-off of outputs of this magnitude (a random tiny model's SNV effects are
            # themselves ~1e-6, so a fixed 1e-6 compares round-off with round-off)
            tolerance = max(1e-6, 8 * float(np.finfo(np.float32).eps) * float(np.abs(ref_features).sum()))
            assert result.delta[row, 0] == pytest.approx(float(expected), rel=1e-4, abs=tolerance)


def test_bad_parameters_fail_clearly():
    with pytest.raises(InputError, match="multiple of 128"):
        BorzoiBackbone(**tiny_params(window_size=2000))
    with pytest.raises(InputError, match="unknown head"):
        BorzoiBackbone(**tiny_params(head="cage"))
    with pytest.raises(InputError, match="channels must be 6"):
        BorzoiBackbone(**tiny_params(channels=[8, 8]))
    with pytest.raises(InputError, match="n_tracks=1"):
        BorzoiBackbone(**tiny_params(n_tracks=2))
    with pytest.raises(NotFittedError):
        BorzoiBackbone(**tiny_params()).predict(np.zeros((1, WINDOW, 4), np.float32))


def test_pretrained_directory_loads_by_config_and_state_dict(tmp_path: Path):
    """A local save_pretrained-style directory (Borzoi's conv widths, a small transformer): the
    pre-trained head reproduces borzoi-pytorch's forward; a new track head keeps the trunk."""
    from borzoi_pytorch import Borzoi
    from borzoi_pytorch.config_borzoi import BorzoiConfig
    from safetensors.torch import save_file

    hparams = {"dim": 32, "depth": 1, "heads": 2, "attn_dim_key": 8, "attn_dim_value": 16}
    torch.manual_seed(0)
    original = Borzoi(BorzoiConfig(**hparams, bins_to_return=BINS)).eval()
    (tmp_path / "config.json").write_text(json.dumps({**hparams, "model_type": "borzoi", "bins_to_return": 6144}))
    save_file({k: v.contiguous() for k, v in original.state_dict().items()}, str(tmp_path / "model.safetensors"))

    pretrained = BorzoiBackbone(window_size=WINDOW, head="pretrained", pretrained_dir=tmp_path).build()
    assert pretrained.params["dim"] == 32 and pretrained.n_tracks == 7611
    x = _one_hot(np.random.default_rng(4), 1)
    from varscore_plugins.borzoi import _fit_positions

    _fit_positions(original, WINDOW // 128)
    with torch.inference_mode():
        expected = original(torch.from_numpy(x).transpose(1, 2)).transpose(1, 2).numpy()
    np.testing.assert_allclose(pretrained.predict(x), expected, rtol=1e-4, atol=1e-5)

    track = BorzoiBackbone(window_size=WINDOW, head="track", pretrained_dir=tmp_path).build()
    trunk = {k: v for k, v in track.model_.state_dict().items() if not k.startswith("human_head")}
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in trunk.items())
    assert track.predict(x).shape == (1, BINS, 1)

    with pytest.raises(InputError, match="lacks config.json"):
        BorzoiBackbone(window_size=WINDOW, pretrained_dir=tmp_path / "missing").build()


def test_load_rejects_weights_of_another_architecture(tmp_path: Path, scalar_model):
    scalar_model.save(tmp_path)
    with pytest.raises(BundleError, match="does not fit"):
        BorzoiBackbone(**tiny_params(dim=64)).load(tmp_path)


# --- track-mode fine-tuning on a simulated cohort ---


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    from varscore.simulate import SimulationConfig, simulate_cohort

    out = tmp_path_factory.mktemp("cohort")
    simulate_cohort(SimulationConfig(people=40, genes=2, window=WINDOW, seed=3, h2=0.6, coverage_bigwig=True), out)
    return out


def _model_params(**overrides: object) -> dict[str, object]:
    return {k: v for k, v in tiny_params(**overrides).items() if k != "window_size"}


def _model_args(**overrides: object) -> list[str]:
    return [arg for k, v in _model_params(**overrides).items() for arg in ("--param", f"{k}={json.dumps(v)}")]


def test_bigwig_and_npz_coverage_read_the_same(cohort: Path):
    from varscore.genome.fasta import load_genes
    from varscore.training.lightning import read_coverage
    from varscore.types import tss_window

    genes = load_genes(cohort / "genes.tsv")
    people = ["SIM0003", "SIM0001", "SIM0040"]
    for window_size, bin_size in ((WINDOW, 32), (WINDOW // 2, 128)):
        windows = {g.gene_id: tss_window(g, window_size) for g in genes}
        from_npz = read_coverage(cohort / "coverage.npz", windows, people, bin_size)
        from_bigwig = read_coverage(cohort / "coverage", windows, people, bin_size)
        for gene_id in windows:
            assert from_npz[gene_id].shape == (3, window_size // bin_size)
            np.testing.assert_allclose(from_npz[gene_id], from_bigwig[gene_id], rtol=1e-6)
    with pytest.raises(InputError, match="no data for 1 people"):
        read_coverage(cohort / "coverage.npz", windows, ["SIM9999"], 32)


def test_coverage_leaves_the_other_simulated_files_unchanged(cohort: Path, tmp_path: Path):
    from varscore.simulate import SimulationConfig, simulate_cohort

    simulate_cohort(SimulationConfig(people=40, genes=2, window=WINDOW, seed=3, h2=0.6), tmp_path)
    for name in ("cohort.vcf.gz", "cohort.expression.bed.gz", "cohort.tpm.tsv", "truth_variants.tsv"):
        assert (tmp_path / name).read_bytes() == (cohort / name).read_bytes(), name
    assert not (tmp_path / "coverage.npz").exists()
    again = tmp_path / "again"
    simulate_cohort(SimulationConfig(people=40, genes=2, window=WINDOW, seed=3, h2=0.6, coverage=True), again)
    assert (again / "coverage.npz").read_bytes() == (cohort / "coverage.npz").read_bytes()  # byte-stable


def test_simulated_coverage_follows_expression(cohort: Path):
    """People's total coverage of a gene tracks their simulated TPM (so genetic effects show)."""
    import pandas as pd

    npz = np.load(cohort / "coverage.npz")
    tpm = pd.read_csv(cohort / "cohort.tpm.tsv", sep="\t", index_col=0)
    for g, gene_id in enumerate(npz["gene_id"]):
        totals = npz["values"][g].sum(axis=1)
        r = np.corrcoef(totals, tpm.loc[str(gene_id), [str(p) for p in npz["people"]]].to_numpy())[0, 1]
        assert r > 0.8, (gene_id, r)


def test_track_mode_finetune_then_annotate_and_evaluate(cohort: Path, tmp_path: Path):
    import cyvcf2

    from varscore.models.bundle import load_bundle
    from varscore.scoring.gene_mode import ScoringJob, run_scoring
    from varscore.training.cohort import CohortInputs
    from varscore.training.evaluate import EvaluateJob, PlotCoverageJob, run_evaluation, run_plot_coverage
    from varscore.training.finetune import FinetuneJob, run_finetune

    model = tmp_path / "borzoi-track"
    inputs = CohortInputs(
        cohort / "cohort.vcf.gz", cohort / "cohort.expression.bed.gz", cohort / "genes.tsv", cohort / "reference.fa"
    )
    job = FinetuneJob(
        replace(inputs, coverage=cohort / "coverage.npz"),
        model,
        backbone="borzoi",
        backbone_params=_model_params(head="track"),
        settings={
            "window": WINDOW,
            "lr": 1e-2,
            "batch_size": 4,
            "accumulate": 1,
            "people_per_epoch": 8,
            "max_epochs": 2,
        },
        training={"freeze_trunk_epochs": 1, "progress": False},
        output_mode="track",
    )
    assert run_finetune(job).bundle == model
    manifest = json.loads((model / "varscore.json").read_text())
    assert manifest["output_mode"] == {"name": "track", "params": {"track": 0, "stat": "SUM"}}
    history = manifest["metrics"]["history"]
    assert len(history) == 2 and all(np.isfinite(row["tune_loss"]) for row in history)
    assert manifest["provenance"]["training"]["freeze_trunk_epochs"] == 1

    out = tmp_path / "scored.vcf"
    summary = run_scoring(ScoringJob(cohort / "cohort.vcf.gz", model, out))
    assert "genes scored: 2" in summary.lines()
    # ALT_PRED - REF_PRED of a scored SNV is the SUM statistic of direct predictions
    bundle = load_bundle(model)
    backbone = bundle.backbone()
    from varscore.genome.fasta import Genome
    from varscore.types import tss_window

    genome = Genome(cohort / "reference.fa")
    gene = bundle.genes[0]
    window = tss_window(gene, WINDOW)
    checked = 0
    for record in cyvcf2.VCF(str(out)):
        info = record.INFO.get("VARSCORE")
        if not info or not (window.start < record.POS <= window.end) or len(record.REF) != 1:
            continue
        entries = [e for e in str(info).split(",") if e.split("|")[1] == gene.label]
        if not entries or len(entries[0].split("|")[0]) != 1:
            continue
        allele, _, _, ref_pred, alt_pred, delta, _ = entries[0].split("|")
        reference = genome.window_sequence(window).one_hot
        edited = reference.copy()
        edited[record.POS - 1 - window.start] = np.eye(4, dtype=np.float32)["ACGT".index(allele)]
        pred = backbone.predict(np.stack([reference, edited]))[:, :, 0].sum(axis=1)
        assert float(ref_pred) == pytest.approx(float(pred[0]), rel=1e-3)
        assert float(delta) == pytest.approx(float(pred[1] - pred[0]), rel=1e-2, abs=1e-3)
        checked += 1
        if checked == 3:
            break
    assert checked == 3

    table = tmp_path / "eval.tsv"
    run_evaluation(EvaluateJob(replace(inputs, coverage=cohort / "coverage"), models=[model], output=table))
    import pandas as pd

    rows = pd.read_csv(table, sep="\t")
    assert list(rows.columns[-4:]) == ["bin_pearson", "cov_observed", "cov_predicted", "cov_pearson"]
    npz = np.load(cohort / "coverage.npz")
    columns = [list(npz["people"]).index(p) for p in manifest["people"]["test"]]
    for g, gene_id in enumerate(npz["gene_id"]):
        observed = npz["values"][g][columns].astype(np.float64)  # same 32-bp bins as the model
        cov = [np.std(col, ddof=1) / np.mean(col) for col in observed.T if np.mean(col) > 0]
        row = rows[rows.gene == next(x.label for x in bundle.genes if x.gene_id == gene_id)].iloc[0]
        assert row.cov_observed == pytest.approx(np.mean(cov), rel=1e-3)

    png = tmp_path / "heat.png"
    gene_inputs = replace(inputs, coverage=cohort / "coverage.npz", gene_names=[bundle.genes[1].label])
    assert run_plot_coverage(PlotCoverageJob(gene_inputs, model, png)).path == png
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    result = CliRunner().invoke(  # the option check's message
        cli,
        [
            "finetune",
            *cohort_args(cohort),
            "--backbone",
            "borzoi",
            "-o",
            str(tmp_path / "x"),
            "--window",
            str(WINDOW),
            *_model_args(),
            "--output-mode",
            "track",
        ],
    )
    assert result.exit_code != 0 and "--coverage" in result.output


def test_unsupported_output_mode_is_a_clear_error(cohort: Path, tmp_path: Path):
    result = CliRunner().invoke(
        cli,
        [
            "finetune",
            *cohort_args(cohort),
            "--backbone",
            "ridge",
            "-o",
            str(tmp_path / "r"),
            "--output-mode",
            "track",
            "--coverage",
            str(cohort / "coverage.npz"),
        ],
    )
    assert result.exit_code == 1
    assert "does not support output mode 'track'; it supports: scalar" in result.output


def test_columnwise_pearson_and_cov_match_scipy_and_a_loop():
    from scipy.stats import pearsonr

    from varscore.training.evaluate import CoverageComparison, columnwise_pearson

    rng = np.random.default_rng(0)
    a, b = rng.poisson(3.0, size=(12, 6)).astype(float), rng.poisson(3.0, size=(12, 6)).astype(float)
    a[:, 2] = 1.0  # constant bin
    b[:, 4] = a[:, 4] * 2 + 1
    got = columnwise_pearson(a, b)
    for k in range(6):
        if k == 2:
            assert np.isnan(got[k])
        else:
            assert got[k] == pytest.approx(pearsonr(a[:, k], b[:, k])[0], abs=1e-12)
    a[:, 3] = 0.0
    cov = CoverageComparison.cov(a)
    assert np.isnan(cov[3]) and cov[2] == 0.0
    assert cov[0] == pytest.approx(np.std(a[:, 0], ddof=1) / np.mean(a[:, 0]))


def test_frozen_trunk_epoch_trains_only_the_head(cohort: Path, tmp_path: Path):
    from varscore.training.lightning import CohortInputs, TrainingConfig, load_cohort

    backbone = BorzoiBackbone(**tiny_params(head="track")).build()
    inputs = CohortInputs(
        cohort / "cohort.vcf.gz",
        cohort / "cohort.expression.bed.gz",
        cohort / "genes.tsv",
        cohort / "reference.fa",
        coverage=cohort / "coverage.npz",
    )
    data = load_cohort(inputs, WINDOW, bin_size=backbone.bin_size).data
    head_names = {f"human_head.{n}" for n, _ in backbone.head_module().named_parameters()}
    before = {n: p.detach().clone() for n, p in backbone.model_.named_parameters()}
    config = TrainingConfig(
        lr=1e-2,
        batch_size=4,
        accumulate=1,
        people_per_epoch=8,
        max_epochs=1,
        output_mode="track",
        freeze_trunk_epochs=1,
        output_dir=str(tmp_path),
        progress=False,
        accelerator="cpu",
    )
    from varscore.training.trainer import finetune_sequence_backbone

    result = finetune_sequence_backbone(backbone, data, config)
    after = dict(backbone.model_.named_parameters())
    assert result.best_epoch == 0 and "tune_loss" in result.history[0]
    assert all(torch.equal(before[n], after[n]) for n in before if n not in head_names)
    assert any(not torch.equal(before[n], after[n]) for n in head_names)
    with pytest.raises(InputError, match="track_loss"):
        TrainingConfig(output_mode="track", track_loss="huber")


def test_track_losses_match_torch():
    from varscore.training.lightning import track_loss

    rng = np.random.default_rng(1)
    pred = torch.tensor(rng.gamma(2.0, 2.0, size=(4, 16)))
    target = torch.tensor(rng.poisson(4.0, size=(4, 16)).astype(float))
    poisson = torch.nn.PoissonNLLLoss(log_input=False, full=False, eps=1e-8)(pred, target)
    assert track_loss(pred, target).item() == pytest.approx(poisson.item(), rel=1e-6)
    assert track_loss(pred, target, "mse").item() == pytest.approx(torch.nn.functional.mse_loss(pred, target).item())
    with pytest.raises(InputError, match="non-negative"):
        track_loss(pred - 10.0, target)
