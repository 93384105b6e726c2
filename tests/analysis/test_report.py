"""``varscore report`` and ``varscore attribute`` on the bundled demo models and cohort."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from varscore.cli import cli
from varscore.examples import examples_dir
from varscore.models.bundle import load_bundle

EXAMPLES = examples_dir()
DATA = EXAMPLES / "data"
MOTIFS = Path(__file__).resolve().parents[1] / "data" / "motifs" / "hocomoco_v11_subset.pfm"
COHORT = [
    "--vcf",
    str(DATA / "cohort.vcf.gz"),
    "--expression",
    str(DATA / "cohort.expression.bed.gz"),
    "--genes",
    str(DATA / "genes.tsv"),
]
PRODUCED = [
    "fig1a_observed_vs_predicted",
    "fig1b_r2_between_models",
    "fig1c_pearson_between_models",
    "fig2a_weights_vs_distance",
    "fig2c_sign_agreement",
    "fig3a_chromhmm_enrichment",
    "fig3b_motif_changes",
    "fig3c_finemap_auroc",
    "fig3d_hsv_maf",
    "fig4e_drivers_ld",
    "fig4f_driver_distance",
    "fig4g_driver_motifs",
    "figS_causal_enrichment",
]


def annotation_inputs(tmp_path):
    """A made-up segmentation tiling the cohort's slice with 3 states, and a CAVIAR-style table
    whose fine-mapped variants are the simulation's causal variants."""
    states = ["1_TssA", "7_Enh", "15_Quies"]
    bed = tmp_path / "segmentation.bed"
    bed.write_text(
        "".join(f"chr20\t{s}\t{s + 1000}\t{states[i % 3]}\n" for i, s in enumerate(range(9_995_000, 11_095_000, 1000)))
    )
    truth = pd.read_csv(DATA / "truth_variants.tsv", sep="\t")
    caviar = tmp_path / "caviar.txt"
    pd.DataFrame(
        {
            "TISSUE": "Whole_Blood",
            "GENE": truth["gene_id"],
            "eQTL": truth["variant_id"],
            "CHROM": truth["chrom"],
            "POS": truth["pos"],
            "Probability": 1.0,
        }
    ).to_csv(caviar, sep="\t", index=False)
    return bed, caviar


