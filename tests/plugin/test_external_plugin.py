"""A third-party backbone installed with pip (examples/plugins/varscore-basenji2): listed by
``varscore plugins``, fine-tuned and used for scoring through the CLI; once it is uninstalled the core
keeps working and its bundles fail with a message naming the package to install."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import missing_tool
from varscore.cli import cli
from varscore.examples import data_dir

EXAMPLE = data_dir()
DISTRIBUTION = "varscore-basenji2"
WINDOW = 1024

try:
    importlib.metadata.distribution(DISTRIBUTION)
except importlib.metadata.PackageNotFoundError:
    missing_tool(DISTRIBUTION, "pip install -e examples/plugins/varscore-basenji2 (.ci/run does)", module_level=True)


def _example_args() -> list[str]:
    return [
        "--vcf",
        str(EXAMPLE / "cohort.vcf.gz"),
        "--expression",
        str(EXAMPLE / "cohort.expression.bed.gz"),
        "--genes",
        str(EXAMPLE / "genes.tsv"),
        "--fasta",
        str(EXAMPLE / "ucsc.hg19.chr20.unittest.fasta.gz"),
    ]


@pytest.fixture(scope="module")
def basenji2_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Basenji2 fine-tuned for one epoch on the bundled example (SNAP25, 8 people)."""
    from varscore_basenji2 import tiny_params

    params = [
        arg for k, v in tiny_params().items() if k != "window_size" for arg in ("--param", f"{k}={json.dumps(v)}")
    ]
    model = tmp_path_factory.mktemp("models") / "basenji2-snap25"
    result = CliRunner().invoke(
        cli,
        [
            "finetune",
            "--backbone",
            "basenji2",
            *_example_args(),
            "--gene",
            "SNAP25",
            "--window",
            str(WINDOW),
            *params,
            "--lr",
            "1e-3",
            "--batch-size",
            "4",
            "--accumulate",
            "1",
            "--people-per-epoch",
            "8",
            "--max-epochs",
            "1",
            "--no-progress",
            "-o",
            str(model),
        ],
    )
    assert result.exit_code == 0, result.output
    return model


def test_varscore_plugins_lists_basenji2() -> None:
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    line = next(row for row in result.output.splitlines() if row.startswith("basenji2\t"))
    assert "backbones: basenji2" in line


@pytest.mark.slow
def test_finetune_writes_a_bundle_recording_the_package(basenji2_bundle: Path) -> None:
    manifest = json.loads((basenji2_bundle / "varscore.json").read_text())
    backbone = manifest["backbone"]
    assert backbone["name"] == "basenji2" and backbone["distribution"] == DISTRIBUTION
    assert backbone["distribution_version"] == importlib.metadata.version(DISTRIBUTION)
    assert (manifest["window_size"], manifest["bin_size"]) == (WINDOW, 32)
    assert [g["gene_id"] for g in manifest["genes"]] == ["SNAP25"]
    assert len(manifest["metrics"]["history"]) == 1
    assert (basenji2_bundle / "weights.safetensors").is_file() and (basenji2_bundle / "folds.tsv").is_file()


@pytest.fixture(scope="module")
def direct_predictions(basenji2_bundle: Path) -> dict[tuple[int, str], tuple[float, float]]:
    """``{(pos, alt): (ref_pred, alt_pred)}`` for every SNV in SNAP25's window, computed without the
    scoring engine: variants listed with pysam, centre bin of predict() on hand-edited windows."""
    import pysam

    from varscore.genome.sequence import one_hot
    from varscore.models.bundle import load_bundle
    from varscore.types import tss_window

    bundle = load_bundle(basenji2_bundle)
    backbone = bundle.backbone()
    window = tss_window(bundle.genes[0], WINDOW)
    with pysam.FastaFile(str(EXAMPLE / "ucsc.hg19.chr20.unittest.fasta.gz")) as fasta:
        reference = one_hot(fasta.fetch(window.chrom, window.start, window.end).upper())
    centre = WINDOW // 32 // 2
    ref_pred = float(backbone.predict(reference[None])[0, centre, 0])
    assert not np.isclose(ref_pred, 0.0)
    out = {}
    with pysam.VariantFile(str(EXAMPLE / "cohort.vcf.gz")) as vcf:
        for record in vcf.fetch(window.chrom, window.start, window.end):
            offset = window.offset(record.pos)
            assert reference[offset].argmax() == "ACGT".index(record.ref)
            for alt in record.alts:
                edited = reference.copy()
                edited[offset] = 0.0
                edited[offset, "ACGT".index(alt)] = 1.0
                out[(record.pos, alt)] = (ref_pred, float(backbone.predict(edited[None])[0, centre, 0]))
    assert out
    return out


def _assert_matches(
    got: dict[tuple[int, str], tuple[float, float, float]], expected: dict[tuple[int, str], tuple[float, float]]
) -> None:
    assert set(got) == set(expected)
    for key, (ref_pred, alt_pred, delta) in got.items():
        want_ref, want_alt = expected[key]
        assert ref_pred == pytest.approx(want_ref, rel=1e-4, abs=1e-6)
        assert alt_pred == pytest.approx(want_alt, rel=1e-4, abs=1e-6)
        assert delta == pytest.approx(want_alt - want_ref, rel=1e-3, abs=1e-6)


