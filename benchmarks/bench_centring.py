"""Tiled vs exact centring in variant-centred scoring, side by side in one run, on the packaged
example: the same records scored in windows centred on each variant (``exact``) and in the shared
window of the genome tile holding it (``tiled``, one reference pass per tile).

Reports, per statistic and scope, the Pearson r and the largest absolute difference between the
two scores, and the forward passes and seconds each took.

    python benchmarks/bench_centring.py --model variformer-demo --every 40 --tile-bins 16
"""

from __future__ import annotations

import argparse
import time
from itertools import islice

import numpy as np

from varscore.examples import data_dir
from varscore.genome.exons import load_gene_models
from varscore.genome.fasta import Genome
from varscore.io.vcf import iter_variants
from varscore.models.bundle import load_bundle
from varscore.scoring.centred import STATS, ScorerSettings, VariantCentredScorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="variformer-demo")
    parser.add_argument("--every", type=int, default=40, help="Score every N-th record of the example VCF.")
    parser.add_argument("--limit", type=int, default=None, help="At most this many records.")
    parser.add_argument("--region", help="Only records in chrom:start-end (1-based) instead of --every.")
    parser.add_argument("--tile-bins", type=int, default=None, help="Tile width in bins [an eighth of the bins].")
    parser.add_argument("--tracks", default="all")
    parser.add_argument("--gtf", default="tests/data/example_exons/example_exons.gtf")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    bundle = load_bundle(args.model)
    backbone = bundle.sequence_backbone("cpu")
    genome = Genome(data_dir() / "ucsc.hg19.chr20.unittest.fasta.gz")
    variants = list(iter_variants(data_dir() / "cohort.vcf.gz"))
    if args.region:
        chrom, span = args.region.split(":")
        lo, hi = (int(x.replace(",", "")) for x in span.split("-"))
        variants = [v for v in variants if v.chrom == chrom and lo <= v.pos <= hi]
    else:
        variants = variants[:: args.every]
    variants = list(islice(variants, args.limit))
    genes = load_gene_models(args.gtf) if args.gtf else None
    scores: dict[str, dict] = {}
    for centring in ("exact", "tiled"):
        settings = ScorerSettings(stats=STATS, centring=centring, tile_bins=args.tile_bins, batch_size=args.batch_size)
        scorer = VariantCentredScorer(backbone, genome, settings, genes)
        start = time.perf_counter()
        records = list(scorer.score(variants))
        seconds = time.perf_counter() - start
        table = {}
        for record in records:
            for allele in record.alleles:
                table[(record.variant.index, allele.allele, ".")] = allele.window
                for gene, values in allele.genes:
                    table[(record.variant.index, allele.allele, gene.gene_id)] = values
        scores[centring] = table
        s = scorer.summary
        print(
            f"{centring}: {s.records_scored} records, {s.reference_passes} reference passes, "
            f"{s.alternate_windows} alternate windows, {seconds:.1f} s; tile {scorer.tile} bp "
            f"(window {scorer.length} bp, {scorer.geometry.n_bins} bins of {scorer.geometry.bin_size} bp)"
        )
    exact, tiled = scores["exact"], scores["tiled"]
    print(f"model {bundle.name}, {len(variants)} records of the example VCF")
    print("scope   stat    n      pearson_r  max|diff|  max|exact|")
    for scope in ("window", "gene"):
        keys = [k for k in exact if (k[2] == ".") == (scope == "window") and k in tiled]
        if not keys:
            continue
        for s, stat in enumerate(STATS):
            a = np.concatenate([np.asarray(exact[k])[:, s, 2] for k in keys])
            b = np.concatenate([np.asarray(tiled[k])[:, s, 2] for k in keys])
            r = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
            print(f"{scope:7} {stat:7} {len(a):<6} {r:9.4f}  {np.abs(a - b).max():9.4g}  {np.abs(a).max():9.4g}")


if __name__ == "__main__":
    main()
