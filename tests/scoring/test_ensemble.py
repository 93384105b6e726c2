"""Replicate ensembles (mean of members' scores, replicate SD) and test-time augmentation (--rc,
--shifts), checked against explicit construction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import random_sequence, write_fasta, write_vcf
from varscore.models.bundle import BundleMetadata, load_bundle, save_bundle
from varscore.models.ensemble import save_ensemble_bundle
from varscore.plugin.torch_backbone import save_weights
from varscore.scoring.ensemble import AugmentedBackbone
from varscore.types import Gene
from varscore_plugins.enformer import EnformerBackbone, tiny_params
from varscore_plugins.outputs import ScalarOutput, TrackOutput

WINDOW = 1024


def tiny(seed: int) -> EnformerBackbone:
    return EnformerBackbone(**tiny_params(WINDOW, head="pretrained", seed=seed)).build()


def _explicit_shift_rc(window: np.ndarray, shift: int, reverse: bool) -> np.ndarray:
    """Shift the content by ``shift`` bases (N moved in), then reverse-complement, built by hand."""
    length = window.shape[0]
    n = np.zeros((abs(shift), 4), dtype=np.float32)
    shifted = np.concatenate([n, window[: length - shift]]) if shift >= 0 else np.concatenate([window[-shift:], n])
    if not reverse:
        return shifted
    complement = {0: 3, 1: 2, 2: 1, 3: 0}  # A<->T, C<->G
    out = np.zeros_like(shifted)
    for i in range(length):
        row = shifted[length - 1 - i]
        for base, value in enumerate(row):
            out[i, complement[base]] = value
    return out


def _alternate(reference: np.ndarray, offset: int, base: str) -> np.ndarray:
    out = reference.copy()
    out[offset] = 0
    if base in "ACGT":
        out[offset, "ACGT".index(base)] = 1
    return out


@pytest.mark.parametrize(("rc", "shifts"), [(True, (0,)), (False, (-1, 0, 1)), (True, (-2, 0, 3))])
@pytest.mark.parametrize("mode", [ScalarOutput(track=2, center_bins=3), TrackOutput(track=5)])
def test_tta_equals_explicit_construction(rc: bool, shifts: tuple[int, ...], mode: object) -> None:
    backbone = tiny(1)
    rng = np.random.default_rng(0)
    reference = np.eye(4, dtype=np.float32)[rng.integers(0, 4, WINDOW)]
    subs = [(0, "G"), (500, "T"), (WINDOW - 1, "A"), (WINDOW - 2, "C"), (511, "N"), (1, "T")]
    windows = np.stack([reference] + [_alternate(reference, o, b) for o, b in subs])
    features = []
    predictions = []
    for shift in shifts:
        for reverse in (False, True) if rc else (False,):
            augmented = np.stack([_explicit_shift_rc(w, shift, reverse) for w in windows])
            prediction = backbone.predict(augmented)
            if reverse:
                prediction = prediction[:, ::-1]
            predictions.append(prediction)
            features.append(mode.features(prediction))  # type: ignore[attr-defined]
    expected = np.mean(features, axis=0)
    wrapped = AugmentedBackbone(backbone, rc=rc, shifts=shifts)
    result = wrapped.ism(reference, subs, mode.features, batch_size=4)  # type: ignore[attr-defined]
    np.testing.assert_allclose(result.reference, expected[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.alternates, expected[1:], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(wrapped.predict(windows), np.mean(predictions, axis=0), rtol=1e-5, atol=1e-6)
    assert len(wrapped.augmentations) == len(shifts) * (2 if rc else 1)
    assert wrapped.window_size == WINDOW and wrapped.n_tracks == backbone.n_tracks  # delegated


def test_rc_swaps_stranded_tracks_with_their_pairs() -> None:
    backbone = tiny(2)
    pairs = np.array([1, 0, 3, 2, 4, 5, 7, 6])
    rng = np.random.default_rng(3)
    windows = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (2, WINDOW))]
    flipped = np.stack([_explicit_shift_rc(w, 0, True) for w in windows])
    expected = (backbone.predict(windows) + backbone.predict(flipped)[:, ::-1][:, :, pairs]) / 2
    got = AugmentedBackbone(backbone, rc=True, track_pairs=pairs).predict(windows)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_shifts_must_fit_the_window() -> None:
    from varscore.errors import InputError

    with pytest.raises(InputError, match="smaller than"):
        AugmentedBackbone(tiny(1), shifts=(0, WINDOW))


# -- ensembles through annotate ----------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Three tiny Enformer bundles (seeds 1-3) and their ensemble bundle over one random contig, built
    once for the annotate tests of this module, which read them and write into their own ``tmp_path``."""
    tmp_path = tmp_path_factory.mktemp("ensemble_world")
    rng = np.random.default_rng(5)
    seqs = {"chr1": random_sequence(rng, 3000)}
    fasta = write_fasta(tmp_path / "ref.fa", seqs)
    genes = [Gene("G1", "chr1", 1200, "+", "GENEA"), Gene("G2", "chr1", 1700, "-", "GENEB")]
    records = []
    for pos in (700, 1100, 1201, 1650, 2100):
        ref = seqs["chr1"][pos - 1]
        records.append(("chr1", pos, ref, next(b for b in "ACGT" if b != ref)))
    vcf = write_vcf(tmp_path / "in.vcf", records)
    members = [tiny(seed) for seed in (1, 2, 3)]
    mode = ScalarOutput(track=2, center_bins=3)
    singles = [
        save_bundle(
            tmp_path / f"m{i}",
            name=f"m{i}",
            backbone=m,
            output_mode=mode,
            genes=genes,
            about=BundleMetadata(reference_fasta=fasta),
        )
        for i, m in enumerate(members)
    ]
    paths = []
    for i, member in enumerate(members[1:], start=1):
        paths.append(tmp_path / f"replicate{i}.safetensors")
        save_weights(member.model_, paths[-1], {"format": "pt"})
    ensemble = save_ensemble_bundle(
        tmp_path / "ens",
        members[0],
        paths,
        name="ens",
        output_mode=mode,
        genes=genes,
        about=BundleMetadata(reference_fasta=fasta),
    )
    return {"vcf": vcf, "singles": singles, "ensemble": ensemble}


