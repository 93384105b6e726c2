"""End-to-end ``varscore annotate`` with a toy backbone registered as a test-only plugin."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import missing_tool, read_vcf_lines, write_fasta, write_vcf
from varscore.cli import cli
from varscore.genome.sequence import one_hot
from varscore.io.vcf import MAX_KEY, SCORE_FORMAT, SCORE_KEY, consequence
from varscore.scoring.gene_mode import ScoringJob, run_scoring
from varscore.types import tss_window


def _records(seqs: dict[str, str]) -> list[tuple[str, int, str, str]]:
    def alt_of(base: str) -> str:
        return "ACGT"[("ACGT".index(base) + 1) % 4]

    chr1, chr2 = seqs["chr1"], seqs["chr2"]
    return [
        ("chr1", 5, chr1[4], alt_of(chr1[4])),  # outside every window
        ("chr1", 190, chr1[189], alt_of(chr1[189])),  # in G1's window only
        ("chr1", 200, chr1[199], f"{alt_of(chr1[199])},{alt_of(alt_of(chr1[199]))}"),  # multi-allelic, in G1 and G2
        ("chr1", 210, chr1[209], chr1[209] + "AA"),  # insertion (checked in test_indels.py)
        ("chr1", 220, "N" if chr1[219] != "N" else "A", "T"),  # REF mismatch
        ("chr1", 255, chr1[254], alt_of(chr1[254])),  # only in G2's window
        ("chr2", 10, chr2[9], alt_of(chr2[9])),  # G3, padded window
        ("chr2", 400, chr2[399], alt_of(chr2[399])),  # outside
    ]


def _annotate(vcf: Path, model: object, out: Path, **options: object) -> list[str]:
    """Run the ``annotate`` job (gene mode) and return its summary lines."""
    job = ScoringJob(vcf, model if model is None else str(model), out, device="cpu", **options)
    return run_scoring(job).lines()


def _info(line: str) -> dict[str, str]:
    fields = line.split("\t")[7]
    return dict(kv.split("=", 1) for kv in fields.split(";") if "=" in kv)


@pytest.mark.parametrize("samples", [None, ["S1", "S2", "S3"]], ids=["sites-only", "multi-sample"])
@pytest.mark.parametrize("suffix", [".vcf", ".vcf.gz"])
def test_records_in_equal_records_out(toy_world, samples, suffix):
    tmp = toy_world["tmp"]
    records = _records(toy_world["seqs"])
    vcf = write_vcf(tmp / f"in{suffix}", records, samples=samples, contigs={"chr1": 1000, "chr2": 500})
    out = tmp / f"out{suffix}"
    summary = _annotate(vcf, toy_world["bundle"], out)
    in_body = [line for line in read_vcf_lines(vcf) if not line.startswith("#")]
    out_body = [line for line in read_vcf_lines(out) if not line.startswith("#")]
    assert len(out_body) == len(in_body) == len(records)
    assert [line.split("\t")[:5] for line in out_body] == [line.split("\t")[:5] for line in in_body]
    if samples:
        assert [line.split("\t")[8:] for line in out_body] == [line.split("\t")[8:] for line in in_body]
    scored = [SCORE_KEY in _info(line) for line in out_body]
    assert scored == [False, True, True, True, False, True, True, False]
    header = [line for line in read_vcf_lines(out) if line.startswith(f"##INFO=<ID={SCORE_KEY},")]
    assert len(header) == 1 and f'Format: {SCORE_FORMAT}"' in header[0]
    assert "records read: 8" in summary and "records scored: 5" in summary
    assert "records written: 8" in summary
    assert "not scored (outside_windows): 2" in summary
    if suffix == ".vcf.gz":
        assert Path(f"{out}.tbi").exists()


def test_scores_equal_direct_predictions(toy_world):
    """Every VARSCORE entry equals a direct prediction of hand-built ref and alt windows."""
    tmp, seqs, backbone = toy_world["tmp"], toy_world["seqs"], toy_world["backbone"]
    genes = {g.label: g for g in toy_world["genes"]}
    records = _records(seqs)
    vcf = write_vcf(tmp / "in.vcf", records)
    out = tmp / "out.vcf"
    _annotate(vcf, toy_world["bundle"], out)
    body = [line for line in read_vcf_lines(out) if not line.startswith("#")]
    checked = 0
    for line in body:
        info = _info(line)
        if SCORE_KEY not in info:
            continue
        chrom, pos = line.split("\t")[0], int(line.split("\t")[1])
        maxima = info[MAX_KEY].split(",")
        alts = line.split("\t")[4].split(",")
        for entry in info[SCORE_KEY].split(","):
            allele, gene, model, ref_pred, alt_pred, delta, direction = entry.split("|")
            assert model == "toy-model" and direction == consequence(float(delta))
            if len(allele) != 1:
                continue  # indels: tests/scoring/test_indels.py
            window = tss_window(genes[gene], backbone.window_size)
            padded = seqs[chrom]
            left = max(0, -window.start)
            ref_seq = "N" * left + padded[max(window.start, 0) : window.end]
            ref_seq += "N" * (window.length - len(ref_seq))
            alt_seq = list(ref_seq)
            alt_seq[window.offset(pos)] = allele
            ref_direct = backbone.predict(one_hot(ref_seq)[None])[0, backbone.window_size // 16, 1]
            alt_direct = backbone.predict(one_hot("".join(alt_seq))[None])[0, backbone.window_size // 16, 1]
            assert float(ref_pred) == pytest.approx(ref_direct, rel=1e-5, abs=1e-5)
            assert float(alt_pred) == pytest.approx(alt_direct, rel=1e-5, abs=1e-5)
            assert float(delta) == pytest.approx(alt_direct - ref_direct, rel=1e-4, abs=1e-5)
            assert maxima[alts.index(allele)] != "."
            checked += 1
    # windows: G1 chr1:167-231, G2 chr1:197-261 (0-based); 190 -> G1; 200 -> G1, G2 with two
    # alleles each; 255 -> G2; chr2:10 -> G3
    assert checked == 1 + 4 + 1 + 1


def test_stdout_and_bcftools_reads_output(toy_world):
    tmp = toy_world["tmp"]
    vcf = write_vcf(tmp / "in.vcf.gz", _records(toy_world["seqs"]), samples=["A"], contigs={"chr1": 1000, "chr2": 500})
    result = CliRunner().invoke(cli, ["annotate", str(vcf), "-m", str(toy_world["bundle"])])
    assert result.exit_code == 0
    assert f"##INFO=<ID={SCORE_KEY}" in result.stdout
    out = tmp / "out.vcf.gz"
    _annotate(vcf, toy_world["bundle"], out)
    if shutil.which("bcftools") is None:
        missing_tool("bcftools", "apt-get install bcftools")
    view = subprocess.run(["bcftools", "view", "-H", str(out)], capture_output=True, text=True, check=True)
    assert len(view.stdout.splitlines()) == 8
    query = subprocess.run(
        ["bcftools", "query", "-f", "%POS\\t%INFO/VARSCORE_MAX\\n", "-r", "chr1:200", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert query.stdout.startswith("200\t") and "," in query.stdout


def test_contig_names_without_chr_prefix_are_matched(toy_world):
    tmp = toy_world["tmp"]
    records = [(c.removeprefix("chr"), p, r, a) for c, p, r, a in _records(toy_world["seqs"])]
    vcf = write_vcf(tmp / "in.vcf", records)
    out = tmp / "out.vcf"
    assert "contigs matched: 1->chr1, 2->chr2" in _annotate(vcf, toy_world["bundle"], out)
    assert sum(SCORE_KEY in _info(x) for x in read_vcf_lines(out) if not x.startswith("#")) == 5


def _assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    message = [line for line in result.output.splitlines() if line.strip()]
    assert len(message) == 1, result.output
    for fragment in fragments:
        assert fragment in message[0], message[0]


def test_bad_input_gives_one_line_errors(toy_world):
    tmp = toy_world["tmp"]
    bundle = str(toy_world["bundle"])
    runner = CliRunner()
    _assert_one_line_error(runner.invoke(cli, ["annotate", str(tmp / "missing.vcf"), "-m", bundle]), "not found")
    not_vcf = tmp / "notes.vcf"
    not_vcf.write_text("this is not a VCF\n")
    _assert_one_line_error(runner.invoke(cli, ["annotate", str(not_vcf), "-m", bundle]), "notes.vcf")
    vcf = write_vcf(tmp / "in.vcf", _records(toy_world["seqs"]))
    _assert_one_line_error(
        runner.invoke(cli, ["annotate", str(vcf), "-m", "no-such-model"]),
        "Unknown model 'no-such-model'",
        "varscore models install",
    )
    other = write_fasta(tmp / "other.fa", {"chrX": "ACGT" * 50})
    _assert_one_line_error(
        runner.invoke(cli, ["annotate", str(vcf), "-m", bundle, "--fasta", str(other)]), "lacks the contigs", "--fasta"
    )
    wrong = write_vcf(tmp / "wrong.vcf", [("chr9", 10, "A", "C")])
    _assert_one_line_error(runner.invoke(cli, ["annotate", str(wrong), "-m", bundle]), "0 of 1 variants", "chr9")
    out = tmp / "never.vcf.gz"
    runner.invoke(cli, ["annotate", str(wrong), "-m", bundle, "-o", str(out)])
    assert not out.exists() and not list(tmp.glob(".never*"))


def test_unknown_model_name_explains_the_recipe(toy_world):
    result = CliRunner().invoke(cli, ["annotate", str(toy_world["fasta"]), "-m", "variformer-blood"])
    assert result.exit_code != 0


def test_models_list_and_info(toy_world, monkeypatch):
    monkeypatch.setenv("VARSCORE_MODELS", str(toy_world["bundle"].parent))
    runner = CliRunner()
    listed = runner.invoke(cli, ["models", "list"])
    assert listed.exit_code == 0 and "toy-model" in listed.output
    info = runner.invoke(cli, ["models", "info", "toy-model"])
    assert info.exit_code == 0 and "backbone:     toy" in info.output and "genes:        3 (GENEA" in info.output
    as_json = runner.invoke(cli, ["models", "info", "toy-model", "--json"])
    manifest = json.loads(as_json.output)
    assert manifest["backbone"]["name"] == "toy" and len(manifest["genes"]) == 3
    vcf = write_vcf(toy_world["tmp"] / "in.vcf", _records(toy_world["seqs"]))
    by_name = runner.invoke(cli, ["annotate", str(vcf), "-m", "toy-model", "-o", str(toy_world["tmp"] / "o.vcf")])
    assert by_name.exit_code == 0, by_name.output


def test_score_matrix_is_consistent_with_numpy(toy_world):
    """The engine's ISM for every base at one position equals a numpy einsum of the toy weights."""
    from varscore_plugins.outputs import ScalarOutput

    backbone = toy_world["backbone"]
    rng = np.random.default_rng(3)
    ref = np.eye(4, dtype=np.float32)[rng.integers(0, 4, backbone.window_size)]
    subs = [(7, "A"), (7, "C"), (33, "G"), (40, "T")]
    mode = ScalarOutput(track=0, center_bins=3)
    result = backbone.ism(ref, subs, mode.reduce, batch_size=3)
    weights = backbone.model_[0]  # (L, 4)
    centre = slice(3 * 8, 6 * 8)  # bins 3, 4, 5 of 8 bins of 8 bp
    ref_value = float((ref[centre] * weights[centre]).sum())
    for row, (off, base) in enumerate(subs):
        expected = 0.0
        if centre.start <= off < centre.stop:
            expected = float(weights[off, "ACGT".index(base)] - (ref[off] * weights[off]).sum())
        assert result.delta[row, 0] == pytest.approx(expected, abs=1e-5)
    assert result.reference[0] == pytest.approx(ref_value, abs=1e-5)


