"""Cohort prediction with shared dosage patterns (varscore.plugin.fastpredict), on the numpy toy backbone."""

from __future__ import annotations

import numpy as np
import pytest

from tests.toy_plugin import ToyBackbone
from varscore.errors import InputError
from varscore.genome.personal import WindowGenotypes, personal_one_hot
from varscore.plugin.fastpredict import dosage_patterns, predict_people, window_edits
from varscore.types import Window


def _genotypes(haplotypes: np.ndarray, length: int = 64) -> WindowGenotypes:
    n_people, _, n_snvs = haplotypes.shape
    offsets = np.arange(3, 3 + 5 * n_snvs, 5)[:n_snvs]
    return WindowGenotypes(
        window=Window("chr1", 0, length),
        samples=[f"P{i}" for i in range(n_people)],
        positions=offsets + 1,
        refs=np.array(["A"] * n_snvs),
        alts=np.array(["C"] * n_snvs),
        haplotypes=haplotypes.astype(np.int8),
        phased=np.ones(n_people, dtype=bool),
    )


def test_people_with_equal_dosages_share_a_pattern() -> None:
    haplotypes = np.array(
        [
            [[1, 0, 0], [0, 0, 1]],
            [[0, 0, 1], [1, 0, 0]],  # the same dosages as person 0, other phase
            [[1, 0, 0], [0, 0, 0]],
            [[1, -1, 0], [0, 0, 0]],  # a missing call counts as reference: same as person 2
            [[0, 0, 0], [0, 0, 0]],
        ]
    )
    representatives, inverse = dosage_patterns(_genotypes(haplotypes), np.arange(5))
    assert len(representatives) == 3
    assert inverse[0] == inverse[1] and inverse[2] == inverse[3] and len(set(inverse[[0, 2, 4]])) == 3
    assert (inverse[representatives] == np.arange(3)).all()


def test_predict_people_equals_every_window_predicted() -> None:
    rng = np.random.default_rng(0)
    haplotypes = (rng.random((30, 2, 6)) < 0.2).astype(np.int8)
    genotypes = _genotypes(haplotypes)
    reference = np.tile(np.eye(4, dtype=np.float32)[[0]], (64, 1))  # all A, so every REF matches
    backbone = ToyBackbone().build()
    calls: list[int] = []
    predict = backbone.predict

    def counting_predict(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return predict(batch)

    backbone.predict = counting_predict  # type: ignore[method-assign]
    people = np.array([4, 4, 0, 29, 13, 7, 21, 2, 9])
    result = predict_people(backbone, reference, genotypes, people, batch_size=3)
    expected = predict(personal_one_hot(reference, genotypes, "dosage", people=people))
    np.testing.assert_allclose(result.predictions, expected, rtol=1e-6, atol=1e-6)
    distinct = len(np.unique(haplotypes[people].sum(axis=1), axis=0))
    assert result.n_patterns == distinct and sum(calls) == distinct < len(people)

    calls.clear()
    naive = predict_people(backbone, reference, genotypes, people, batch_size=3, method="naive")
    np.testing.assert_allclose(naive.predictions, expected, rtol=1e-6, atol=1e-6)
    assert sum(calls) == len(people)


def test_window_edits_round_trip() -> None:
    rng = np.random.default_rng(1)
    reference = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 50)]
    windows = np.repeat(reference[None], 3, axis=0)
    windows[0, [0, 17, 49]] = 0.5
    windows[2, 8] = 0.0
    edits = window_edits(reference, windows)
    assert [e[0].tolist() for e in edits] == [[0, 17, 49], [], [8]]
    for window, (offsets, values) in zip(windows, edits, strict=True):
        rebuilt = reference.copy()
        rebuilt[offsets] = values
        np.testing.assert_array_equal(rebuilt, window)


def test_errors() -> None:
    genotypes = _genotypes(np.zeros((2, 2, 1)))
    reference = np.tile(np.eye(4, dtype=np.float32)[[0]], (64, 1))
    with pytest.raises(InputError, match="Unknown prediction method 'quick'"):
        predict_people(ToyBackbone().build(), reference, genotypes, method="quick")
    with pytest.raises(InputError, match="at least one person"):
        predict_people(ToyBackbone().build(), reference, genotypes, people=[])
    no_snvs = _genotypes(np.zeros((3, 2, 0)))
    result = predict_people(ToyBackbone().build(), reference, no_snvs)
    assert result.n_patterns == 1 and result.predictions.shape == (3, 8, 2)


def test_indel_patterns_keep_haplotypes_apart(tmp_path) -> None:
    """With indels the window depends on which variants share a haplotype: people with equal ALT
    counts but other haplotypes get their own pattern, and predictions equal the naive path."""
    from tests.conftest import random_sequence, write_fasta, write_vcf
    from varscore.genome.fasta import Genome
    from varscore.genome.personal import GenotypeReader
    from varscore.genome.sequence import one_hot

    rng = np.random.default_rng(3)
    sequence = random_sequence(rng, 400)
    fasta = write_fasta(tmp_path / "ref.fa", {"chr1": sequence})
    records = [
        ("chr1", 150, sequence[149], "ACGT"[("ACGT".index(sequence[149]) + 1) % 4]),  # SNV
        ("chr1", 170, sequence[169], sequence[169] + "GG"),  # insertion
        ("chr1", 190, sequence[189:192], sequence[189]),  # deletion
    ]
    genotypes_per_record = [
        ["1|0", "1|0", "0|1", "1|1", "0|0"],
        ["1|0", "0|1", "1|0", "0|0", "0|0"],
        ["1|0", "1|0", "0|1", "0|0", "0|0"],
    ]
    samples = [f"P{i}" for i in range(5)]
    vcf = write_vcf(tmp_path / "in.vcf", records, samples, {"chr1": 400}, genotypes_per_record)
    window = Window("chr1", 100, 228)
    genome = Genome(fasta)
    with GenotypeReader(vcf, indels=True) as reader:
        genotypes = reader.read(window, genome)
    reference = one_hot(genome.fetch(window))
    backbone = ToyBackbone(window_size=128).build()
    people = np.arange(5)
    representatives, inverse = dosage_patterns(genotypes, people)
    assert genotypes.n_variants == 3
    # P0 (all three on haplotype 0) and P1 (the insertion alone on haplotype 1) have equal counts;
    # P2 is P1 with the haplotypes swapped
    assert inverse[0] != inverse[1] and inverse[1] == inverse[2]
    assert len(representatives) == 4
    fast = predict_people(backbone, reference, genotypes)
    naive = backbone.predict(personal_one_hot(reference, genotypes, "dosage"))
    np.testing.assert_allclose(fast.predictions, naive, rtol=1e-6, atol=1e-6)
    assert not np.allclose(naive[0], naive[1])
    np.testing.assert_array_equal(naive[1], naive[2])