def _scores(path: Path) -> tuple[dict[tuple[str, str], tuple[float, float, float]], dict[tuple[str, str], float]]:
    scores, sds = {}, {}
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        info = dict(item.split("=", 1) for item in fields[7].split(";") if "=" in item)
        if "VARSCORE" not in info:
            continue
        entries = info["VARSCORE"].split(",")
        spread = info.get("VARSCORE_SD", "").split(",")
        for j, entry in enumerate(entries):
            allele, gene, _, ref, alt, delta, _ = entry.split("|")
            key = (fields[1], gene)
            scores[key] = (float(ref), float(alt), float(delta))
            if info.get("VARSCORE_SD"):
                sds[key] = float(spread[j])
    return scores, sds


def _annotate(vcf: Path, model: Path, out: Path, **options: Any) -> None:
    from varscore.scoring.gene_mode import ScoringJob, run_scoring

    run_scoring(ScoringJob(vcf, model, out, device="cpu", **options))


def test_ensemble_scores_equal_the_mean_of_members(world: dict[str, object], tmp_path: Path) -> None:
    tmp = tmp_path
    manifest = load_bundle(world["ensemble"]).manifest  # type: ignore[arg-type]
    assert manifest["replicates"] == ["weights.safetensors", "weights.r1.safetensors", "weights.r2.safetensors"]
    _annotate(world["vcf"], world["ensemble"], tmp / "ens.vcf")  # type: ignore[arg-type]
    ensemble, sd = _scores(tmp / "ens.vcf")
    members = []
    for i, single in enumerate(world["singles"]):  # type: ignore[attr-defined]
        _annotate(world["vcf"], single, tmp / f"m{i}.vcf")  # type: ignore[arg-type]
        members.append(_scores(tmp / f"m{i}.vcf")[0])
    assert len(ensemble) >= 5 and all(set(m) == set(ensemble) for m in members)
    for key, (ref, alt, delta) in ensemble.items():
        refs, alts = np.array([m[key][0] for m in members]), np.array([m[key][1] for m in members])
        assert ref == pytest.approx(refs.mean(), rel=1e-5, abs=1e-6)
        assert alt == pytest.approx(alts.mean(), rel=1e-5, abs=1e-6)
        assert delta == pytest.approx((alts - refs).mean(), rel=1e-4, abs=1e-6)
        assert sd[key] == pytest.approx(np.std(alts - refs, ddof=1), rel=1e-3, abs=1e-6)
    header = (tmp / "ens.vcf").read_text()
    assert "##INFO=<ID=VARSCORE_SD" in header
    assert "VARSCORE_SD" not in (tmp / "m0.vcf").read_text()