@pytest.mark.slow
def test_annotate_with_the_plugin_bundle_matches_direct_predictions(
    basenji2_bundle: Path, direct_predictions: dict, tmp_path: Path
) -> None:
    out = tmp_path / "scored.vcf"
    result = CliRunner().invoke(
        cli,
        [
            "annotate",
            str(EXAMPLE / "cohort.vcf.gz"),
            "-m",
            str(basenji2_bundle),
            "-o",
            str(out),
            "--device",
            "cpu",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    got = {}
    for line in out.read_text().splitlines():
        if line.startswith("#") or "VARSCORE=" not in line:
            continue
        pos, alt = int(line.split("\t")[1]), line.split("\t")[4]
        info = dict(item.split("=", 1) for item in line.split("\t")[7].split(";") if "=" in item)
        allele, gene_label, model, ref_col, alt_col, delta, _ = info["VARSCORE"].split("|")
        assert (allele, gene_label, model) == (alt, "SNAP25", basenji2_bundle.name)
        got[(pos, alt)] = (float(ref_col), float(alt_col), float(delta))
    _assert_matches(got, direct_predictions)


@pytest.mark.slow
def test_ism_evaluate_and_track_work_with_the_plugin_bundle(
    basenji2_bundle: Path, direct_predictions: dict, tmp_path: Path
) -> None:
    import pandas as pd

    runner = CliRunner()
    fasta = str(EXAMPLE / "ucsc.hg19.chr20.unittest.fasta.gz")
    ism = runner.invoke(
        cli,
        [
            "ism",
            "-m",
            str(basenji2_bundle),
            "--vcf",
            str(EXAMPLE / "cohort.vcf.gz"),
            "--fasta",
            fasta,
            "--device",
            "cpu",
            "--no-progress",
            "-o",
            str(tmp_path / "ism.tsv"),
        ],
    )
    assert ism.exit_code == 0, ism.output
    table = pd.read_csv(tmp_path / "ism.tsv", sep="\t")
    assert set(table["gene"]) == {"SNAP25"}
    _assert_matches(
        {(int(r.pos), r.alt): (r.ref_pred, r.alt_pred, r.delta) for r in table.itertuples()}, direct_predictions
    )

    evaluated = runner.invoke(
        cli,
        [
            "evaluate",
            *_example_args(),
            "--gene",
            "SNAP25",
            "-m",
            str(basenji2_bundle),
            "-o",
            str(tmp_path / "eval.tsv"),
        ],
    )
    assert evaluated.exit_code == 0, evaluated.output
    metrics = pd.read_csv(tmp_path / "eval.tsv", sep="\t")
    assert list(metrics["gene"]) == ["SNAP25"] and metrics["people"].iloc[0] > 0
    assert np.isfinite(metrics[["r2", "pearson"]].to_numpy()).all()

    tracks = runner.invoke(
        cli,
        [
            "track",
            str(EXAMPLE / "cohort.vcf.gz"),
            "-m",
            str(basenji2_bundle),
            "-o",
            str(tmp_path / "tracks"),
            "--format",
            "bedgraph",
            "--device",
            "cpu",
            "--no-progress",
        ],
    )
    assert tracks.exit_code == 0, tracks.output
    bedgraph = (tmp_path / "tracks" / "ism.SNAP25.bedGraph").read_text().splitlines()
    values = [line.split("\t") for line in bedgraph if line and not line.startswith(("track", "#"))]
    assert len(values) == len({pos for pos, _ in direct_predictions})


def _python_without_plugin(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs Python code in an interpreter that sees this environment's site-packages minus the plugin
    package, as after ``pip uninstall varscore-basenji2`` (the environment itself is left untouched)."""
    site_packages = Path(sysconfig.get_paths()["purelib"])
    view = tmp_path / "site-packages"
    view.mkdir()
    for entry in site_packages.iterdir():
        if "varscore_basenji2" not in entry.name and "varscore-basenji2" not in entry.name:
            (view / entry.name).symlink_to(entry)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VARSCORE_LOAD_PLUGINS", "VARSCORE_DEBUG")}
    bootstrap = f"import site, sys; site.addsitedir({str(view)!r}); "

    def run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-S", "-c", bootstrap + code, *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)

    return run


def test_hidden_plugin_is_really_gone(tmp_path: Path) -> None:
    run = _python_without_plugin(tmp_path)(
        "import importlib.metadata as m, importlib.util as u; "
        "print(u.find_spec('varscore_basenji2'), [e.name for e in m.entry_points(group='varscore')])"
    )
    assert run.returncode == 0, run.stderr
    spec, names = run.stdout.strip().split(" ", 1)
    assert spec == "None" and "basenji2" not in names and "enformer" in names


@pytest.mark.slow
def test_without_the_plugin_core_works_and_bundle_names_the_package(basenji2_bundle: Path, tmp_path: Path) -> None:
    python = _python_without_plugin(tmp_path)

    def varscore(*args: str) -> subprocess.CompletedProcess[str]:
        return python("sys.argv[0] = 'varscore'; from varscore.cli import main; main()", *args)

    listed = varscore("plugins")
    assert listed.returncode == 0, listed.stderr
    names = [row.split("\t")[0] for row in listed.stdout.splitlines()]
    assert "basenji2" not in names and {"enformer", "linear", "outputs"} <= set(names)

    # a core model still scores
    core = varscore(
        "annotate", str(EXAMPLE / "cohort.vcf.gz"), "-m", "elastic-net-demo", "-o", str(tmp_path / "en.vcf")
    )
    assert core.returncode == 0, core.stderr
    assert "VARSCORE=" in (tmp_path / "en.vcf").read_text()

    missing = varscore(
        "annotate", str(EXAMPLE / "cohort.vcf.gz"), "-m", str(basenji2_bundle), "-o", str(tmp_path / "b2.vcf")
    )
    assert missing.returncode == 1
    assert "backbone 'basenji2' is not installed; pip install varscore-basenji2" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b2.vcf").exists()
