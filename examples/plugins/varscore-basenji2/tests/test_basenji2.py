"""Tests of the basenji2 backbone on tiny random networks (no downloads; seconds on a CPU)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from basenji2_pytorch import Basenji2
from click.testing import CliRunner
from varscore.errors import BundleError, InputError, NotFittedError
from varscore.plugin.conformance import check_backbone
from varscore_plugins.outputs import ScalarOutput, TrackOutput

from varscore_basenji2 import Basenji2Backbone, register_backbones, tiny_params
from varscore_basenji2.network import ARCHITECTURE, basenji2_model_params, convert_checkpoint

WINDOW = 1024
BINS = WINDOW // 32


class ArbitraryObject:
    """Stands for any non-tensor object a pickle may hold."""


def _one_hot(rng: np.random.Generator, n: int, length: int = WINDOW) -> np.ndarray:
    """``(n, length, 4)`` float32."""
    return np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(n, length))]


def _perturb_(module: torch.nn.Module, seed: int = 0) -> None:
    """Move batch-norm statistics off their initial 0/1 so that a lost buffer would show."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, buffer in module.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(0.1 * torch.randn(buffer.shape, generator=gen))
            elif name.endswith("running_var"):
                buffer.copy_(0.5 + torch.rand(buffer.shape, generator=gen))


def test_conformance_variformer_head() -> None:
    check_backbone(Basenji2Backbone, tiny_params(WINDOW))


def test_conformance_pretrained_head() -> None:
    check_backbone(Basenji2Backbone, tiny_params(WINDOW, head="pretrained"), ScalarOutput(track=3, center_bins=3))
    check_backbone(Basenji2Backbone, tiny_params(WINDOW, head="pretrained"), TrackOutput(track=1))


def test_registers_as_basenji2() -> None:
    registered: list[type] = []
    register_backbones(registered.append)
    assert registered == [Basenji2Backbone]


def test_import_does_not_load_torch() -> None:
    code = (
        "import sys, varscore_basenji2; "
        "heavy = [m for m in ('torch', 'basenji2_pytorch') if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ.copy())


def test_default_geometry_is_basenji2() -> None:
    backbone = Basenji2Backbone()
    assert (backbone.window_size, backbone.bin_size, backbone.n_bins, backbone.n_tracks) == (131_072, 128, 1024, 1)
    assert Basenji2Backbone(head="pretrained").n_tracks == 5313


@pytest.mark.slow
def test_default_architecture_is_the_published_basenji2() -> None:
    """Same tensors (names and shapes) as basenji2-pytorch's own Basenji2 of the paper, so the
    published checkpoint loads; 30,088,228 weights."""
    from basenji2_pytorch import basenji2_params

    ours = Basenji2Backbone(head="pretrained").build().model_.basenji2.state_dict()
    theirs = Basenji2(copy.deepcopy(basenji2_params["model"])).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    n_weights = sum(v.numel() for k, v in ours.items() if not k.endswith(("running_mean", "running_var", "tracked")))
    assert n_weights == 30_088_228


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"window_size": 1000}, "not a multiple of the bin size 32"),
        ({"head": "enformer"}, "unknown head 'enformer'"),
        ({"tower_repeat": 1}, "at least 2"),
        ({"final_filters": 0}, "positive integer"),
        ({"activation": "tanh"}, "'gelu' or 'relu'"),
    ],
)
def test_invalid_hyperparameters(overrides: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        Basenji2Backbone(**{**tiny_params(WINDOW), **overrides})


def test_predict_shapes_and_errors() -> None:
    backbone = Basenji2Backbone(**tiny_params(WINDOW))
    with pytest.raises(NotFittedError):
        backbone.predict(np.zeros((1, WINDOW, 4), np.float32))
    backbone.build()
    assert backbone.predict(np.zeros((0, WINDOW, 4), np.float32)).shape == (0, BINS, 1)
    with pytest.raises(InputError, match=r"\(N, 1024, 4\); got shape \(1, 512, 4\)"):
        backbone.predict(np.zeros((1, 512, 4), np.float32))


def test_predict_matches_basenji2_pytorch_directly() -> None:
    """The plugin's pre-trained head equals basenji2-pytorch's own Basenji2 with the same weights
    (channels-first input), over the uncropped bins."""
    rng = np.random.default_rng(2)
    params = tiny_params(WINDOW, head="pretrained")
    backbone = Basenji2Backbone(**params).build()
    _perturb_(backbone.model_)
    reference = Basenji2(copy.deepcopy(basenji2_model_params({**ARCHITECTURE, **params}, with_head=True)))
    reference.model.trunk[3] = torch.nn.Identity()  # the plugin does not crop
    reference.load_state_dict(backbone.model_.basenji2.state_dict())
    reference.eval()
    x = _one_hot(rng, 2)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x).transpose(1, 2)).numpy()
    np.testing.assert_allclose(backbone.predict(x), expected, rtol=1e-5, atol=1e-6)
    assert expected.shape == (2, BINS, params["n_tracks"])


