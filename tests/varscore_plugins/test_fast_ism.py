"""Fast (cached conv-tower) ISM of the Enformer backbone against full forward passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch  # noqa: E402

from tests.conftest import missing_tool, perturb_weights
from varscore.errors import InputError  # noqa: E402
from varscore.genome.personal import WindowGenotypes, personal_one_hot  # noqa: E402
from varscore.genome.sequence import BASES  # noqa: E402
from varscore.plugin.fastpredict import predict_people, window_edits  # noqa: E402
from varscore.types import Window  # noqa: E402
from varscore_plugins.enformer import EnformerBackbone, TowerGeometry, tiny_params  # noqa: E402
from varscore_plugins.outputs import ScalarOutput  # noqa: E402

# tiny: 16 bins of 128 bp; mid: 64 bins of 128 bp, a 4-layer tower at dim 96; coarse: 32-bp bins.
CONFIGS = {
    "tiny": tiny_params(2048),
    "mid": tiny_params(8192, dim=96, depth=2, heads=4, attn_dim_key=16, num_downsamples=5, dim_divisible_by=16),
    "coarse": tiny_params(2048, dim=48, depth=1, num_downsamples=5, dim_divisible_by=8),
}


def _flat(prediction: np.ndarray) -> np.ndarray:
    """Keeps every bin and track: ``(N, bins, tracks)`` -> ``(N, bins * tracks)``."""
    return prediction.reshape(len(prediction), -1)


def _perturbed(params: dict, seed: int) -> EnformerBackbone:
    """A built backbone whose weights and batch-norm statistics are all off their initial values,
    so that a batch norm maps the convolutions' zero padding to non-zero values."""
    backbone = EnformerBackbone(**{**params, "seed": seed}).build()
    perturb_weights(backbone.model_, seed)
    return backbone


