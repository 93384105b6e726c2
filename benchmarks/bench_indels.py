"""Personal windows with indels: `personal_one_hot` (one layout per distinct set of carried
indels, SNVs placed by index) side by side with an explicit per-haplotype construction (apply
every carried variant to the contig string, slice the TSS-aligned window, one-hot it).

A random 300-kb contig, a 49,152-bp window and a phased cohort with SNVs and indels (about 1 in 8
records an indel, some common); prints people/s of both, the ratio, and whether they agree
exactly. Run:

    python benchmarks/bench_indels.py [--people 500] [--window 49152] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from varscore.genome.edits import Edit
from varscore.genome.fasta import Genome
from varscore.genome.personal import GenotypeReader, personal_one_hot
from varscore.genome.sequence import one_hot
from varscore.types import Window


def cohort(
    rng: np.random.Generator, sequence: str, people: int, window: Window
) -> list[tuple[int, str, str, list[str]]]:
    rows = []
    pos = window.start + 200
    while pos < window.end - 200:
        base = sequence[pos - 1]
        kind = rng.random()
        if kind < 0.06:
            ref, alt = base, base + "".join(rng.choice(list("ACGT"), size=int(rng.integers(1, 30))))
        elif kind < 0.12:
            size = int(rng.integers(1, 30))
            ref, alt = sequence[pos - 1 : pos + size], base
        else:
            ref, alt = base, "ACGT".replace(base, "")[int(rng.integers(0, 3))]
        freq = rng.beta(0.3, 1.5)
        gts = ["|".join("1" if rng.random() < freq else "0" for _ in range(2)) for _ in range(people)]
        rows.append((pos, ref, alt, gts))
        pos += len(ref) + int(rng.integers(20, 200))
    return rows


def write_inputs(directory: Path, sequence: str, rows: list, people: int) -> tuple[Path, Path]:
    import pysam

    fasta = directory / "ref.fa"
    fasta.write_text(">c\n" + "\n".join(sequence[i : i + 60] for i in range(0, len(sequence), 60)) + "\n")
    lines = [
        "##fileformat=VCFv4.2",
        f"##contig=<ID=c,length={len(sequence)}>",
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(f"P{i}" for i in range(people)),
    ]
    lines += [f"c\t{p}\t.\t{r}\t{a}\t.\tPASS\t.\tGT\t" + "\t".join(g) for p, r, a, g in rows]
    plain = directory / "cohort.vcf"
    plain.write_text("\n".join(lines) + "\n")
    return fasta, Path(pysam.tabix_index(str(plain), preset="vcf", force=True))


def explicit(sequence: str, window: Window, rows: list, person: int) -> np.ndarray:
    """The dosage window of one person built base by base from strings (no shared work)."""
    haplotypes = []
    anchor = window.start + window.length // 2
    for h in (0, 1):
        carried = [(p, r, a) for p, r, a, g in rows if g[person].split("|")[h] == "1"]
        parts, cursor = [], 0
        for p, r, a in carried:
            parts += [sequence[cursor : p - 1], a]
            cursor = p - 1 + len(r)
        edited = "".join(parts) + sequence[cursor:]
        start = window.start + sum(Edit.from_vcf(p, r, a).anchor_shift(anchor) for p, r, a in carried)
        haplotypes.append(one_hot(edited[start : start + window.length]))
    return (haplotypes[0] + haplotypes[1]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=500)
    parser.add_argument("--window", type=int, default=49152)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    sequence = "".join(rng.choice(list("ACGT"), size=300_000))
    window = Window("c", 150_000 - args.window // 2, 150_000 + args.window // 2)
    rows = cohort(rng, sequence, args.people, window)
    with tempfile.TemporaryDirectory() as tmp:
        fasta, vcf = write_inputs(Path(tmp), sequence, rows, args.people)
        genome = Genome(fasta)
        with GenotypeReader(vcf, indels=True) as reader:
            genotypes = reader.read(window, genome)
        reference = one_hot(genome.fetch(window))
        fast_times = []
        for _ in range(args.repeats):
            begin = time.perf_counter()
            fast = personal_one_hot(reference, genotypes, mode="dosage")
            fast_times.append(time.perf_counter() - begin)
        sample = rng.choice(args.people, size=min(args.people, 40), replace=False)
        begin = time.perf_counter()
        slow = [explicit(sequence, window, rows, int(p)) for p in sample]
        slow_time = (time.perf_counter() - begin) / len(sample) * args.people
    agree = all(np.array_equal(fast[int(p)], s) for p, s in zip(sample, slow, strict=True))
    indels = sum(len(r) != len(a) for _, r, a, _ in rows)
    print(f"window {args.window} bp, {args.people} people, {len(rows)} records ({indels} indels)")
    print(f"personal_one_hot: {args.people / min(fast_times):,.0f} people/s (best of {args.repeats})")
    print(f"explicit strings: {args.people / slow_time:,.0f} people/s ({len(sample)} people timed)")
    print(f"ratio: {slow_time / min(fast_times):.1f}x; identical on the {len(sample)} people compared: {agree}")


if __name__ == "__main__":
    main()
