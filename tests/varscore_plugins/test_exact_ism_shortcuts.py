"""The exact ISM shortcuts of varscore_plugins.fast_ism (cached first transformer layer, last layer
and head on the bins read, Borzoi's cached convolutional activations) against full forward passes,
on tiny random models at random positions, window edges and several seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import optional_import, perturb_weights
from varscore.errors import InputError
from varscore.genome.sequence import BASES
from varscore_plugins import fast_ism
from varscore_plugins.enformer import EnformerBackbone, tiny_params
from varscore_plugins.fast_ism import CachedTransformer, bins_read, enformer_positions, reduce_rows
from varscore_plugins.outputs import ScalarOutput

ENFORMER = {
    "tiny": tiny_params(2048),
    "mid": tiny_params(8192, dim=96, heads=4, attn_dim_key=16, num_downsamples=5, dim_divisible_by=16),
    "coarse": tiny_params(2048, dim=48, num_downsamples=5, dim_divisible_by=8),
}


def _flat(prediction: np.ndarray) -> np.ndarray:
    """Every bin and track: ``(N, bins, tracks)`` -> ``(N, bins * tracks)`` (reads all bins)."""
    return prediction.reshape(len(prediction), -1)


def _case(length: int, bin_size: int, seed: int, n_random: int = 5) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """A random one-hot window ``(length, 4)`` and SNVs at its edges, bin boundaries, centre and
    random offsets."""
    rng = np.random.default_rng(seed)
    reference = np.eye(4, dtype=np.float32)[rng.integers(0, 4, length)]
    centre = length // 2
    fixed = [
        0,
        1,
        7,
        bin_size - 1,
        bin_size,
        centre - 1,
        centre,
        centre + bin_size // 2,
        length - bin_size,
        length - 2,
        length - 1,
    ]
    offsets = sorted({*fixed, *rng.integers(0, length, n_random).tolist()})
    current = reference.argmax(axis=1)
    return reference, [(o, BASES[(int(current[o]) + int(rng.integers(1, 4))) % 4]) for o in offsets]


def _assert_equal_to_naive(backbone, reference, substitutions, reducers, batch_size=6) -> None:
    """Fast ISM through each of ``reducers`` equals the reduced full forwards of the edited windows."""
    windows = np.repeat(reference[None], len(substitutions) + 1, axis=0)
    for row, (offset, base) in enumerate(substitutions, start=1):
        windows[row, offset] = 0.0
        if base in ("A", "C", "G", "T"):
            windows[row, offset, "ACGT".index(base)] = 1.0
    backbone.ism_method = "naive"
    full = np.concatenate([backbone.predict(windows[i : i + 8]) for i in range(0, len(windows), 8)])
    backbone.ism_method = "fast"
    for reduce in reducers:
        expected = np.asarray(reduce(full))
        fast = backbone.ism(reference, substitutions, reduce, batch_size=batch_size)
        tolerance = 1e-4 * np.abs(expected).max()
        np.testing.assert_allclose(fast.reference, expected[0], rtol=0, atol=tolerance)
        np.testing.assert_allclose(fast.alternates, expected[1:], rtol=0, atol=tolerance)
        # the variants do move the predictions, and the errors are far below their effects
        true_delta = expected[1:] - expected[0]
        effect = np.abs(true_delta).max()
        assert effect > 1e-4 * np.abs(expected).max()
        assert np.abs(fast.delta - true_delta).max() < 1e-2 * effect


REDUCERS = {
    "all bins": _flat,
    "centre bin": ScalarOutput().reduce,
    "3 centre bins": ScalarOutput(center_bins=3).reduce,
}


@pytest.mark.parametrize(
    ("config", "depth", "seeds"),
    [
        ("tiny", 0, (1,)),
        ("tiny", 1, (1, 2)),
        ("tiny", 2, (1, 2)),
        ("tiny", 3, (1,)),
        ("coarse", 1, (1,)),
        ("coarse", 3, (2,)),
        ("mid", 2, (1,)),
    ],
)
def test_enformer_fast_ism_equals_full_forwards(config, depth, seeds) -> None:
    for seed in seeds:
        backbone = EnformerBackbone(**{**ENFORMER[config], "depth": depth, "seed": seed}).build()
        perturb_weights(backbone.model_, seed)
        reference, substitutions = _case(backbone.window_size, backbone.bin_size, seed)
        _assert_equal_to_naive(backbone, reference, substitutions, REDUCERS.values())


def test_enformer_pretrained_head_and_unknown_bases() -> None:
    backbone = EnformerBackbone(**tiny_params(2048, head="pretrained", depth=2, seed=3)).build()
    perturb_weights(backbone.model_, 3)
    reference, substitutions = _case(2048, 128, 3)
    substitutions += [(100, "N"), (1500, "N")]
    _assert_equal_to_naive(backbone, reference, substitutions, [ScalarOutput(center_bins=3, track=5).reduce, _flat])


def test_rows_whose_attention_sat_on_the_changed_tokens_are_recomputed(monkeypatch) -> None:
    """With the floor above 1 every row takes the direct recomputation instead of the update."""
    monkeypatch.setattr(fast_ism, "_RETAINED_FLOOR", 2.0)
    backbone = EnformerBackbone(**{**ENFORMER["mid"], "seed": 4}).build()
    perturb_weights(backbone.model_, 4)
    reference, substitutions = _case(8192, 128, 4)
    _assert_equal_to_naive(backbone, reference, substitutions, [_flat])


def test_centre_outputs_compute_only_the_centre_rows(monkeypatch) -> None:
    backbone = EnformerBackbone(**{**ENFORMER["tiny"], "seed": 5}).build()
    perturb_weights(backbone.model_, 5)
    shapes: list[tuple[int, ...]] = []
    original = backbone._output_head

    def recording(embeddings):  # type: ignore[no-untyped-def]
        shapes.append(tuple(embeddings.shape))
        return original(embeddings)

    monkeypatch.setattr(backbone, "_output_head", recording)
    reference, substitutions = _case(2048, 128, 5)
    backbone.ism(reference, substitutions[:4], ScalarOutput(center_bins=3).reduce, batch_size=4)
    # the reference once on all 16 bins, then the 4 alternates on the 3 centre bins only
    assert shapes == [(1, 16, 48), (4, 3, 48)]


def test_cached_transformer_matches_the_module() -> None:
    """Reference pass, rows of a layer and the updated first layer against enformer-pytorch's own
    transformer modules."""
    backbone = EnformerBackbone(**{**tiny_params(2048, depth=3), "seed": 6}).build()
    perturb_weights(backbone.model_, 6)
    trunk = backbone._trunk_module().eval()
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(1, 16, 48, generator=gen)
    with torch.inference_mode():
        cached = CachedTransformer(trunk.transformer, 16, enformer_positions)
        out, cache = cached.reference(x)
        torch.testing.assert_close(out, trunk.transformer(x), rtol=0, atol=1e-5)
        # two alternates changing tokens 3..5 and 13..15 (at the edge)
        alt = x.expand(2, -1, -1).clone()
        alt[0, 3:6] += torch.randn(3, 48, generator=gen)
        alt[1, 13:16] += torch.randn(3, 48, generator=gen)
        expected = trunk.transformer(alt)
        full = cached.alternates(cache, alt, torch.tensor([3, 13]), 3, None)
        torch.testing.assert_close(full, expected, rtol=0, atol=1e-5)
        centre = cached.alternates(cache, alt, torch.tensor([3, 13]), 3, slice(7, 9))
        torch.testing.assert_close(centre, expected[:, 7:9], rtol=0, atol=1e-5)


def test_bins_read_and_undeclared_reads() -> None:
    assert bins_read(ScalarOutput(center_bins=3).reduce, 16) == slice(7, 10)
    assert bins_read(ScalarOutput(stat="SUM").reduce, 16) is None
    assert bins_read(_flat, 16) is None

    def liar(prediction: np.ndarray) -> np.ndarray:
        return prediction.sum(axis=(1, 2))[:, None]

    liar.reads_bins = lambda n: slice(n // 2, n // 2 + 1)  # type: ignore[attr-defined]
    assert bins_read(liar, 16) == slice(8, 9)
    with pytest.raises(InputError, match="outside the ones it declared"):
        reduce_rows(liar, np.ones((2, 1, 1), np.float32), slice(8, 9), 16)


# -- Borzoi ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def borzoi():  # type: ignore[no-untyped-def]
    optional_import("borzoi_pytorch", "pip install -e .[borzoi]")
    from varscore_plugins import borzoi as module

    return module


@pytest.mark.parametrize("head", ["scalar", "track"])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_borzoi_fast_ism_equals_full_forwards(borzoi, depth, head) -> None:
    for seed in (1, 2):
        params = borzoi.tiny_params(2048, depth=depth, head=head, n_tracks=2 if head == "track" else 1, seed=seed)
        backbone = borzoi.BorzoiBackbone(**params).build()
        perturb_weights(backbone.model_, seed)
        reference, substitutions = _case(2048, 128, seed)
        _assert_equal_to_naive(
            backbone, reference, substitutions, [_flat, ScalarOutput().reduce, ScalarOutput(center_bins=4).reduce]
        )


def test_borzoi_longer_window_and_mixed_substitutions(borzoi) -> None:
    backbone = borzoi.BorzoiBackbone(**borzoi.tiny_params(4096, depth=2, seed=7)).build()
    perturb_weights(backbone.model_, 7)
    reference, substitutions = _case(4096, 128, 7)
    # an unknown base (fast path) and a two-base allele (full forward), in input order
    substitutions = [*substitutions[:3], (2000, "N"), (2100, "AC"), *substitutions[3:]]
    _assert_equal_to_naive(backbone, reference, substitutions, [_flat, ScalarOutput(center_bins=2).reduce])


def test_borzoi_centre_outputs_skip_the_full_upsampling(borzoi, monkeypatch) -> None:
    backbone = borzoi.BorzoiBackbone(**borzoi.tiny_params(2048, depth=2, seed=8)).build()
    perturb_weights(backbone.model_, 8)
    calls: list[int] = []
    original = fast_ism.borzoi_upsample

    def recording(model, transformed, towers):  # type: ignore[no-untyped-def]
        calls.append(transformed.shape[0])
        return original(model, transformed, towers)

    monkeypatch.setattr(fast_ism, "borzoi_upsample", recording)
    reference, substitutions = _case(2048, 128, 8)
    backbone.ism(reference, substitutions, ScalarOutput().reduce, batch_size=4)
    assert calls == [1]  # the reference only
    backbone.ism(reference, substitutions[:4], _flat, batch_size=4)
    assert calls == [1, 1, 4]


def test_borzoi_unknown_ism_method(borzoi) -> None:
    backbone = borzoi.BorzoiBackbone(**borzoi.tiny_params(2048)).build()
    backbone.ism_method = "fastest"
    with pytest.raises(InputError, match="Unknown ISM method 'fastest'"):
        backbone.ism(np.zeros((2048, 4), np.float32), [(1, "A")], _flat)


# -- FLOP model -----------------------------------------------------------------------------------


def _counted_per_variant(backbone, method: str, reduce) -> float:  # type: ignore[no-untyped-def]
    """FLOP per variant as torch's flop counter sees them: (3 variants - 1) / 2, all at the centre
    base (the FLOP model's variant; batches share their widest span)."""
    from torch.utils.flop_counter import FlopCounterMode

    backbone.ism_method = method
    reference = np.eye(4, dtype=np.float32)[np.random.default_rng(0).integers(0, 4, backbone.window_size)]
    middle = backbone.window_size // 2
    counts = []
    for subs in ([(middle, "A")], [(middle, "A"), (middle, "C"), (middle, "G")]):
        counter = FlopCounterMode(display=False)
        with counter:
            backbone.ism(reference, subs, reduce, batch_size=len(subs))
        counts.append(counter.get_total_flops())
    return (counts[1] - counts[0]) / 2


@pytest.mark.parametrize("depth", [1, 3])
def test_flop_model_matches_torch_flop_counter(borzoi, depth) -> None:
    from varscore_plugins.flops import borzoi_ism_flops, enformer_ism_flops

    for rows, reduce in ((1, ScalarOutput().reduce), (3, ScalarOutput(center_bins=3).reduce), (None, _flat)):
        params = tiny_params(4096, depth=depth)
        enformer = EnformerBackbone(**params).build()
        model = enformer_ism_flops(params, rows=rows)
        for method in ("naive", "patch", "fast"):
            assert _counted_per_variant(enformer, method, reduce) == getattr(model, method)
        params = borzoi.tiny_params(4096, depth=depth)
        model = borzoi_ism_flops(params, rows=rows)
        backbone = borzoi.BorzoiBackbone(**params).build()
        for method in ("naive", "fast"):
            assert _counted_per_variant(backbone, method, reduce) == getattr(model, method)
    published = enformer_ism_flops({"window_size": 49_152})
    assert 780e9 < published.naive < 790e9 and 4.6 < published.patch_bound < 4.8  # the figures measured before