def test_unscorable_records_are_flagged_with_a_reason(toy_world):
    from varscore.io.vcf import SKIP_KEY

    tmp, chr1 = toy_world["tmp"], toy_world["seqs"]["chr1"]
    other = "ACGT"[("ACGT".index(chr1[199]) + 2) % 4]
    records = [
        ("chr1", 200, other, chr1[199]),  # REF disagrees with the FASTA
        ("chr1", 201, chr1[200], "<DEL>"),
        ("chr1", 202, chr1[201], "."),
        ("chr1", 203, "R", "A"),
        ("chr1", 204, chr1[203], "N"),
        ("chr1", 5, chr1[4], "A" if chr1[4] != "A" else "C"),  # outside every window: no flag
    ]
    vcf = write_vcf(tmp / "odd.vcf", records)
    out = tmp / "odd.out.vcf"
    summary = _annotate(vcf, toy_world["bundle"], out)
    body = [x for x in read_vcf_lines(out) if not x.startswith("#")]
    assert [_info(x).get(SKIP_KEY) for x in body] == [
        "ref_mismatch",
        "symbolic",
        "missing_alt",
        "ambiguous_ref",
        "ambiguous_alt",
        None,
    ]
    assert not any(SCORE_KEY in _info(x) for x in body)
    for reason in ("ref_mismatch", "symbolic", "missing_alt", "ambiguous_ref", "ambiguous_alt", "outside_windows"):
        assert f"not scored ({reason}): 1" in summary
    runner = CliRunner()  # the message of a refused run, as the command prints it
    failed = runner.invoke(cli, ["annotate", str(vcf), "-m", str(toy_world["bundle"]), "--check-ref", "fail"])
    _assert_one_line_error(failed, "REF mismatch at chr1:200", "--check-ref")
    _annotate(vcf, toy_world["bundle"], out, check_ref="skip")
    first = [x for x in read_vcf_lines(out) if not x.startswith("#")][0]
    assert SCORE_KEY in _info(first)