def check_figure_contents(out: Path) -> None:
    """What every figure of the report shows (from the renderer, via figures.json), not its file size."""
    import json

    from varscore.analysis.plots import NA_LD_X

    entries = {e["key"]: e for e in json.loads((out / "figures.json").read_text())}
    assert set(PRODUCED) <= {k for k, e in entries.items() if e["missing"] is None}
    page = (out / "index.html").read_text()
    predictions = pd.read_csv(out / "predictions.tsv", sep="\t")
    metrics = pd.read_csv(out / "metrics.tsv", sep="\t")
    ism = pd.read_csv(out / "ism.tsv", sep="\t")
    hsvs = pd.read_csv(out / "hsvs.tsv", sep="\t")
    summary = pd.read_csv(out / "drivers_summary.tsv", sep="\t")
    for key in PRODUCED:
        entry = entries[key]
        assert entry["facts"], key
        for ax in entry["facts"]:
            assert ax["label_overlaps"] == [], (key, ax["label_overlaps"])
            assert ax["tick_overlaps"] == [], (key, ax["tick_overlaps"])
            assert ax["texts_outside_figure"] == [], key
            assert ax["points_outside"] == 0, key
            assert ax["points_under_legend"] == 0, key
        # every caption states n and names its tables, and the page shows both
        assert "n" in entry["caption"].replace("No test", "") and entry["tables"], key
        assert entry["caption"].split(".")[0][:40] in page.replace("&#x27;", "'"), key
        for name in entry["tables"]:
            assert f"href='{name}.tsv'" in page, (key, name)
    genes = metrics["gene"].nunique()
    # 1a: one point per held-out person and model in each gene's panel
    assert [ax["points"] for ax in entries["fig1a_observed_vs_predicted"]["facts"]] == [
        len(predictions[predictions["gene"] == g]) for g in dict.fromkeys(predictions["gene"])
    ]
    # 1b/1c: one point per gene, square axes holding every point, every gene labelled
    for key in ("fig1b_r2_between_models", "fig1c_pearson_between_models"):
        (ax,) = entries[key]["facts"]
        assert ax["points"] == genes and ax["xlim"] == ax["ylim"]
        assert sorted(ax["texts"]) == sorted(metrics["gene"].unique())
    # 2a: every scored variant and every HSV drawn, x-axis spanning the widest window
    facts_2a = entries["fig2a_weights_vs_distance"]["facts"]
    assert [ax["points"] for ax in facts_2a] == [
        int((ism["gene"] == g).sum() + (hsvs["gene"] == g).sum()) for g in dict.fromkeys(ism["gene"])
    ]
    assert all(ax["xlim"][1] >= 49152 / 2000 for ax in facts_2a)
    assert "input window" in entries["fig2a_weights_vs_distance"]["caption"]
    # 2c: every pair drawn, a symlog ISM axis, and no Fisher p on 2 pairs
    (ax,) = entries["fig2c_sign_agreement"]["facts"]
    pairs = pd.read_csv(out / "sign_agreement_pairs.tsv", sep="\t")
    assert ax["points"] == len(pairs) and ax["yscale"] == "symlog"
    strong = ((pairs["linear_weight"].abs() > 0.05) & (pairs["model_weight"].abs() > 0.05)).sum()
    assert strong < 10 and "too few pairs" in ax["title"]
    # 4e: LD on 0..1 with genes lacking a pair in the n/a column; marker area follows the driver count
    (ax,) = entries["fig4e_drivers_ld"]["facts"]
    assert ax["points"] == len(summary)
    assert NA_LD_X - 0.1 <= ax["xlim"][0] < NA_LD_X and 1.0 <= ax["xlim"][1] <= 1.05
    xs = set(ax["x_values"])
    assert all(0 <= x <= 1 or x == NA_LD_X for x in xs)
    assert (NA_LD_X in xs) == bool(summary["mean_ld"].isna().any())
    assert len(ax["sizes"]) == summary["drivers"].clip(lower=1).nunique() > 1
    assert "no pair to correlate" in entries["fig4e_drivers_ld"]["caption"]
    # share axes end at 1 at most
    for key in ("fig3b_motif_changes", "fig4g_driver_motifs", "figS_causal_enrichment"):
        (ax,) = entries[key]["facts"]
        assert 0 == ax["ylim"][0] < ax["ylim"][1] <= 1.0, key
    assert "permutation" in entries["figS_causal_enrichment"]["caption"]


def _demo_report(out: Path, **options: Any) -> Any:
    """A report of the demo model on the bundled example, its truth and motifs, written to ``out``."""
    from varscore.analysis.report import ReportConfig

    return ReportConfig(
        model=str(EXAMPLES / "models" / "variformer-demo"),
        vcf=DATA / "cohort.vcf.gz",
        expression=DATA / "cohort.expression.bed.gz",
        genes=DATA / "genes.tsv",
        fasta=None,
        out_dir=out,
        truth=DATA / "truth_variants.tsv",
        motifs=str(MOTIFS),
        **options,
    )


