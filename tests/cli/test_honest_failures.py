"""Honest failures: inputs an adversarial tester found that ended in a traceback, a silent
fallback or silent acceptance. Each must end in a one-line :class:`VarscoreError` (the CLI prints
it as one line) before any harm is done."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from enformer_pytorch import Enformer

from tests.models.test_checkpoints import TINY_ENFORMER, save_layout, source_enformer
from varscore.errors import BundleError, InputError, VarscoreError
from varscore.models.bundle import BundleMetadata
from varscore.models.checkpoints import ImportOptions, import_checkpoints, read_checkpoint

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_enformer() -> Enformer:
    return source_enformer(TINY_ENFORMER)


def _import(directory: Path, out: Path, **options: Any) -> Path:
    options.setdefault("window_size", 2048)
    options.setdefault("track", 0)
    return import_checkpoints([directory], out, ImportOptions(name=out.name, **options))


def _one_line(err: pytest.ExceptionInfo[VarscoreError]) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


# -- 1. a shard index names only files inside its checkpoint directory -------------------------


@pytest.mark.parametrize("index", ["model.safetensors.index.json", "pytorch_model.bin.index.json"])
@pytest.mark.parametrize("where", ["dotdot", "absolute", "symlink"])
def test_shard_index_naming_a_file_outside_the_directory_is_refused(
    tiny_enformer: Enformer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index: str, where: str
) -> None:
    other = save_layout(tiny_enformer, tmp_path / "other", "bin")  # a real, loadable file out there
    target = other / ("pytorch_model.bin" if index.startswith("pytorch") else "model.safetensors")
    if not target.exists():
        save_layout(tiny_enformer, other, "safetensors")
    directory = save_layout(tiny_enformer, tmp_path / "ckpt", "sharded")
    keys = json.loads((directory / "model.safetensors.index.json").read_text())["weight_map"]
    (directory / "model.safetensors.index.json").unlink()
    for shard in directory.glob("model-*.safetensors"):
        shard.unlink()
    if where == "dotdot":
        name = f"../other/{target.name}"
    elif where == "absolute":
        name = str(target)
    else:
        name = "linked-shard"
        (directory / name).symlink_to(target)
    (directory / index).write_text(json.dumps({"weight_map": {key: name for key in keys}}))

    opened: list[str] = []
    real_load = torch.load

    def spy(path: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(path))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    with pytest.raises(InputError, match="outside") as err:
        _import(directory, tmp_path / "bundle")
    assert repr(name) in _one_line(err)
    assert opened == [] and not (tmp_path / "bundle").exists()


def test_shard_index_that_is_malformed_is_a_one_line_error(tiny_enformer: Enformer, tmp_path: Path) -> None:
    directory = save_layout(tiny_enformer, tmp_path / "ckpt", "sharded")
    index = directory / "model.safetensors.index.json"
    for text, message in [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"weight_map": ["a"]}', "weight_map"),
        ('{"weight_map": {"x": 3}}', "got 3"),
        ("[]", "weight_map"),
    ]:
        index.write_text(text)
        with pytest.raises(InputError, match=message) as err:
            read_checkpoint(directory)
        _one_line(err)


def test_shards_inside_the_directory_still_import(tiny_enformer: Enformer, tmp_path: Path) -> None:
    directory = save_layout(tiny_enformer, tmp_path / "ckpt", "sharded")
    assert load_track_count(_import(directory, tmp_path / "bundle")) == 8


def load_track_count(bundle_dir: Path) -> int:
    from varscore.models.bundle import load_bundle

    return int(load_bundle(bundle_dir).manifest["tracks"]["count"])


def test_pretrained_dir_shard_index_outside_is_refused(tiny_enformer: Enformer, tmp_path: Path) -> None:
    """``finetune --pretrained`` reads a safetensors index too: the same rule applies there."""
    from varscore_plugins.enformer import EnformerBackbone

    other = save_layout(tiny_enformer, tmp_path / "other", "safetensors")
    directory = save_layout(tiny_enformer, tmp_path / "ckpt", "sharded")
    keys = json.loads((directory / "model.safetensors.index.json").read_text())["weight_map"]
    weight_map = {key: f"../other/{(other / 'model.safetensors').name}" for key in keys}
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    backbone = EnformerBackbone(head="pretrained", pretrained_dir=str(directory), window_size=2048)
    with pytest.raises(InputError, match="outside") as err:
        backbone.build()
    _one_line(err)


# -- 2. malformed config.json -------------------------------------------------------------------


def _with_config(tiny_enformer: Enformer, directory: Path, **changes: Any) -> Path:
    save_layout(tiny_enformer, directory, "bin")
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, **changes}))
    return directory


def test_deeply_nested_config_is_a_one_line_error(tiny_enformer: Enformer, tmp_path: Path) -> None:
    directory = save_layout(tiny_enformer, tmp_path / "ckpt", "bin")
    (directory / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match="config.json is not a valid checkpoint config: nested too deeply") as err:
        _import(directory, tmp_path / "bundle")
    _one_line(err)
    (directory / "config.json").write_text('{"model_type": "enformer", "dim": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(InputError, match="nested too deeply"):
        read_checkpoint(directory)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dim", "48"),
        ("dim", 48.0),
        ("dim", -48),
        ("heads", 0),
        ("heads", True),
        ("depth", -1),
        ("attn_dim_key", None),
        ("num_downsamples", [7]),
        ("dropout_rate", "x"),
        ("attn_dropout", 2.5),
        ("pos_dropout", -0.1),
        ("output_heads", {"human": "x"}),
        ("output_heads", {"human": -8}),
        ("output_heads", {}),
        ("output_heads", [8]),
        ("model_type", ["enformer"]),
        ("flashed", "no"),
    ],
)
def test_config_fields_of_wrong_type_or_range_are_named(
    tiny_enformer: Enformer, tmp_path: Path, field: str, value: Any
) -> None:
    directory = _with_config(tiny_enformer, tmp_path / "ckpt", **{field: value})
    with pytest.raises(InputError, match=f"not a valid checkpoint config: {field} must be") as err:
        import_checkpoints(
            [directory], tmp_path / "bundle", ImportOptions(name="b", window_size=2048, track=0), format="enformer"
        )
    _one_line(err)
    assert not (tmp_path / "bundle").exists()


def test_config_that_is_not_an_object_is_refused(tiny_enformer: Enformer, tmp_path: Path) -> None:
    directory = save_layout(tiny_enformer, tmp_path / "ckpt", "bin")
    (directory / "config.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="must be a JSON object, got a list") as err:
        read_checkpoint(directory)
    _one_line(err)


# -- 3. the input window ------------------------------------------------------------------------


@pytest.mark.parametrize("window", [0, -128, -2048])
def test_window_that_is_not_positive_is_refused_not_replaced_by_the_default(
    tiny_enformer: Enformer, tmp_path: Path, window: int
) -> None:
    directory = save_layout(tiny_enformer, tmp_path / "ckpt", "bin")
    with pytest.raises(InputError, match=f"Input window {window} bp") as err:
        _import(directory, tmp_path / "bundle", window_size=window)
    _one_line(err)
    assert not (tmp_path / "bundle").exists()


def test_window_not_a_multiple_of_the_bin_size_is_refused(tiny_enformer: Enformer, tmp_path: Path) -> None:
    directory = save_layout(tiny_enformer, tmp_path / "ckpt", "bin")
    with pytest.raises(InputError, match="window_size 1000 is not a multiple"):
        _import(directory, tmp_path / "bundle", window_size=1000)


def test_cli_window_zero_is_one_line(tiny_enformer: Enformer, tmp_path: Path) -> None:
    from varscore.cli import cli

    directory = save_layout(tiny_enformer, tmp_path / "ckpt", "bin")
    args = ["models", "import", str(directory), "-o", str(tmp_path / "b"), "--window", "0", "--track", "0"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0 and "Input window 0 bp" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "b").exists()


# -- 4. the output track and centre bins --------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"track": 99_999},
            r"Output track 99999 is not in the imported head, which has 8 tracks: pass --track from 0 to 7",
        ),
        ({"track": -1}, r"Output track -1 is not .* from 0 to 7"),
        ({"track": 8}, r"Output track 8 is not"),
        ({"track": None}, r"Output track 4950 \(the enformer default\) .* from 0 to 7"),
        ({"track": 0, "output_head": "mouse", "center_bins": 1}, None),
        ({"track": 4, "output_head": "mouse"}, r"Output track 4 is not .* 4 tracks: pass --track from 0 to 3"),
        ({"center_bins": 0}, r"Centre bins 0 do not fit the window\'s 16 output bins: pass --center-bins from 1 to 16"),
        ({"center_bins": 17}, r"Centre bins 17 do not fit"),
        ({"center_bins": -3}, r"Centre bins -3 do not fit"),
        ({"center_bins": 16}, None),
    ],
)
def test_output_track_and_center_bins_must_fit_the_head(
    tiny_enformer: Enformer, tmp_path: Path, options: dict[str, Any], message: str | None
) -> None:
    directory = save_layout(tiny_enformer, tmp_path / "ckpt", "bin")
    out = tmp_path / "bundle"
    if message is None:
        _import(directory, out, **options)
        assert out.is_dir()
        return
    with pytest.raises(InputError, match=message) as err:
        _import(directory, out, **{"track": 0, **options})
    _one_line(err)
    assert not out.exists()


def test_center_bins_of_a_whole_window_statistic_are_checked_only_when_given(
    tiny_enformer: Enformer, tmp_path: Path
) -> None:
    directory = save_layout(tiny_enformer, tmp_path / "ckpt", "bin")
    # 128 bp: one output bin, fewer than the default 3 centre bins, which SUM does not read
    _import(directory, tmp_path / "sum", window_size=128, stat="SUM")
    with pytest.raises(InputError, match=r"Centre bins 3 \(the enformer default\) .* 1 output bins"):
        _import(directory, tmp_path / "center", window_size=128)
    with pytest.raises(InputError, match=r"Centre bins 2 do not fit"):
        _import(directory, tmp_path / "given", window_size=128, stat="SUM", center_bins=2)


def test_cli_track_outside_the_head_exits_non_zero(tiny_enformer: Enformer, tmp_path: Path) -> None:
    from varscore.cli import cli

    directory = save_layout(tiny_enformer, tmp_path / "ckpt", "bin")
    for track in ("99999", "-1"):
        args = ["models", "import", str(directory), "-o", str(tmp_path / "b"), "--window", "2048", "--track", track]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code != 0 and f"Output track {track} is not in the imported head" in result.output, (
            result.output
        )
        assert "Traceback" not in result.output and not (tmp_path / "b").exists()


def test_from_enformer_track_outside_the_head_exits_non_zero(tiny_enformer: Enformer, tmp_path: Path) -> None:
    """``models from-enformer`` (the plugin's own import command) checks its --track and --center-bins too."""
    from varscore.cli import cli

    directory = save_layout(tiny_enformer, tmp_path / "ckpt", "safetensors")
    genes = tmp_path / "genes.tsv"
    genes.write_text("chrom\ttss\tstrand\tgene_id\nchr1\t300\t+\tG1\n")
    base = ["models", "from-enformer", str(directory), "-o", str(tmp_path / "b"), "--genes", str(genes)]
    for extra, message in (
        (["--track", "99999"], "Output track 99999 is not in the imported head, which has 8 tracks"),
        (["--track", "0", "--center-bins", "0"], "Centre bins 0 do not fit the window's 16 output bins"),
    ):
        result = CliRunner().invoke(cli, [*base, "--window", "2048", *extra])
        assert result.exit_code != 0 and message in result.output, result.output
        assert "Traceback" not in result.output and not (tmp_path / "b").exists()
    result = CliRunner().invoke(cli, [*base, "--window", "2048", "--track", "7"])
    assert result.exit_code == 0, result.output


# -- 5. weights stored as integers --------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.uint8, torch.bool])
@pytest.mark.parametrize("layout", ["bin", "safetensors"])
def test_float_weights_stored_as_integers_are_refused(
    tiny_enformer: Enformer, tmp_path: Path, dtype: torch.dtype, layout: str
) -> None:
    from safetensors.torch import save_file

    directory = save_layout(tiny_enformer, tmp_path / "ckpt", "bin")
    state = {k: v.clone() for k, v in tiny_enformer.state_dict().items() if not k.startswith("_trunk.")}
    state["transformer.0.0.fn.1.to_q.weight"] = state["transformer.0.0.fn.1.to_q.weight"].to(dtype)
    (directory / "pytorch_model.bin").unlink()
    if layout == "bin":
        torch.save(state, directory / "pytorch_model.bin")
    else:
        save_file(state, str(directory / "model.safetensors"))
    short = str(dtype).removeprefix("torch.")
    with pytest.raises(BundleError, match=rf"tensor transformer.0.0.fn.1.to_q.weight is stored as {short}") as err:
        _import(directory, tmp_path / "bundle")
    _one_line(err)
    assert not (tmp_path / "bundle").exists()


def test_half_precision_weights_and_integer_counters_still_import(tiny_enformer: Enformer, tmp_path: Path) -> None:
    directory = save_layout(tiny_enformer, tmp_path / "ckpt", "bin")
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in tiny_enformer.state_dict().items()}
    assert any(k.endswith("num_batches_tracked") for k in state)
    torch.save(state, directory / "pytorch_model.bin")
    _import(directory, tmp_path / "bundle")


