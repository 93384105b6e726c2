"""The on-disk ISM cache (:mod:`varscore.scoring.effect_cache`): a hit runs no forward pass and gives
the same numbers exactly, missing substitutions alone are scored, a corrupt entry is recomputed,
and nothing but numpy arrays is read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.analysis.test_ism import PEOPLE, cohort  # noqa: F401  (the toy cohort fixture)
from varscore.plugin.contracts import ISMResult
from varscore.scoring.effect_cache import EffectCache


class CountingModel:
    """``ism`` of a fixed random linear 'model': outputs (2,) per sequence; counts the alleles scored."""

    def __init__(self) -> None:
        self.weights = np.random.default_rng(0).normal(size=(32, 4, 2))
        self.scored: list[int] = []

    def __call__(self, reference: np.ndarray, subs: list[tuple[int, str]]) -> ISMResult:
        self.scored.append(len(subs))
        outputs = []
        for offset, base in subs:
            edited = reference.copy()
            edited[offset] = np.eye(4)["ACGT".index(base)]
            outputs.append(np.einsum("lb,lbk->k", edited, self.weights))
        return ISMResult(np.einsum("lb,lbk->k", reference, self.weights), np.array(outputs).reshape(len(subs), 2))


@pytest.fixture
def window() -> np.ndarray:
    return np.eye(4, dtype=np.float32)[np.random.default_rng(1).integers(0, 4, size=32)]


def test_a_hit_computes_nothing_and_returns_the_same_numbers(tmp_path: Path, window: np.ndarray) -> None:
    model = CountingModel()
    cache = EffectCache(tmp_path, "model-a")
    subs = [(3, "A"), (3, "C"), (10, "G"), (31, "T")]
    direct = model(window, subs)
    first = cache.ism(model, window, subs, "reduce")
    assert model.scored == [4, 4]  # the direct call, then the cache's one call for all four
    again = cache.ism(model, window, list(reversed(subs)), "reduce")
    assert model.scored == [4, 4]  # a hit: no call
    np.testing.assert_array_equal(first[0], direct.reference)
    np.testing.assert_array_equal(first[1], direct.alternates)
    np.testing.assert_array_equal(again[1], direct.alternates[::-1])
    # only what the entry lacks is scored, then merged
    more = cache.ism(model, window, [(3, "A"), (20, "C")], "reduce")
    assert model.scored == [4, 4, 1]
    np.testing.assert_array_equal(more[1], model(window, [(3, "A"), (20, "C")]).alternates)
    assert (cache.counts.hits, cache.counts.scored, cache.counts.corrupt) == (5, 5, 0)
    # another model, reduction or window is another entry
    for other, reduction, sequence in [
        (EffectCache(tmp_path, "model-b"), "reduce", window),
        (cache, "features", window),
        (cache, "reduce", window[::-1].copy()),
    ]:
        before = len(model.scored)
        other.ism(model, sequence, subs[:1], reduction)
        assert len(model.scored) == before + 1
    assert len(list(tmp_path.glob("*/*.npz"))) == 4


@pytest.mark.parametrize("damage", ["truncate", "garbage", "other-key", "pickle"])
def test_a_corrupt_entry_is_recomputed(tmp_path: Path, window: np.ndarray, damage: str) -> None:
    model = CountingModel()
    cache = EffectCache(tmp_path, "model-a")
    subs = [(1, "A"), (2, "C")]
    good = cache.ism(model, window, subs, "reduce")
    path = cache.path(cache.key(window, "reduce"))
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:40])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file")
    elif damage == "other-key":  # a valid entry of another window moved under this name
        np.savez(
            path,
            key=np.array("0" * 64),
            reference=np.zeros(2),
            offsets=np.zeros(0, np.int64),
            bases=np.zeros(0, np.int8),
            alternates=np.zeros((0, 2)),
        )
    else:  # an object array would need unpickling: refused, never loaded
        with open(path, "wb") as handle:
            np.savez(handle, key=np.array([{"x": 1}], dtype=object))
    again = cache.ism(model, window, subs, "reduce")
    assert model.scored == [2, 2] and cache.counts.corrupt == 1
    np.testing.assert_array_equal(again[1], good[1])
    assert cache.ism(model, window, subs, "reduce")[1].tolist() == good[1].tolist()
    assert model.scored == [2, 2]  # the rewritten entry serves again


def _count_ism_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the toy backbone's ``ism`` calls (the forward passes a cache hit saves) in ``["n"]``."""
    from tests.toy_plugin import ToyBackbone

    calls = {"n": 0}
    original = ToyBackbone.ism

    def counted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ToyBackbone, "ism", counted)
    return calls


