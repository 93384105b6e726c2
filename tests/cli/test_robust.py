"""Robust input for ``varscore annotate``: real edge-case VCFs, generated adversarial VCFs,
killed and resumed runs. Every run ends with exit 0 and every record accounted for (in = out, in
order, readable by bcftools), or with a one-line error: never a traceback."""

from __future__ import annotations

import gzip
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import BCFTOOLS, DATA, needs_bcftools, random_sequence, write_fasta
from varscore.cli import cli
from varscore.models.bundle import BundleMetadata
from varscore.types import Gene

REPO = Path(__file__).resolve().parents[2]
EDGE_CASES = DATA / "vcf_edge_cases"
EDGE_CASE_FILES = sorted(p.name for p in EDGE_CASES.glob("*.vcf"))
assert len(EDGE_CASE_FILES) == 9, f"tests/data/vcf_edge_cases should hold 9 VCFs, found {EDGE_CASE_FILES}"
CONTIG_LENGTH = 400
CONTIGS = ("1", "2", "3", "20", "22", "X")


@pytest.fixture(scope="module")
def robust_world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A FASTA with the edge-case files' contigs (400 bp each, no ``chr``) and a toy model with two
    genes per contig whose 128-bp windows cover positions 1-214."""
    from tests import toy_plugin
    from tests.toy_plugin import ToyBackbone
    from varscore.models.bundle import BundleMetadata, save_bundle
    from varscore.plugin.manager import manager
    from varscore_plugins.outputs import ScalarOutput

    manager.register(toy_plugin, name="toy-plugin-robust")
    tmp = tmp_path_factory.mktemp("robust")
    rng = np.random.default_rng(5)
    seqs = {name: random_sequence(rng, CONTIG_LENGTH) for name in CONTIGS}
    fasta = write_fasta(tmp / "ref.fa", seqs)
    genes = [Gene(f"G{c}_{tss}", c, tss, "+", f"G{c}_{tss}") for c in CONTIGS for tss in (64, 150)]
    backbone = ToyBackbone(window_size=128).build()
    bundle = save_bundle(
        tmp / "robust-model",
        name="robust-model",
        backbone=backbone,
        output_mode=ScalarOutput(track=0, center_bins=1),
        genes=genes,
        about=BundleMetadata(reference_fasta=fasta),
    )
    yield {"tmp": tmp, "fasta": fasta, "seqs": seqs, "bundle": bundle}
    manager.unregister("toy-plugin-robust")


def _text_lines(path: Path) -> list[str]:
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if path.suffix == ".bcf":
        return subprocess.run(
            [BCFTOOLS, "view", str(path)], capture_output=True, text=True, check=True
        ).stdout.splitlines()
    opener = gzip.open if magic == b"\x1f\x8b" else open
    with opener(path, "rt") as handle:
        return handle.read().splitlines()


def _record_keys(lines: list[str]) -> list[tuple[str, ...]]:
    """CHROM, POS, ID, REF, ALT of each record line (what must survive unchanged, in order)."""
    return [tuple(line.split("\t")[:5]) for line in lines if line and not line.startswith("#")]


def _summary(output: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in output.splitlines():
        match = re.fullmatch(r"(records read|records written|records scored|not scored \((\w+)\)): (\d+)", line)
        if match:
            counts[match.group(1)] = int(match.group(3))
    return counts


def check_accounted(source: Path, out: Path, result) -> str:
    """The property: exit 0 with every record written back in order (bcftools reads the output)
    and a summary that adds up, or a one-line error. Returns ``"ok"`` or ``"error"``."""
    assert "Traceback" not in result.output, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    if result.exit_code != 0:
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
        assert not out.exists()
        return "error"
    expected = _record_keys(_text_lines(source))
    written = _text_lines(out)
    assert _record_keys(written) == expected
    counts = _summary(result.output)
    assert counts["records read"] == counts["records written"] == len(expected), result.output
    not_scored = sum(v for k, v in counts.items() if k.startswith("not scored"))
    assert counts["records scored"] + not_scored == len(expected), result.output
    if BCFTOOLS is not None:
        view = subprocess.run([BCFTOOLS, "view", "-H", str(out)], capture_output=True, text=True)
        if view.returncode != 0:
            # only where htslib cannot read back its own copy of the input either (e.g. a repeated
            # GT FORMAT key, which htslib writes as it stores it)
            own = subprocess.run(f"{BCFTOOLS} view {source} | {BCFTOOLS} view -H", shell=True, capture_output=True)
            assert own.returncode != 0, view.stderr
        else:
            assert len(view.stdout.splitlines()) == len(expected)
    return "ok"


def run_annotate(world: dict, vcf: Path, out: Path, *extra: str):
    return CliRunner().invoke(
        cli, ["annotate", str(vcf), "-m", str(world["bundle"]), "-o", str(out), "--no-progress", *extra]
    )


@pytest.mark.parametrize("name", EDGE_CASE_FILES)
@pytest.mark.parametrize("suffix", [".vcf", ".vcf.gz"])
def test_edge_case_files_are_accounted_for(robust_world, name, suffix):
    out = robust_world["tmp"] / f"{name}.out{suffix}"
    if out.exists():
        out.unlink()
    result = run_annotate(robust_world, EDGE_CASES / name, out)
    outcome = check_accounted(EDGE_CASES / name, out, result)
    # every file holds records on the model's contigs (or none): all must be accepted unless
    # htslib itself cannot parse them (htslib 1.16 rejects VCFv4.4's explicit phasing, '/0|1')
    if outcome == "error":
        assert "cannot parse" in result.output
        if BCFTOOLS is not None:
            assert subprocess.run([BCFTOOLS, "view", str(EDGE_CASES / name)], capture_output=True).returncode != 0


def test_edge_cases_are_scored_where_they_can_be(robust_world):
    """bcftools' norm test file: multi-allelic indels, a 200-bp REF, overlapping records, scored."""
    name = "bcftools_norm.split.vcf"
    out = robust_world["tmp"] / "norm.out.vcf"
    result = run_annotate(robust_world, EDGE_CASES / name, out, "--check-ref", "skip")
    assert check_accounted(EDGE_CASES / name, out, result) == "ok"
    body = [line for line in _text_lines(out) if not line.startswith("#")]
    scored = [line for line in body if "VARSCORE=" in line]
    indels = [
        line for line in scored if any(len(a) != len(line.split("\t")[3]) for a in line.split("\t")[4].split(","))
    ]
    assert len(indels) >= 5
    multi = next(line for line in scored if line.split("\t")[1] == "114" and line.startswith("2\t"))
    alts = multi.split("\t")[4].split(",")
    entries = re.search(r"VARSCORE=([^;\t]+)", multi).group(1).split(",")
    assert {e.split("|")[0] for e in entries} == set(alts)
    maxima = re.search(r"VARSCORE_MAX=([^;\t]+)", multi).group(1).split(",")
    assert len(maxima) == len(alts) and "." not in maxima


