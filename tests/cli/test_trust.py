"""Regression tests for honest failure on real input: a VCF of another genome build, a run that
scores nothing, conflicting INFO headers, control characters in names, two runs on one output,
damaged checkpoints, bad gene tables, stdin and pipes, disk faults, provenance and progress."""

from __future__ import annotations

import errno
import gzip
import json
import logging
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.cli.test_adversarial import run_cli
from tests.conftest import BCFTOOLS, DATA, needs_bcftools, random_sequence, read_vcf_lines, write_fasta, write_vcf
from varscore.cli import cli
from varscore.errors import InputError
from varscore.examples import data_dir
from varscore.models.bundle import BundleMetadata
from varscore.types import Gene

COHORT = data_dir() / "cohort.vcf.gz"
GIAB = DATA / "giab" / "NA12878_giab_chr20_100kb_at_10mb.vcf.gz"
SITES_ONLY_7_COLUMNS = DATA / "known_causal" / "regulatory_validated_hg38.vcf"


def _body(path: Path) -> list[str]:
    return [line for line in read_vcf_lines(path) if not line.startswith("#")]


def _shifted_cohort(path: Path, shift: int = 19_358, contig_length: int | None = None) -> Path:
    """The example cohort with every POS moved by ``shift`` bp (an hg38-like file for the hg19 model)."""
    with gzip.open(COHORT, "rt") as source, open(path, "w") as out:
        for line in source:
            if line.startswith("##contig") and contig_length:
                line = f"##contig=<ID=chr20,length={contig_length}>\n"
            elif not line.startswith("#"):
                chrom, pos, rest = line.split("\t", 2)
                line = f"{chrom}\t{int(pos) + shift}\t{rest}"
            out.write(line)
    return path


# --- 1. wrong genome build ----------------------------------------------------------------------


def test_cohort_shifted_by_19358_bp_is_refused_as_another_build(tmp_path):
    vcf = _shifted_cohort(tmp_path / "shifted.vcf")
    out = tmp_path / "out.vcf.gz"
    result = CliRunner().invoke(cli, ["annotate", str(vcf), "-m", "variformer-demo", "-o", str(out)])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "the VCF looks like a different genome build than the model's hg19" in lines[0]
    match = re.search(r"(\d+) of (\d+) checked REF alleles", lines[0])
    assert match and int(match.group(1)) / int(match.group(2)) > 0.5
    assert not out.exists()
    # the unshifted cohort passes the same check (it is what the model was trained on)
    from varscore.genome.fasta import Genome
    from varscore.io.vcf import iter_variants
    from varscore.scoring.engine import plan_scoring

    genome = Genome(data_dir() / "ucsc.hg19.chr20.unittest.fasta.gz")
    genes = [Gene("SNAP25", "chr20", 10199479, "+")]
    plan = plan_scoring(iter_variants(COHORT), genes, genome, 16384)
    assert plan.summary.ref_checked > 20 and plan.summary.not_scored.get("ref_mismatch", 0) == 0
    # (that the limit is an option, --max-ref-mismatch 1 accepting such a file, is checked on the toy
    # model in tests/cli/test_adversarial.py::ref_mismatch_allowed: scoring this one takes minutes on a CPU)


def test_contig_length_of_another_build_names_contig_lengths_and_build(tmp_path):
    vcf = _shifted_cohort(tmp_path / "hg38.vcf", shift=0, contig_length=64_444_167)
    result = CliRunner().invoke(cli, ["annotate", str(vcf), "-m", "variformer-demo", "-o", str(tmp_path / "o.vcf")])
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line
    assert "Contig chr20 is 64,444,167 bp" in line and "(hg38's length)" in line and "63,025,520 bp" in line
    assert "the model's hg19" in line


def test_builds_are_inferred_from_lengths():
    from varscore.genome.builds import build_of_contig, infer_build, normalise_build

    assert build_of_contig("chr20", 63_025_520) == "hg19" and build_of_contig("20", 64_444_167) == "hg38"
    assert infer_build({"chr1": 249_250_621, "chr2": 243_199_373}) == "hg19"
    assert infer_build({"chr1": 249_250_621, "chr2": 242_193_529}) is None  # mixed
    assert normalise_build("GRCh38") == "hg38" and normalise_build(None) is None