def _positions(rng: np.random.Generator, length: int, bin_size: int, n_random: int) -> list[int]:
    """Window edges, bin boundaries, the centre (TSS) bin and random offsets."""
    centre_bin = length // bin_size // 2
    fixed = [0, 1, 6, 7, 8, bin_size - 1, bin_size, 2 * bin_size + 3]
    fixed += [centre_bin * bin_size, centre_bin * bin_size + bin_size // 2, (centre_bin + 1) * bin_size - 1]
    fixed += [length - 1, length - 2, length - 8, length - bin_size, length - bin_size - 1]
    return sorted({*fixed, *rng.integers(0, length, size=n_random).tolist()})


def _substitutions(rng: np.random.Generator, reference: np.ndarray, offsets: list[int]) -> list[tuple[int, str]]:
    current = reference.argmax(axis=1)
    return [(off, BASES[(int(current[off]) + int(rng.integers(1, 4))) % 4]) for off in offsets]


# -- receptive fields, checked on the model itself in float64 ----------------------------------


@pytest.mark.parametrize("config", list(CONFIGS))
def test_geometry_matches_the_model(config: str) -> None:
    """The bins an SNV changes are exactly ``affected_bins``, and a patch placed by the geometry
    reproduces them to float64 round-off (so every base they depend on is inside it)."""
    backbone = _perturbed(CONFIGS[config], seed=3)
    backbone.model_.double()
    geometry = backbone.tower_geometry()
    length, bin_size = geometry.length, geometry.bin_size
    width = geometry.snv_patch_width()
    rng = np.random.default_rng(11)
    reference = torch.from_numpy(np.eye(4)[rng.integers(0, 4, length)])
    with torch.no_grad():
        ref_tower = backbone._tower_forward(reference[None])[0]
        for offset in _positions(rng, length, bin_size, n_random=12):
            alternate = reference.clone()
            alternate[offset] = torch.roll(alternate[offset], 1)
            tower = backbone._tower_forward(alternate[None])[0]
            changed = np.flatnonzero((tower - ref_tower).abs().amax(dim=0).numpy() > 1e-12)
            first, last = geometry.affected_bins(offset, offset)
            assert changed.tolist() == list(range(first, last + 1)), offset

            start = geometry.place_patch(first, last, width)
            assert 0 <= start and start + width <= geometry.n_bins
            patch = alternate[start * bin_size : (start + width) * bin_size]
            patch_tower = backbone._tower_forward(patch[None])[0]
            spliced = patch_tower[:, first - start : last + 1 - start]
            np.testing.assert_allclose(spliced.numpy(), tower[:, first : last + 1].numpy(), rtol=0, atol=1e-10)


def test_geometry_of_the_full_size_model() -> None:
    """The published architecture: 7 halvings, so an SNV inside the window touches 5-6 of the 384
    bins at 49,152 bp (fewer at the edges) and a 12-bin (1,536-bp) patch recomputes them."""
    geometry = TowerGeometry.for_enformer(49_152, 7)
    assert (geometry.bin_size, geometry.n_bins) == (128, 384)
    interior = {geometry.affected_bins(p, p) for p in range(1_000, 48_000, 7)}
    assert {last - first + 1 for first, last in interior} == {5, 6}
    assert geometry.snv_patch_width() == 12
    assert geometry.affected_bins(0, 0) == (0, 2)
    assert geometry.affected_bins(49_151, 49_151) == (381, 383)
    for position in (0, 5, 300, 24_576, 49_000, 49_151):
        first, last = geometry.affected_bins(position, position)
        start = geometry.place_patch(first, last, 12)
        needed_first, needed_last = geometry.needed_bases(first, last)
        assert start * 128 <= max(needed_first, 0) and min(needed_last, 49_151) < (start + 12) * 128


# -- fast ISM against full forward passes -----------------------------------------------------


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_ism_equals_full_forward(config: str, seed: int) -> None:
    backbone = _perturbed(CONFIGS[config], seed=seed)
    rng = np.random.default_rng(100 + seed)
    length, bin_size = backbone.window_size, backbone.bin_size
    reference = np.eye(4, dtype=np.float32)[rng.integers(0, 4, length)]
    substitutions = _substitutions(rng, reference, _positions(rng, length, bin_size, n_random=10))
    substitutions.append((length // 2, "N"))  # an unknown base is all-zero, as in predict()

    fast = backbone.ism(reference, substitutions, _flat, batch_size=5)
    # the independent computation: one full forward pass per edited window
    edited = np.repeat(reference[None], len(substitutions), axis=0)
    for row, (offset, base) in enumerate(substitutions):
        edited[row, offset] = np.eye(4, dtype=np.float32)[BASES.index(base)] if base in BASES else 0.0
    full = _flat(backbone.predict(edited))
    full_reference = _flat(backbone.predict(reference[None]))[0]

    scale = np.abs(full).max()
    np.testing.assert_allclose(fast.reference, full_reference, rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(fast.alternates, full, rtol=0, atol=1e-4 * scale)
    effect = np.abs(full - full_reference).max(axis=1)
    assert effect.min() > 1e-3 * scale, "some substitution does not move the prediction"
    # errors are far below the effects being measured
    assert np.abs(fast.delta - (full - full_reference)).max() < 1e-3 * effect.min()


def test_pretrained_head_and_scalar_output() -> None:
    backbone = _perturbed(tiny_params(2048, head="pretrained"), seed=4)
    rng = np.random.default_rng(4)
    reference = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 2048)]
    substitutions = _substitutions(rng, reference, [0, 900, 1023, 1024, 2047])
    reduce = ScalarOutput(track=5, center_bins=3).reduce
    fast = backbone.ism(reference, substitutions, reduce, batch_size=2)
    backbone.ism_method = "naive"
    naive = backbone.ism(reference, substitutions, reduce, batch_size=2)
    np.testing.assert_allclose(fast.alternates, naive.alternates, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fast.reference, naive.reference, rtol=1e-6)


def test_batch_norm_runs_in_eval_mode() -> None:
    """A model left in training mode (e.g. after fine-tuning) is scored with running statistics."""
    backbone = _perturbed(CONFIGS["tiny"], seed=5)
    rng = np.random.default_rng(5)
    reference = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 2048)]
    substitutions = _substitutions(rng, reference, [3, 1000, 2040])
    expected = backbone.ism(reference, substitutions, _flat)
    backbone.model_.train()
    again = backbone.ism(reference, substitutions, _flat)
    assert not backbone.model_.training
    np.testing.assert_array_equal(again.alternates, expected.alternates)