# --- generated adversarial VCFs -----------------------------------------------------------------

IUPAC = "RYSWKMBDHVN"


@st.composite
def vcf_records(draw, seqs: dict[str, str]) -> tuple[str, int, str, str]:
    chrom = draw(st.sampled_from(["1", "chr1", "2", "X", "chrX", "MT", "unknown_contig", "20"]))
    pos = draw(
        st.one_of(st.sampled_from([0, 1, 2, CONTIG_LENGTH, CONTIG_LENGTH + 1, 10**7]), st.integers(1, CONTIG_LENGTH))
    )
    seq = seqs.get(chrom.removeprefix("chr"), "A" * CONTIG_LENGTH)
    true_ref = seq[pos - 1 : pos - 1 + draw(st.integers(1, 4))] if 1 <= pos <= CONTIG_LENGTH else "A"
    ref = draw(
        st.one_of(
            st.just(true_ref),
            st.just(true_ref.lower()),
            st.text("ACGTN", min_size=1, max_size=3),
            st.text(IUPAC, min_size=1, max_size=2),
            st.just(true_ref + "".join(seq[pos : pos + 40])),
        )
    )
    allele = st.one_of(
        st.text("ACGT", min_size=1, max_size=3),
        st.text("acgtn", min_size=1, max_size=2),
        st.just(ref[0] + "T" * 70),
        st.just(ref[0]),
        st.sampled_from(["<DEL>", "<*>", "*", "<NON_REF>", "N[1:20[", ".A", "R", "N"]),
    )
    alts = draw(st.one_of(st.just("."), st.lists(allele, min_size=1, max_size=3).map(",".join)))
    return chrom, pos, ref, alts


