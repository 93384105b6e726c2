"""The motifs annotator's per-variant multiple-testing figure: window p-values against random
sequences, BH/Bonferroni over the motifs scanned against a hand computation, the Q field, and the
share of random SNVs flagged at the default on the bundled hg19 slice."""

from __future__ import annotations

import numpy as np
import pytest

from varscore.examples import data_dir
from varscore.genome.fasta import Genome
from varscore.types import Variant, Window
from varscore_plugins.motifs import (
    DEFAULT_Q_THRESHOLD,
    MotifAnnotator,
    best_scores,
    jaspar_motifs,
    per_variant_q,
    variant_motif_hits,
    window_p_values,
)


def hand_bh(p: list[float]) -> list[float]:
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    q = [0.0] * m
    for rank, i in enumerate(order):
        q[i] = min(min(1.0, p[order[j]] * m / (j + 1)) for j in range(rank, m))
    return q


def test_per_variant_q_is_bh_or_bonferroni_over_each_row():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, (5, 40)) ** 3
    p[0, :3] = 1e-6
    q = per_variant_q(p, "bh")
    for row in range(5):
        assert q[row] == pytest.approx(hand_bh(list(p[row])), rel=1e-12)
    assert per_variant_q(p, "bonferroni") == pytest.approx(np.minimum(1, p * 40))
    assert per_variant_q(p, "none") == pytest.approx(p)


def test_window_p_value_matches_the_best_match_over_random_sequences():
    """P(best match over both strands of every placement overlapping one base has p <= t) on
    random background sequences, against the Šidák window p-value (placements overlap, so they
    are not quite independent: within 25%)."""
    from varscore_plugins.motifs import CompiledMotifs

    motif = next(m for m in sorted(jaspar_motifs(), key=lambda m: m.motif_id) if m.length == 8)
    background = np.array([0.25, 0.25, 0.25, 0.25])
    compiled = CompiledMotifs.build([motif], background)
    flank = motif.length - 1
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 4, size=(60_000, 2 * flank + 1))
    best_p = compiled.p_values(np.zeros(len(codes), np.int64), best_scores(codes, flank, compiled)[:, 0])
    for t in (1e-3, 3e-4):
        observed = float((best_p <= t).mean())
        expected = float(window_p_values(np.array([t]), np.array([motif.length]))[0])
        assert observed == pytest.approx(expected, rel=0.25), t


def _random_snvs(n: int, seed: int) -> tuple[Genome, list[Variant]]:
    genome = Genome(data_dir() / "ucsc.hg19.chr20.unittest.fasta.gz")
    start = 9_995_000
    text = genome.fetch(Window("chr20", start, 11_095_000))
    rng = np.random.default_rng(seed)
    variants: list[Variant] = []
    while len(variants) < n:
        i = int(rng.integers(40, len(text) - 40))
        if set(text[i - 40 : i + 41]) <= set("ACGT"):
            alt = str(rng.choice([b for b in "ACGT" if b != text[i]]))
            variants.append(Variant("chr20", start + i + 1, text[i], (alt,), index=len(variants)))
    return genome, variants


@pytest.mark.slow
def test_default_flags_a_small_share_of_random_snvs_on_the_bundled_reference():
    """Measured with benchmarks/motif_random_snv_share.py (2,000 SNVs): raw p < 5e-5 flags about
    half of random SNVs against the 879 JASPAR2024 CORE vertebrate motifs; the default
    (BH q over the motifs scanned below DEFAULT_Q_THRESHOLD) keeps it near 5%."""
    genome, variants = _random_snvs(400, seed=11)
    annotator = MotifAnnotator()
    raw = variant_motif_hits(variants, genome, annotator.compiled, 5e-5, correction="none")
    default = variant_motif_hits(
        variants,
        genome,
        annotator.compiled,
        annotator.p_threshold,
        correction=annotator.correction,
        q_threshold=annotator.q_threshold,
    )
    assert annotator.correction == "bh" and annotator.q_threshold == DEFAULT_Q_THRESHOLD
    assert len(raw) / len(variants) > 0.35
    assert 0.01 <= len(default) / len(variants) <= 0.10
    assert set(default) <= set(raw)
    for hits in default.values():
        assert all(hit.q < DEFAULT_Q_THRESHOLD for hit, _ in hits)