def test_ism_with_the_cache_equals_ism_without_and_a_second_run_runs_no_forward(
    cohort,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from varscore.analysis.inputs import AnalysisInputs
    from varscore.analysis.ism import IsmJob, run_ism

    calls = _count_ism_calls(monkeypatch)
    plain = run_ism(IsmJob(AnalysisInputs(str(cohort["bundle"]), cohort["vcf"]), tmp_path / "plain.tsv"))
    uncached_calls = calls["n"]
    cached_inputs = AnalysisInputs(str(cohort["bundle"]), cohort["vcf"], cache=tmp_path / "cache")
    first = run_ism(IsmJob(cached_inputs, tmp_path / "first.tsv"))
    assert calls["n"] == 2 * uncached_calls  # filled the cache: one ism call per gene, as without it
    calls["n"] = 0
    second = run_ism(IsmJob(cached_inputs, tmp_path / "second.tsv"))
    assert calls["n"] == 0  # every window and allele came from the cache
    pd.testing.assert_frame_equal(first.table, plain.table)
    pd.testing.assert_frame_equal(second.table, plain.table)
    assert (tmp_path / "second.tsv").read_bytes() == (tmp_path / "plain.tsv").read_bytes()
    assert len(plain.table) == 9 and len(PEOPLE) == 8  # 6 SNVs in 3 gene windows


def test_the_ism_command_fills_and_reads_the_cache(cohort, tmp_path: Path) -> None:  # noqa: F811
    from click.testing import CliRunner

    from varscore.cli import cli

    args = ["ism", "-m", str(cohort["bundle"]), "--vcf", str(cohort["vcf"]), "--cache", str(tmp_path / "c")]
    first = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "a.tsv")])
    assert first.exit_code == 0, first.output
    entries = sorted((tmp_path / "c").glob("*/*.npz"))
    assert len(entries) == 3  # one per gene window
    second = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "b.tsv")])
    assert second.exit_code == 0, second.output
    assert (tmp_path / "a.tsv").read_bytes() == (tmp_path / "b.tsv").read_bytes()
    assert sorted((tmp_path / "c").glob("*/*.npz")) == entries