@st.composite
def vcf_files(draw, seqs: dict[str, str]) -> dict:
    records = draw(st.lists(vcf_records(seqs), min_size=0, max_size=12))
    if records and draw(st.booleans()):
        records = records + [records[0]]  # a duplicate record
    if draw(st.booleans()):
        records = sorted(records, key=lambda r: (r[0], r[1]))
    return {
        "records": records,
        "version": draw(st.sampled_from(["VCFv4.2", "VCFv4.3", "VCFv4.4"])),
        "samples": draw(st.sampled_from([[], ["S1"], ["S1", "S2"]])),
        "contig_lines": draw(st.booleans()),
        "form": draw(st.sampled_from(["vcf", "vcf.gz", "bcf"])),
        "out": draw(st.sampled_from(["vcf", "vcf.gz"])),
    }


def write_generated(path: Path, spec: dict) -> Path:
    lines = [f"##fileformat={spec['version']}"]
    if spec["contig_lines"]:
        lines += [f"##contig=<ID={c},length={CONTIG_LENGTH}>" for c in CONTIGS]
    lines.append('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    header = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"
    if spec["samples"]:
        header += "\tFORMAT\t" + "\t".join(spec["samples"])
    lines.append(header)
    for i, (chrom, pos, ref, alts) in enumerate(spec["records"]):
        line = f"{chrom}\t{pos}\tid{i}\t{ref}\t{alts}\t.\t.\t."
        if spec["samples"]:
            line += "\tGT" + "\t0/1" * len(spec["samples"])
        lines.append(line)
    plain = path.with_suffix(".txt")
    plain.write_text("\n".join(lines) + "\n")
    if spec["form"] == "vcf":
        plain.rename(path)
    elif spec["form"] == "vcf.gz":
        import pysam

        pysam.tabix_compress(str(plain), str(path), force=True)
    else:
        converted = subprocess.run([BCFTOOLS, "view", "-Ob", "-o", str(path), str(plain)], capture_output=True)
        if converted.returncode != 0:  # bcftools refuses some of these files itself: keep them as VCF
            path = path.with_suffix(".vcf")
            plain.rename(path)
    return path


@needs_bcftools
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=st.data())
def test_generated_vcfs_are_accounted_for_or_fail_in_one_line(robust_world, data):
    spec = data.draw(vcf_files(robust_world["seqs"]))
    tmp = robust_world["tmp"]
    for stale in tmp.glob("gen*"):
        stale.unlink()
    source = write_generated(tmp / f"gen.{spec['form']}", spec)
    out = tmp / f"gen.out.{spec['out']}"
    result = run_annotate(robust_world, source, out)
    outcome = check_accounted(source, out, result)
    known = [r for r in spec["records"] if r[0] not in ("unknown_contig", "MT")]
    spellings: dict[str, set[str]] = {}
    for record in spec["records"]:
        spellings.setdefault(record[0].removeprefix("chr"), set()).add(record[0])
    if any(len(names) > 1 for names in spellings.values()):
        # one contig spelled two ways (chr1 and 1) is an error, never a silent merge
        assert outcome == "error" and ("two ways" in result.output or "read" in result.output.lower()), result.output
    elif known:
        # records on the model's contigs always give an output (odd alleles are flagged, not fatal),
        # unless htslib itself cannot parse the file
        assert outcome == "ok" or "read" in result.output.lower(), result.output


# --- killed runs and --resume -------------------------------------------------------------------

N_GENES = 30


