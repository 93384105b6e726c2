"""Importing published Enformer / Borzoi checkpoint layouts: the source modules (enformer-pytorch,
borzoi-pytorch) are built with random weights, saved as their projects publish them
(config.json + model.safetensors or pytorch_model.bin, with transformers' key aliasing and
prefixes), imported, and the bundle's predictions compared with the source module's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from borzoi_pytorch import Borzoi
from borzoi_pytorch.config_borzoi import BorzoiConfig
from enformer_pytorch import Enformer, EnformerConfig
from safetensors.torch import save_file, save_model

from varscore.errors import InputError
from varscore.models.bundle import load_bundle
from varscore.models.checkpoints import ImportOptions, import_checkpoints, read_checkpoint
from varscore_plugins.enformer import tiny_params

TINY_ENFORMER = {k: v for k, v in tiny_params().items() if k != "window_size"}
# conv widths are fixed by borzoi-pytorch; a small transformer keeps this fast
TINY_BORZOI = {"dim": 32, "depth": 1, "heads": 2, "attn_dim_key": 8, "attn_dim_value": 16}


def _randomise_norms(model: torch.nn.Module, seed: int) -> None:
    """Give batch norms non-trivial running statistics, so that importing them matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)


def _write_config(config: Any, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    config.to_json_file(str(directory / "config.json"))


def source_enformer(hparams: dict[str, Any], seed: int = 1) -> Enformer:
    torch.manual_seed(seed)
    model = Enformer(EnformerConfig(**hparams, target_length=896))  # the published config's crop
    _randomise_norms(model, seed)
    return model.eval()


def source_borzoi(hparams: dict[str, Any], bins: int, seed: int = 1) -> Borzoi:
    torch.manual_seed(seed)
    model = Borzoi(BorzoiConfig(**hparams, enable_mouse_head=True, return_center_bins_only=True, bins_to_return=bins))
    _randomise_norms(model, seed)
    return model.eval()


def save_layout(model: torch.nn.Module, directory: Path, layout: str) -> Path:
    """Save ``model`` as published: ``bin`` (torch.save of the state dict: every alias kept),
    ``safetensors`` (safetensors' save_model: one name per shared tensor), ``prefixed`` (keys under
    transformers' base_model_prefix) or ``sharded`` (two safetensors shards + index)."""
    _write_config(model.config, directory)  # type: ignore[attr-defined]
    if layout == "bin":
        torch.save(model.state_dict(), directory / "pytorch_model.bin")
    elif layout == "safetensors":
        save_model(model, str(directory / "model.safetensors"))
    elif layout == "prefixed":
        prefix = model.base_model_prefix  # type: ignore[attr-defined]
        state = {f"{prefix}.{k}": v.clone() for k, v in model.state_dict().items() if not k.startswith("_trunk.")}
        save_file(state, str(directory / "model.safetensors"))
    elif layout == "sharded":
        state = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("_trunk.")}
        keys = sorted(state)
        halves = {
            "model-00001-of-00002.safetensors": keys[: len(keys) // 2],
            "model-00002-of-00002.safetensors": keys[len(keys) // 2 :],
        }
        for name, part in halves.items():
            save_file({k: state[k] for k in part}, str(directory / name))
        index = {"weight_map": {k: name for name, part in halves.items() for k in part}}
        (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    return directory


def _one_hot(length: int, n: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(n, length))]


def enformer_reference(model: Enformer, x: np.ndarray, head: str = "human") -> np.ndarray:
    model.set_target_length(-1)  # every bin of the short window
    with torch.no_grad():
        return model(torch.from_numpy(x), head=head).numpy()


def borzoi_reference(model: Borzoi, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x).transpose(1, 2)).transpose(1, 2).numpy()


def imported_prediction(directory: Path, out: Path, x: np.ndarray, **options: Any) -> np.ndarray:
    options.setdefault("track", 0)  # the tiny heads have fewer tracks than the published default
    bundle_dir = import_checkpoints([directory], out, ImportOptions(name=out.name, **options))
    bundle = load_bundle(bundle_dir)
    return bundle.sequence_backbone("cpu").predict(x)


# -- tiny architectures: every layout ---------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_enformer() -> Enformer:
    return source_enformer(TINY_ENFORMER)


@pytest.fixture(scope="module")
def tiny_borzoi() -> Borzoi:
    return source_borzoi(TINY_BORZOI, bins=4096 // 32)


@pytest.mark.parametrize("layout", ["bin", "safetensors", "prefixed", "sharded"])
def test_tiny_enformer_layouts_reproduce_the_source(tiny_enformer: Enformer, tmp_path: Path, layout: str) -> None:
    directory = save_layout(tiny_enformer, tmp_path / "ckpt", layout)
    x = _one_hot(2048)
    expected = enformer_reference(tiny_enformer, x)
    got = imported_prediction(directory, tmp_path / "bundle", x, window_size=2048)
    assert got.shape == expected.shape == (2, 16, 8)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    manifest = load_bundle(tmp_path / "bundle").manifest
    assert manifest["backbone"]["params"]["head"] == "pretrained"
    assert manifest["tracks"]["count"] == 8
    recorded = manifest["source"]["checkpoints"][0]["files"]
    assert "config.json" in recorded and len(recorded) >= 2


def test_tiny_enformer_mouse_head(tmp_path: Path) -> None:
    source = source_enformer(TINY_ENFORMER, seed=3)
    directory = save_layout(source, tmp_path / "ckpt", "bin")
    x = _one_hot(2048, n=1)
    got = imported_prediction(directory, tmp_path / "bundle", x, window_size=2048, output_head="mouse", track=0)
    np.testing.assert_allclose(got, enformer_reference(source, x, "mouse"), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", ["bin", "prefixed"])
def test_tiny_borzoi_layouts_reproduce_the_source(tiny_borzoi: Borzoi, tmp_path: Path, layout: str) -> None:
    window = 4096
    directory = save_layout(tiny_borzoi, tmp_path / "ckpt", layout)
    x = _one_hot(window, n=1)
    expected = borzoi_reference(tiny_borzoi, x)
    got = imported_prediction(directory, tmp_path / "bundle", x, window_size=window, track=7531)
    assert got.shape == expected.shape == (1, 128, 7611)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    manifest = load_bundle(tmp_path / "bundle").manifest
    assert manifest["tracks"]["file"] == "tracks.txt"  # borzoi-pytorch's targets.txt
    assert (tmp_path / "bundle" / "tracks.txt").is_file()
    assert manifest["source"]["checkpoints"][0]["not_imported"][:1] == ["mouse_head.bias"]


def test_several_directories_make_an_ensemble_bundle(tmp_path: Path) -> None:
    dirs = [save_layout(source_enformer(TINY_ENFORMER, seed=s), tmp_path / f"r{s}", "safetensors") for s in (1, 2)]
    bundle_dir = import_checkpoints(dirs, tmp_path / "ens", ImportOptions(name="ens", window_size=2048, track=0))
    manifest = load_bundle(bundle_dir).manifest
    assert manifest["replicates"] == ["weights.safetensors", "weights.r1.safetensors"]
    assert (bundle_dir / "weights.r1.safetensors").is_file()


# -- refusals ----------------------------------------------------------------------------------


def test_wrong_shapes_missing_and_corrupt_aliases_are_refused(tiny_enformer: Enformer, tmp_path: Path) -> None:
    source = tiny_enformer
    state = {k: v.clone() for k, v in source.state_dict().items()}
    directory = tmp_path / "ckpt"
    _write_config(source.config, directory)
    bad = dict(state)
    bad["_heads.human.0.weight"] = torch.zeros(9, 96)
    torch.save(bad, directory / "pytorch_model.bin")
    with pytest.raises(InputError, match="of another shape.*_heads.human.0.weight"):
        import_checkpoints([directory], tmp_path / "b1", ImportOptions(name="b1", window_size=2048))
    # both names of the tensor (transformer.0... and _trunk.4.0...) gone
    missing = {k: v for k, v in state.items() if not k.endswith(".0.0.fn.1.to_q.weight")}
    torch.save(missing, directory / "pytorch_model.bin")
    with pytest.raises(InputError, match="missing"):
        import_checkpoints([directory], tmp_path / "b2", ImportOptions(name="b2", window_size=2048))
    corrupt = dict(state)
    corrupt["_trunk.1.0.weight"] = corrupt["stem.0.weight"] + 1
    torch.save(corrupt, directory / "pytorch_model.bin")
    with pytest.raises(InputError, match="alias"):
        read_checkpoint(directory)
    assert not (tmp_path / "b1").exists() and not (tmp_path / "b2").exists()


def test_pickles_of_objects_and_other_formats_are_refused(tiny_enformer: Enformer, tmp_path: Path) -> None:
    source = tiny_enformer
    directory = tmp_path / "ckpt"
    _write_config(source.config, directory)
    torch.save(source, directory / "pytorch_model.bin")  # a whole module: not plain tensors
    with pytest.raises(InputError, match="weights_only"):
        read_checkpoint(directory)
    with pytest.raises(InputError, match="use --format enformer"):
        read_checkpoint(directory, format="borzoi")
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "config.json").write_text(json.dumps({"model_type": "borzoi", "flashed": True}))
    save_file({"x": torch.zeros(1)}, str(flash / "model.safetensors"))
    with pytest.raises(InputError, match="Flashzoi"):
        read_checkpoint(flash)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"model_type": "enformer"}))
    with pytest.raises(InputError, match="holds no weights"):
        read_checkpoint(empty)


