"""Motif scanning speed: random SNVs in the bundled real hg19 chr20 slice × JASPAR2024 CORE
vertebrate motifs (879), both alleles, both strands.

Compared side by side in one run: the annotator's scan (motifs of one length scored together as one
matrix product over sliding one-hot windows) against a plain per-motif loop (each motif's placements
gathered and summed with numpy indexing over all variants, as a straightforward implementation
would). The loop runs on a subset of motifs and its pair rate is compared; both must give the
same best scores on that subset.

Run: ``python benchmarks/bench_motifs.py [--variants 10000] [--loop-motifs 100]``; prints
variants/s for the full annotation (FASTA reads, scans, exact p-values, effects) and for the scan
alone, the loop's (variant × motif)/s and the ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from varscore.examples import data_dir
from varscore.genome.fasta import Genome
from varscore.types import Variant, Window
from varscore_plugins.motifs import BACKGROUNDS, CompiledMotifs, best_scores, encode, jaspar_motifs, variant_motif_hits

EXAMPLES = data_dir()
SLICE = ("chr20", 9_995_001, 11_095_000)  # the part of the bundled FASTA that holds real sequence


def random_snvs(genome: Genome, n: int, seed: int) -> list[Variant]:
    rng = np.random.default_rng(seed)
    chrom, start, end = SLICE
    text = genome.fetch(Window(chrom, start - 1, end))
    variants: list[Variant] = []
    for pos in np.sort(rng.choice(np.arange(start + 50, end - 50), size=n * 2, replace=False)):
        ref = text[pos - start]
        if ref in "ACGT":
            alt = "ACGT".replace(ref, "")[rng.integers(3)]
            variants.append(Variant(chrom, int(pos), ref, (alt,), index=len(variants)))
        if len(variants) == n:
            break
    return variants


def loop_best_scores(codes: np.ndarray, flank: int, matrices: list[np.ndarray]) -> np.ndarray:
    """``(N, M)`` best scores, one motif at a time (N never matches)."""
    out = np.zeros((codes.shape[0], len(matrices)), np.int64)
    for m, matrix in enumerate(matrices):
        length = matrix.shape[0]
        padded = np.hstack([matrix, np.full((length, 1), -(10**7))])
        strands = (padded, np.hstack([matrix[::-1, ::-1], np.full((length, 1), -(10**7))]))
        starts = flank - length + 1 + np.arange(length)
        windows = codes[:, starts[:, None] + np.arange(length)]  # (N, P, L)
        best = np.max([s[np.arange(length), windows].sum(axis=-1).max(axis=1) for s in strands], axis=0)
        out[:, m] = best
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=10_000)
    parser.add_argument("--loop-motifs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    genome = Genome(EXAMPLES / "ucsc.hg19.chr20.unittest.fasta.gz")
    variants = random_snvs(genome, args.variants, args.seed)
    t0 = time.perf_counter()
    motifs = jaspar_motifs()
    compiled = CompiledMotifs.build(motifs, BACKGROUNDS["genome"])
    prepare = time.perf_counter() - t0
    print(
        f"{len(variants):,} SNVs × {len(motifs)} motifs (JASPAR2024 CORE vertebrates); "
        f"loading + exact p-value tables: {prepare:.2f} s"
    )

    t0 = time.perf_counter()
    hits = variant_motif_hits(variants, genome, compiled, p_threshold=5e-5)
    full = time.perf_counter() - t0
    reported = sum(len(v) for v in hits.values())
    print(
        f"annotation (fetch, scan REF+ALT, p-values, effects): {full:.2f} s = {len(variants) / full:,.0f} variants/s; "
        f"{reported:,} motif changes reported at p < 5e-5 for {len(hits):,} variants"
    )

    flank = max(m.length for m in motifs) - 1
    contexts = [genome.fetch(Window(v.chrom, v.pos - 1 - flank, v.pos + flank)) for v in variants]
    codes = encode(contexts)
    t0 = time.perf_counter()
    ours = best_scores(codes, flank, compiled)
    scan = time.perf_counter() - t0
    pairs = len(variants) * len(motifs)
    print(
        f"scan, one allele: {scan:.2f} s = {pairs / scan:,.0f} (variant × motif)/s "
        f"= {len(variants) / scan / 2:,.0f} variants/s for REF and ALT"
    )

    subset = list(range(0, len(motifs), max(1, len(motifs) // args.loop_motifs)))[: args.loop_motifs]
    t0 = time.perf_counter()
    loop = loop_best_scores(codes, flank, [compiled.scores[i] for i in subset])
    loop_time = time.perf_counter() - t0
    loop_rate = len(variants) * len(subset) / loop_time
    same = bool(np.array_equal(loop, ours[:, subset]))
    print(
        f"per-motif loop on {len(subset)} motifs: {loop_time:.2f} s = {loop_rate:,.0f} (variant × motif)/s; "
        f"identical best scores: {same}"
    )
    print(f"ratio (scan / per-motif loop, variant × motif per second): {pairs / scan / loop_rate:.1f}x")


if __name__ == "__main__":
    main()