def test_naive_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    backbone = _perturbed(CONFIGS["tiny"], seed=6)
    rng = np.random.default_rng(6)
    reference = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 2048)]
    substitutions = _substitutions(rng, reference, [10, 1500])
    fast = backbone.ism(reference, substitutions, _flat)

    def refuse(*args: object) -> None:
        raise AssertionError("fast path used")

    monkeypatch.setattr(backbone, "_fast_ism", refuse)
    monkeypatch.setenv("VARSCORE_ISM", "naive")
    assert not backbone.uses_fast_ism()
    naive = backbone.ism(reference, substitutions, _flat)
    np.testing.assert_allclose(naive.alternates, fast.alternates, rtol=1e-4, atol=1e-5)
    monkeypatch.setenv("VARSCORE_ISM", "fast")
    backbone.ism_method = "naive"  # the attribute wins over the environment
    assert not backbone.uses_fast_ism()
    backbone.ism_method = None
    monkeypatch.setenv("VARSCORE_ISM", "quick")
    with pytest.raises(InputError, match="Unknown ISM method 'quick'"):
        backbone.ism(reference, substitutions, _flat)


def test_other_substitutions_take_the_full_forward_path() -> None:
    """Rows that are not one base (e.g. an indel allele) are scored by SequenceBackbone.ism and
    come back in their original order among the fast rows."""
    backbone = _perturbed(CONFIGS["tiny"], seed=7)
    rng = np.random.default_rng(7)
    reference = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 2048)]
    substitutions = [(5, "G"), (700, "AT"), (1024, "C"), (2000, "")]
    mixed = backbone.ism(reference, substitutions, _flat, batch_size=3)
    backbone.ism_method = "naive"
    naive = backbone.ism(reference, substitutions, _flat, batch_size=3)
    np.testing.assert_allclose(mixed.alternates, naive.alternates, rtol=1e-4, atol=1e-5)
    assert mixed.alternates.shape == (4, 16)


def test_input_errors() -> None:
    backbone = EnformerBackbone(**CONFIGS["tiny"]).build()
    with pytest.raises(InputError, match=r"\(2048, 4\) one-hot window; got shape \(1024, 4\)"):
        backbone.ism(np.zeros((1024, 4), np.float32), [(1, "A")], _flat)
    with pytest.raises(InputError, match="batch size must be >= 1"):
        backbone.ism(np.zeros((2048, 4), np.float32), [(1, "A")], _flat, batch_size=0)
    empty = backbone.ism(np.zeros((2048, 4), np.float32), [], _flat)
    assert empty.alternates.shape == (0, 16)


# -- personal genomes: shared patterns and patches against full forward passes -----------------


def _cohort(rng: np.random.Generator, reference: np.ndarray, people: int, snvs: int) -> WindowGenotypes:
    """Phased genotypes with many rare and a few common SNVs, a multi-allelic site, SNVs at both
    window edges and some missing calls."""
    length = len(reference)
    offsets = np.sort(np.concatenate([[0, length - 1], rng.choice(np.arange(1, length - 1), snvs - 2, replace=False)]))
    offsets = np.insert(offsets, 3, offsets[2])  # a second ALT allele at one position
    codes = reference.argmax(axis=1)
    refs = np.array([BASES[codes[o]] for o in offsets])
    alts = np.array([BASES[(codes[o] + 1 + i % 3) % 4] for i, o in enumerate(offsets)])
    alts[3] = BASES[(codes[offsets[3]] + 2) % 4]
    freq = np.minimum(rng.beta(0.3, 2.0, size=len(offsets)), 0.9)
    haplotypes = (rng.random((people, 2, len(offsets))) < freq).astype(np.int8)
    haplotypes[:, :, 3] &= 1 - haplotypes[:, :, 2]  # one ALT per haplotype at the multi-allelic site
    haplotypes[rng.random(haplotypes.shape) < 0.01] = -1
    return WindowGenotypes(
        window=Window("chr1", 0, length),
        samples=[f"P{i}" for i in range(people)],
        positions=offsets + 1,
        refs=refs,
        alts=alts,
        haplotypes=haplotypes,
        phased=np.ones(people, dtype=bool),
    )