@pytest.mark.slow
def test_report_on_the_demo_models_writes_every_figure_and_an_html_page(tmp_path):
    from varscore.analysis.report import build_report

    out = tmp_path / "report"
    bed, caviar = annotation_inputs(tmp_path)
    config = _demo_report(
        out,
        compare=[str(EXAMPLES / "models" / "elastic-net-demo")],
        gene_names=["SNAP25", "MKKS"],
        chromhmm=bed,
        finemap=caviar,
    )
    result = build_report(config)
    assert result.html == out / "index.html"
    made = sum(f.missing is None for f in result.figures)
    assert result.lines() == [f"wrote {result.html} ({made} figures)"]
    assert any(note.startswith("not produced: ") and "--attribution" in note for note in result.notes())
    page = (out / "index.html").read_text()
    for name in PRODUCED:
        for suffix in (".png", ".pdf"):
            assert (out / f"{name}{suffix}").is_file()
        assert f"src='{name}.png'" in page
    check_figure_contents(out)
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
    from varscore.analysis.attribution import AttributionJob, run_attribution
    from varscore.analysis.hsv import HsvJob, run_hsv
    from varscore.analysis.inputs import AnalysisInputs

    model = str(EXAMPLES / "models" / "variformer-demo")
    inputs = AnalysisInputs(model, DATA / "cohort.vcf.gz", gene_names=("SNAP25",))
    hsv = tmp_path / "hsv.tsv"
    run_hsv(HsvJob(inputs, hsv, k=2))
    out = tmp_path / "attribution.tsv"
    people = tmp_path / "people.txt"  # 12 of the test people keep the test short
    people.write_text("\n".join(load_bundle(model).manifest["people"]["test"][:12]) + "\n")
    result = run_attribution(AttributionJob(inputs, out, people_file=people, variants_file=hsv))
    table = pd.read_csv(out, sep="\t")
    assert len(table) == load_bundle(model).manifest["window_size"]
    for column in ("reference", "personal"):
        assert table[column].mean() == pytest.approx(0, abs=1e-6)
        assert table[column].std(ddof=0) == pytest.approx(1, abs=1e-6)
    output = "\n".join(result.lines())
    selected = float(
        re.search(r"selected: \d+ variants, mean standardised attribution \(personal\) (\S+)", output).group(1)
    )
    assert selected > 1.0  # the HSVs sit on attribution peaks (measured: 31 vs -0.1 for 3 matched controls)
    assert selected == pytest.approx(result.at_variants[0].mean, abs=5e-4)


