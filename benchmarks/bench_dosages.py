"""VCF -> dosage throughput of `varscore.genome.personal.GenotypeReader`, side by side with bcftools.

For every 49,152-bp window tiled over a VCF's region, reads the SNV genotypes with varscore
(cyvcf2 region queries) and, as an independent baseline, with `bcftools view -m2 -M2 -v snps |
bcftools query -f '[%GT\\t]\\n'` parsed into the same 0/1/2 dosage matrix; prints windows/s,
genotype calls/s, the ratio, and whether the dosages agree for every biallelic SNV. Two inputs:
the 1000 Genomes phase-3 chr20 slice in ../shared/data (300 people, 24,990 variants) and the
bundled example cohort (670 people). Needs bcftools on PATH. Run:

    python benchmarks/bench_dosages.py [--window 49152] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from varscore.examples import data_dir
from varscore.genome.personal import GenotypeReader
from varscore.types import Window

ROOT = Path(__file__).resolve().parents[1]
THOUSAND_GENOMES = ROOT.parent / "shared/data/real/1000g_chr20_b37/1000g_phase3_300samples_chr20_1-4Mb_phased.vcf.gz"
COHORT = data_dir() / "cohort.vcf.gz"


def region_of(vcf: Path) -> tuple[str, int, int]:
    """Contig and 1-based first/last position of a (single-contig) VCF."""
    out = subprocess.run(["bcftools", "query", "-f", "%CHROM\t%POS\n", str(vcf)], capture_output=True, text=True)
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    return rows[0][0], int(rows[0][1]), int(rows[-1][1])


def reference_from_refs(vcf: Path, window: Window) -> str:
    """A window sequence that agrees with every SNV's REF (N elsewhere): REF checks pass, the
    benchmark needs no FASTA of the VCF's build."""
    region = f"{window.chrom}:{window.start + 1}-{window.end}"
    out = subprocess.run(
        ["bcftools", "query", "-r", region, "-i", 'TYPE="snp"', "-f", "%POS\t%REF\n", str(vcf)],
        capture_output=True,
        text=True,
        check=True,
    )
    bases = np.full(window.length, "N")
    for line in out.stdout.splitlines():
        pos, ref = line.split("\t")
        bases[int(pos) - 1 - window.start] = ref
    return "".join(bases)


def bcftools_dosages(vcf: Path, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Biallelic SNVs in ``window``: ``(V,)`` positions and ``(P, V)`` ALT counts (missing = 0)."""
    region = f"{window.chrom}:{window.start + 1}-{window.end}"
    view = subprocess.Popen(
        ["bcftools", "view", "-r", region, "-m2", "-M2", "-v", "snps", "-Ou", str(vcf)], stdout=subprocess.PIPE
    )
    out = subprocess.run(
        ["bcftools", "query", "-f", "%POS[\t%GT]\n", "-"], stdin=view.stdout, capture_output=True, text=True, check=True
    )
    view.wait()
    lines = out.stdout.splitlines()
    if not lines:
        return np.empty(0, np.int64), np.empty((0, 0), np.float32)
    table = np.array([line.split("\t") for line in lines])  # (V, 1 + P)
    positions = table[:, 0].astype(np.int64)
    counts = np.char.count(table[:, 1:], "1").astype(np.float32)  # alleles are 0, 1 or '.'
    return positions, counts.T


def bench(vcf: Path, label: str, window_size: int, repeats: int) -> None:
    chrom, first, last = region_of(vcf)
    windows = [Window(chrom, start, start + window_size) for start in range(first - 1, last - window_size, window_size)]
    references = [reference_from_refs(vcf, w) for w in windows]
    with GenotypeReader(vcf) as reader:
        n_people = len(reader.samples)
        ours_times, theirs_times = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            ours = [reader.read(w, ref) for w, ref in zip(windows, references, strict=True)]
            dosages = [g.dosage() for g in ours]
            ours_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            theirs = [bcftools_dosages(vcf, w) for w in windows]
            theirs_times.append(time.perf_counter() - start)

    agree = checked = 0
    for genotypes, dosage, (positions, counts) in zip(ours, dosages, theirs, strict=True):
        column_of = {}
        for column, pos in enumerate(genotypes.positions.tolist()):
            column_of.setdefault(pos, []).append(column)
        for j, pos in enumerate(positions.tolist()):
            columns = column_of.get(pos, [])
            checked += 1
            agree += len(columns) == 1 and bool(np.array_equal(dosage[:, columns[0]], counts[:, j]))
    snvs = sum(g.n_variants for g in ours)
    ours_best, theirs_best = min(ours_times), min(theirs_times)
    print(f"\n{label}: {len(windows)} windows of {window_size:,} bp, {n_people} people, {snvs:,} SNV columns")
    print(
        f"   varscore GenotypeReader: {len(windows) / ours_best:8.1f} windows/s, "
        f"{n_people * snvs / ours_best / 1e6:6.2f} M genotype calls/s"
    )
    print(
        f"   bcftools view | query:   {len(windows) / theirs_best:8.1f} windows/s, "
        f"{n_people * snvs / theirs_best / 1e6:6.2f} M genotype calls/s"
    )
    print(
        f"   ratio varscore / bcftools: {theirs_best / ours_best:.2f}x (best of {repeats}); "
        f"identical dosages for {agree:,} of {checked:,} biallelic SNVs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=int, default=49_152)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("bcftools") is None:
        raise SystemExit("bcftools is not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        if THOUSAND_GENOMES.exists():
            vcf = Path(tmp) / "1000g.vcf.gz"
            shutil.copy(THOUSAND_GENOMES, vcf)
            subprocess.run(["tabix", "-p", "vcf", str(vcf)], check=True)
            bench(vcf, "1000 Genomes chr20 (phased)", args.window, args.repeats)
        bench(COHORT, "example cohort", args.window, args.repeats)


if __name__ == "__main__":
    main()