@pytest.mark.slow
def test_bundled_demo_model_annotates_the_bundled_cohort(demo_scored):
    """The README's main command: the shipped demo bundle resolves by name and scores (the
    session's ``demo_scored`` run, tests/conftest.py)."""
    summary = demo_scored.lines
    assert "records read: 4227" in summary and "genes scored: 5" in summary
    body = [x for x in read_vcf_lines(demo_scored.vcf) if not x.startswith("#")]
    assert len(body) == 4227
    snap25 = [x for x in body if x.split("\t")[1] == "10199381"]  # the simulated SNAP25 eQTL
    entries = _info(snap25[0])[SCORE_KEY].split(",")
    assert any(e.split("|")[1] == "SNAP25" for e in entries)


def _gc_expected(seq: str, pos: int, flank: int = 5) -> str:
    window = "".join(seq[i] if 0 <= i < len(seq) else "N" for i in range(pos - 1 - flank, pos + flank))
    return f"{sum(b in 'GC' for b in window) / len(window):.4f}"


@pytest.fixture
def toy_annotator():
    from tests.toy_plugin import AnnotatorPlugin
    from varscore.plugin.manager import manager

    manager.register(AnnotatorPlugin(), name="toy-annotator")
    yield
    manager.unregister("toy-annotator")