# --- 2. nothing scored ----------------------------------------------------------------------------


def test_vcf_outside_the_model_windows_warns_and_fail_if_none_errors(tmp_path):
    out = tmp_path / "giab.vcf.gz"
    strict = run_cli(["annotate", str(GIAB), "-m", "variformer-demo", "-o", str(out), "--fail-if-none"])
    assert strict.status == 1
    lines = strict.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: No record of")
    from varscore.types import tss_window

    window = tss_window(Gene("SNAP25", "chr20", 10199479, "+"), 16384)
    assert f"SNAP25 chr20:{window.start + 1}-{window.end}" in lines[0]
    assert "--genes" in lines[0] and "--fail-if-none" in lines[0]
    assert not out.exists()
    lenient = run_cli(["annotate", str(GIAB), "-m", "variformer-demo", "-o", str(out), "--no-progress"])
    assert lenient.status == 0, lenient.stderr
    warnings = [line for line in lenient.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "No record of" in warnings[0] and "--genes" in warnings[0]
    assert "records scored: 0" in lenient.stderr
    assert len(_body(out)) == sum(1 for line in gzip.open(GIAB, "rt") if not line.startswith("#"))


# --- 3. conflicting INFO definitions --------------------------------------------------------------


@needs_bcftools
def test_input_defining_varscore_otherwise_is_replaced_with_one_warning(toy_world, caplog):
    from varscore.scoring.gene_mode import ScoringJob, run_scoring

    seqs = toy_world["seqs"]
    vcf = toy_world["tmp"] / "old.vcf"
    text = (
        '##fileformat=VCFv4.2\n##INFO=<ID=VARSCORE,Number=1,Type=Integer,Description="old">\n'
        '##INFO=<ID=VARSCORE_MAX,Number=1,Type=Integer,Description="old">\n'
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="depth">\n##contig=<ID=chr1,length=1000>\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        f"chr1\t190\t.\t{seqs['chr1'][189]}\tA,C\t.\t.\tVARSCORE=5;VARSCORE_MAX=3\n"
        f"chr1\t5\t.\t{seqs['chr1'][4]}\tA\t.\t.\tDP=3;VARSCORE=9\n"
    ).replace("\tA,C\t", "\t" + ",".join(b for b in "ACGT" if b != seqs["chr1"][189])[:3] + "\t")
    vcf.write_text(text)
    out = toy_world["tmp"] / "new.vcf.gz"
    with caplog.at_level(logging.WARNING):
        run_scoring(ScoringJob(vcf, toy_world["bundle"], out))
    replaced = [r for r in caplog.records if "already defines INFO" in r.getMessage()]
    assert len(replaced) == 1 and "VARSCORE, VARSCORE_MAX" in replaced[0].getMessage()
    header = subprocess.run([BCFTOOLS, "view", "-h", str(out)], capture_output=True, text=True, check=True).stdout
    assert 'Description="old"' not in header and re.search(r"##INFO=<ID=VARSCORE_MAX,Number=A,Type=Float", header)
    query = subprocess.run(
        [BCFTOOLS, "query", "-f", "%POS\t%INFO/VARSCORE_MAX\t%INFO/DP\n", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [line.split("\t") for line in query.stdout.splitlines()]
    assert rows[1] == ["5", ".", "3"]  # the old value is gone, the other key kept
    maxima = rows[0][1].split(",")
    assert len(maxima) == 2 and all(float(m) >= 0 for m in maxima)


# --- 4. one INFO-text sanitiser -----------------------------------------------------------------


def test_info_text_sanitiser_follows_vcf_43():
    from varscore.io.infotext import header_text, header_value, info_atom, info_value, no_space, one_line

    assert info_atom("a;b=c,d|e f\tg\nh\r\x00i%") == "a_b_c_d_e_f_g_h__i_"
    assert info_atom("") == "." and info_atom("SNAP25") == "SNAP25" and info_atom("gène") == "gène"
    assert info_value("x|y,z;w=1\n") == "x|y,z_w_1_"
    assert header_text('say "hi"\\\nnext') == 'say \\"hi\\"\\\\ next'
    assert header_value("m<1>,x") == "m_1__x"
    assert "\n" not in one_line("a\nb\u2028c") and no_space("a b\nc") == "a_b_c"


def _no_other_plain_sanitisers() -> list[str]:
    """Places that build INFO text with their own character replacement (there must be none)."""
    root = Path(__file__).resolve().parents[2]
    hits = []
    for path in [*root.glob("varscore/**/*.py"), *root.glob("varscore_plugins/**/*.py")]:
        if path.name == "infotext.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"re\.sub\(r\"\[\|,;=", line) or 'for char in "|,;=' in line:
                hits.append(f"{path.name}:{number}")
    return hits


def test_every_info_writer_uses_the_shared_sanitiser():
    assert _no_other_plain_sanitisers() == []


@needs_bcftools
def test_newline_in_bundle_name_and_gene_id_does_not_split_records(toy_world, tmp_path):
    from tests.toy_plugin import ToyBackbone
    from varscore.models.bundle import BundleMetadata, save_bundle
    from varscore_plugins.outputs import ScalarOutput

    genes = [Gene("G1\nchr1\t5\t.\tA\tC", "chr1", 200, "+", "BAD\nNAME;X=1")]
    bundle = save_bundle(
        tmp_path / "evil",
        name="evil\nchr1\t1\t.\tA\tC\t.\t.\t.",
        backbone=ToyBackbone().build(),
        output_mode=ScalarOutput(track=1, center_bins=1),
        genes=genes,
        about=BundleMetadata(reference_fasta=toy_world["fasta"]),
    )
    seqs = toy_world["seqs"]
    vcf = write_vcf(
        tmp_path / "in.vcf",
        [("chr1", 190, seqs["chr1"][189], "A" if seqs["chr1"][189] != "A" else "C"), ("chr1", 5, seqs["chr1"][4], "N")],
    )
    genes_tsv = tmp_path / "genes.tsv"
    genes_tsv.write_text('chrom\ttss\tstrand\tgene_id\nchr1\t200\t+\t"EVIL\nchr1\t7\t.\tA\tC"\n')
    for extra in ([], ["--genes", str(genes_tsv)]):
        out = tmp_path / f"out{len(extra)}.vcf.gz"
        result = CliRunner().invoke(cli, ["annotate", str(vcf), "-m", str(bundle), "-o", str(out), *extra])
        assert result.exit_code == 0, result.output
        assert len(_body(out)) == 2
        view = subprocess.run([BCFTOOLS, "view", "-H", str(out)], capture_output=True, text=True, check=True)
        assert len(view.stdout.splitlines()) == 2
        entry = re.search(r"VARSCORE=([^;\t]+)", view.stdout).group(1)
        assert len(entry.split("|")) == 7 and "\n" not in entry


# --- 5. one run per output, checkpoints tied to the run -------------------------------------------


@pytest.fixture
def slow_bundle(toy_world, tmp_path):
    from tests.toy_plugin import ToyBackbone
    from varscore.models.bundle import save_bundle
    from varscore_plugins.outputs import ScalarOutput

    rng = np.random.default_rng(4)
    seq = random_sequence(rng, 200 * 12 + 200)
    fasta = write_fasta(tmp_path / "slow.fa", {"chr5": seq})
    genes = [Gene(f"S{i}", "chr5", 100 + 200 * i, "+") for i in range(12)]
    records = [("chr5", g.tss + 3, seq[g.tss + 2], "ACGT".replace(seq[g.tss + 2], "")[0]) for g in genes]
    vcf = write_vcf(tmp_path / "slow.vcf", records)
    bundle = save_bundle(
        tmp_path / "slow-model",
        name="slow-model",
        backbone=ToyBackbone(delay=0.15).build(),
        output_mode=ScalarOutput(track=0, center_bins=1),
        genes=genes,
        about=BundleMetadata(reference_fasta=fasta),
    )
    return {"vcf": vcf, "bundle": bundle, "genes": genes, "records": records}


def test_two_runs_on_one_output_never_mix(slow_bundle, tmp_path):
    out = tmp_path / "shared.vcf.gz"
    args = ["annotate", str(slow_bundle["vcf"]), "-m", str(slow_bundle["bundle"]), "-o", str(out), "--no-progress"]
    import threading

    results: dict[str, object] = {}
    first = threading.Thread(target=lambda: results.setdefault("first", run_cli(args)))
    first.start()
    lock = Path(f"{out}.varscore-lock")
    deadline = time.monotonic() + 60
    while not Path(f"{out}.varscore-partial").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    second = run_cli(args)
    first.join(120)
    assert second.status == 1
    assert (
        second.stderr.strip() == f"Error: another varscore run is writing {out} (it holds {lock}): wait for it "
        "to finish, or choose another -o."
    )
    assert results["first"].status == 0, results["first"].stderr  # type: ignore[attr-defined]
    assert len(_body(out)) == len(slow_bundle["records"])


def test_checkpoint_files_of_another_run_are_not_reused(slow_bundle, tmp_path):
    from varscore.models.bundle import load_bundle
    from varscore.scoring.engine import AlleleScore, GeneCheckpoint
    from varscore.scoring.gene_mode import ScoringJob, _fingerprint, checkpoint_dir, run_scoring

    clean = tmp_path / "clean.vcf"
    run_scoring(ScoringJob(slow_bundle["vcf"], slow_bundle["bundle"], clean))
    out = tmp_path / "resumed.vcf"
    bundle = load_bundle(slow_bundle["bundle"])
    fingerprint = _fingerprint(slow_bundle["vcf"], bundle, bundle.reference_fasta, bundle.genes, "flag", 64)
    checkpoint = GeneCheckpoint(checkpoint_dir(out), fingerprint, resume=False)
    # a gene file another run (other model) left: same gene id, its own fingerprint
    foreign = GeneCheckpoint.__new__(GeneCheckpoint)
    foreign.directory, foreign.fingerprint = checkpoint.directory, "another-run"
    foreign.save("S0", "S0", [(0, AlleleScore("A", "S0", 999.0, 1999.0))], 0)
    run_scoring(ScoringJob(slow_bundle["vcf"], slow_bundle["bundle"], out, resume=True))
    assert "999" not in out.read_text()
    assert _body(out) == _body(clean)


def test_truncated_checkpoint_says_rerun_without_resume(tmp_path):
    from varscore.scoring.engine import GeneCheckpoint

    directory = tmp_path / "out.vcf.varscore-partial"
    GeneCheckpoint(directory, "fp", resume=False)
    (directory / "checkpoint.json").write_text('{"finger')
    with pytest.raises(InputError, match="damaged or truncated.*rerun without --resume"):
        GeneCheckpoint(directory, "fp", resume=True)


def test_checkpoint_folder_removed_under_a_run_is_a_clear_error(tmp_path):
    import shutil

    from varscore.scoring.engine import GeneCheckpoint

    checkpoint = GeneCheckpoint(tmp_path / "x.varscore-partial", "fp", resume=False)
    shutil.rmtree(checkpoint.directory)
    with pytest.raises(InputError, match="Cannot write checkpoint .*another run"):
        checkpoint.save("G", "G", [], 0)


def test_leftover_part_files_are_removed_by_the_next_run(toy_world, tmp_path):
    out = tmp_path / "o.vcf.gz"
    leftovers = [tmp_path / f".{out.name}.k1ll3d_x.part", tmp_path / f".{out.name}.k1ll3d_x.part.tbi"]
    for path in leftovers:
        path.write_text("x")
    other = tmp_path / f".{out.name}.gz.abcdefgh.part"  # another output's (o.vcf.gz.gz): kept
    other.write_text("x")
    vcf = write_vcf(tmp_path / "in.vcf", [("chr1", 190, toy_world["seqs"]["chr1"][189], "N")])
    result = CliRunner().invoke(cli, ["annotate", str(vcf), "-m", str(toy_world["bundle"]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert not any(p.exists() for p in leftovers) and other.exists()


# --- 6. gene tables and contig names --------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("chrom\ttss\tstrand\tgene_id\n", "lists no genes"),
        ("chrom\ttss\tstrand\tgene_id\nchr1\t10\t+\tA\nchr1\t20\t+\tB\nchr2\t30\t+\tA\n", "more than once: A"),
        ("chrom\ttss\tstrand\tgene_id\nchr1\t0\t+\tA\n", "TSS 0"),
        ("chrom\ttss\tstrand\tgene_id\nchr1\t-3\t+\tA\n", "TSS -3"),
    ],
)
def test_bad_gene_tables_are_errors(tmp_path, content, message):
    from varscore.genome.fasta import load_genes

    path = tmp_path / "genes.tsv"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        load_genes(path)


def test_vcf_with_chr20_and_20_is_an_error(toy_world, tmp_path):
    seqs = toy_world["seqs"]
    vcf = write_vcf(
        tmp_path / "mixed.vcf",
        [("chr1", 190, seqs["chr1"][189], "N"), ("1", 200, seqs["chr1"][199], "N")],
        contigs={"chr1": 1000, "1": 1000},
    )
    result = CliRunner().invoke(
        cli, ["annotate", str(vcf), "-m", str(toy_world["bundle"]), "-o", str(tmp_path / "o.vcf")]
    )
    assert result.exit_code == 1 and "names one contig two ways, 'chr1' and '1'" in result.output
    # in a BCF too (checked on the contigs the records use)
    if BCFTOOLS:
        bcf = tmp_path / "mixed.bcf"
        subprocess.run([BCFTOOLS, "view", "-Ob", "-o", str(bcf), str(vcf)], check=True, capture_output=True)
        result = CliRunner().invoke(
            cli, ["annotate", str(bcf), "-m", str(toy_world["bundle"]), "-o", str(tmp_path / "o.vcf")]
        )
        assert result.exit_code == 1 and "names one contig two ways" in result.output


# --- 7. crashes, pipes, faults ----------------------------------------------------------------------


def test_record_with_spaces_for_tabs_is_a_one_line_error_not_a_segfault(toy_world, tmp_path):
    vcf = tmp_path / "spaces.vcf"
    vcf.write_text(
        "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        "chr1\t10\t.\tA\tC\t.\t.\t.\nchr1 20 . A C . . .\n"
    )
    outcome = run_cli(["annotate", str(vcf), "-m", str(toy_world["bundle"]), "-o", str(tmp_path / "o.vcf")])
    assert outcome.status == 1
    assert outcome.stderr.strip() == (
        f"Error: {vcf} line 4 has 1 tab-separated columns; a record needs at least 8 "
        "(CHROM POS ID REF ALT QUAL FILTER INFO) (spaces instead of tabs?)."
    )


@needs_bcftools
def test_stdin_and_named_pipe_are_read(toy_world, tmp_path):
    seqs = toy_world["seqs"]
    vcf = write_vcf(tmp_path / "in.vcf", [("chr1", 190, seqs["chr1"][189], "N"), ("chr1", 200, seqs["chr1"][199], "G")])
    stdin = run_cli(["annotate", "-", "-m", str(toy_world["bundle"]), "-o", str(tmp_path / "a.vcf")], stdin=vcf)
    assert stdin.status == 0, stdin.stderr
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    import threading

    threading.Thread(target=lambda: fifo.write_bytes(vcf.read_bytes()), daemon=True).start()
    piped = run_cli(["annotate", str(fifo), "-m", str(toy_world["bundle"]), "-o", str(tmp_path / "b.vcf")], timeout=60)
    assert piped.status == 0, piped.stderr
    assert _body(tmp_path / "a.vcf") == _body(tmp_path / "b.vcf") and len(_body(tmp_path / "a.vcf")) == 2


@needs_bcftools
def test_seven_column_sites_only_file_is_read_like_bcftools(toy_world, tmp_path):
    out = tmp_path / "causal.vcf.gz"
    result = CliRunner().invoke(
        cli, ["annotate", str(SITES_ONLY_7_COLUMNS), "-m", str(toy_world["bundle"]), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    expected = subprocess.run(
        [BCFTOOLS, "view", "-H", str(SITES_ONLY_7_COLUMNS)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    written = _body(out)
    assert len(written) == len(expected) == 16
    assert [w.split("\t")[:7] for w in written] == [e.split("\t")[:7] for e in expected]


def test_output_a_directory_or_unwritable_is_refused_before_scoring(toy_world, tmp_path, monkeypatch):
    import varscore.scoring.engine

    def never(*args, **kwargs):
        raise AssertionError("scoring started")

    monkeypatch.setattr(varscore.scoring.engine, "plan_scoring", never)
    monkeypatch.setattr("varscore.scoring.gene_mode.plan_scoring", never)
    vcf = write_vcf(tmp_path / "in.vcf", [("chr1", 190, "A", "C")])
    for out, message in ((tmp_path, "is a directory"), (Path("/proc/out.vcf"), "cannot be written")):
        result = CliRunner().invoke(cli, ["annotate", str(vcf), "-m", str(toy_world["bundle"]), "-o", str(out)])
        assert result.exit_code == 1 and message in result.output and len(result.output.strip().splitlines()) == 1


def test_disk_full_is_one_line_and_leaves_nothing(toy_world, tmp_path, monkeypatch):
    import varscore.io.vcf

    tmp_path = tmp_path / "run"
    tmp_path.mkdir()

    def full(self, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(varscore.io.vcf._Sink, "write", full)
    vcf = write_vcf(tmp_path / "in.vcf", [("chr1", 190, toy_world["seqs"]["chr1"][189], "N")])
    out = tmp_path / "o.vcf.gz"
    result = CliRunner().invoke(cli, ["annotate", str(vcf), "-m", str(toy_world["bundle"]), "-o", str(out)])
    assert result.exit_code == 1
    assert (
        result.output.strip() == f"Error: Cannot write {out}: No space left on device; nothing was written "
        "(the partial file was removed)."
    )
    # no output and no temporary file; the finished genes are kept, so that --resume completes the run
    # (the lock file goes with the run)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.vcf", "o.vcf.gz.varscore-partial"]
    monkeypatch.undo()
    result = CliRunner().invoke(cli, ["annotate", str(vcf), "-m", str(toy_world["bundle"]), "-o", str(out), "--resume"])
    assert result.exit_code == 0 and len(_body(out)) == 1


def test_infinite_expression_and_case_only_ids(tmp_path, caplog):
    from varscore.training.cohort import match_samples, read_expression, read_folds, read_gene_table

    bed = tmp_path / "expr.bed"
    bed.write_text("#chr\tstart\tend\tgene_id\tP1\tP2\nchr1\t1\t2\tG1\t0.5\tinf\n")
    with pytest.raises(InputError, match="infinite, e.g. gene G1, person P2: 'inf'"):
        read_expression(bed)
    table = tmp_path / "tpm.tsv"
    table.write_text("gene_id\tP1\nG1\t-inf\n")
    with pytest.raises(InputError, match="infinite"):
        read_gene_table(table)
    with caplog.at_level(logging.WARNING):
        match = match_samples(["Ann", "bob", "cy"], ["ann", "bob", "CY"])
    assert match.people == ["bob"]
    assert "2 of those IDs match only up to letter case (Ann vs ann, cy vs CY)" in caplog.text
    folds = tmp_path / "folds.tsv"
    folds.write_text("person\treplicate\tsplit\nA\t0\ttrain\nB\t0\tvalidation\nC\t0\ttest\n")
    assert read_folds(folds).set_index("person").loc["B", "split"] == "tune"


# --- 8. provenance ---------------------------------------------------------------------------------


@needs_bcftools
def test_outputs_carry_version_command_and_model(toy_world, tmp_path):
    from varscore import __version__
    from varscore.models.bundle import load_bundle

    vcf = write_vcf(tmp_path / "in.vcf", [("chr1", 190, toy_world["seqs"]["chr1"][189], "N")])
    out = tmp_path / "o.vcf.gz"
    outcome = run_cli(["annotate", str(vcf), "-m", str(toy_world["bundle"]), "-o", str(out), "--no-progress"])
    assert outcome.status == 0, outcome.stderr
    header = subprocess.run(
        f"{BCFTOOLS} view -h {out} | grep '^##varscore_'", shell=True, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    sha = load_bundle(toy_world["bundle"]).manifest["provenance"]["weights_sha256"]
    assert header[0] == f"##varscore_version={__version__}"
    assert header[1].startswith("##varscore_command=varscore annotate ") and str(vcf) in header[1]
    assert header[2] == f"##varscore_model=<ID=toy-model,Backbone=toy,Build=.,SHA256={sha}>"


def test_table_outputs_get_a_provenance_sidecar(toy_world, tmp_path):
    from varscore.io.outputguard import write_provenance_sidecar
    from varscore.models.bundle import load_bundle

    path = write_provenance_sidecar(tmp_path / "t.tsv", load_bundle(toy_world["bundle"]), ["varscore", "x\ny"])
    record = json.loads(path.read_text())
    assert path.name == "t.tsv.provenance.json" and record["varscore_command"] == "varscore 'x y'"
    assert record["varscore_model"]["ID"] == "toy-model" and len(record["varscore_model"]["SHA256"]) == 64


# --- 9. progress -------------------------------------------------------------------------------------


def test_progress_counts_alleles(toy_world, monkeypatch):
    import varscore.io.progress
    from varscore.genome.fasta import Genome
    from varscore.io.vcf import iter_variants
    from varscore.models.bundle import load_bundle
    from varscore.scoring.engine import plan_scoring, run_plan

    bars = []

    class Bar(varscore.io.progress.Progress):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(varscore.io.progress, "Progress", Bar)
    seqs = toy_world["seqs"]
    records = [
        ("chr1", p, seqs["chr1"][p - 1], "ACGT".replace(seqs["chr1"][p - 1], "")[:2].replace("", ",")[1:-1])
        for p in (190, 200, 210)
    ]
    vcf = write_vcf(toy_world["tmp"] / "p.vcf", records)
    bundle = load_bundle(toy_world["bundle"])
    genome = Genome(toy_world["fasta"])
    plan = plan_scoring(iter_variants(vcf), bundle.genes, genome, 64)
    run_plan(plan, bundle.sequence_backbone("cpu"), bundle.output_mode(), genome, progress=True)
    alleles = sum(len(jobs) for jobs in plan.jobs.values())
    assert len(bars) == 1 and bars[0].total == alleles == bars[0].done and alleles > len(plan.jobs)


def test_quiet_silences_progress_and_summary(toy_world, tmp_path):
    ref = toy_world["seqs"]["chr1"][189]
    vcf = write_vcf(tmp_path / "in.vcf", [("chr1", 190, ref, "A" if ref != "A" else "C")])
    quiet = run_cli(["annotate", str(vcf), "-m", str(toy_world["bundle"]), "-o", str(tmp_path / "o.vcf"), "--quiet"])
    assert quiet.status == 0 and quiet.stderr == ""
    loud = run_cli(["annotate", str(vcf), "-m", str(toy_world["bundle"]), "-o", str(tmp_path / "o.vcf")])
    assert loud.status == 0 and "records read: 1" in loud.stderr


def test_ism_table_gets_its_provenance_sidecar(toy_world, tmp_path):
    out = tmp_path / "ism.tsv"
    result = CliRunner().invoke(
        cli, ["ism", "-m", str(toy_world["bundle"]), "--saturation", "--gene", "G1", "--no-progress", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(Path(f"{out}.provenance.json").read_text())
    assert record["varscore_model"]["ID"] == "toy-model" and record["varscore_version"]


# --- the loading flags travel as settings, not through the environment -----------------------------


def test_trust_and_size_flags_last_one_command_and_leave_the_environment_alone(toy_world, tmp_path, monkeypatch):
    import shutil

    from varscore.errors import BundleError
    from varscore.models.bundle import LoadSettings, load_bundle, loading_settings, loading_with

    monkeypatch.delenv("VARSCORE_TRUST_UNVERIFIED", raising=False)
    monkeypatch.delenv("VARSCORE_ALLOW_LARGE_MODELS", raising=False)
    bundle = tmp_path / "unverified"
    shutil.copytree(toy_world["bundle"], bundle)
    manifest = json.loads((bundle / "varscore.json").read_text())
    manifest.pop("files", None)
    (manifest.get("provenance") or {}).pop("weights_sha256", None)
    (bundle / "varscore.json").write_text(json.dumps(manifest))
    vcf = write_vcf(tmp_path / "in.vcf", [("chr1", 190, toy_world["seqs"]["chr1"][189], "A")])
    environment = dict(os.environ)
    args = [
        "annotate",
        str(vcf),
        "-m",
        str(bundle),
        "--fasta",
        str(toy_world["fasta"]),
        "-o",
        str(tmp_path / "out.vcf"),
    ]
    result = CliRunner().invoke(cli, ["--trust-unverified", "--allow-large-models", *args])
    assert result.exit_code == 0, result.output
    assert dict(os.environ) == environment  # no flag went through os.environ
    assert loading_settings() == LoadSettings()  # nor outlived its command
    with pytest.raises(BundleError, match="no checksums"):
        load_bundle(bundle)
    with loading_with(LoadSettings(trust_unverified=True)):  # the Python API's way
        assert load_bundle(bundle).name
    assert loading_settings() == LoadSettings()
