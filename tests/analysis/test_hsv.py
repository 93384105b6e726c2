"""HSVs, matched controls, causal enrichment and sign agreement."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import fisher_exact

from tests.conftest import DemoIsm
from varscore.analysis.hsv import (
    causal_enrichment,
    high_scoring_variants,
    matched_controls,
    sign_agreement,
    top_k_by_magnitude,
)
from varscore.errors import InputError
from varscore.examples import examples_dir

EXAMPLES = examples_dir()
VCF = EXAMPLES / "data" / "cohort.vcf.gz"


def test_top_k_by_magnitude_is_by_absolute_value():
    assert top_k_by_magnitude(np.array([0.1, -0.9, 0.5, 0.9]), 3).tolist() == [1, 3, 2]
    assert top_k_by_magnitude(np.array([0.1]), 5).tolist() == [0]


def test_high_scoring_variants_take_k_per_gene():
    ism = pd.DataFrame(
        {"gene": ["A"] * 4 + ["B"] * 3, "key": list("abcdefg"), "delta": [0.1, -2, 0.3, 0.0, 5, -6, 0.2]}
    )
    picked = high_scoring_variants(ism, {"A": 2, "B": 1})
    assert picked["key"].tolist() == ["b", "c", "f"]
    assert picked["hsv_rank"].tolist() == [1, 2, 1]
    assert high_scoring_variants(ism, {"A": 1})["gene"].unique().tolist() == ["A"]


def test_sign_agreement_against_a_hand_count():
    model = [0.5, -0.2, 0.3, 0.01, -0.4, 0.2, 0.6]
    linear = [0.1, -0.3, -0.2, 0.9, -0.06, 0.04, 0.2]
    # both |w| > 0.05: indices 0 (+,+), 1 (-,-), 2 (+,-), 4 (-,-), 6 (+,+); 3 and 5 dropped
    result = sign_agreement(model, linear, 0.05)
    assert (result.n, result.agree) == (5, 4)
    assert result.fraction == pytest.approx(0.8)
    assert result.p_value == pytest.approx(fisher_exact([[2, 1], [0, 2]])[1])


def test_matched_controls_follow_distance_and_maf_windows():
    pool = pd.DataFrame(
        {
            "gene": ["A"] * 6 + ["B"],
            "key": ["s", "c1", "c2", "far", "rare", "s2", "other_gene"],
            "distance_to_tss": [100, 2600, -2300, 2700, 150, 120, 100],
            "maf": [0.20, 0.204, 0.196, 0.20, 0.01, 0.20, 0.20],
        }
    )
    selected = pool[pool["key"].isin(["s", "s2"])]
    controls = matched_controls(selected, pool, maf_tolerance=0.005)
    # explicit check of the rule for each selected variant
    for _, sel in selected.iterrows():
        got = set(controls.loc[controls["matched_to"] == sel["key"], "key"])
        want = {
            r.key
            for r in pool.itertuples()
            if r.gene == sel["gene"]
            and r.key not in ("s", "s2")
            and abs(r.distance_to_tss - sel["distance_to_tss"]) <= 2500
            and abs(r.maf - sel["maf"]) <= 0.005
        }
        assert got == want
    assert set(controls["key"]) == {"c1", "c2"}
    assert len(matched_controls(selected, pool, maf_tolerance=0.2)) > len(controls)


def test_causal_enrichment_counts_unique_variants_and_uses_fisher():
    selected = pd.DataFrame({"gene": ["A", "A", "B"], "key": ["x", "y", "z"]})
    controls = pd.DataFrame({"gene": ["A", "A", "A", "B", "B"], "key": ["u", "u", "v", "w", "x"]})
    causal = {("A", "x"), ("B", "z"), ("A", "v"), ("B", "x")}
    result = causal_enrichment(selected, controls, causal)
    # controls: (A,u) once although listed twice, (A,v), (B,w), (B,x) — x is selected for A only
    assert (result.selected, result.selected_causal, result.controls, result.controls_causal) == (3, 2, 4, 2)
    assert result.p_value == pytest.approx(fisher_exact([[2, 1], [2, 2]], alternative="greater")[1])


@pytest.mark.slow
def test_demo_model_hsvs_are_enriched_for_causal_variants(demo_ism: DemoIsm):
    """HSVs of the demo Variformer (k from the elastic net) vs their matched controls on the
    bundled cohort (the ISM table of the session's ``demo_ism``, tests/conftest.py). Measured:
    6/61 HSVs causal, 0/82 matched controls (one-sided Fisher p = 0.005);
    10 of the 316 scored (gene, variant) pairs in the 16-kb windows are causal. Per gene the top
    variant is causal for MKKS (its promoter eQTL chr20:10415398 G>A, |ISM| 1.33, 77x the next);
    SNAP25's top variant, chr20:10199712 T>C, has exactly the dosages of SNAP25's causal
    chr20:10199381 C>T (perfect LD: no model can tell them apart), which ranks 3rd."""
    from varscore.analysis.hsv import HSV_MAF_TOLERANCE, k_from_linear, read_truth
    from varscore.models.bundle import load_bundle

    bundle, variants, ism = demo_ism.bundle, demo_ism.variants, demo_ism.ism
    linear = load_bundle(EXAMPLES / "models" / "elastic-net-demo").backbone()
    k = k_from_linear(linear)
    hsvs = high_scoring_variants(ism, {g.label: k[g.gene_id] for g in bundle.genes})
    controls = matched_controls(hsvs, ism, HSV_MAF_TOLERANCE)
    causal = read_truth(str(EXAMPLES / "data" / "truth_variants.tsv"))
    result = causal_enrichment(hsvs, controls, causal)
    assert result.selected_causal >= 3
    assert result.selected_rate > result.control_rate
    assert result.p_value < 0.05
    # the top-ranked variant of each gene: MKKS's is its causal promoter variant
    top1 = high_scoring_variants(ism, 1).set_index("gene")
    assert top1.loc["MKKS", "key"] == "chr20:10415398:G:A"
    assert ("MKKS", "chr20:10415398:G:A") in causal
    # SNAP25's top variant tags its causal variant: identical dosages in every person
    snap25 = hsvs[hsvs["gene"] == "SNAP25"]
    assert "chr20:10199381:C:T" in set(snap25["key"].iloc[:3])
    gene = next(v for v in variants.values() if v.gene.label == "SNAP25")
    columns = list(gene.table["key"])
    top, planted = (gene.dosage[:, columns.index(key)] for key in (snap25["key"].iloc[0], "chr20:10199381:C:T"))
    np.testing.assert_array_equal(top, planted)


def test_sign_agreement_threshold_follows_each_models_scale():
    model = [8, -7, 6, -5, 0.1, 0.2, 0.3, 0.4]  # ISM deltas: median |w| (0.4 + 5) / 2 = 2.7
    linear = [0.5, -0.4, -0.3, 0.2, -0.06, 0.07, -0.08, 0.09]  # coefficients: median (0.09 + 0.2) / 2 = 0.145
    result = sign_agreement(model, linear)  # kept: 0 (+,+), 1 (-,-), 2 (+,-), 3 (-,+)
    assert (result.n, result.agree) == (4, 2)
    assert (result.threshold, result.linear_threshold) == (pytest.approx(2.7), pytest.approx(0.145))
    assert (sign_agreement(model, linear, 0.05).n, sign_agreement(model, linear, 0.05).agree) == (8, 4)
    empty = sign_agreement(model, [0.0] * 8)
    assert empty.n == 0 and empty.agree == 0


@pytest.mark.parametrize(
    "text",
    ["", "gene_id\tchrom\tpos\tref\talt\n", "gene_id\tchrom\tpos\tref\talt\nG\tchr1\tx\tA\tC\n", "gene\tpos\nG\t3\n"],
)
def test_read_truth_rejects_broken_files(tmp_path, text):
    from varscore.analysis.hsv import read_truth
    from varscore.errors import InputError

    path = tmp_path / "truth.tsv"
    path.write_text(text)
    with pytest.raises(InputError, match="truth|lacks"):
        read_truth(str(path))


def test_hsv_checks_the_truth_file_before_writing(tmp_path):
    from click.testing import CliRunner

    from varscore.cli import cli

    truth = tmp_path / "truth.tsv"
    truth.write_text("gene\tpos\nG\t3\n")
    out = tmp_path / "hsv.tsv"
    result = CliRunner().invoke(
        cli, ["hsv", "-m", "variformer-demo", "--k", "1", "--truth", str(truth), "-o", str(out)]
    )
    assert result.exit_code == 1 and "lacks columns" in result.output and "Traceback" not in result.output
    assert not out.exists()


def _bcftools_maf(vcf) -> dict[str, float]:
    """Minor-allele frequency of each ``chrom:pos:ref:alt`` from bcftools' genotype calls, counted
    with numpy over every called allele of every sample (missing calls left out)."""
    import re
    import subprocess

    text = subprocess.run(
        ["bcftools", "query", "-f", "%CHROM:%POS:%REF:%ALT[\\t%GT]\\n", str(vcf)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    out = {}
    for line in text.splitlines():
        key, *calls = line.split("\t")
        alleles = np.array([a for call in calls for a in re.split(r"[/|]", call)])
        called = alleles[alleles != "."]
        af = float(np.mean(called == "1")) if called.size else 0.0
        out[key] = min(af, 1 - af)
    return out


@pytest.fixture(scope="module")
def unfiltered_hsvs(tmp_path_factory):
    """The demo Variformer's top 15 HSVs of SLX4IP (5 with MAF < 1%, 9 with MAF < 5%)."""
    from varscore.analysis.hsv import HsvJob, run_hsv
    from varscore.analysis.inputs import AnalysisInputs

    inputs = AnalysisInputs(str(EXAMPLES / "models" / "variformer-demo"), VCF, gene_names=("SLX4IP",))
    return inputs, run_hsv(HsvJob(inputs, tmp_path_factory.mktemp("hsv") / "all.tsv", k=15)).hsvs


@pytest.mark.parametrize("min_maf", [0.01, 0.05])
def test_the_maf_filter_removes_exactly_the_hsvs_below_the_threshold(unfiltered_hsvs, min_maf):
    """The HSVs kept are those whose MAF (computed here from the genotypes with bcftools and
    numpy) is at least the threshold; the rest are removed."""
    from varscore.analysis.hsv import filter_by_maf

    _, everything = unfiltered_hsvs
    maf = _bcftools_maf(VCF)
    kept = filter_by_maf(everything, min_maf)
    expected = [k for k in everything["key"] if maf[k] >= min_maf]
    assert list(kept["key"]) == expected and 0 < len(expected) < len(everything)
    assert list(kept["hsv_rank"]) == [
        r for k, r in zip(everything["key"], everything["hsv_rank"], strict=True) if maf[k] >= min_maf
    ]
    with pytest.raises(InputError, match="between 0 and 0.5"):
        filter_by_maf(everything, 0.7)


@pytest.mark.slow
def test_hsv_min_maf_writes_the_filtered_hsvs_and_their_controls(tmp_path, unfiltered_hsvs):
    """``hsv --min-maf 0.05``: the table written holds exactly the unfiltered HSVs with a
    bcftools MAF of at least 5%, and the controls are matched to those."""
    from varscore.analysis.hsv import HsvJob, run_hsv

    inputs, everything = unfiltered_hsvs
    maf = _bcftools_maf(VCF)
    result = run_hsv(HsvJob(inputs, tmp_path / "kept.tsv", k=15, min_maf=0.05))
    expected = [k for k in everything["key"] if maf[k] >= 0.05]
    assert list(result.hsvs["key"]) == expected and result.removed == len(everything) - len(expected)
    written = pd.read_csv(tmp_path / "kept.tsv", sep="\t")
    assert len(written) == len(expected) and (written["maf"] >= 0.05).all()
    assert "MAF < 0.05 removed" in result.notes()[0]
    assert set(result.controls["matched_to"]) <= set(expected)


def test_hsv_min_maf_option_reaches_the_job(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import varscore.analysis.hsv as hsv_module
    from varscore.cli import cli

    seen = []

    def fake_run_hsv(job):
        seen.append(job)
        raise SystemExit(0)

    monkeypatch.setattr(hsv_module, "run_hsv", fake_run_hsv)
    args = ["hsv", "-m", "variformer-demo", "--k", "3", "-o", str(tmp_path / "h.tsv")]
    assert CliRunner().invoke(cli, [*args, "--min-maf", "0.05"]).exit_code == 0
    assert seen[0].min_maf == 0.05
    bad = CliRunner().invoke(cli, [*args, "--min-maf", "0.7"])
    assert bad.exit_code == 2 and "--min-maf" in bad.output and "Traceback" not in bad.output