def test_pretrained_dir_with_integer_weights_is_refused(tiny_enformer: Enformer, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from varscore_plugins.enformer import EnformerBackbone

    directory = save_layout(tiny_enformer, tmp_path / "ckpt", "safetensors")
    state = {k: v.clone() for k, v in tiny_enformer.state_dict().items() if not k.startswith("_trunk.")}
    state["stem.0.weight"] = state["stem.0.weight"].to(torch.int16)
    save_file(state, str(directory / "model.safetensors"))
    with pytest.raises(BundleError, match="stem.0.weight is stored as int16"):
        EnformerBackbone(head="pretrained", pretrained_dir=str(directory), window_size=2048).build()


# -- 6. finetune --resume with a file that is not a varscore training checkpoint ----------------


class _Planted:
    """Unpickling this would create ``marker``: proof that a checkpoint was (not) unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.makedirs, (str(self.marker),))


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from varscore.simulate import SimulationConfig, simulate_cohort

    out = tmp_path_factory.mktemp("cohort")
    simulate_cohort(SimulationConfig(people=20, genes=2, window=2048, seed=4, h2=0.5), out)
    return out


def _finetune_args(cohort: Path, model: Path, epochs: int = 1) -> list[str]:
    from varscore_plugins.enformer import tiny_params

    params = tiny_params(window_size=2048, output_heads={"human": 4})
    return [
        "finetune",
        *("--vcf", str(cohort / "cohort.vcf.gz"), "--expression", str(cohort / "cohort.expression.bed.gz")),
        *("--genes", str(cohort / "genes.tsv"), "--fasta", str(cohort / "reference.fa")),
        *("-o", str(model), "--window", "2048"),
        *[arg for k, v in params.items() if k != "window_size" for arg in ("--param", f"{k}={json.dumps(v)}")],
        *("--batch-size", "4", "--accumulate", "1", "--people-per-epoch", "4", "--max-epochs", str(epochs)),
        *("--accelerator", "cpu", "--no-progress"),
    ]


@pytest.mark.parametrize("content", ["random-bytes", "pickle", "torch-save-object", "plain-tensors", "truncated"])
def test_resume_from_a_file_that_is_not_a_training_checkpoint(small_cohort: Path, tmp_path: Path, content: str) -> None:
    from varscore.cli import cli

    model = tmp_path / "model"
    checkpoint = tmp_path / "model.training" / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    marker = tmp_path / "unpickled"
    if content == "random-bytes":
        checkpoint.write_bytes(np.random.default_rng(0).bytes(4096))
    elif content == "pickle":
        checkpoint.write_bytes(pickle.dumps({"state_dict": _Planted(marker)}))
    elif content == "torch-save-object":
        torch.save({"state_dict": {}, "varscore_training": _Planted(marker)}, checkpoint)
    elif content == "plain-tensors":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, checkpoint)
    else:
        torch.save({"state_dict": {"w": torch.zeros(1000)}, "varscore_training": {}}, checkpoint)
        checkpoint.write_bytes(checkpoint.read_bytes()[:700])
    result = CliRunner().invoke(cli, [*_finetune_args(small_cohort, model), "--resume"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: --resume: ") and "is not a varscore training checkpoint" in last, result.output
    assert "rerun without --resume" in last and f"delete {checkpoint}" in last
    assert "Traceback" not in result.output
    assert not marker.exists(), "the checkpoint was unpickled"
    assert not model.exists()


def test_resume_from_a_real_checkpoint_still_continues(small_cohort: Path, tmp_path: Path) -> None:
    from varscore.cli import cli
    from varscore.training.trainer import check_resume_checkpoint

    model = tmp_path / "model"
    first = CliRunner().invoke(cli, _finetune_args(small_cohort, model, epochs=1))
    assert first.exit_code == 0, first.output
    check_resume_checkpoint(tmp_path / "model.training" / "checkpoints" / "last.ckpt")
    resumed = CliRunner().invoke(cli, [*_finetune_args(small_cohort, model, epochs=2), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "epoch 1/2" in resumed.output and "epoch 0/" not in resumed.output, resumed.output


# -- 7. GTF / GFF3 exons whose end precedes their start or lies beyond the contig ---------------

GTF_HEADER = "#!genome-build test\n#!made by hand\n"


def _gtf_line(chrom: str, feature: str, start: int, end: int, gene: str) -> str:
    attrs = f'gene_id "{gene}"; gene_name "{gene}N";' + (f' transcript_id "{gene}.1";' if feature == "exon" else "")
    return f"{chrom}\ttest\t{feature}\t{start}\t{end}\t.\t+\t.\t{attrs}"


def _write_gtf(path: Path, bad: tuple[str, int, int] | None, gz: bool = False) -> Path:
    lines = [
        _gtf_line("chr1", "gene", 80, 160, "GA"),
        _gtf_line("chr1", "exon", 80, 95, "GA"),
        _gtf_line("chr1", "exon", 120, 125, "GA"),
        _gtf_line("chr1", "gene", 190, 260, "GB"),
        _gtf_line("chr1", "exon", 190, 200, "GB"),
    ]
    if bad is not None:
        feature, start, end = bad
        lines.append(_gtf_line("chr1", feature, start, end, "GB"))
    text = GTF_HEADER + "\n".join(lines) + "\n"
    if gz:
        import gzip

        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("gz", [False, True], ids=["gtf", "gtf.gz"])
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (("exon", 255, 250), "its end precedes its start"),
        (("gene", 300, 200), "its end precedes its start"),
        (("exon", 0, 10), "its start is before the contig's first base"),
    ],
)
def test_gtf_row_with_impossible_coordinates_is_refused_by_line(
    tmp_path: Path, gz: bool, bad: tuple[str, int, int], message: str
) -> None:
    from varscore.genome.exons import load_gene_models

    path = _write_gtf(tmp_path / ("genes.gtf.gz" if gz else "genes.gtf"), bad, gz)
    feature, start, end = bad
    with pytest.raises(InputError, match=message) as err:
        load_gene_models(path)
    text = _one_line(err)
    assert f"line 8: the {feature} of gene GBN at chr1:{start}-{end}" in text, text


@pytest.mark.parametrize("chrom_in_fasta", ["chr1", "1"])
def test_gtf_exon_beyond_the_contig_is_refused_given_its_length(tmp_path: Path, chrom_in_fasta: str) -> None:
    from varscore.genome.exons import load_gene_models

    path = _write_gtf(tmp_path / "genes.gtf", ("exon", 390, 450))
    assert len(load_gene_models(path)) == 2  # without lengths nothing can be said
    assert len(load_gene_models(path, {chrom_in_fasta: 450})) == 2  # ends on the last base
    with pytest.raises(InputError, match=r"line 8: the exon of gene GBN at chr1:390-450 .* beyond chr1's 400 bp"):
        load_gene_models(path, {chrom_in_fasta: 400})


def test_gff3_exon_with_end_before_start_names_its_gene(tmp_path: Path) -> None:
    from varscore.genome.exons import load_gene_models

    gff = tmp_path / "genes.gff3"
    gff.write_text(
        "##gff-version 3\n"
        "chr1\tt\tgene\t100\t300\t.\t+\t.\tID=gene:G1;Name=ONE\n"
        "chr1\tt\tmRNA\t100\t300\t.\t+\t.\tID=transcript:T1;Parent=gene:G1\n"
        "chr1\tt\texon\t100\t150\t.\t+\t.\tParent=transcript:T1\n"
        "# a comment between features\n"
        "chr1\tt\texon\t250\t200\t.\t+\t.\tParent=transcript:T1\n"
    )
    with pytest.raises(InputError, match=r"line 6: the exon of gene G1 at chr1:250-200 is refused: its end precedes"):
        load_gene_models(gff)


@pytest.fixture
def variant_world(tmp_path: Path, toy_plugin: Any) -> dict[str, Path]:
    from tests.conftest import random_sequence, write_fasta, write_vcf
    from tests.toy_plugin import ToyBackbone
    from varscore.models.bundle import BundleMetadata, save_bundle
    from varscore_plugins.outputs import TrackOutput

    rng = np.random.default_rng(5)
    seq = random_sequence(rng, 400)
    fasta = write_fasta(tmp_path / "ref.fa", {"chr1": seq})
    vcf = write_vcf(tmp_path / "in.vcf", [("chr1", 100, seq[99], "ACGT".replace(seq[99], "")[0])])
    bundle = save_bundle(
        tmp_path / "toy-track",
        name="toy-track",
        backbone=ToyBackbone(window_size=64, bin_size=8, tracks=2, seed=3).build(),
        output_mode=TrackOutput(track=0),
        genes=[],
        about=BundleMetadata(reference_fasta=fasta),
    )
    return {"fasta": fasta, "vcf": vcf, "bundle": bundle, "tmp": tmp_path}


@pytest.mark.parametrize("bad", [("exon", 255, 250), ("exon", 390, 450)], ids=["end-before-start", "beyond-contig"])
@pytest.mark.parametrize("command", ["annotate", "calibrate"])
def test_variant_mode_and_calibrate_refuse_impossible_exons(
    variant_world: dict[str, Path], bad: tuple[str, int, int], command: str
) -> None:
    from varscore.cli import cli

    w = variant_world
    gtf = _write_gtf(w["tmp"] / "genes.gtf", bad)
    out = w["tmp"] / ("out.vcf" if command == "annotate" else "calibrated")
    if command == "annotate":
        args = ["annotate", str(w["vcf"]), "-m", str(w["bundle"]), "-o", str(out), "--mode", "variant"]
    else:
        args = ["models", "calibrate", str(w["bundle"]), "--vcf", str(w["vcf"]), "-o", str(out), "--mode", "variant"]
    result = CliRunner().invoke(cli, [*args, "--gtf", str(gtf)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert f"line 8: the exon of gene GBN at chr1:{bad[1]}-{bad[2]}" in result.output, result.output
    assert not out.exists()


# -- 8. SIGTERM during variant-centred annotate and calibration ---------------------------------

RUNNER = (
    "import pathlib, sys; from varscore.plugin.manager import manager; import tests.toy_plugin as toy; "
    "manager.register(toy, name='toy-plugin'); predict = toy.ToyBackbone.predict\n"
    "def touching(self, batch):\n"
    "    pathlib.Path(sys.argv[1]).touch(); return predict(self, batch)\n"
    "toy.ToyBackbone.predict = touching\n"
    "from varscore.cli import cli; sys.exit(cli.main(args=sys.argv[2:], prog_name='varscore'))"
)


@pytest.fixture
def slow_track_world(tmp_path: Path, toy_plugin: Any) -> dict[str, Path]:
    """A toy track model that sleeps 50 ms per forward pass, and 80 SNVs: minutes of scoring."""
    from tests.conftest import random_sequence, write_fasta, write_vcf
    from tests.toy_plugin import ToyBackbone
    from varscore.models.bundle import save_bundle
    from varscore_plugins.outputs import TrackOutput

    rng = np.random.default_rng(7)
    seq = random_sequence(rng, 2000)
    fasta = write_fasta(tmp_path / "ref.fa", {"chr1": seq})
    records = [("chr1", p, seq[p - 1], "ACGT".replace(seq[p - 1], "")[0]) for p in range(100, 1700, 20)]
    vcf = write_vcf(tmp_path / "in.vcf", records)
    bundle = save_bundle(
        tmp_path / "slow-track",
        name="slow-track",
        backbone=ToyBackbone(window_size=64, bin_size=8, tracks=2, seed=3, delay=0.05).build(),
        output_mode=TrackOutput(track=0),
        genes=[],
        about=BundleMetadata(reference_fasta=fasta),
    )
    return {"vcf": vcf, "bundle": bundle, "tmp": tmp_path}


def _terminated(args: list[str], marker: Path) -> tuple[int, str]:
    """Run the CLI with ``args``; send SIGTERM once the model has run a forward pass; return the
    exit status and stderr."""
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(marker), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be stopped"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    return process.returncode, stderr


def test_sigterm_during_variant_mode_annotate_is_one_line(slow_track_world: dict[str, Path]) -> None:
    w = slow_track_world
    out = w["tmp"] / "out.vcf.gz"
    args = ["annotate", str(w["vcf"]), "-m", str(w["bundle"]), "-o", str(out), "--mode", "variant", "--no-progress"]
    status, stderr = _terminated([*args, "--stats", "SUM"], w["tmp"] / "running")
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert status == 143, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"Error: annotate --mode variant stopped by SIGTERM; {out} was not written"), stderr
    assert "rerun the command" in lines[0] and "Traceback" not in stderr
    assert not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def test_sigterm_during_calibration_is_one_line(slow_track_world: dict[str, Path]) -> None:
    w = slow_track_world
    out = w["tmp"] / "calibrated"
    args = ["models", "calibrate", str(w["bundle"]), "--vcf", str(w["vcf"]), "-o", str(out), "--mode", "variant"]
    status, stderr = _terminated([*args, "--stats", "SUM"], w["tmp"] / "running")
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert status == 143, stderr
    assert len(lines) == 1 and lines[0].startswith("Error: models calibrate stopped by SIGTERM; "), stderr
    assert f"{out} was not changed" in lines[0] and "Traceback" not in stderr
    assert not out.exists()


# -- options that name a bundle are checked before any data is loaded ---------------------------


def test_init_from_is_checked_before_the_cohort_is_read(tmp_path: Path) -> None:
    """The cohort files are placeholders no reader accepts: an --init-from error reported instead
    shows that the bundle was checked first."""
    from varscore.cli import cli

    cohort = []
    for option, name in (("--vcf", "v.vcf"), ("--expression", "e.bed"), ("--genes", "g.tsv"), ("--fasta", "r.fa")):
        (tmp_path / name).write_text("not a cohort file\n")
        cohort += [option, str(tmp_path / name)]
    size = ["--param", "dim=48", "--param", "depth=1", "--param", "heads=1", "--param", "dim_divisible_by=12"]
    args = ["finetune", *cohort, *size, "--window", "2048", "-o", str(tmp_path / "out")]
    (tmp_path / "empty").mkdir()
    for init_from, message in (
        (str(tmp_path / "empty"), "is not a model bundle"),
        ("elastic-net-demo", "--init-from elastic-net-demo is a 'elastic-net' model; this run trains 'enformer'"),
    ):
        result = CliRunner().invoke(cli, [*args, "--init-from", init_from])
        assert result.exit_code != 0 and message in result.output, result.output
        assert "Expression file" not in result.output
    result = CliRunner().invoke(cli, args)  # without --init-from the placeholders are what fails
    assert result.exit_code != 0 and "Expression file" in result.output, result.output


# -- selections given an empty value (an unset shell variable) ----------------------------------


@pytest.mark.parametrize("command", [["ism", "VCF", "-m", "elastic-net-demo"], ["annotate", "VCF", "--model", "none"]])
@pytest.mark.parametrize("option", ["--genes-only", "--regions", "--shard"])
def test_an_empty_selection_is_refused_not_read_as_everything(tmp_path: Path, command: list[str], option: str) -> None:
    from varscore.cli import cli
    from varscore.examples import data_dir

    args = [str(data_dir() / "cohort.vcf.gz") if a == "VCF" else a for a in command]
    result = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "out.tsv"), option, ""])
    assert result.exit_code != 0
    assert option in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out.tsv").exists()


@pytest.mark.parametrize("command", [["ism", "VCF", "-m", "variformer-demo"], ["annotate", "VCF", "--model", "none"]])
def test_an_empty_cache_folder_is_refused_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    from varscore.cli import cli
    from varscore.examples import data_dir

    monkeypatch.chdir(tmp_path)  # '' was the working directory: entries were written into it
    args = [str(data_dir() / "cohort.vcf.gz") if a == "VCF" else a for a in command]
    result = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "out" / "x.tsv"), "--cache", ""])
    assert result.exit_code == 2 and "--cache" in result.output and "names no folder" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "command",
    [
        ["ism", "VCF", "-m", "variformer-demo", "-o", "SAME"],
        ["ism", "VCF", "-m", "variformer-demo", "-o", "OTHER", "--track", "SAME"],
        ["annotate", "VCF", "--model", "variformer-demo", "-o", "SAME"],
    ],
)
def test_a_cache_folder_named_as_an_output_file_is_refused_before_work(tmp_path: Path, command: list[str]) -> None:
    """The folder was made first, the work done, and the output then could not be written."""
    from varscore.cli import cli
    from varscore.examples import data_dir

    paths = {"VCF": str(data_dir() / "cohort.vcf.gz"), "SAME": str(tmp_path / "x"), "OTHER": str(tmp_path / "o")}
    args = [paths.get(a, a) for a in command]
    result = CliRunner().invoke(cli, [*args, "--cache", str(tmp_path / "x"), "--genes-only", "MKKS"])
    assert result.exit_code == 2 and "name one path" in result.output, result.output
    assert list(tmp_path.iterdir()) == []
