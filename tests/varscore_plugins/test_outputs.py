"""Output modes: the scalar statistics (centre bins, SUM, logSUM, D1, D2) against explicit loops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from varscore.errors import InputError
from varscore.plugin.contracts import ISMResult
from varscore_plugins.outputs import ScalarOutput, TrackOutput, track_distance


def _predictions(seed: int = 0, n: int = 4, bins: int = 12, tracks: int = 3) -> np.ndarray:
    """``(n, bins, tracks)`` non-negative coverage-like values."""
    return np.random.default_rng(seed).gamma(2.0, 3.0, size=(n, bins, tracks)).astype(np.float32)


def _loop_stat(stat: str, ref: np.ndarray, alt: np.ndarray) -> float:
    """Baskerville's statistics for one track, written out bin by bin."""
    total = 0.0
    for r, a in zip(ref.tolist(), alt.tolist(), strict=True):
        if stat == "SUM":
            total += a - r
        elif stat == "logSUM":
            total += math.log2(a + 1) - math.log2(r + 1)
        elif stat == "D1":
            total += abs(a - r)
        elif stat == "D2":
            total += (a - r) ** 2
    return math.sqrt(total) if stat == "D2" else total


@pytest.mark.parametrize("stat", ["SUM", "logSUM", "D1", "D2"])
def test_scalar_stats_match_a_loop(stat):
    pred = _predictions()
    mode = ScalarOutput(track=1, stat=stat)
    raw = ISMResult(reference=mode.features(pred[:1])[0], alternates=mode.features(pred[1:]))
    result = mode.score(raw)
    expected = [_loop_stat(stat, pred[0, :, 1], pred[i, :, 1]) for i in range(1, len(pred))]
    assert result.delta.shape == (3, 1)
    np.testing.assert_allclose(result.delta[:, 0], expected, rtol=1e-5)
    if stat in ("D1", "D2"):
        assert np.all(result.delta >= 0) and np.all(result.reference == 0)


def test_sum_stats_reduce_each_sequence():
    pred = _predictions()
    np.testing.assert_allclose(
        ScalarOutput(track=2, stat="SUM").reduce(pred)[:, 0], pred[:, :, 2].sum(axis=1), rtol=1e-6
    )
    expected = [sum(math.log2(v + 1) for v in row) for row in pred[:, :, 0].tolist()]
    np.testing.assert_allclose(ScalarOutput(stat="logSUM").reduce(pred)[:, 0], expected, rtol=1e-5)


def test_center_stat_unchanged_and_default():
    pred = _predictions(bins=9)
    mode = ScalarOutput(track=0, center_bins=3)
    np.testing.assert_allclose(mode.reduce(pred)[:, 0], pred[:, 3:6, 0].sum(axis=1), rtol=1e-6)
    assert mode.params["stat"] == "center"
    assert mode.score(ISMResult(np.ones(1), np.zeros((2, 1)))).delta.tolist() == [[-1.0], [-1.0]]


def test_distance_has_no_single_sequence_value_and_bad_stat_is_rejected():
    with pytest.raises(InputError, match="compares an alternate"):
        ScalarOutput(stat="D2").reduce(_predictions())
    with pytest.raises(InputError, match="unknown stat 'D3'.*SUM"):
        ScalarOutput(stat="D3")


def test_track_distance_identity_and_symmetry():
    rng = np.random.default_rng(3)
    ref, alt = rng.normal(size=20), rng.normal(size=(5, 20))
    assert np.allclose(track_distance(ref, ref[None], 1), 0.0)
    for order, norm in ((1, 1), (2, 2)):
        np.testing.assert_allclose(track_distance(ref, alt, order), np.linalg.norm(alt - ref, ord=norm, axis=1))


def test_torch_tensors_reduce_like_numpy():
    import torch

    pred = _predictions()
    for stat in ("center", "SUM", "logSUM"):
        mode = ScalarOutput(stat=stat, center_bins=2)
        np.testing.assert_allclose(mode.reduce(torch.from_numpy(pred)).numpy(), mode.reduce(pred), rtol=1e-5)


def test_track_mode_keeps_every_bin():
    pred = _predictions()
    assert np.array_equal(TrackOutput(track=2).reduce(pred), pred[:, :, 2])
    with pytest.raises(InputError, match="out of range"):
        TrackOutput(track=3).reduce(pred)


@pytest.mark.parametrize("stat", ["SUM", "logSUM", "D1", "D2"])
def test_track_mode_variant_scores_use_the_stat(stat):
    pred = _predictions()
    mode = TrackOutput(track=0, stat=stat)
    result = mode.score(ISMResult(reference=mode.features(pred[:1])[0], alternates=mode.features(pred[1:])))
    expected = [_loop_stat(stat, pred[0, :, 0], pred[i, :, 0]) for i in range(1, len(pred))]
    np.testing.assert_allclose(result.delta[:, 0], expected, rtol=1e-5)
    with pytest.raises(InputError, match="unknown stat"):
        TrackOutput(stat="center")


def test_bundle_with_an_output_mode_its_backbone_lacks_is_refused(tmp_path):
    import json

    from varscore.errors import PluginError
    from varscore.models.bundle import MANIFEST, SCHEMA_VERSION, load_bundle

    manifest = {
        "schema_version": SCHEMA_VERSION,
        "name": "m",
        "backbone": {"name": "ridge", "params": {}},
        "output_mode": {"name": "track", "params": {}},
    }
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(PluginError, match="'ridge' does not support output mode 'track'; it supports: scalar"):
        load_bundle(tmp_path, trust_unverified=True).output_mode()  # a bare manifest: no weights to verify
    manifest["output_mode"] = {"name": "scalar", "params": {"stat": "logSUM"}}
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    assert load_bundle(tmp_path, trust_unverified=True).output_mode().stat == "logSUM"