def test_model_none_runs_annotators_only(toy_world, toy_annotator):
    """``--model none --annotate toy-gc``: every record annotated (GC content checked against the
    sequence), none scored, the summary adds up."""
    tmp, seqs = toy_world["tmp"], toy_world["seqs"]
    records = _records(seqs)
    vcf = write_vcf(tmp / "in.vcf", records)
    out = tmp / "gc.vcf"
    summary = _annotate(
        vcf, None, out, fasta=toy_world["fasta"], annotators=("toy-gc",), annotator_options={"toy-gc": {"flank": "3"}}
    )
    body = [x for x in read_vcf_lines(out) if not x.startswith("#")]
    assert len(body) == len(records)
    for line, (chrom, pos, _, _) in zip(body, records, strict=True):
        info = _info(line)
        assert SCORE_KEY not in info
        assert info["TOY_GC"] == _gc_expected(seqs[chrom], pos, flank=3)
    assert any(x.startswith("##INFO=<ID=TOY_GC,") for x in read_vcf_lines(out))
    for line in (
        "records read: 8",
        "records written: 8",
        "records scored: 0",
        "not scored (no_model): 8",
        "annotated (TOY_GC): 8",
    ):
        assert line in summary
    nothing = CliRunner().invoke(cli, ["annotate", str(vcf), "--model", "none", "-o", str(out)])
    _assert_one_line_error(nothing, "--model none scores nothing", "--annotate")


def test_an_annotator_only_run_that_annotates_nothing_says_so(tmp_path, caplog):
    """``--model none`` whose annotators give no record a value: the output is the input (plus their
    header lines), and the run says so on stderr and in the VCF header."""
    from varscore.scoring.gene_mode import ScoringJob, run_scoring

    vcf = write_vcf(tmp_path / "in.vcf", [("chr1", 10, "C", "A"), ("chr1", 70, "C", "A")])
    bed = tmp_path / "states.bed"
    bed.write_text("chr1\t100\t200\t1_TssA\n")  # no record inside a segment
    job = ScoringJob(
        vcf, "none", tmp_path / "out.vcf", annotators=["chromhmm"], annotator_options={"chromhmm": {"bed": str(bed)}}
    )
    with caplog.at_level("WARNING", logger="varscore.scoring.gene_mode"):
        summary = run_scoring(job)
    expected = (
        f"--model none: the annotators (chromhmm) gave none of the 2 records of {vcf} a value; the output is the "
        "input with their header lines only."
    )
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [expected]
    assert summary.records_written == 2 and not summary.annotated
    assert f'##varscore_warning="{expected}"' in read_vcf_lines(tmp_path / "out.vcf")
    bed.write_text("chr1\t0\t200\t1_TssA\n")  # now both are: no warning
    caplog.clear()
    with caplog.at_level("WARNING", logger="varscore.scoring.gene_mode"):
        run_scoring(job)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert not [x for x in read_vcf_lines(tmp_path / "out.vcf") if x.startswith("##varscore_warning")]


def test_model_and_annotator_together(toy_world, toy_annotator):
    tmp, seqs = toy_world["tmp"], toy_world["seqs"]
    vcf = write_vcf(tmp / "in.vcf", _records(seqs))
    out = tmp / "both.vcf"
    summary = _annotate(vcf, toy_world["bundle"], out, annotators=("toy-gc",))
    body = [x for x in read_vcf_lines(out) if not x.startswith("#")]
    assert [SCORE_KEY in _info(x) for x in body] == [False, True, True, True, False, True, True, False]
    assert all("TOY_GC" in _info(x) for x in body)  # annotators see every record, scored or not
    assert "annotated (TOY_GC): 8" in summary
