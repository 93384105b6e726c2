"""Whole-genome-scale annotation, side by side in one run: ``bcftools view`` (read + write, the floor
for streaming a VCF), ``varscore annotate`` with the elastic-net demo bundle, and ``varscore
annotate --mode variant`` with a tiny track model (with a Parquet detail table and gene-level
scores), each in its own process, on the same generated VCF, at several sizes.

Reports records/s and peak RSS (``ru_maxrss`` of each process, from ``wait4``); peak RSS must not
grow with the record count. The generated VCF is sites-only, sorted, on the example's real hg19
slice (chr20:9,995,001-11,095,000), REF from the FASTA, about 1 record in 10 an indel.

Track models: ``toy`` (the tests' numpy linear model on 64-bp windows, 3 tracks: measures the
streaming machinery, not a network) and ``tiny-enformer`` (a 2,048-bp tiny Enformer with random
weights, 8 tracks; give it smaller sizes with --enformer-sizes, CPU forward passes dominate).

    python benchmarks/bench_genome_wide.py --sizes 100000,1000000 --track-sizes 100000,1000000 --enformer-sizes 1000,4000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SLICE = ("chr20", 9_995_001, 11_095_000)


def generate_vcf(path: Path, n: int, seed: int = 0) -> Path:
    """``n`` sorted sites-only records in the example slice, bgzipped."""
    from pysam import libcbgzf

    from varscore.examples import data_dir
    from varscore.genome.fasta import Genome
    from varscore.types import Window

    chrom, lo, hi = SLICE
    genome = Genome(data_dir() / "ucsc.hg19.chr20.unittest.fasta.gz")
    seq = genome.fetch(Window(chrom, lo - 1, hi + 10))
    rng = np.random.default_rng(seed)
    positions = np.sort(rng.integers(lo + 100, hi - 100, size=n))
    kinds = rng.random(n)
    alt_pick = rng.integers(0, 3, size=n)
    ins = ["A", "AT", "GGC", "T"]
    header = (
        "##fileformat=VCFv4.2\n"
        f"##contig=<ID={chrom},length={genome.lengths[chrom]}>\n"
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    )
    with libcbgzf.BGZFile(str(path), "wb", None) as out:
        out.write(header.encode())
        lines = []
        for i, (pos, kind) in enumerate(zip(positions.tolist(), kinds.tolist(), strict=True)):
            base = seq[pos - lo]
            if base == "N":
                base, ref_ok = "A", False
            else:
                ref_ok = True
            if kind < 0.05 and ref_ok:  # insertion
                ref, alt = base, base + ins[i % 4]
            elif kind < 0.10 and ref_ok:  # deletion of 1-3 bases
                ref, alt = seq[pos - lo : pos - lo + 1 + (i % 3) + 1], base
            else:
                ref, alt = base, "ACGT".replace(base, "")[alt_pick[i]]
            lines.append(f"{chrom}\t{pos}\tv{i}\t{ref}\t{alt}\t.\tPASS\t.\n")
            if len(lines) >= 50_000:
                out.write("".join(lines).encode())
                lines = []
        out.write("".join(lines).encode())
    return path


def make_track_bundles(directory: Path) -> dict[str, Path]:
    from tests import toy_plugin
    from varscore.examples import data_dir
    from varscore.models.bundle import BundleMetadata, save_bundle
    from varscore.plugin.manager import get_backbone, get_output_mode, manager

    manager.register(toy_plugin, name="toy-plugin")
    fasta = data_dir() / "ucsc.hg19.chr20.unittest.fasta.gz"
    toy = toy_plugin.ToyBackbone(window_size=64, bin_size=8, tracks=3).build()
    bundles = {
        "toy": save_bundle(
            directory / "toy",
            name="toy",
            backbone=toy,
            output_mode=get_output_mode("track")(track=0),
            genes=[],
            about=BundleMetadata(reference_fasta=fasta),
        )
    }
    from varscore_plugins.enformer import tiny_params

    enformer = get_backbone("enformer")(**tiny_params(2048, head="pretrained", seed=0)).build()
    bundles["tiny-enformer"] = save_bundle(
        directory / "tiny-enformer",
        name="tiny-enformer",
        backbone=enformer,
        output_mode=get_output_mode("track")(track=0),
        genes=[],
        about=BundleMetadata(reference_fasta=fasta),
    )
    return bundles


# Forks the command and reports its rusage. Linux carries a process's peak RSS across exec, so a
# command forked straight from this (large) process would report this process's peak; forked from a
# small launcher it reports its own.
LAUNCHER = (
    "import os, sys\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.execvp(sys.argv[2], sys.argv[2:])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "open(sys.argv[1], 'w').write(f'{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}')\n"
)


def run_measured(command: list[str]) -> tuple[float, float, int]:
    """``(seconds, peak RSS in MiB, exit status)`` of one process."""
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r", suffix=".rss") as report:
        start = time.perf_counter()
        process = subprocess.run(
            [sys.executable, "-c", LAUNCHER, report.name, *command],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=err,
            check=False,
        )
        seconds = time.perf_counter() - start
        text = open(report.name).read().split()
        rss_kib, status = (int(text[0]), int(text[1])) if len(text) == 2 else (0, process.returncode or 1)
        if status:
            err.seek(0)
            print(err.read().decode()[-2000:], file=sys.stderr)
    return seconds, rss_kib / 1024, status


def job(argv: list[str]) -> None:
    """Run ``varscore`` with the toy plugin registered (the toy model is a test-only plugin)."""
    from tests import toy_plugin
    from varscore.cli import cli
    from varscore.plugin.manager import manager

    manager.register(toy_plugin, name="toy-plugin")
    cli.main(args=argv, prog_name="varscore", standalone_mode=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="Record counts for bcftools and the elastic net.")
    parser.add_argument("--track-sizes", default="100000,1000000", help="Record counts for the toy track model.")
    parser.add_argument(
        "--enformer-sizes", default="1000,4000", help="Record counts for the tiny Enformer ('' = none)."
    )
    parser.add_argument("--centring", default="tiled", choices=["exact", "tiled"])
    parser.add_argument("--keep", type=Path, help="Keep the generated files in this directory.")
    args = parser.parse_args()
    bcftools = shutil.which("bcftools")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    enformer_sizes = [int(s) for s in args.enformer_sizes.split(",") if s]
    track_sizes = [int(s) for s in args.track_sizes.split(",") if s]
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per process: on a shared machine torch oversubscribes
    work = Path(tempfile.mkdtemp(prefix="varscore-bench-"))
    try:
        bundles = make_track_bundles(work / "models")
        gtf = str(REPO / "tests" / "data" / "example_exons" / "example_exons.gtf")
        me = [sys.executable, str(Path(__file__).resolve()), "--job"]
        rows = []
        for n in sorted(set(sizes) | set(track_sizes) | set(enformer_sizes)):
            vcf = generate_vcf(work / f"gen{n}.vcf.gz", n)
            print(f"generated {n} records", file=sys.stderr, flush=True)
            jobs: list[tuple[str, list[str]]] = []
            if n in sizes:
                if bcftools:
                    jobs.append(("bcftools view", [bcftools, "view", str(vcf), "-Oz", "-o", str(work / "b.vcf.gz")]))
                jobs.append(
                    (
                        "elastic-net-demo",
                        me
                        + [
                            "annotate",
                            str(vcf),
                            "-m",
                            "elastic-net-demo",
                            "-o",
                            str(work / "e.vcf.gz"),
                            "--no-progress",
                        ],
                    )
                )
            models = (["toy"] if n in track_sizes else []) + (["tiny-enformer"] if n in enformer_sizes else [])
            for model in models:
                jobs.append(
                    (
                        f"{model} --mode variant",
                        me
                        + [
                            "annotate",
                            str(vcf),
                            "-m",
                            str(bundles[model]),
                            "-o",
                            str(work / "t.vcf.gz"),
                            "--mode",
                            "variant",
                            "--centring",
                            args.centring,
                            "--gtf",
                            gtf,
                            "--detail",
                            str(work / "t.parquet"),
                            "--no-progress",
                            "--device",
                            "cpu",
                            "--batch-size",
                            "32",
                            "--stats",
                            "SUM,D1,D2" if model == "toy" else "SUM,logSUM,D1,D2",
                        ],
                    )
                )
            for name, command in jobs:
                seconds, rss, status = run_measured(command)
                rows.append(
                    {
                        "records": n,
                        "job": name,
                        "seconds": round(seconds, 2),
                        "records_per_s": round(n / seconds),
                        "peak_rss_mib": round(rss, 1),
                        "status": status,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
        print(f"\n{'records':>9}  {'job':28} {'seconds':>9} {'records/s':>10} {'peak RSS MiB':>13}")
        for row in rows:
            flag = "" if row["status"] == 0 else f"  (exit {row['status']})"
            print(
                f"{row['records']:>9}  {row['job']:28} {row['seconds']:>9} {row['records_per_s']:>10} "
                f"{row['peak_rss_mib']:>13}{flag}"
            )
        if args.keep:
            shutil.copytree(work, args.keep, dirs_exist_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--job":
        sys.path.insert(0, str(REPO))
        job(sys.argv[2:])
    else:
        sys.path.insert(0, str(REPO))
        main()