@pytest.fixture(scope="module")
def slow_world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """30 genes on one contig, 3 records each (2 SNVs, 1 deletion); the model sleeps 30 ms per
    forward pass, so a run takes a few seconds."""
    from tests.toy_plugin import ToyBackbone
    from varscore.models.bundle import save_bundle
    from varscore_plugins.outputs import ScalarOutput

    tmp = tmp_path_factory.mktemp("resume")
    rng = np.random.default_rng(9)
    seq = random_sequence(rng, 200 * N_GENES + 200)
    fasta = write_fasta(tmp / "ref.fa", {"chr5": seq})
    genes = [Gene(f"G{i}", "chr5", 100 + 200 * i, "+") for i in range(N_GENES)]
    records = []
    for gene in genes:
        for pos in (gene.tss - 10, gene.tss + 5):
            records.append((pos, seq[pos - 1], "ACGT".replace(seq[pos - 1], "")[0]))
        records.append((gene.tss + 12, seq[gene.tss + 11 : gene.tss + 15], seq[gene.tss + 11]))
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=chr5>", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    lines += [f"chr5\t{p}\t.\t{r}\t{a}\t.\t.\t." for p, r, a in records]
    vcf = tmp / "in.vcf"
    vcf.write_text("\n".join(lines) + "\n")
    bundle = save_bundle(
        tmp / "slow-toy",
        name="slow-toy",
        backbone=ToyBackbone(delay=0.03).build(),
        output_mode=ScalarOutput(track=0, center_bins=1),
        genes=genes,
        about=BundleMetadata(reference_fasta=fasta),
    )
    return {"tmp": tmp, "vcf": vcf, "bundle": bundle, "records": len(records)}


RUNNER = (
    "import sys; from varscore.plugin.manager import manager; import tests.toy_plugin as toy; "
    "manager.register(toy, name='toy-plugin'); from varscore.cli import cli; "
    "sys.exit(cli.main(args=sys.argv[1:], prog_name='varscore'))"
)


def _annotate_process(world: dict, out: Path, *extra: str) -> subprocess.Popen:
    args = [
        sys.executable,
        "-c",
        RUNNER,
        "-v",
        "annotate",
        str(world["vcf"]),
        "-m",
        str(world["bundle"]),
        "-o",
        str(out),
        "--no-progress",
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def uninterrupted(slow_world: dict) -> bytes:
    out = slow_world["tmp"] / "full.vcf.gz"
    process = _annotate_process(slow_world, out)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert f"records scored: {slow_world['records']}" in stderr
    assert not Path(f"{out}.varscore-partial").exists()
    return out.read_bytes()


def _without_command(data: bytes) -> bytes:
    """The output's text without its ``##varscore_command`` line (which names each run's own -o)."""
    lines = gzip.decompress(data).splitlines(keepends=True)
    assert sum(line.startswith(b"##varscore_command=") for line in lines) == 1
    return b"".join(line for line in lines if not line.startswith(b"##varscore_command="))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_run_leaves_no_output_and_resume_finishes_it(slow_world, uninterrupted, sig):
    out = slow_world["tmp"] / f"killed-{sig.name}.vcf.gz"
    partial = Path(f"{out}.varscore-partial")
    process = _annotate_process(slow_world, out)
    deadline = time.monotonic() + 60
    while len(list(partial.glob("*.json"))) < 6 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode != 0
    assert "Traceback" not in stderr
    if sig == signal.SIGTERM:  # one line, and the shell's 128 + 15
        assert process.returncode == 143
        assert stderr.strip().splitlines()[-1] == (
            f"Error: annotate stopped by SIGTERM; {out} was not written; rerun with --resume to keep the genes "
            "already scored"
        )
    assert not out.exists() and not Path(f"{out}.tbi").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]  # no temporary left
    done = len(list(partial.glob("*.json"))) - 1  # minus the manifest
    assert 5 <= done < N_GENES
    resumed = _annotate_process(slow_world, out, "--resume")
    _, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr
    assert re.search(rf"resuming from .*: {done} genes done", stderr), stderr
    assert _without_command(out.read_bytes()) == _without_command(uninterrupted)
    assert not partial.exists()


def test_resume_refuses_a_checkpoint_of_other_inputs(slow_world, tmp_path, robust_world):
    from varscore.scoring.engine import GeneCheckpoint

    out = tmp_path / "other.vcf"
    GeneCheckpoint(Path(f"{out}.varscore-partial"), "another-fingerprint", resume=False)
    result = CliRunner().invoke(
        cli, ["annotate", str(slow_world["vcf"]), "-m", str(slow_world["bundle"]), "-o", str(out), "--resume"]
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "other inputs" in lines[0] and "without --resume" in lines[0]
    stdout = CliRunner().invoke(cli, ["annotate", str(slow_world["vcf"]), "-m", str(slow_world["bundle"]), "--resume"])
    assert stdout.exit_code == 1 and "--resume needs an output file" in stdout.output