def test_annotate_with_tta_matches_the_wrapped_backbone(world: dict[str, object], tmp_path: Path) -> None:
    """annotate --rc --shifts scores each allele as AugmentedBackbone predicts its windows."""
    from varscore.genome.fasta import Genome
    from varscore.types import tss_window

    tmp = tmp_path
    single = world["singles"][0]  # type: ignore[index]
    _annotate(world["vcf"], single, tmp / "tta.vcf", rc=True, shifts=(-1, 0, 1))
    _annotate(world["vcf"], single, tmp / "plain.vcf")
    tta, plain = _scores(tmp / "tta.vcf")[0], _scores(tmp / "plain.vcf")[0]
    assert set(tta) == set(plain) and any(abs(tta[k][2] - plain[k][2]) > 1e-7 for k in tta)
    bundle = load_bundle(single)
    wrapped = AugmentedBackbone(bundle.sequence_backbone("cpu"), rc=True, shifts=(-1, 0, 1))
    mode = bundle.output_mode()
    genome = Genome(bundle.reference_fasta)
    genes = {g.label: g for g in bundle.genes}
    for (pos, gene), (ref, alt, _) in tta.items():
        window = tss_window(genes[gene], WINDOW)
        seq = genome.window_sequence(window).one_hot
        offset = int(pos) - 1 - window.start
        alt_base = next(
            line.split("\t")[4]
            for line in world["vcf"].read_text().splitlines()  # type: ignore[attr-defined]
            if not line.startswith("#") and line.split("\t")[1] == pos
        )
        expected = mode.reduce(wrapped.predict(np.stack([seq, _alternate(seq, offset, alt_base)])))[:, 0]
        assert ref == pytest.approx(expected[0], rel=1e-4, abs=1e-5)
        assert alt == pytest.approx(expected[1], rel=1e-4, abs=1e-5)


@pytest.mark.slow
def test_finetune_replicates_saves_one_ensemble_bundle(tmp_path: Path) -> None:
    from varscore.simulate import SimulationConfig, simulate_cohort
    from varscore.training.cohort import CohortInputs
    from varscore.training.finetune import FinetuneJob, run_finetune

    cohort = simulate_cohort(SimulationConfig(people=60, genes=2, window=WINDOW, seed=4, h2=0.5), tmp_path / "cohort")
    params = tiny_params(window_size=WINDOW, output_heads={"human": 4})
    model = tmp_path / "ens"
    job = FinetuneJob(
        CohortInputs(cohort.vcf, cohort.expression, cohort.genes_tsv, cohort.fasta),
        model,
        backbone_params={k: v for k, v in params.items() if k != "window_size"},
        settings={
            "window": WINDOW,
            "lr": 1e-3,
            "batch_size": 4,
            "accumulate": 1,
            "people_per_epoch": 8,
            "max_epochs": 1,
        },
        training={"progress": False},
        replicates=2,
    )
    assert run_finetune(job).bundle == model
    manifest = load_bundle(model).manifest
    assert manifest["replicates"] == ["weights.safetensors", "weights.r1.safetensors"]
    assert [m["replicate"] for m in manifest["metrics"]["replicates"]] == [0, 1]
    tests = {r: set(p["test"]) for r, p in manifest["replicate_people"].items()}
    assert tests["0"] != tests["1"]  # different folds
    assert (tmp_path / "ens.training" / "replicate0").is_dir() and (tmp_path / "ens.training" / "replicate1").is_dir()
    from safetensors.numpy import load_file

    w0, w1 = load_file(str(model / "weights.safetensors")), load_file(str(model / "weights.r1.safetensors"))
    assert set(w0) == set(w1) and any(not np.array_equal(w0[k], w1[k]) for k in w0)
