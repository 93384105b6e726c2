"""One convention for every command: the input VCF positional, -o/--output, --genes-only,
--fasta from the bundle; the old spellings (--vcf, -o/--out, --gene) still parse, hidden, into
the same parameter; selection options become the job's Selection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from varscore.cli import cli
from varscore.scoring.selection import Region, Selection, Shard


def _capture(monkeypatch: pytest.MonkeyPatch, module: str, name: str) -> list[Any]:
    """Replace the run function ``module.name`` by one that records its job and stops."""
    import importlib

    seen: list[Any] = []

    def fake(job: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(job)
        raise SystemExit(0)

    monkeypatch.setattr(importlib.import_module(module), name, fake)
    return seen


def _invoke(argv: list[str]) -> click.testing.Result:
    return CliRunner().invoke(cli, argv)


@pytest.fixture
def vcf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "in.vcf"
    path.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
    return path


@pytest.mark.parametrize("command", ["ism", "hsv", "drivers", "attribute"])
def test_analyses_take_the_vcf_positional_and_as_old_vcf(
    command: str, vcf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = {"ism": "ism", "hsv": "hsv", "drivers": "drivers", "attribute": "attribution"}[command]
    function = {"ism": "run_ism", "hsv": "run_hsv", "drivers": "run_drivers", "attribute": "run_attribution"}[command]
    seen = _capture(monkeypatch, f"varscore.analysis.{module}", function)
    new = _invoke([command, str(vcf), "-m", "M", "--genes-only", "A,B", "-o", "out.tsv"])
    old = _invoke([command, "-m", "M", "--vcf", str(vcf), "--gene", "A", "--gene", "B", "-o", "out.tsv"])
    assert new.exit_code == 0 and old.exit_code == 0, new.output + old.output
    assert seen[0].inputs == seen[1].inputs
    assert seen[0].inputs.vcf == vcf and seen[0].inputs.gene_names == ("A", "B")
    both = _invoke([command, str(vcf), "-m", "M", "--vcf", str(vcf), "-o", "out.tsv"])
    assert both.exit_code == 2 and "--vcf is the old spelling" in both.output


def test_help_shows_only_the_new_spellings() -> None:
    for command in ("ism", "track", "simulate", "evaluate", "report", "finetune"):
        text = _invoke([command, "--help"]).output
        assert "--vcf " not in text and "--out " not in text and "--gene " not in text, command
    assert "[VCF]" in _invoke(["ism", "--help"]).output
    assert "report [OPTIONS] VCF\n" in _invoke(["report", "--help"]).output


def test_track_and_simulate_take_output_and_old_out(vcf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _capture(monkeypatch, "varscore.scoring.tracks", "run_tracks")
    assert _invoke(["track", str(vcf), "--from-vcf", "-o", "a"]).exit_code == 0
    assert _invoke(["track", str(vcf), "--from-vcf", "--out", "a"]).exit_code == 0
    assert _invoke(["track", str(vcf), "--from-vcf", "--output", "a"]).exit_code == 0
    assert [Path(job.out_dir) for job in seen] == [Path("a")] * 3
    missing = _invoke(["track", str(vcf), "--from-vcf"])
    assert missing.exit_code == 2 and "Missing -o/--output" in missing.output
    simulated = _capture(monkeypatch, "varscore.simulate", "simulate_cohort")
    assert _invoke(["simulate", "--out", "sim"]).exit_code == 0
    assert _invoke(["simulate", "-o", "sim"]).exit_code == 0
    assert len(simulated) == 2


def test_cohort_commands_take_the_vcf_positional(vcf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _capture(monkeypatch, "varscore.training.evaluate", "run_evaluation")
    cohort = ["--expression", str(vcf), "--genes", str(vcf), "-m", "variformer-demo"]
    new = _invoke(["evaluate", str(vcf), *cohort, "--genes-only", "SNAP25"])
    old = _invoke(["evaluate", "--vcf", str(vcf), *cohort, "--gene", "SNAP25", "--fasta", str(vcf)])
    assert new.exit_code == 0 and old.exit_code == 0, new.output + old.output
    assert seen[0].inputs.vcf == seen[1].inputs.vcf == vcf
    # no --fasta: the FASTA the bundle records, as annotate and report do
    from varscore.models.bundle import load_bundle

    assert Path(seen[0].inputs.fasta) == Path(load_bundle("variformer-demo").reference_fasta)
    assert seen[1].inputs.fasta == vcf


def test_annotate_selection_options_reach_the_job(vcf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _capture(monkeypatch, "varscore.scoring.gene_mode", "run_scoring")
    bed = tmp_path / "r.bed"
    bed.write_text("chr20\t10\t20\n")
    argv = ["annotate", str(vcf), "-m", "M", "--regions", "chr20:1-5", "--regions-file", str(bed)]
    result = _invoke([*argv, "--genes-only", "A,B", "--genes-only", "C", "--shard", "2/3"])
    assert result.exit_code == 0, result.output
    assert seen[0].selection == Selection(
        (Region("chr20", 0, 5), Region("chr20", 10, 20)), ("A", "B", "C"), Shard(2, 3)
    )
    assert _invoke(["annotate", str(vcf), "-m", "M"]).exit_code == 0
    assert seen[1].selection == Selection() and not seen[1].selection.active


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--shard", "3/2"], "--shard 3/2"),
        (["--shard", "0/0"], "--shard 0/0"),
        (["--regions", "chr20:9-3"], "--regions"),
        (["--genes-only", ","], "--genes-only names no gene"),
    ],
)
def test_bad_selections_end_in_one_line(vcf: Path, option: list[str], message: str) -> None:
    result = _invoke(["annotate", str(vcf), "-m", "variformer-demo", *option])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_unknown_gene_ends_in_one_line(vcf: Path) -> None:
    result = _invoke(["annotate", str(vcf), "-m", "variformer-demo", "--genes-only", "NOPE", "-o", "out.vcf"])
    assert result.exit_code == 1, result.output
    assert len(result.output.strip().splitlines()) == 1 and "NOPE" in result.output


def test_calibrate_takes_the_background_positional(vcf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _capture(monkeypatch, "varscore.scoring.gene_mode", "run_gene_calibration")  # --mode gene: the default
    new = _invoke(["models", "calibrate", "variformer-demo", str(vcf), "-o", "cal"])
    old = _invoke(["models", "calibrate", "variformer-demo", "--vcf", str(vcf), "-o", "cal"])
    assert new.exit_code == 0 and old.exit_code == 0, new.output + old.output
    assert seen[0].vcf == seen[1].vcf == vcf
    missing = _invoke(["models", "calibrate", "variformer-demo"])
    assert missing.exit_code == 2 and "Missing the argument VCF" in missing.output