def test_cli_import(tiny_enformer: Enformer, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from varscore.cli import cli

    directory = save_layout(tiny_enformer, tmp_path / "ckpt", "bin")
    out = tmp_path / "bundle"
    result = CliRunner().invoke(
        cli,
        [
            "models",
            "import",
            str(directory),
            "-o",
            str(out),
            "--window",
            "2048",
            "--track",
            "2",
            "--genome-build",
            "hg38",
            "--licence",
            "CC-BY-4.0",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = load_bundle(out).manifest
    assert manifest["genome_build"] == "hg38" and manifest["licence"] == "CC-BY-4.0"
    assert manifest["output_mode"]["params"]["track"] == 2
    (tmp_path / "no-config").mkdir()  # a directory without config.json (the output must lie outside it)
    result = CliRunner().invoke(cli, ["models", "import", str(tmp_path / "no-config"), "-o", str(tmp_path / "x")])
    assert result.exit_code != 0 and "config.json" in result.output and "Traceback" not in result.output


# -- full-size architectures -------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_enformer(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], np.ndarray, np.ndarray]:
    """The published Enformer architecture (dim 1536, 11 layers, 5,313 + 1,643 tracks), random weights,
    saved in both published file formats; its predictions on a short 8,192-bp input."""
    root = tmp_path_factory.mktemp("enformer-full")
    source = source_enformer({}, seed=5)  # EnformerConfig's defaults are the published architecture
    assert sum(p.numel() for p in source.parameters()) > 240e6
    layouts = {layout: save_layout(source, root / layout, layout) for layout in ("bin", "safetensors")}
    x = _one_hot(8192, n=1)
    expected = enformer_reference(source, x)
    del source
    return layouts, x, expected


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["bin", "safetensors"])
def test_full_size_enformer_import(full_enformer: Any, tmp_path: Path, layout: str) -> None:
    layouts, x, expected = full_enformer
    got = imported_prediction(layouts[layout], tmp_path / "bundle", x, window_size=8192)
    assert got.shape == (1, 64, 5313)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def full_borzoi(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], np.ndarray, np.ndarray]:
    """The published Borzoi architecture (dim 1536, 8 layers, 7,611 human + 2,608 mouse tracks),
    random weights, both file formats; its predictions on a short 4,096-bp input."""
    root = tmp_path_factory.mktemp("borzoi-full")
    window = 4096
    source = source_borzoi({}, bins=window // 32, seed=6)
    assert sum(p.numel() for p in source.parameters()) > 180e6
    layouts = {layout: save_layout(source, root / layout, layout) for layout in ("bin", "safetensors")}
    x = _one_hot(window, n=1)
    expected = borzoi_reference(source, x)
    del source
    return layouts, x, expected


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["bin", "safetensors"])
def test_full_size_borzoi_import(full_borzoi: Any, tmp_path: Path, layout: str) -> None:
    layouts, x, expected = full_borzoi
    got = imported_prediction(layouts[layout], tmp_path / "bundle", x, window_size=4096)
    assert got.shape == (1, 128, 7611)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_imported_model_without_genes_asks_for_them(tiny_enformer: Enformer, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from varscore.cli import cli

    directory = save_layout(tiny_enformer, tmp_path / "ckpt", "bin")
    runner = CliRunner()
    imported = runner.invoke(
        cli, ["models", "import", str(directory), "-o", str(tmp_path / "b"), "--window", "2048", "--track", "0"]
    )
    assert imported.exit_code == 0, imported.output
    (tmp_path / "in.vcf").write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
    (tmp_path / "ref.fa").write_text(">chr1\nACGT\n")
    result = runner.invoke(
        cli,
        [
            "annotate",
            str(tmp_path / "in.vcf"),
            "-m",
            str(tmp_path / "b"),
            "--fasta",
            str(tmp_path / "ref.fa"),
            "-o",
            str(tmp_path / "o.vcf"),
        ],
    )
    assert result.exit_code != 0 and "--genes" in result.output and "Traceback" not in result.output, result.output