@pytest.mark.parametrize(("config", "snvs"), [("tiny", 6), ("tiny", 40), ("mid", 30), ("coarse", 12)])
def test_predict_people_equals_full_forward(config: str, snvs: int) -> None:
    backbone = _perturbed(CONFIGS[config], seed=8)
    rng = np.random.default_rng(snvs)
    reference = np.eye(4, dtype=np.float32)[rng.integers(0, 4, backbone.window_size)]
    genotypes = _cohort(rng, reference, people=40, snvs=snvs)
    people = np.array([5, 0, 39, 5, 17, 3, 22, 8, 30, 11, 2, 36])

    fast = predict_people(backbone, reference, genotypes, people, batch_size=4)
    full = backbone.predict(personal_one_hot(reference, genotypes, "dosage", people=people))
    assert fast.predictions.shape == full.shape
    scale = np.abs(full).max()
    np.testing.assert_allclose(fast.predictions, full, rtol=0, atol=1e-4 * scale)
    assert fast.n_patterns == len(np.unique(fast.pattern)) <= 11  # person 5 is listed twice
    naive = predict_people(backbone, reference, genotypes, people, batch_size=4, method="naive")
    np.testing.assert_allclose(naive.predictions, full, rtol=0, atol=1e-6 * scale)


@pytest.mark.parametrize("spacing", [None, 3000, 150])  # no edits, sparse (patches), dense (full towers)
def test_predict_edits_equals_full_forward(spacing: int | None) -> None:
    backbone = _perturbed(CONFIGS["mid"], seed=9)
    length = backbone.window_size
    rng = np.random.default_rng(9)
    reference = np.eye(4, dtype=np.float32)[rng.integers(0, 4, length)]
    windows = np.repeat(reference[None], 5, axis=0)
    if spacing is not None:
        for row in range(5):
            offsets = np.unique(np.concatenate([rng.integers(0, length, length // spacing), [row * 7, length - 1]]))
            windows[row, offsets] = 0.5 * (windows[row, offsets] + np.eye(4, dtype=np.float32)[(row + 1) % 4])
        windows[3] = windows[1]  # identical windows share their patches
    full = backbone.predict(windows)
    tower_lengths: list[int] = []
    run = backbone._run

    def recording_run(piece: str, x: torch.Tensor) -> torch.Tensor:
        if piece == "tower":
            tower_lengths.append(x.shape[1])
        return run(piece, x)

    backbone._run = recording_run  # type: ignore[method-assign]
    fast = backbone.predict_edits(reference, window_edits(reference, windows), batch_size=2)
    np.testing.assert_allclose(fast, full, rtol=0, atol=1e-4 * np.abs(full).max())
    patch = backbone.tower_geometry().chunk_patch_width(8) * backbone.bin_size
    # the reference tower, then patches when edits are sparse, full towers when they are dense
    expected = {None: {length}, 3000: {length, patch}, 150: {length}}[spacing]
    assert set(tower_lengths) == expected and tower_lengths[0] == length


def test_predict_edits_errors() -> None:
    backbone = EnformerBackbone(**CONFIGS["tiny"]).build()
    reference = np.zeros((2048, 4), np.float32)
    with pytest.raises(InputError, match="outside the 2048-bp window"):
        backbone.predict_edits(reference, [(np.array([2048]), np.zeros((1, 4)))])
    with pytest.raises(InputError, match=r"\(2048, 4\) one-hot window"):
        backbone.predict_edits(reference[:100], [])
    assert backbone.predict_edits(reference, []).shape == (0, 16, 1)


@pytest.mark.slow
@pytest.mark.opt_in("VARSCORE_TEST_COMPILE")
def test_compiled_fast_ism_equals_full_forward() -> None:
    """``configure(compile=True)`` (meant for CUDA) gives the same scores; on a CPU it needs a C++
    compiler and compiles for a minute or more, so it runs only with VARSCORE_TEST_COMPILE=1."""
    import shutil

    if shutil.which("g++") is None and shutil.which("c++") is None:
        missing_tool("a C++ compiler", "apt-get install g++; torch.compile on a CPU needs one")
    backbone = _perturbed(CONFIGS["tiny"], seed=10)
    rng = np.random.default_rng(10)
    reference = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 2048)]
    substitutions = _substitutions(rng, reference, [0, 500, 1024, 2047])
    backbone.ism_method = "patch"  # the path whose pieces are compiled
    expected = backbone.ism(reference, substitutions, _flat, batch_size=2)
    backbone.configure("cpu", compile=True)
    compiled = backbone.ism(reference, substitutions, _flat, batch_size=2)
    assert set(backbone._compiled) == {"tower", "head"}
    np.testing.assert_allclose(
        compiled.alternates, expected.alternates, rtol=0, atol=1e-4 * np.abs(expected.alternates).max()
    )
