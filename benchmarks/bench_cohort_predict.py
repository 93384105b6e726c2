"""Personal-genome prediction for a cohort, fast versus naive, with a mid-size Enformer on CPU.

One gene window of the bundled example cohort (670 people, simulated on a real hg19 chr20
slice). Fast: `varscore.plugin.fastpredict.predict_people` (one forward per distinct dosage pattern;
the conv tower recomputed only on patches the variants reach, identical patches shared across
people). Naive: every person's window through `predict`. The naive rate is measured on a subset
of people, half before and half after the fast run; the fast run covers the whole cohort (its
savings depend on the cohort). Run:

    python benchmarks/bench_cohort_predict.py [--window 32768] [--naive-people 16]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np
import pandas as pd
from bench_ism import mid_size_params, untie_initialisation_

from varscore.examples import data_dir
from varscore.genome.fasta import Genome
from varscore.genome.personal import GenotypeReader
from varscore.plugin.fastpredict import predict_people
from varscore.types import Gene, tss_window
from varscore_plugins.enformer import EnformerBackbone

DATA = data_dir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=int, default=32_768)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--gene", default="SNAP25")
    parser.add_argument("--naive-people", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="   %(message)s", stream=sys.stdout)
    logging.getLogger("varscore_plugins.enformer").setLevel(logging.INFO)

    genes = pd.read_csv(DATA / "genes.tsv", sep="\t")
    row = genes[genes.gene_id == args.gene].iloc[0]
    window = tss_window(Gene(row.gene_id, row.chrom, int(row.tss), row.strand), args.window)
    reference = Genome(DATA / "ucsc.hg19.chr20.unittest.fasta.gz").window_sequence(window).one_hot
    with GenotypeReader(DATA / "cohort.vcf.gz") as reader:
        genotypes = reader.read(window, reference)
    backbone = EnformerBackbone(**mid_size_params(args.window, args.dim, args.depth, 7), seed=0).build()
    untie_initialisation_(backbone.model_)
    print(
        f"{args.gene} {window.chrom}:{window.start + 1:,}-{window.end:,}: {genotypes.n_people} people, "
        f"{genotypes.n_variants} SNVs; Enformer dim {args.dim}, depth {args.depth}, 6 conv-tower layers, CPU"
    )

    subset = np.linspace(0, genotypes.n_people - 1, args.naive_people).astype(np.int64)
    halves = (subset[::2], subset[1::2])
    wall = {"naive": 0.0, "fast": 0.0}
    cpu = {"naive": 0.0, "fast": 0.0}
    results = {}
    # naive on half the subset, fast on everyone, naive on the other half: a change in the
    # machine's load during the run affects both
    for label, people, method in (
        ("naive-1", halves[0], "naive"),
        ("fast", None, "fast"),
        ("naive-2", halves[1], "naive"),
    ):
        start, cpu_start = time.perf_counter(), time.process_time()
        results[label] = predict_people(backbone, reference, genotypes, people, args.batch_size, method=method)
        wall[method] += time.perf_counter() - start
        cpu[method] += time.process_time() - cpu_start

    n_people = genotypes.n_people
    fast = results["fast"]
    naive_rate, fast_rate = len(subset) / wall["naive"], n_people / wall["fast"]
    cpu_ratio = (cpu["naive"] / len(subset)) / (cpu["fast"] / n_people)
    naive = np.concatenate([results["naive-1"].predictions, results["naive-2"].predictions])
    difference = np.abs(fast.predictions[np.concatenate(halves)] - naive).max()
    spread = np.abs(naive - naive.mean(axis=0)).max()
    print(f"   naive: {naive_rate:7.2f} people/s ({len(subset)} people, {wall['naive']:.1f} s)")
    print(
        f"   fast:  {fast_rate:7.2f} people/s ({n_people} people, {fast.n_patterns} distinct "
        f"dosage patterns, {wall['fast']:.1f} s)"
    )
    print(
        f"   fast / naive throughput: {fast_rate / naive_rate:.2f}x wall-clock; {cpu_ratio:.2f}x in CPU time "
        f"per person ({1e3 * cpu['naive'] / len(subset):.0f} vs {1e3 * cpu['fast'] / n_people:.0f} ms)"
    )
    print(
        f"   largest |fast - naive| over all bins of {len(subset)} people: {difference:.1e} "
        f"(largest difference between people: {spread:.1e})"
    )


if __name__ == "__main__":
    main()
