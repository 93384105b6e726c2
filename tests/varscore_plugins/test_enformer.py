"""Tests of the Enformer backbone on tiny random models (no downloads, a few seconds on a CPU)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch  # noqa: E402
from enformer_pytorch import Enformer, str_to_one_hot  # noqa: E402
from enformer_pytorch.finetune import HeadAdapterWrapper  # noqa: E402
from safetensors.torch import save_model  # noqa: E402

from tests.conftest import perturb_weights
from varscore.errors import BundleError, InputError, NotFittedError  # noqa: E402
from varscore.genome.sequence import BASES, one_hot  # noqa: E402
from varscore.plugin.conformance import check_backbone  # noqa: E402
from varscore_plugins.enformer import EnformerBackbone, register_backbones, tiny_params  # noqa: E402
from varscore_plugins.outputs import ScalarOutput, TrackOutput  # noqa: E402

WINDOW = 2048
BINS = WINDOW // 128
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".ckpt"}


def _random_sequence(rng: np.random.Generator, length: int = WINDOW) -> str:
    return "".join(rng.choice(list(BASES), size=length))


def _random_one_hot(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, WINDOW, 4)`` float32."""
    return np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(n, WINDOW))]


def _enformer_hparams(**overrides: object) -> dict[str, object]:
    hparams = {k: v for k, v in tiny_params(WINDOW).items() if k != "window_size"}
    hparams.update(overrides)
    return hparams


def _no_pickles(directory: Path) -> None:
    written = [p.name for p in directory.rglob("*") if p.suffix in PICKLE_SUFFIXES]
    assert not written, f"pickle files written: {written}"


# -- contract --------------------------------------------------------------------------------------


def test_conformance_variformer_head() -> None:
    check_backbone(EnformerBackbone, tiny_params(WINDOW))


def test_conformance_pretrained_head() -> None:
    check_backbone(EnformerBackbone, tiny_params(WINDOW, head="pretrained"), ScalarOutput(track=5, center_bins=3))
    check_backbone(EnformerBackbone, tiny_params(WINDOW, head="pretrained"), TrackOutput(track=2))


def test_registers_as_enformer() -> None:
    registered: list[type] = []
    register_backbones(registered.append)
    assert registered == [EnformerBackbone]
    assert EnformerBackbone.name == "enformer"
    assert EnformerBackbone.output_modes == ("scalar", "track")