def test_report_command_parses_into_a_config_and_prints_the_result(tmp_path, monkeypatch):
    import varscore.analysis.report as report_module
    from varscore.analysis.report import FigureEntry, ReportResult

    seen = []

    def fake_build_report(config):
        seen.append(config)
        figures = [FigureEntry("a", "Figure A", "n = 1"), FigureEntry("b", "Figure B", "", missing="needs --x")]
        figures[0].png = config.out_dir / "a.png"
        return ReportResult(config.out_dir, config.out_dir / "index.html", figures, {}, {})

    monkeypatch.setattr(report_module, "build_report", fake_build_report)
    out = tmp_path / "report"
    result = CliRunner().invoke(
        cli,
        ["report", "-m", "variformer-demo", *COHORT, "--gene", "SNAP25", "--k", "3", "--no-progress", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert (config.model, config.vcf, config.gene_names, config.k, config.out_dir) == (
        "variformer-demo",
        DATA / "cohort.vcf.gz",
        ["SNAP25"],
        3,
        out,
    )
    assert config.compare == [] and config.progress is False and config.device == "auto"
    assert f"wrote {out / 'index.html'} (1 figures)" in result.output
    assert "not produced: Figure B: needs --x" in result.output


@pytest.mark.slow
def test_report_hsv_min_maf_repeats_the_enrichments_without_rare_hsvs(tmp_path):
    """``report --hsv-min-maf 0.01,0.05``: per threshold, the HSVs left are exactly the report's
    HSVs whose MAF (bcftools genotypes, counted with numpy) is at least the threshold, and the
    motif and causal-variant enrichments are repeated on them (Fig. S8)."""
    from tests.analysis.test_hsv import _bcftools_maf
    from varscore.analysis.report import build_report

    out = tmp_path / "report"
    bed, _ = annotation_inputs(tmp_path)
    config = _demo_report(out, gene_names=["SLX4IP"], k=15, chromhmm=bed, hsv_min_maf=[0.01, 0.05])
    result = build_report(config)
    maf = _bcftools_maf(DATA / "cohort.vcf.gz")
    hsvs = pd.read_csv(out / "hsvs.tsv", sep="\t")
    kept = pd.read_csv(out / "hsvs_maf_filtered.tsv", sep="\t")
    for threshold in (0.01, 0.05):
        expected = [k for k in hsvs["key"] if maf[k] >= threshold]
        assert list(kept.loc[kept["min_maf"] == threshold, "key"]) == expected
        assert 0 < len(expected) < len(hsvs)  # SLX4IP's top 15: 5 below 1%, 9 below 5%
    rates = pd.read_csv(out / "hsv_enrichment_maf_filtered.tsv", sep="\t")
    for (threshold, analysis), part in rates.groupby(["min_maf", "analysis"]):
        selected = part[part["group"].str.startswith("HSVs")].iloc[0]
        assert selected["n"] == (kept["min_maf"] == threshold).sum(), analysis
    # chromatin states of the HSVs left: counted here from the segmentation's 1-kb tiles
    states = pd.read_csv(out / "chromhmm_enrichment_maf_filtered.tsv", sep="\t")
    tiles = ["1_TssA", "7_Enh", "15_Quies"]
    for threshold in (0.01, 0.05):
        left = kept[kept["min_maf"] == threshold]
        counted = pd.Series([tiles[((p - 1 - 9_995_000) // 1000) % 3] for p in left["pos"]]).value_counts()
        observed = states[states["min_maf"] == threshold].set_index("state")["observed"]
        assert {k: v for k, v in observed.items() if v} == counted.to_dict()
    made = {f.key for f in result.figures if f.missing is None}
    assert {"figS8_motif_changes_maf", "figS8_causal_maf", "figS8_chromhmm_maf0.01", "figS8_chromhmm_maf0.05"} <= made
    assert "hsvs_maf_filtered.tsv" in (out / "index.html").read_text()


def test_report_hsv_min_maf_option_parses_into_the_config(tmp_path, monkeypatch):
    import varscore.analysis.report as report_module
    from varscore.analysis.report import ReportResult

    seen = []

    def fake_build_report(config):
        seen.append(config)
        return ReportResult(config.out_dir, config.out_dir / "index.html", [], {}, {})

    monkeypatch.setattr(report_module, "build_report", fake_build_report)
    args = ["report", "-m", "variformer-demo", *COHORT, "--no-progress", "-o", str(tmp_path / "r")]
    assert CliRunner().invoke(cli, [*args, "--hsv-min-maf", "0.01,0.05"]).exit_code == 0
    assert seen[0].hsv_min_maf == [0.01, 0.05]
    bad = CliRunner().invoke(cli, [*args, "--hsv-min-maf", "0.01,0.7"])
    assert bad.exit_code == 2 and "(0, 0.5]" in bad.output and "Traceback" not in bad.output


def test_ism_tables_are_matched_to_the_models_their_provenance_names(tmp_path):
    import json

    from varscore.analysis.report import ism_tables_by_model
    from varscore.errors import InputError

    def table(name: str, model: str | None) -> Path:
        path = tmp_path / name
        path.write_text("chrom\tpos\n")
        if model is not None:
            record = {"varscore_model": {"ID": model, "SHA256": "ab" * 32}}
            Path(f"{path}.provenance.json").write_text(json.dumps(record))
        return path

    a, b = table("a.tsv", "variformer-demo"), table("b.tsv", "elastic-net-demo")
    assert ism_tables_by_model([a, b]) == {"variformer-demo": a, "elastic-net-demo": b}
    with pytest.raises(InputError, match="are both tables of model 'variformer-demo'"):
        ism_tables_by_model([a, table("c.tsv", "variformer-demo")])
    with pytest.raises(InputError, match="names no model"):
        ism_tables_by_model([table("d.tsv", None)])