def test_annotate_and_track_with_the_cache_equal_runs_without_and_a_hit_runs_no_forward(
    toy_world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import read_vcf_lines, write_vcf
    from varscore.scoring.gene_mode import ScoringJob, run_scoring

    seqs = toy_world["seqs"]
    records = [
        ("chr1", p, seqs["chr1"][p - 1], "ACGT"[("ACGT".index(seqs["chr1"][p - 1]) + 1) % 4]) for p in (190, 200, 255)
    ]
    vcf = write_vcf(tmp_path / "in.vcf", records)
    calls = _count_ism_calls(monkeypatch)

    def body(path: Path) -> list[str]:
        return [line for line in read_vcf_lines(path) if not line.startswith("##varscore_command")]

    bundle = str(toy_world["bundle"])
    run_scoring(ScoringJob(vcf, bundle, tmp_path / "plain.vcf", device="cpu"))
    cache = tmp_path / "cache"
    run_scoring(ScoringJob(vcf, bundle, tmp_path / "first.vcf", device="cpu", cache=cache))
    calls["n"] = 0
    run_scoring(ScoringJob(vcf, bundle, tmp_path / "second.vcf", device="cpu", cache=cache))
    assert calls["n"] == 0
    assert body(tmp_path / "second.vcf") == body(tmp_path / "first.vcf") == body(tmp_path / "plain.vcf")
    assert len(list(cache.glob("*/*.npz"))) == 2  # G1's and G2's windows


def _entry(cache: EffectCache, window: np.ndarray, **arrays: np.ndarray) -> None:
    """Overwrite the entry of ``window`` with a well-formed npz holding ``arrays`` (and its key)."""
    path = cache.path(cache.key(window, "reduce"))
    fields = {
        "reference": np.zeros(2),
        "offsets": np.array([1], np.int64),
        "bases": np.array([0], np.int8),
        "alternates": np.zeros((1, 2)),
    }
    with open(path, "wb") as handle:
        np.savez(handle, key=np.array(cache.key(window, "reduce")), **{**fields, **arrays})


@pytest.mark.parametrize(
    "arrays",
    [
        # read as numbers before: NaN/inf outputs, text arrays, substitutions outside the window
        {"reference": np.array([np.nan, 0.0])},
        {"alternates": np.array([[np.inf, 0.0]])},
        {"reference": np.array(["a", "b"]), "alternates": np.array([["x", "y"]])},
        {"offsets": np.array([-5, 1000], np.int64), "bases": np.array([0, 0], np.int8), "alternates": np.zeros((2, 2))},
        {"offsets": np.array([1, 1], np.int64), "bases": np.array([0, 0], np.int8), "alternates": np.ones((2, 2))},
    ],
)
def test_an_entry_of_the_wrong_kind_is_recomputed(tmp_path: Path, window: np.ndarray, arrays: dict) -> None:
    model = CountingModel()
    cache = EffectCache(tmp_path, "model-a")
    good = cache.ism(model, window, [(1, "A")], "reduce")
    _entry(cache, window, **arrays)
    again = cache.ism(model, window, [(1, "A")], "reduce")
    assert cache.counts.corrupt == 1 and model.scored == [1, 1]
    np.testing.assert_array_equal(again[0], good[0])
    np.testing.assert_array_equal(again[1], good[1])


def test_a_cache_folder_that_cannot_be_made_fails_before_scoring(tmp_path: Path) -> None:
    from varscore.errors import InputError

    (tmp_path / "a-file").write_text("x")
    with pytest.raises(InputError, match="--cache .*a-file/sub: cannot use it as a folder"):
        EffectCache.for_bundle(tmp_path / "a-file" / "sub", None)
    # '' is no folder (it was the working directory, filled with entries)
    with pytest.raises(InputError, match="--cache names no folder"):
        EffectCache.for_bundle("", None)


def test_an_entry_that_cannot_be_written_is_a_warning(
    tmp_path: Path, window: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    model = CountingModel()
    cache = EffectCache(tmp_path, "model-a")
    cache.path(cache.key(window, "reduce")).parent.write_text("in the way")  # its folder cannot be made
    result = cache.ism(model, window, [(1, "A")], "reduce")
    np.testing.assert_array_equal(result[1], model(window, [(1, "A")]).alternates)
    assert cache.counts.unwritten == 1 and "cannot write" in caplog.text


def test_substitutions_by_other_bases_are_computed_not_kept(tmp_path: Path, window: np.ndarray) -> None:
    model = CountingModel()
    model.weights = np.concatenate([model.weights, np.zeros((32, 1, 2))], axis=1)
    cache = EffectCache(tmp_path, "model-a")

    def with_n(reference: np.ndarray, subs: list[tuple[int, str]]) -> ISMResult:
        padded = np.concatenate([reference, np.zeros((len(reference), 1))], axis=1)
        result = []
        for offset, base in subs:
            edited = padded.copy()
            edited[offset] = np.eye(5)["ACGTN".index(base)]
            result.append(np.einsum("lb,lbk->k", edited, model.weights))
        return ISMResult(np.einsum("lb,lbk->k", padded, model.weights), np.array(result).reshape(len(subs), 2))

    reference, alternates = cache.ism(with_n, window, [(3, "N"), (4, "A")], "reduce")  # a ValueError before
    np.testing.assert_array_equal(alternates, with_n(window, [(3, "N"), (4, "A")]).alternates)
    assert not list(tmp_path.glob("*/*.npz"))


def test_one_weights_file_under_other_backbone_settings_is_another_model(tmp_path: Path) -> None:
    """Two bundles with the same weights checksum but other backbone settings (e.g. a head's pooling)
    compute other outputs: they shared entries before, so the second read the first's results."""
    from types import SimpleNamespace

    def bundle(params: dict, mode: str = "scalar") -> SimpleNamespace:
        manifest = {
            "backbone": {"name": "enformer", "params": params},
            "output_mode": {"name": mode, "params": {}},
            "provenance": {"weights_sha256": "a" * 64},
        }
        return SimpleNamespace(name="m", manifest=manifest)

    first = EffectCache.for_bundle(tmp_path, bundle({"pool": "attention"}))
    assert first.model == EffectCache.for_bundle(tmp_path, bundle({"pool": "attention"})).model
    assert first.model != EffectCache.for_bundle(tmp_path, bundle({"pool": "mean"})).model
    assert first.model != EffectCache.for_bundle(tmp_path, bundle({"pool": "attention"}, "track")).model