def test_import_does_not_load_torch() -> None:
    code = (
        "import sys, varscore_plugins.enformer; "
        "heavy = [m for m in ('torch', 'transformers', 'enformer_pytorch') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ.copy())


def test_default_geometry_is_variformer() -> None:
    backbone = EnformerBackbone()
    assert (backbone.window_size, backbone.bin_size, backbone.n_bins, backbone.n_tracks) == (49_152, 128, 384, 1)
    assert EnformerBackbone(head="pretrained").n_tracks == 5313


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"window_size": 2000}, "not a multiple of the bin size 128"),
        ({"dim": 48, "heads": 3}, "multiple of 6"),
        ({"dim_divisible_by": 128}, "does not suit dim=48"),
        ({"head": "enformer"}, "unknown head 'enformer'"),
        ({"head": "pretrained", "output_head": "dog"}, "output_head 'dog'"),
        ({"num_downsamples": 2}, "at least 3"),
        ({"use_tf_gamma": True}, "1536 bins"),
    ],
)
def test_invalid_hyperparameters(overrides: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        EnformerBackbone(**{**tiny_params(WINDOW), **overrides})


def test_predict_errors() -> None:
    backbone = EnformerBackbone(**tiny_params(WINDOW))
    x = _random_one_hot(np.random.default_rng(0), 1)
    with pytest.raises(NotFittedError):
        backbone.predict(x)
    backbone.build()
    with pytest.raises(InputError, match=r"\(N, 2048, 4\); got shape \(1, 1024, 4\)"):
        backbone.predict(x[:, :1024])
    with pytest.raises(InputError, match=r"got shape \(2048, 4\)"):
        backbone.predict(x[0])
    assert backbone.predict(x[:0]).shape == (0, BINS, 1)


def test_seed_fixes_random_init() -> None:
    x = _random_one_hot(np.random.default_rng(0), 2)
    first = EnformerBackbone(**tiny_params(WINDOW, seed=3)).build().predict(x)
    again = EnformerBackbone(**tiny_params(WINDOW, seed=3)).build().predict(x)
    other = EnformerBackbone(**tiny_params(WINDOW, seed=4)).build().predict(x)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_configure_cpu_and_bf16_fallback(caplog: pytest.LogCaptureFixture) -> None:
    backbone = EnformerBackbone(**tiny_params(WINDOW)).build()
    x = _random_one_hot(np.random.default_rng(0), 1)
    before = backbone.predict(x)
    with caplog.at_level(logging.WARNING, logger="varscore_plugins.enformer"):
        backbone.configure("cpu", bf16=True)
    assert "bf16" in caplog.text
    np.testing.assert_array_equal(backbone.predict(x), before)
    with pytest.raises(InputError, match="Unknown device"):
        backbone.configure("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            backbone.configure("cuda")
        backbone.configure("auto")
        np.testing.assert_array_equal(backbone.predict(x), before)


# -- ISM against a direct enformer-pytorch forward -----------------------------------------------


def test_ism_matches_direct_head_adapter_forward(tmp_path: Path) -> None:
    torch.manual_seed(1)
    enformer = Enformer.from_hparams(**_enformer_hparams(), target_length=-1)
    model = HeadAdapterWrapper(
        enformer=enformer, num_tracks=1, post_transformer_embed=False, output_activation=torch.nn.Identity()
    )
    perturb_weights(model, 1, mean_scale=0.1)
    model.eval()
    save_model(model, str(tmp_path / "weights.safetensors"))
    backbone = EnformerBackbone(**tiny_params(WINDOW)).load(tmp_path)

    rng = np.random.default_rng(7)
    sequence = _random_sequence(rng)
    offsets = [0, 9, 300, 1000, WINDOW // 2 - 1, WINDOW // 2, 1100, 1700, WINDOW - 1]
    substitutions = [(off, rng.choice([b for b in BASES if b != sequence[off]])) for off in offsets]
    result = backbone.ism(one_hot(sequence), substitutions, ScalarOutput().reduce, batch_size=4)

    centre = BINS // 2
    with torch.no_grad():
        reference = model(str_to_one_hot(sequence)[None])[0, centre, 0].item()
        direct = np.array(
            [
                model(str_to_one_hot(sequence[:off] + base + sequence[off + 1 :])[None])[0, centre, 0].item()
                - reference
                for off, base in substitutions
            ]
        )
    assert result.reference.shape == (1,) and result.alternates.shape == (len(offsets), 1)
    assert abs(result.reference[0] - reference) < 1e-5
    assert np.max(np.abs(result.delta[:, 0] - direct)) < 1e-5
    assert np.max(np.abs(direct)) > 1e-3, "the test model ignores the substitutions"


# -- pre-trained Enformer from a local directory --------------------------------------------------


def _write_pretrained(directory: Path, writer: str, seed: int = 2) -> Enformer:
    """A tiny pre-trained Enformer in ``directory``, with a published-style config (target 896)."""
    torch.manual_seed(seed)
    enformer = Enformer.from_hparams(**_enformer_hparams(), target_length=896)
    perturb_weights(enformer, seed, mean_scale=0.1)
    enformer.eval()
    if writer == "save_pretrained":
        # transformers refuses enformer-pytorch's modules registered under two names unless told
        # which names are aliases; it then keeps stem.*, conv_tower.*, ... and drops _trunk.*.
        enformer._dynamic_tied_weights_keys = [r"^_trunk\."]
        enformer.save_pretrained(directory, safe_serialization=True)
    else:  # what safetensors' converter writes: one name per shared tensor, no "format" metadata
        enformer.config.save_pretrained(directory)
        save_model(enformer, str(directory / "model.safetensors"))
    assert {p.name for p in directory.iterdir()} == {"config.json", "model.safetensors"}
    return enformer


@pytest.mark.parametrize("writer", ["save_pretrained", "save_model"])
def test_pretrained_dir_predictions_match_original(tmp_path: Path, writer: str) -> None:
    pretrained = tmp_path / "pretrained"
    pretrained.mkdir()
    original = _write_pretrained(pretrained, writer)
    x = _random_one_hot(np.random.default_rng(3), 2)
    with torch.no_grad():
        heads = original(torch.from_numpy(x), target_length=-1)
        embeddings = original(torch.from_numpy(x), return_only_embeddings=True)

    # the architecture comes from config.json, not from the (full-size) defaults
    backbone = EnformerBackbone(head="pretrained", pretrained_dir=pretrained, window_size=WINDOW).build()
    assert backbone.params["dim"] == 48 and backbone.params["depth"] == 2
    assert backbone.params["output_heads"] == {"human": 8, "mouse": 4}
    pred = backbone.predict(x)
    assert pred.shape == (2, BINS, 8)
    np.testing.assert_allclose(pred, heads["human"].numpy(), atol=1e-5)

    track = 5
    scalar = ScalarOutput(track=track, center_bins=3).reduce(pred)
    by_hand = heads["human"].numpy()[:, BINS // 2 - 1 : BINS // 2 + 2, track].sum(axis=1)
    np.testing.assert_allclose(scalar[:, 0], by_hand, atol=1e-5)

    mouse = EnformerBackbone(
        head="pretrained", output_head="mouse", pretrained_dir=pretrained, window_size=WINDOW
    ).build()
    np.testing.assert_allclose(mouse.predict(x), heads["mouse"].numpy(), atol=1e-5)

    # the Variformer head starts from the same pre-trained trunk
    variformer = EnformerBackbone(pretrained_dir=pretrained, window_size=WINDOW).build()
    with torch.no_grad():
        trunk = variformer.model_.enformer(torch.from_numpy(x), return_only_embeddings=True)
    np.testing.assert_allclose(trunk.numpy(), embeddings.numpy(), atol=1e-5)

    # a saved model reloads from params alone, without the pre-trained directory
    bundle = tmp_path / "bundle"
    backbone.save(bundle)
    for path in pretrained.iterdir():
        path.unlink()
    pretrained.rmdir()
    restored = EnformerBackbone(**backbone.params).load(bundle)
    np.testing.assert_array_equal(restored.predict(x), pred)


def test_pretrained_dir_missing(tmp_path: Path) -> None:
    backbone = EnformerBackbone(**tiny_params(WINDOW, head="pretrained", pretrained_dir=tmp_path / "nowhere"))
    with pytest.raises(InputError, match="nowhere.*is not a directory.*never downloads"):
        backbone.build()


def test_pretrained_dir_with_only_pickle_weights(tmp_path: Path) -> None:
    Enformer.from_hparams(**_enformer_hparams()).config.save_pretrained(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not read")  # never unpickled
    backbone = EnformerBackbone(**tiny_params(WINDOW, head="pretrained", pretrained_dir=tmp_path))
    with pytest.raises(InputError, match="lacks model.safetensors.*pytorch_model.bin.*pickle"):
        backbone.build()


def test_pretrained_dir_without_config(tmp_path: Path) -> None:
    save_model(Enformer.from_hparams(**_enformer_hparams()), str(tmp_path / "model.safetensors"))
    backbone = EnformerBackbone(**tiny_params(WINDOW, head="pretrained", pretrained_dir=tmp_path))
    with pytest.raises(InputError, match="lacks config.json"):
        backbone.build()


def test_pretrained_weights_that_do_not_fit_config(tmp_path: Path) -> None:
    _write_pretrained(tmp_path, "save_model")
    Enformer.from_hparams(**_enformer_hparams(depth=3)).config.save_pretrained(tmp_path)
    backbone = EnformerBackbone(**tiny_params(WINDOW, head="pretrained", pretrained_dir=tmp_path))
    with pytest.raises(InputError, match="do not fit.*missing"):
        backbone.build()


# -- save / load ----------------------------------------------------------------------------------


@pytest.mark.parametrize("head", ["variformer", "pretrained"])
def test_save_load_round_trip(tmp_path: Path, head: str) -> None:
    params = tiny_params(WINDOW, head=head)
    backbone = EnformerBackbone(**params).build()
    perturb_weights(backbone.model_, 5, mean_scale=0.1)
    x = _random_one_hot(np.random.default_rng(5), 3)
    pred = backbone.predict(x)

    backbone.save(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["weights.safetensors"]
    _no_pickles(tmp_path)
    restored = EnformerBackbone(**params).load(tmp_path)
    np.testing.assert_array_equal(restored.predict(x), pred)
    saved, loaded = backbone.model_.state_dict(), restored.model_.state_dict()
    assert saved.keys() == loaded.keys()
    for key in saved:
        assert torch.equal(saved[key], loaded[key]), key


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="weights.safetensors does not exist"):
        EnformerBackbone(**tiny_params(WINDOW)).load(tmp_path)
    EnformerBackbone(**tiny_params(WINDOW)).build().save(tmp_path)
    with pytest.raises(BundleError, match="does not fit"):
        EnformerBackbone(**tiny_params(WINDOW, head="pretrained")).load(tmp_path)
    with pytest.raises(BundleError, match="does not fit"):
        EnformerBackbone(**tiny_params(WINDOW, depth=3)).load(tmp_path)


# -- norm_stats="window" ---------------------------------------------------------------------------


def test_conformance_window_norm() -> None:
    check_backbone(EnformerBackbone, tiny_params(WINDOW, norm_stats="window"))


def test_window_norm_unknown_value() -> None:
    with pytest.raises(InputError, match="unknown norm_stats 'layer'"):
        EnformerBackbone(**tiny_params(WINDOW, norm_stats="layer"))


def test_window_norm_matches_numpy_and_ignores_batch_and_mode() -> None:
    """Every batch norm normalises each window by its own per-channel mean and (biased) variance
    over positions, in train and eval mode, whatever else is in the batch; the state dict keeps
    Enformer's names."""
    batch_model = EnformerBackbone(**tiny_params(WINDOW)).build()
    window_model = EnformerBackbone(**tiny_params(WINDOW, norm_stats="window")).build()
    assert batch_model.model_.state_dict().keys() == window_model.model_.state_dict().keys()
    norms = [m for m in window_model.model_.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert norms and all(type(m).__name__ == "WindowNorm1d" for m in norms)

    rng = np.random.default_rng(3)
    norm = norms[1]
    with torch.no_grad():
        norm.weight.copy_(torch.from_numpy(rng.normal(1.0, 0.3, norm.num_features).astype(np.float32)))
        norm.bias.copy_(torch.from_numpy(rng.normal(0.0, 0.3, norm.num_features).astype(np.float32)))
    x = rng.normal(2.0, 3.0, (3, norm.num_features, 40)).astype(np.float32)
    mean, var = x.mean(axis=2, keepdims=True), x.var(axis=2, keepdims=True)
    expected = (x - mean) / np.sqrt(var + norm.eps) * norm.weight.detach().numpy()[:, None] + (
        norm.bias.detach().numpy()[:, None]
    )
    for training in (True, False):
        norm.train(training)
        with torch.no_grad():
            got = norm(torch.from_numpy(x)).numpy()
            alone = norm(torch.from_numpy(x[1:2])).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(alone, expected[1:2], rtol=1e-4, atol=1e-4)

    # The whole model: a window's prediction does not depend on the other windows of its batch.
    windows = _random_one_hot(rng, 4)
    together = window_model.predict(windows)
    np.testing.assert_allclose(window_model.predict(windows[2:3]), together[2:3], rtol=1e-5, atol=1e-6)


def test_window_norm_ism_and_edits_equal_full_forwards() -> None:
    """With window statistics a base changes every bin, so ISM and predict_edits run full
    forward passes: equal to predicting the edited windows."""
    backbone = EnformerBackbone(**tiny_params(WINDOW, norm_stats="window")).build()
    perturb_weights(backbone.model_, 2, mean_scale=0.1)
    assert not backbone.uses_fast_ism()
    rng = np.random.default_rng(8)
    reference = _random_one_hot(rng, 1)[0]
    subs = [(int(p), BASES[int(b)]) for p, b in zip(rng.integers(0, WINDOW, 6), rng.integers(0, 4, 6), strict=True)]
    output = ScalarOutput(track=0, center_bins=1)
    result = backbone.ism(reference, subs, output.reduce, batch_size=4)
    for row, (pos, base) in enumerate(subs):
        edited = reference.copy()
        edited[pos] = one_hot(base)[0]
        np.testing.assert_allclose(
            result.alternates[row], output.reduce(backbone.predict(edited[None]))[0], rtol=1e-4, atol=1e-5
        )

    offsets = [np.sort(rng.choice(WINDOW, size=k, replace=False)) for k in (1, 3, 0)]
    edits = [(o, np.full((len(o), 4), 0.25, dtype=np.float32)) for o in offsets]
    windows = np.repeat(reference[None], len(edits), axis=0)
    for row, (o, values) in enumerate(edits):
        windows[row, o] = values
    np.testing.assert_allclose(
        backbone.predict_edits(reference, edits, batch_size=2), backbone.predict(windows), rtol=1e-4, atol=1e-5
    )
    with pytest.raises(InputError, match="outside the 2048-bp window"):
        backbone.predict_edits(reference, [(np.array([WINDOW]), np.ones((1, 4), dtype=np.float32))])


def test_window_norm_converts_sync_batch_norms() -> None:
    """Inside a process group enformer-pytorch builds SyncBatchNorm; window statistics must
    replace those too (else distributed scoring would use running statistics)."""
    from varscore_plugins.enformer import _use_window_norm

    model = torch.nn.Sequential(torch.nn.SyncBatchNorm(3), torch.nn.Conv1d(3, 3, 1), torch.nn.BatchNorm1d(3))
    _use_window_norm(model)
    assert [type(m).__name__ for m in model] == ["WindowNorm1d", "Conv1d", "WindowNorm1d"]
    x = torch.randn(2, 3, 10) * 4 + 3
    model.eval()
    with torch.no_grad():
        out = model[0](x)
    np.testing.assert_allclose(out.mean(dim=2).numpy(), 0, atol=1e-5)


@pytest.mark.parametrize("pool", ["mean", "attention", "center+sum"])
def test_pooled_head_equals_explicit_pooling_and_round_trips(pool: str, tmp_path: Path) -> None:
    """pool="mean"/"attention": every bin holds Linear(pooled embeddings), pooled by an explicit
    numpy mean / softmax-weighted mean of the trunk's embeddings; "center+sum": each bin's own
    Linear(embedding) plus a second linear read of their sum over bins. The bundle reloads each."""
    backbone = EnformerBackbone(**tiny_params(window_size=WINDOW, seed=3, pool=pool)).build()
    module = backbone.model_
    extra = {"attention": "score", "center+sum": "pooled"}.get(pool)
    if extra:  # non-trivial weights (they start at zero: the mean, or the centre-bin head)
        with torch.no_grad():
            getattr(module.to_tracks, extra).weight.normal_(0, 1.0)
    x = one_hot("".join(np.random.default_rng(1).choice(list("ACGT"), size=WINDOW)))[None].repeat(2, axis=0)
    x[1, 100] = [0, 0, 0, 1]  # far from the centre
    pred = backbone.predict(x)
    with torch.no_grad():
        emb = module.enformer(torch.from_numpy(x), return_only_embeddings=True).numpy().astype(np.float64)
    linear = module.to_tracks[0]
    weight, bias = linear.weight.detach().numpy().T.astype(np.float64), linear.bias.detach().numpy()
    if pool == "center+sum":
        second = module.to_tracks.pooled.weight.detach().numpy().T.astype(np.float64)
        expected = emb @ weight + bias + (emb.sum(axis=1) @ second)[:, None, :]
    else:
        if pool == "mean":
            pooled = emb.mean(axis=1)
        else:
            logits = emb @ module.to_tracks.score.weight.detach().numpy().astype(np.float64).T  # (N, bins, 1)
            weights = np.exp(logits - logits.max(axis=1, keepdims=True))
            pooled = (weights / weights.sum(axis=1, keepdims=True) * emb).sum(axis=1)
        expected = np.repeat((pooled @ weight + bias)[:, None, :], WINDOW // 128, axis=1)
    assert pred.shape == (2, WINDOW // 128, 1)
    np.testing.assert_allclose(pred, expected, rtol=1e-4, atol=1e-5)
    backbone.save(tmp_path)
    reloaded = EnformerBackbone(**backbone.params).load(tmp_path)
    np.testing.assert_allclose(reloaded.predict(x), pred, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="pool"):
        EnformerBackbone(**tiny_params(window_size=WINDOW, pool=pool, head="pretrained"))


def test_center_plus_sum_head_starts_as_the_centre_bin_head() -> None:
    """Its pooled read starts at zero: the same seed gives the paper's head's predictions exactly."""
    x = one_hot("".join(np.random.default_rng(4).choice(list("ACGT"), size=WINDOW)))[None]
    both = EnformerBackbone(**tiny_params(window_size=WINDOW, seed=6, pool="center+sum")).build()
    centre = EnformerBackbone(**tiny_params(window_size=WINDOW, seed=6)).build()
    np.testing.assert_array_equal(both.predict(x), centre.predict(x))
    assert not both.model_.to_tracks.pooled.weight.detach().numpy().any()


@pytest.mark.parametrize("pool", ["mean", "attention", "center+sum"])
def test_fast_ism_of_a_pooled_head_equals_full_forwards(pool: str) -> None:
    """A pooled head reads every bin, so the fast path may not shortcut the last layer to the centre
    bins the scalar mode takes: its ISM must still equal full forward passes."""
    from varscore_plugins.outputs import ScalarOutput

    backbone = EnformerBackbone(**tiny_params(window_size=WINDOW, seed=5, pool=pool)).build()
    extra = {"attention": "score", "center+sum": "pooled"}.get(pool)
    if extra:
        with torch.no_grad():
            getattr(backbone.model_.to_tracks, extra).weight.normal_(0, 1.0)
    reference = one_hot("".join(np.random.default_rng(2).choice(list("ACGT"), size=WINDOW)))
    subs = [(3, "A"), (WINDOW // 2, "C"), (WINDOW - 200, "G"), (WINDOW - 1, "T")]
    subs = [(o, b if reference[o].argmax() != "ACGT".index(b) else "N") for o, b in subs]
    mode = ScalarOutput(track=0, center_bins=1)
    backbone.ism_method = "fast"
    fast = backbone.ism(reference, subs, mode.reduce, batch_size=2)
    backbone.ism_method = "naive"
    naive = backbone.ism(reference, subs, mode.reduce, batch_size=2)
    np.testing.assert_allclose(fast.reference, naive.reference, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast.alternates, naive.alternates, rtol=1e-4, atol=1e-5)
    assert np.abs(naive.delta).max() > 0  # the edits change the pooled prediction
