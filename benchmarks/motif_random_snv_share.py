"""Share of random SNVs that the motifs annotator flags, on the bundled hg19 chr20 slice, for the
raw per-match p threshold and for the per-variant multiple-testing figures (Benjamini-Hochberg and
Bonferroni over the motifs scanned, of the window p-value of the best match).

    python benchmarks/motif_random_snv_share.py [--snvs 2000] [--motifs JASPAR2024] [--seed 0]

Random SNVs: positions drawn uniformly among the slice's A/C/G/T bases (contexts without N),
ALT uniform among the three other bases. Prints one line per rule: the share flagged and its
binomial 95% interval."""

from __future__ import annotations

import argparse
import math

import numpy as np


def main() -> None:
    from scipy.stats import binomtest

    from varscore.examples import data_dir
    from varscore.genome.fasta import Genome
    from varscore.types import Variant, Window
    from varscore_plugins.motifs import MotifAnnotator, variant_motif_hits

    parser = argparse.ArgumentParser()
    parser.add_argument("--snvs", type=int, default=2000)
    parser.add_argument("--motifs", default="JASPAR2024")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    genome = Genome(data_dir() / "ucsc.hg19.chr20.unittest.fasta.gz")
    start, end = 9_995_000, 11_095_000  # the cohort's slice of chr20 (the rest is N)
    text = genome.fetch(Window("chr20", start, end))
    rng = np.random.default_rng(args.seed)
    variants: list[Variant] = []
    while len(variants) < args.snvs:
        i = int(rng.integers(40, len(text) - 40))
        if set(text[i - 40 : i + 41]) <= set("ACGT"):
            alt = str(rng.choice([b for b in "ACGT" if b != text[i]]))
            variants.append(Variant("chr20", start + i + 1, text[i], (alt,), index=len(variants)))
    compiled = MotifAnnotator(motifs=args.motifs).compiled
    print(f"{len(variants)} random SNVs, {len(compiled.motifs)} motifs ({args.motifs})")
    rules = [
        ("none", 5e-5, 1.0),
        ("none", 1e-5, 1.0),
        ("none", 1e-6, 1.0),
        ("bonferroni", 5e-5, 0.05),
        ("bh", 5e-5, 0.1),
        ("bh", 5e-5, 0.05),
        ("bh", 5e-5, 0.03),
        ("bh", 5e-5, 0.02),
        ("bh", 5e-5, 0.01),
    ]
    for correction, p_threshold, q_threshold in rules:
        hits = variant_motif_hits(
            variants, genome, compiled, p_threshold, correction=correction, q_threshold=q_threshold
        )
        k = len(hits)
        ci = binomtest(k, len(variants)).proportion_ci()
        rule = f"p < {p_threshold:g}" + ("" if correction == "none" else f", {correction} q < {q_threshold:g}")
        print(
            f"{rule:32s} flagged {k}/{len(variants)} = {k / len(variants):.1%} "
            f"(95% CI {ci.low:.1%}-{ci.high:.1%}); motifs per flagged SNV "
            f"{(sum(len(v) for v in hits.values()) / k) if k else math.nan:.2f}"
        )


if __name__ == "__main__":
    main()
