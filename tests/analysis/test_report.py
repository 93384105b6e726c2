"""``varscore report`` and ``varscore attribute`` on the bundled demo models and cohort."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from varscore.bundle import load_bundle
from varscore.cli import cli
from varscore.examples import examples_dir

EXAMPLES = examples_dir()
DATA = EXAMPLES / "data"
MOTIFS = Path(__file__).resolve().parents[1] / "data" / "motifs" / "hocomoco_v11_subset.pfm"
COHORT = ["--vcf", str(DATA / "cohort.vcf.gz"), "--expression", str(DATA / "cohort.expression.bed.gz"),
          "--genes", str(DATA / "genes.tsv")]
PRODUCED = ["fig1a_observed_vs_predicted", "fig1b_r2_between_models", "fig1c_pearson_between_models",
            "fig2a_weights_vs_distance", "fig2c_sign_agreement", "fig3a_chromhmm_enrichment", "fig3b_motif_changes",
            "fig3c_finemap_auroc", "fig3d_hsv_maf", "fig4e_drivers_ld", "fig4f_driver_distance",
            "fig4g_driver_motifs", "figS_causal_enrichment"]


def annotation_inputs(tmp_path):
    """A made-up segmentation tiling the cohort's slice with 3 states, and a CAVIAR-style table
    whose fine-mapped variants are the simulation's causal variants."""
    states = ["1_TssA", "7_Enh", "15_Quies"]
    bed = tmp_path / "segmentation.bed"
    bed.write_text("".join(f"chr20\t{s}\t{s + 1000}\t{states[i % 3]}\n"
                           for i, s in enumerate(range(9_995_000, 11_095_000, 1000))))
    truth = pd.read_csv(DATA / "truth_variants.tsv", sep="\t")
    caviar = tmp_path / "caviar.txt"
    pd.DataFrame({"TISSUE": "Whole_Blood", "GENE": truth["gene_id"], "eQTL": truth["variant_id"],
                  "CHROM": truth["chrom"], "POS": truth["pos"], "Probability": 1.0}).to_csv(caviar, sep="\t",
                                                                                           index=False)
    return bed, caviar


@pytest.mark.slow
def test_report_on_the_demo_models_writes_every_figure_and_an_html_page(tmp_path):
    out = tmp_path / "report"
    bed, caviar = annotation_inputs(tmp_path)
    result = CliRunner().invoke(cli, [
        "report", "-m", str(EXAMPLES / "models" / "variformer-demo"),
        "--compare", str(EXAMPLES / "models" / "elastic-net-demo"), *COHORT, "--truth", str(DATA / "truth_variants.tsv"),
        "--gene", "SNAP25", "--gene", "MKKS", "--chromhmm", str(bed), "--finemap", str(caviar),
        "--motifs", str(MOTIFS), "--no-progress", "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = (out / "index.html").read_text()
    for name in PRODUCED:
        for suffix in (".png", ".pdf"):
            assert (out / f"{name}{suffix}").stat().st_size > 1000
        assert f"src='{name}.png'" in page
    for link in re.findall(r"(?:src|href)='([^']+)'", page):
        assert (out / link).exists(), link
    # figures needing inputs that were not given are listed, not silently missing
    assert "not produced: needs --attribution" in page
    states = pd.read_csv(out / "chromhmm_enrichment.tsv", sep="\t")
    assert set(states["state"]) == {"1_TssA", "7_Enh", "15_Quies"}
    finemap = pd.read_csv(out / "finemap_overall.tsv", sep="\t").set_index("model")
    assert finemap.loc["variformer-demo", "positives"] >= 2  # SNAP25 and MKKS causal variants in 16-kb windows
    # the numbers behind the page
    metrics = pd.read_csv(out / "metrics.tsv", sep="\t").set_index(["model", "gene"])
    assert metrics.loc[("variformer-demo", "SNAP25"), "r2"] > 0.3  # the genes the demo model learned
    assert metrics.loc[("variformer-demo", "MKKS"), "r2"] > 0.15
    assert "Sign agreement" in page
    enrichment = pd.read_csv(out / "causal_enrichment.tsv", sep="\t")
    hsv = enrichment[(enrichment["model"] == "variformer-demo") & (enrichment["group"] == "HSVs")].iloc[0]
    assert hsv["k"] >= 2  # SNAP25's and MKKS's causal promoter variants are among their HSVs


@pytest.mark.slow
def test_attribute_on_the_demo_model(tmp_path):
    runner = CliRunner()
    model = str(EXAMPLES / "models" / "variformer-demo")
    hsv = tmp_path / "hsv.tsv"
    result = runner.invoke(cli, ["hsv", "-m", model, "--vcf", str(DATA / "cohort.vcf.gz"), "--gene", "SNAP25",
                                 "--k", "2", "-o", str(hsv), "--no-progress"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "attribution.tsv"
    people = tmp_path / "people.txt"  # 12 of the test people keep the test short
    people.write_text("\n".join(load_bundle(model).manifest["people"]["test"][:12]) + "\n")
    result = runner.invoke(cli, ["attribute", "-m", model, "--vcf", str(DATA / "cohort.vcf.gz"), "--gene", "SNAP25",
                                 "--people", str(people), "--variants", str(hsv), "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, sep="\t")
    assert len(table) == load_bundle(model).manifest["window_size"]
    for column in ("reference", "personal"):
        assert table[column].mean() == pytest.approx(0, abs=1e-6)
        assert table[column].std(ddof=0) == pytest.approx(1, abs=1e-6)
    selected = float(re.search(r"selected: \d+ variants, mean standardised attribution \(personal\) (\S+)",
                               result.output).group(1))
    assert selected > 1.0  # the HSVs sit on attribution peaks (measured: 31 vs -0.1 for 3 matched controls)