def test_ism_effect_is_local_to_the_receptive_field() -> None:
    """A substitution far from the centre (beyond the receptive field) leaves the centre bin alone."""
    rng = np.random.default_rng(3)
    window = 4096
    backbone = Basenji2Backbone(**tiny_params(window, dilated_repeat=1)).build()
    reference = _one_hot(rng, 1, window)[0]
    far, near = 0, window // 2
    subs = [(off, "ACGT"[(int(reference[off].argmax()) + 1) % 4]) for off in (far, near)]
    result = backbone.ism(reference, subs, ScalarOutput().reduce)
    assert result.delta[0, 0] == 0.0
    assert result.delta[1, 0] != 0.0


def test_save_load_round_trip_and_mismatch(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    backbone = Basenji2Backbone(**tiny_params(WINDOW)).build()
    _perturb_(backbone.model_)
    backbone.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.safetensors"]
    x = _one_hot(rng, 2)
    restored = Basenji2Backbone(**backbone.params).load(tmp_path)
    np.testing.assert_array_equal(restored.predict(x), backbone.predict(x))
    with pytest.raises(BundleError, match="does not fit"):
        Basenji2Backbone(**tiny_params(WINDOW, final_filters=16)).load(tmp_path)
    with pytest.raises(BundleError, match="does not exist"):
        Basenji2Backbone(**tiny_params(WINDOW)).load(tmp_path / "nowhere")


def test_convert_published_style_checkpoint(tmp_path: Path) -> None:
    """A torch checkpoint of basenji2_pytorch.Basenji2 converts to safetensors and loads as
    ``pretrained_dir``: the pre-trained head reproduces the original network, the variformer
    head keeps its trunk."""
    rng = np.random.default_rng(5)
    params = tiny_params(WINDOW, head="pretrained")
    original = Basenji2Backbone(**params, seed=11).build()
    _perturb_(original.model_)
    checkpoint = tmp_path / "basenji2.pth"
    torch.save(original.model_.basenji2.state_dict(), checkpoint)
    architecture = {k: v for k, v in params.items() if k in ARCHITECTURE}
    converted = convert_checkpoint(checkpoint, tmp_path / "pretrained", architecture)
    assert sorted(p.name for p in converted.iterdir()) == ["config.json", "model.safetensors"]

    # the config in the directory replaces the (default) architecture asked for
    loaded = Basenji2Backbone(head="pretrained", window_size=WINDOW, pretrained_dir=converted).build()
    assert loaded.params["final_filters"] == params["final_filters"]
    x = _one_hot(rng, 2)
    np.testing.assert_allclose(loaded.predict(x), original.predict(x), rtol=1e-6)

    finetunable = Basenji2Backbone(window_size=WINDOW, pretrained_dir=converted).build()
    trunk_a = finetunable.model_.basenji2.model.trunk.state_dict()
    trunk_b = original.model_.basenji2.model.trunk.state_dict()
    assert all(torch.equal(trunk_a[k], trunk_b[k]) for k in trunk_b)
    assert finetunable.predict(x).shape == (2, BINS, 1)


def test_convert_rejects_wrong_checkpoints(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.pth"
    torch.save({"model.trunk.0.block.1.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(InputError, match="does not fit"):
        convert_checkpoint(wrong, tmp_path / "out")

    code = tmp_path / "code.pth"
    torch.save({"object": ArbitraryObject()}, code)  # would need unpickling code to read
    with pytest.raises(InputError, match="tensors-only"):
        convert_checkpoint(code, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_pretrained_weights_says_how_to_convert(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="varscore basenji2 convert"):
        Basenji2Backbone(**tiny_params(WINDOW), pretrained_dir=tmp_path).build()


def test_convert_command(tmp_path: Path) -> None:
    import click

    from varscore_basenji2 import register_commands

    @click.group()
    def cli() -> None:
        pass

    register_commands(cli)
    params = tiny_params(WINDOW, head="pretrained")
    network = Basenji2Backbone(**params).build().model_.basenji2
    torch.save(network.state_dict(), tmp_path / "b.pth")
    # the default architecture does not fit a tiny checkpoint: the command fails with the reason
    result = CliRunner().invoke(cli, ["basenji2", "convert", str(tmp_path / "b.pth"), "-o", str(tmp_path / "d")])
    assert isinstance(result.exception, InputError) and "does not fit" in str(result.exception)


def test_finetune_moves_predictions_towards_targets() -> None:
    """Optimiser steps through torch_module() (what varscore's trainer uses) lower the
    Variformer loss of the centre bin on a fixed batch."""
    from varscore.training.lightning import variformer_loss

    rng = np.random.default_rng(6)
    backbone = Basenji2Backbone(**tiny_params(WINDOW)).build()
    net = backbone.torch_module()
    x = torch.from_numpy(_one_hot(rng, 8))
    y = torch.from_numpy(rng.normal(size=8).astype(np.float32))
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-2)

    def loss() -> torch.Tensor:
        return variformer_loss(net(x)[:, BINS // 2, 0], y)

    net.eval()  # batch-norm statistics and dropout fixed: a pure optimisation check
    with torch.no_grad():
        before = float(loss())
    for _ in range(60):
        optimiser.zero_grad()
        loss().backward()
        optimiser.step()
    with torch.no_grad():
        after = float(loss())
    assert after < 0.25 * before
    # the backbone's predict() sees the trained weights (torch_module shares them)
    np.testing.assert_allclose(
        backbone.predict(x.numpy())[:, BINS // 2, 0], net(x)[:, BINS // 2, 0].detach(), rtol=1e-5, atol=1e-6
    )


def test_models_import_reads_a_published_state_dict(tmp_path: Path) -> None:
    """``varscore models import DIR --format basenji2``: config.json + basenji2.pth (a torch state dict
    of basenji2_pytorch.Basenji2) becomes a bundle whose predictions are the original network's."""
    from varscore.cli import cli
    from varscore.models.bundle import load_bundle

    params = tiny_params(WINDOW, head="pretrained")
    original = Basenji2Backbone(**params, seed=3).build()
    _perturb_(original.model_, 3)
    directory = tmp_path / "published"
    directory.mkdir()
    torch.save(original.model_.basenji2.state_dict(), directory / "basenji2.pth")
    architecture = {k: v for k, v in params.items() if k in ARCHITECTURE}
    (directory / "config.json").write_text(json.dumps(architecture))

    out = tmp_path / "bundle"
    args = ["models", "import", str(directory), "--format", "basenji2", "--window", str(WINDOW), "--track", "2"]
    result = CliRunner().invoke(cli, [*args, "-o", str(out)])
    assert result.exit_code == 0, result.output
    bundle = load_bundle(out)
    assert bundle.manifest["source"]["format"] == "basenji2"
    x = _one_hot(np.random.default_rng(4), 2)
    np.testing.assert_allclose(bundle.sequence_backbone("cpu").predict(x), original.predict(x), rtol=1e-5, atol=1e-6)

    (directory / "config.json").write_text('{"stem_filterz": 8}')
    refused = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "refused")])
    assert refused.exit_code == 1 and "unknown Basenji2 hyper-parameter(s) stem_filterz" in refused.output
    assert not (tmp_path / "refused").exists()


def test_unknown_checkpoint_format_lists_the_installed_ones(tmp_path: Path) -> None:
    from varscore.models.checkpoints import read_checkpoint

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InputError, match=r"Unknown checkpoint format 'basenji3'\. Installed: .*basenji2"):
        read_checkpoint(tmp_path, format="basenji3")
