"""A generated adversarial suite for ``varscore annotate``: malformed and truncated files, odd
alleles and ploidy, conflicting headers, spaces for tabs, stdin and named pipes, a wrong genome
build, bad gene tables and injected faults.

Every case runs the CLI in a child process (forked, so that a crash inside htslib shows as a
signal instead of killing the test run) and asserts: no traceback, no crash signal, a one-line
message on failure (and no output file left), and on success every record written back in
order, the summary adding up and bcftools reading the output.
"""

from __future__ import annotations

import errno
import faulthandler
import gzip
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import BCFTOOLS, needs_bcftools, random_sequence, write_fasta
from varscore.examples import data_dir
from varscore.types import Gene

pytestmark = needs_bcftools

SAMPLE_HEADER = ["S1", "S2"]


@dataclass
class Outcome:
    status: int  # exit code, or minus the signal that ended the process
    stdout: str
    stderr: str
    out_bytes: bytes = b""


def run_cli(
    args: list[str],
    stdin: Path | None = None,
    fault: Callable[[], None] | None = None,
    timeout: float = 120,
    out_file: Path | None = None,
) -> Outcome:
    """``varscore ARGS`` in a forked child: its exit status (minus the signal if one ended it),
    stdout and stderr. ``fault`` runs in the child first (fault injection)."""
    from varscore.cli import cli

    out_file = out_file or Path(os.environ.get("TMPDIR", "/tmp")) / f"adv-{os.getpid()}-{time.monotonic_ns()}"
    stdout_path, stderr_path = Path(f"{out_file}.stdout"), Path(f"{out_file}.stderr")
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            faulthandler.disable()
            for fd, path, flags in (
                (0, stdin or os.devnull, os.O_RDONLY),
                (1, stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                (2, stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            ):
                opened = os.open(path, flags, 0o644)
                os.dup2(opened, fd)
                os.close(opened)
            sys.stdin = open(0, closefd=False)  # noqa: SIM115
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            logging.root.handlers.clear()
            sys.argv = ["varscore", *args]
            if fault is not None:
                fault()
            cli.main(args=args, prog_name="varscore")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - reported as a traceback, which the test rejects
            traceback.print_exc()
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"varscore {' '.join(args)} hung for {timeout} s")
        time.sleep(0.005)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    outcome = Outcome(code, stdout_path.read_text(errors="replace"), stderr_path.read_text(errors="replace"))
    stdout_path.unlink()
    stderr_path.unlink()
    return outcome


# --- the world: a FASTA with two contigs, three genes, a toy model ------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from tests import toy_plugin
    from tests.toy_plugin import ToyBackbone
    from varscore.models.bundle import BundleMetadata, save_bundle
    from varscore.plugin.manager import manager
    from varscore_plugins.outputs import ScalarOutput

    manager.register(toy_plugin, name="toy-plugin-adversarial")
    tmp = tmp_path_factory.mktemp("adversarial")
    rng = np.random.default_rng(17)
    seqs = {"chr1": random_sequence(rng, 1000), "chr2": random_sequence(rng, 500)}
    fasta = write_fasta(tmp / "ref.fa", seqs)
    genes = [
        Gene("G1", "chr1", 200, "+", "GENEA"),
        Gene("G2", "chr1", 230, "-", "GENEB"),
        Gene("G3", "chr2", 20, "+", "GENEC"),
    ]
    bundle = save_bundle(
        tmp / "adv-model",
        name="adv-model",
        backbone=ToyBackbone().build(),
        output_mode=ScalarOutput(track=1, center_bins=1),
        genes=genes,
        about=BundleMetadata(reference_fasta=fasta),
    )
    yield {"tmp": tmp, "seqs": seqs, "fasta": fasta, "bundle": bundle, "genes": genes}
    manager.unregister("toy-plugin-adversarial")


def _other(base: str) -> str:
    return "ACGT"[("ACGT".index(base.upper()) + 1) % 4]


def snv(seqs: dict[str, str], chrom: str, pos: int, **kw: str) -> list[str]:
    """One record's columns: a true-REF SNV (``ref``/``alt``/``info`` overridable)."""
    seq = seqs.get(chrom if chrom.startswith("chr") else f"chr{chrom}", "")
    ref = kw.get("ref", seq[pos - 1] if 1 <= pos <= len(seq) else "A")
    alt = kw.get("alt", _other(ref[0]) if ref[0].upper() in "ACGT" else "A")
    return [chrom, str(pos), kw.get("id", "."), ref, alt, ".", "PASS", kw.get("info", ".")]


def vcf_text(
    records: list[list[str]],
    samples: list[str] | None = None,
    header: list[str] | None = None,
    contigs: dict[str, int] | None = None,
    genotypes: list[str] | None = None,
) -> str:
    lines = ["##fileformat=VCFv4.2"]
    for name, length in (contigs if contigs is not None else {"chr1": 1000, "chr2": 500}).items():
        lines.append(f"##contig=<ID={name},length={length}>")
    lines += header or []
    if samples:
        lines.append('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    columns = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO" + ("\tFORMAT\t" + "\t".join(samples) if samples else "")
    lines.append(columns)
    for i, record in enumerate(records):
        row = list(record)
        if samples:
            gts = genotypes[i] if genotypes else "\t".join(["0/1"] * len(samples))
            row += ["GT", gts]
        lines.append("\t".join(row))
    return "\n".join(lines) + "\n"


def record_count(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip() and not line.startswith("#"))


# --- the cases ------------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    expect: str  # "ok", "error" or "either" (bcftools' verdict decides nothing here: no crash is the point)
    text: str | bytes | None = None  # the VCF's content (None: the case makes its own input)
    form: str = "vcf"  # vcf, vcf.gz, bcf, stdin, stdin.gz, fifo, missing, dir
    args: list[str] = field(default_factory=list)
    records: int | None = None  # expected records out on success (default: the text's record lines)
    message: str = ""  # a regular expression the error line (or a warning) must match
    genes: str | None = None  # a --genes table's content
    output: str = "out.vcf.gz"  # relative to the case folder; "-" for stdout
    setup: str = ""  # a named special action (see _run_case)


def _truncated_gz(text: str) -> bytes:
    data = gzip.compress((text * 40).encode())
    return data[: len(data) // 2]


def _cases(seqs: dict[str, str]) -> list[Case]:
    def s(pos: int, chrom: str = "chr1", **kw: str) -> list[str]:
        return snv(seqs, chrom, pos, **kw)

    good = [s(5), s(190), s(200), s(255), s(10, "chr2"), s(400, "chr2")]
    good_text = vcf_text(good)
    lines = good_text.splitlines()
    head, body = [ln for ln in lines if ln.startswith("#")], [ln for ln in lines if not ln.startswith("#")]

    def with_body(rows: list[str]) -> str:
        return "\n".join(head + rows) + "\n"

    sampled = vcf_text(good, samples=SAMPLE_HEADER)
    cases = [
        # malformed records and files: a one-line error naming the problem
        Case(
            "spaces_for_tabs",
            "error",
            with_body(body[:2] + [body[2].replace("\t", " ")] + body[3:]),
            message=r"line \d+ .*spaces instead of tabs",
        ),
        Case(
            "space_in_chrom",
            "error",
            with_body(body[:1] + ["chr1 190" + body[1][len("chr1\t190") :]]),
            message=r"line \d+",
        ),
        Case(
            "five_columns",
            "error",
            with_body(body[:1] + ["\t".join(body[1].split("\t")[:5])]),
            message=r"line \d+ has 5 tab-separated columns",
        ),
        Case(
            "fewer_sample_columns",
            "error",
            "\n".join(sampled.splitlines()[:-1] + [sampled.splitlines()[-1].rsplit("\t", 1)[0]]) + "\n",
            message=r"line \d+ has 10 columns; the '#CHROM' line names 11",
        ),
        Case(
            "pos_not_a_number",
            "error",
            with_body([body[0].replace("\t5\t", "\tX5\t", 1)] + body[1:]),
            message=r"POS 'X5'",
        ),
        Case("pos_dot", "error", with_body([body[0].replace("\t5\t", "\t.\t", 1)] + body[1:]), message="POS"),
        Case("pos_negative", "error", with_body([body[0].replace("\t5\t", "\t-5\t", 1)] + body[1:]), message="POS"),
        Case(
            "empty_chrom",
            "error",
            with_body(["\t" + "\t".join(body[0].split("\t")[1:])] + body[1:]),
            message="CHROM column is empty",
        ),
        Case(
            "empty_ref",
            "error",
            with_body([re.sub(r"^(\S+\t\S+\t\S+\t)\S+", r"\1", body[0])] + body[1:]),
            message="REF column is empty",
        ),
        Case(
            "no_chrom_header_line",
            "error",
            "\n".join([ln for ln in lines if not ln.startswith("#CHROM")]) + "\n",
            message="before the '#CHROM' header line",
        ),
        Case(
            "chrom_header_with_spaces",
            "error",
            good_text.replace("#CHROM\tPOS\tID", "#CHROM POS ID"),
            message="'#CHROM' header line",
        ),
        Case("plain_text_not_vcf", "error", "hello world\nthis is not a VCF\n"),
        Case("binary_garbage", "error", bytes(np.random.default_rng(3).integers(0, 256, 3000, dtype=np.uint8))),
        Case("empty_file", "error", b"", message="empty"),
        Case("truncated_gz", "error", _truncated_gz(good_text), form="vcf.gz", message="truncated or damaged"),
        Case("gzip_magic_garbage", "error", b"\x1f\x8b" + bytes(range(256)) * 4, form="vcf.gz"),
        Case(
            "six_columns_sites_only",
            "error",
            with_body(["\t".join(r.split("\t")[:6]) for r in body]),
            message="6 tab-separated columns",
        ),
        Case(
            "seven_columns_with_samples",
            "error",
            "\n".join(
                [ln for ln in sampled.splitlines() if ln.startswith("#")] + ["\t".join(r.split("\t")[:7]) for r in body]
            )
            + "\n",
            message="7 tab-separated columns",
        ),
        # normalised, then read: what bcftools reads is read
        Case("seven_columns_sites_only", "ok", with_body(["\t".join(r.split("\t")[:7]) for r in body])),
        Case("blank_line_in_middle", "ok", with_body(body[:3] + [""] + body[3:])),
        Case("trailing_blank_lines", "ok", good_text + "\n\n"),
        Case("crlf_line_endings", "ok", good_text.replace("\n", "\r\n")),
        Case("no_final_newline", "ok", good_text.rstrip("\n")),
        Case("header_only", "ok", with_body([]), message="no records"),
        Case("no_contig_lines", "ok", vcf_text(good, contigs={})),
        Case("multi_sample", "ok", sampled),
        # odd alleles: flagged or scored, never fatal
        Case("lower_case_alleles", "ok", vcf_text([s(190, ref=seqs["chr1"][189].lower(), alt="t"), s(200)])),
        Case("iupac_ref", "ok", vcf_text([s(190, ref="R"), s(200)])),
        Case("n_alt", "ok", vcf_text([s(190, alt="N"), s(200)])),
        Case("symbolic_del", "ok", vcf_text([s(190, alt="<DEL>"), s(200)])),
        Case("star_allele", "ok", vcf_text([s(190, alt="*"), s(200)])),
        Case("breakend", "ok", vcf_text([s(190, alt="A[chr2:20["), s(200)])),
        Case("missing_alt", "ok", vcf_text([s(190, alt="."), s(200)])),
        Case("five_alts", "ok", vcf_text([s(190, alt="A,C,G,T,AT".replace(seqs["chr1"][189] + ",", "")), s(200)])),
        Case("long_insertion", "ok", vcf_text([s(190, alt=seqs["chr1"][189] + "T" * 70)])),
        Case("long_deletion", "ok", vcf_text([s(190, ref=seqs["chr1"][189:229], alt=seqs["chr1"][189])])),
        Case(
            "mnp",
            "ok",
            vcf_text([s(190, ref=seqs["chr1"][189:192], alt="".join(_other(b) for b in seqs["chr1"][189:192]))]),
        ),
        Case("pos_past_contig_end", "ok", vcf_text([s(200), s(5000, ref="A", alt="C")])),
        Case("duplicate_records", "ok", vcf_text([s(190), s(190), s(200)])),
        Case("unsorted_records", "ok", vcf_text([s(255), s(10, "chr2"), s(190)])),
        Case(
            "overlapping_records",
            "ok",
            vcf_text([s(190, ref=seqs["chr1"][189:195], alt=seqs["chr1"][189]), s(192), s(193)]),
        ),
        Case("one_ref_mismatch", "ok", vcf_text([s(190, ref=_other(seqs["chr1"][189])), s(200), s(210)])),
        Case("unicode_id", "ok", vcf_text([s(190, id="rs\u00e9\u4e2d"), s(200)])),
        # ploidy and genotypes
        Case("haploid", "ok", vcf_text(good, samples=SAMPLE_HEADER, genotypes=["1\t0"] * len(good))),
        Case("triploid", "ok", vcf_text(good, samples=SAMPLE_HEADER, genotypes=["0/1/1\t1/1/1"] * len(good))),
        Case("missing_genotypes", "ok", vcf_text(good, samples=SAMPLE_HEADER, genotypes=["./.\t."] * len(good))),
        Case("mixed_phasing", "ok", vcf_text(good, samples=SAMPLE_HEADER, genotypes=["0|1\t1/0"] * len(good))),
        Case("fifty_samples", "ok", vcf_text(good, samples=[f"P{i}" for i in range(50)])),
        # conflicting and odd headers: replaced with a warning, bcftools reads the result
        Case(
            "varscore_integer_header",
            "ok",
            vcf_text(
                [s(190, info="VARSCORE=3"), s(5, info="DP=1;VARSCORE=7")],
                header=[
                    '##INFO=<ID=VARSCORE,Number=1,Type=Integer,Description="old">',
                    '##INFO=<ID=DP,Number=1,Type=Integer,Description="d">',
                ],
            ),
            message="replaced",
        ),
        Case(
            "varscore_max_flag_header",
            "ok",
            vcf_text(
                [s(190, info="VARSCORE_MAX"), s(200)],
                header=['##INFO=<ID=VARSCORE_MAX,Number=0,Type=Flag,Description="old">'],
            ),
            message="replaced",
        ),
        Case(
            "varscore_skip_integer",
            "ok",
            vcf_text(
                [s(5, info="VARSCORE_SKIP=1"), s(200)],
                header=['##INFO=<ID=VARSCORE_SKIP,Number=1,Type=Integer,Description="old">'],
            ),
            message="replaced",
        ),
        Case(
            "all_three_conflict",
            "ok",
            vcf_text(
                [s(190, info="VARSCORE=1;VARSCORE_MAX=2;VARSCORE_SKIP=3"), s(5, info="VARSCORE=4")],
                header=[
                    f'##INFO=<ID={k},Number=1,Type=Integer,Description="old">'
                    for k in ("VARSCORE", "VARSCORE_MAX", "VARSCORE_SKIP")
                ],
            ),
            message="replaced",
        ),
        Case(
            "identical_definition_old_values",
            "ok",
            vcf_text(
                [s(5, info="VARSCORE=a|G1|m|1|2|1"), s(200)],
                header=['##INFO=<ID=VARSCORE,Number=.,Type=String,Description="old run">'],
            ),
            message="replaced",
        ),
        Case("undefined_info_keys", "ok", vcf_text([s(190, info="FOO=1;BAR"), s(200, info="X=y")])),
        Case(
            "lookalike_key_kept",
            "ok",
            vcf_text(
                [s(190, info="VARSCORE_X=5"), s(200)],
                header=['##INFO=<ID=VARSCORE_X,Number=1,Type=Integer,Description="other tool">'],
            ),
        ),
        # wrong build and contig names
        Case(
            "contig_length_differs_from_a_toy_fasta",
            "ok",
            vcf_text(good, contigs={"chr1": 248956422, "chr2": 500}),
            message=r"Contig lengths of .* differ from the FASTA .*chr1 248,956,422 vs 1,000 bp",
        ),
        Case(
            "contig_length_of_another_build",
            "error",
            vcf_text([["chr20", "100", ".", "A", "C", ".", ".", "."]], contigs={"chr20": 64444167}),
            args=["--fasta", str(data_dir() / "ucsc.hg19.chr20.unittest.fasta.gz")],
            message=r"Contig chr20 is 64,444,167 bp .*\(hg38's length\) but 63,025,520 bp .*than the model's hg19",
        ),
        Case(
            "ref_alleles_of_another_build",
            "error",
            vcf_text([s(p, ref=seqs["chr1"][p + 6]) for p in range(170, 230, 2)]),
            message="looks like a different genome build",
        ),
        Case(
            "ref_mismatch_allowed",
            "ok",
            vcf_text([s(p, ref=seqs["chr1"][p + 6]) for p in range(170, 230, 2)]),
            args=["--max-ref-mismatch", "1"],
        ),
        Case(
            "chr_and_no_chr",
            "error",
            vcf_text([s(190), ["1", "200", ".", seqs["chr1"][199], "A", ".", ".", "."]], contigs={}),
            message="'chr1' and '1'",
        ),
        Case("unknown_contigs_only", "error", vcf_text([["chrZ", "5", ".", "A", "C", ".", ".", "."]], contigs={})),
        # input forms
        Case("stdin", "ok", good_text, form="stdin"),
        Case("stdin_gzipped", "ok", good_text, form="stdin.gz"),
        Case("named_pipe", "ok", good_text, form="fifo"),
        Case("bcf", "ok", sampled, form="bcf"),
        Case(
            "bcf_conflicting_header",
            "ok",
            vcf_text(
                [s(190, info="VARSCORE=3"), s(200)],
                header=['##INFO=<ID=VARSCORE,Number=1,Type=Integer,Description="old">'],
            ),
            form="bcf",
            message="replaced",
        ),
        Case("bgzipped", "ok", sampled, form="vcf.gz"),
        Case("stdout_output", "ok", good_text, output="-"),
        Case("plain_vcf_output", "ok", good_text, output="out.vcf"),
        Case("missing_input", "error", None, form="missing", message="not found"),
        Case("input_is_directory", "error", None, form="dir", message="directory"),
        # gene tables
        Case("genes_empty_file", "error", good_text, genes="", message="empty"),
        Case("genes_header_only", "error", good_text, genes="chrom\ttss\tstrand\tgene_id\n", message="no genes"),
        Case(
            "genes_duplicate_ids",
            "error",
            good_text,
            genes="chrom\ttss\tstrand\tgene_id\nchr1\t200\t+\tG1\nchr1\t300\t+\tG1\n",
            message="more than once: G1",
        ),
        Case(
            "genes_tss_zero", "error", good_text, genes="chrom\ttss\tstrand\tgene_id\nchr1\t0\t+\tG1\n", message="TSS 0"
        ),
        Case(
            "genes_tss_negative",
            "error",
            good_text,
            genes="chrom\ttss\tstrand\tgene_id\nchr1\t-4\t+\tG1\n",
            message="TSS -4",
        ),
        Case(
            "genes_tss_text",
            "error",
            good_text,
            genes="chrom\ttss\tstrand\tgene_id\nchr1\tabc\t+\tG1\n",
            message="not an integer",
        ),
        Case(
            "genes_missing_column",
            "error",
            good_text,
            genes="chrom\ttss\tgene_id\nchr1\t200\tG1\n",
            message="needs columns",
        ),
        Case(
            "genes_bad_strand",
            "error",
            good_text,
            genes="chrom\ttss\tstrand\tgene_id\nchr1\t200\tx\tG1\n",
            message="strand",
        ),
        Case("genes_good", "ok", good_text, genes="chrom\ttss\tstrand\tgene_id\nchr1\t300\t+\tNEW1\n"),
        Case(
            "genes_newline_in_id", "ok", good_text, genes='chrom\ttss\tstrand\tgene_id\nchr1\t200\t+\t"BAD\nID;x=1"\n'
        ),
        # outputs and faults
        Case(
            "output_is_directory", "error", good_text, output="outdir", setup="mkdir-output", message="is a directory"
        ),
        Case(
            "output_folder_read_only",
            "error",
            good_text,
            output="/proc/varscore-out.vcf.gz",
            message="cannot be written",
        ),
        Case(
            "output_parent_is_a_file",
            "error",
            good_text,
            output="afile/out.vcf.gz",
            setup="file-parent",
            message="cannot be written",
        ),
        Case("disk_full_gz", "error", good_text, setup="enospc", message="No space left on device"),
        Case(
            "disk_full_plain", "error", good_text, output="out.vcf", setup="enospc", message="No space left on device"
        ),
        Case(
            "output_locked_by_another_run", "error", good_text, setup="lock", message="another varscore run is writing"
        ),
        Case(
            "resume_truncated_checkpoint",
            "error",
            good_text,
            setup="truncated-checkpoint",
            args=["--resume"],
            message="rerun without --resume",
        ),
        Case("leftover_part_files_removed", "ok", good_text, setup="leftover-part"),
        Case("nothing_scored_warns", "ok", vcf_text([s(5), s(400, "chr2")]), message="--genes"),
        Case(
            "nothing_scored_fail_if_none",
            "error",
            vcf_text([s(5), s(400, "chr2")]),
            args=["--fail-if-none"],
            message=r"GENEA chr1:168-231.*--genes",
        ),
        Case("max_ref_mismatch_out_of_range", "error", good_text, args=["--max-ref-mismatch", "2"]),
        Case("quiet", "ok", good_text, args=["--quiet"]),
    ]
    return cases


CASE_NAMES = [c.name for c in _cases({"chr1": "ACGT" * 250, "chr2": "ACGT" * 125})]


def test_suite_has_at_least_60_cases():
    assert len(CASE_NAMES) >= 60 and len(set(CASE_NAMES)) == len(CASE_NAMES)


def _write_input(case: Case, folder: Path) -> tuple[list[str], Path | None]:
    """The VCF argument for the case, and the file to feed on stdin."""
    data = case.text.encode() if isinstance(case.text, str) else case.text
    if case.form == "missing":
        return [str(folder / "absent.vcf")], None
    if case.form == "dir":
        (folder / "a_dir.vcf").mkdir()
        return [str(folder / "a_dir.vcf")], None
    assert data is not None
    if case.form in ("stdin", "stdin.gz"):
        path = folder / "stdin.bin"
        path.write_bytes(gzip.compress(data) if case.form == "stdin.gz" else data)
        return ["-"], path
    if case.form == "fifo":
        fifo = folder / "in.pipe"
        os.mkfifo(fifo)

        def feed() -> None:
            with open(fifo, "wb") as pipe:
                pipe.write(data)

        threading.Thread(target=feed, daemon=True).start()
        return [str(fifo)], None
    if case.form == "bcf":
        plain = folder / "in.vcf"
        plain.write_bytes(data)
        path = folder / "in.bcf"
        subprocess.run([BCFTOOLS, "view", "-Ob", "-o", str(path), str(plain)], check=True, capture_output=True)
        return [str(path)], None
    if case.form == "vcf.gz" and data[:2] != b"\x1f\x8b":
        import pysam

        plain = folder / "in.vcf"
        plain.write_bytes(data)
        pysam.tabix_compress(str(plain), str(folder / "in.vcf.gz"), force=True)
        return [str(folder / "in.vcf.gz")], None
    path = folder / f"in.{case.form}"
    path.write_bytes(data)
    return [str(path)], None


def _run_case(case: Case, world: dict, folder: Path) -> tuple[Outcome, Path | None]:
    vcf_args, stdin = _write_input(case, folder)
    out = None if case.output == "-" else (Path(case.output) if case.output.startswith("/") else folder / case.output)
    args = [
        "annotate",
        *vcf_args,
        "-m",
        str(world["bundle"]),
        "-o",
        str(out) if out else "-",
        "--no-progress",
        *case.args,
    ]
    if case.genes is not None:
        (folder / "genes.tsv").write_text(case.genes)
        args += ["--genes", str(folder / "genes.tsv")]
    fault = None
    held = None
    if case.setup == "mkdir-output":
        assert out is not None
        out.mkdir()
    elif case.setup == "file-parent":
        (folder / "afile").write_text("not a folder\n")
    elif case.setup == "enospc":

        def fault() -> None:
            import varscore.io.vcf

            calls = {"n": 0}
            original = varscore.io.vcf._Sink.write

            def write(self, text: str) -> None:
                calls["n"] += 1
                if calls["n"] > 3:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                original(self, text)

            varscore.io.vcf._Sink.write = write  # type: ignore[method-assign]
    elif case.setup == "lock":
        from filelock import FileLock

        held = FileLock(f"{out}.varscore-lock")
        held.acquire()
    elif case.setup == "truncated-checkpoint":
        first = run_cli(args[: args.index("--resume")] if "--resume" in args else args)
        assert first.status == 0, first.stderr
        out.unlink()  # type: ignore[union-attr]
        partial = Path(f"{out}.varscore-partial")
        from varscore.scoring.engine import GeneCheckpoint

        fingerprint = _fingerprint_of(world, folder, vcf_args[0])
        checkpoint = GeneCheckpoint(partial, fingerprint, resume=False)
        checkpoint.save("G1", "GENEA", [], 0)
        gene_file = next(p for p in partial.glob("*.json") if p.name != "checkpoint.json")
        gene_file.write_text(gene_file.read_text()[:25])
    elif case.setup == "leftover-part":
        assert out is not None
        for name in (f".{out.name}.abcd1234.part", f".{out.name}.abcd1234.part.tbi"):
            (folder / name).write_text("left by a killed run")
        (folder / f".{out.name}.keepme.other").write_text("not ours")
    try:
        outcome = run_cli(args, stdin=stdin, fault=fault, out_file=folder / "run")
    finally:
        if held is not None:
            held.release()
    if out is None and outcome.status == 0:
        (folder / "stdout.vcf").write_text(outcome.stdout)
        out = folder / "stdout.vcf"
    return outcome, out


def _fingerprint_of(world: dict, folder: Path, vcf: str) -> str:
    from varscore.models.bundle import load_bundle
    from varscore.scoring.gene_mode import _fingerprint

    bundle = load_bundle(world["bundle"])
    return _fingerprint(vcf, bundle, Path(world["fasta"]), bundle.genes, "flag", int(bundle.manifest["window_size"]))


def _summary_count(stderr: str, key: str) -> int | None:
    match = re.search(rf"^{key}: (\d+)$", stderr, re.M)
    return int(match.group(1)) if match else None


@pytest.mark.parametrize("name", CASE_NAMES)
def test_adversarial_case(world, tmp_path, name):
    case = next(c for c in _cases(world["seqs"]) if c.name == name)
    outcome, out = _run_case(case, world, tmp_path)
    text = f"status {outcome.status}\nstderr:\n{outcome.stderr}"
    assert outcome.status >= 0, f"crashed with signal {-outcome.status}: {text}"
    assert "Traceback" not in outcome.stderr + outcome.stdout, text
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    if outcome.status != 0:
        assert case.expect in ("error", "either"), text
        usage = [line for line in lines[:-1] if line.startswith(("Usage: ", "Try '"))]  # click's usage errors
        lines = lines[len(usage) :]
        assert len(lines) == 1 and lines[0].startswith("Error: "), text
        if case.message:
            assert re.search(case.message, lines[0]), text
        if out is not None and case.setup != "mkdir-output" and not str(out).startswith("/proc"):
            assert not out.exists(), "a failed run left its output"
            assert not [p for p in out.parent.glob(f".{out.name}.*.part*")], "a failed run left temporary files"
        return
    assert case.expect in ("ok", "either"), text
    assert out is not None and out.exists()
    if case.message:
        assert re.search(case.message, outcome.stderr), text
    source = case.text.decode(errors="replace") if isinstance(case.text, bytes) else (case.text or "")
    expected = case.records if case.records is not None else record_count(source.replace("\r", ""))
    if "--quiet" in case.args:
        assert _summary_count(outcome.stderr, "records read") is None and not lines, text
    else:
        assert _summary_count(outcome.stderr, "records read") == expected, text
        assert _summary_count(outcome.stderr, "records written") == expected, text
    view = subprocess.run([BCFTOOLS, "view", "-H", str(out)], capture_output=True, text=True)
    assert view.returncode == 0, view.stderr
    assert len(view.stdout.splitlines()) == expected
    header = subprocess.run([BCFTOOLS, "view", "-h", str(out)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^##varscore_version=", header, re.M) and re.search(
        r"^##varscore_model=<ID=adv-model,", header, re.M
    )
    if case.message == "replaced":  # the old definitions are gone, every VARSCORE value parses
        assert 'Description="old' not in header
        query = subprocess.run(
            [BCFTOOLS, "query", "-f", "%INFO/VARSCORE_MAX\\t%INFO/VARSCORE_SKIP\\n", str(out)],
            capture_output=True,
            text=True,
        )
        assert query.returncode == 0 and "Error" not in query.stderr, query.stderr
        assert not re.search(r"VARSCORE(_MAX|_SKIP)?=(3|4|7|1|2)(;|\t|$)", view.stdout)
    if case.setup == "leftover-part":
        assert not list(tmp_path.glob(f".{out.name}.abcd1234.part*"))
        assert (tmp_path / f".{out.name}.keepme.other").exists()
