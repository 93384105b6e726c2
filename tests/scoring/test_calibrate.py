"""Calibration of gene-window scoring (``models calibrate --mode gene``) and its quantiles in
gene-mode ``annotate`` (``VARSCORE_Q``, the detail table's ``q``), checked against numpy on the
VCF text and the detail table of an independent annotate run; the gene-window and variant-centred
calibrations of one bundle kept side by side; old (version 1) calibration files still read."""

from __future__ import annotations

import gzip
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from varscore.cli import cli
from varscore.scoring.calibrate import (
    CALIBRATION_FILE,
    GENE_WINDOW_SCOPE,
    Calibration,
    GeneBackgroundCollector,
    GeneCalibration,
    gene_window_key,
    load_calibration,
    load_gene_calibration,
)
from varscore.scoring.engine import AlleleScore
from varscore.scoring.gene_mode import (
    GeneCalibrateJob,
    ScoringJob,
    quantile_header,
    run_gene_calibration,
    run_scoring,
)
from varscore.scoring.variant_mode import CalibrateJob, run_calibration

EXAMPLE = Path(__file__).resolve().parents[2] / "varscore" / "examples" / "data"
COHORT = EXAMPLE / "cohort.vcf.gz"


def _records(path: Path) -> list[list[str]]:
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as handle:
        return [line.rstrip("\n").split("\t") for line in handle if not line.startswith("#")]


def _header(path: Path) -> list[str]:
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as handle:
        return [line.rstrip("\n") for line in handle if line.startswith("##")]


def _info(fields: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in fields[7].split(";") if "=" in item)


def _abs_deltas_by_gene(vcf: Path) -> dict[str, np.ndarray]:
    """|DELTA| of every VARSCORE entry of an annotated VCF, per gene, parsed from the text."""
    by_gene: dict[str, list[float]] = {}
    for fields in _records(vcf):
        entries = _info(fields).get("VARSCORE")
        for entry in entries.split(",") if entries else ():
            parts = entry.split("|")
            by_gene.setdefault(parts[1], []).append(abs(float(parts[5])))
    return {gene: np.sort(np.asarray(values)) for gene, values in by_gene.items()}


def _same_calibration(a: Calibration | GeneCalibration | None, b: Calibration | GeneCalibration | None) -> None:
    assert a is not None and b is not None
    assert a.records == b.records and a.counts == b.counts
    assert a.exact.keys() == b.exact.keys() and a.grid.keys() == b.grid.keys()
    for key in a.exact:
        np.testing.assert_array_equal(a.exact[key], b.exact[key])


def _sites_vcf(path: Path, records: list[list[str]]) -> Path:
    """A sites-only VCF of the example's ``records`` (its contig lines kept)."""
    header = [line for line in _header(COHORT) if line.startswith(("##fileformat", "##contig"))]
    lines = [*header, "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    lines += ["\t".join([*fields[:7], "."]) for fields in records]
    path.write_text("\n".join(lines) + "\n")
    return path


# --- elastic-net-demo (a genotype model: scores the variants it holds), the example as background --


@pytest.fixture(scope="module")
def elastic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("elastic")
    result = run_gene_calibration(GeneCalibrateJob("elastic-net-demo", COHORT, tmp / "calibrated"))
    plain_vcf, plain_detail = tmp / "plain.vcf", tmp / "plain.parquet"
    run_scoring(ScoringJob(COHORT, "elastic-net-demo", plain_vcf, detail=plain_detail))
    q_vcf, q_detail = tmp / "q.vcf.gz", tmp / "q.parquet"
    run_scoring(ScoringJob(COHORT, tmp / "calibrated", q_vcf, detail=q_detail))
    return {
        "tmp": tmp,
        "result": result,
        "plain_vcf": plain_vcf,
        "plain": pd.read_parquet(plain_detail),
        "q_vcf": q_vcf,
        "q": pd.read_parquet(q_detail),
        "q_detail": q_detail,
    }


def test_stored_background_equals_the_deltas_of_annotate_on_the_background(elastic: dict[str, Any]) -> None:
    from varscore.models.bundle import load_bundle

    calibration = load_gene_calibration(load_bundle(elastic["tmp"] / "calibrated"))
    assert calibration is not None and not calibration.grid
    _same_calibration(calibration, elastic["result"].calibration)
    from_vcf = _abs_deltas_by_gene(elastic["plain_vcf"])  # 6 significant digits
    detail = elastic["plain"]
    assert set(calibration.exact) == {gene_window_key(g) for g in from_vcf} and len(from_vcf) == 5
    for gene, values in from_vcf.items():
        stored = calibration.exact[gene_window_key(gene)]
        full = np.sort(np.abs(detail.loc[detail.gene == gene, "delta"].to_numpy()))
        np.testing.assert_array_equal(stored, full)  # the same numbers at full precision
        np.testing.assert_allclose(stored, values, rtol=1e-5, atol=1e-12)
        assert calibration.counts[gene_window_key(gene)] == len(values)
    assert calibration.records == detail.record.nunique() == 802
    assert sum(calibration.counts.values()) == len(detail) and (detail.delta != 0).sum() > 50
    manifest = json.loads((elastic["tmp"] / "calibrated" / "varscore.json").read_text())
    assert manifest["calibration"][GENE_WINDOW_SCOPE] == {"records": 802, "genes": 5}
    assert "stats" not in manifest["calibration"]  # no variant-centred part
    assert json.loads((elastic["tmp"] / "calibrated" / CALIBRATION_FILE).read_text())["version"] == 2


def test_q_is_numpys_empirical_cdf_of_the_gene_background(elastic: dict[str, Any]) -> None:
    bg = elastic["plain"]
    pools = {gene: np.abs(rows.delta.to_numpy()) for gene, rows in bg.groupby("gene")}
    table = elastic["q"]
    # every row's q: the fraction of its gene's background |delta| strictly below its |delta|
    expected = [np.mean(pools[g] < abs(d)) for g, d in zip(table.gene, table.delta, strict=True)]
    np.testing.assert_allclose(table.q.to_numpy(), expected, rtol=0, atol=1e-15)
    assert table.q.nunique() > 20  # not only the zeros
    checked = 0
    for fields in _records(elastic["q_vcf"]):
        info = _info(fields)
        if "VARSCORE" not in info:
            assert "VARSCORE_Q" not in info
            continue
        record = table[table.chrom.eq(fields[0]) & table.pos.eq(int(fields[1])) & table.ref.eq(fields[3])]
        for alt, q in zip(fields[4].split(","), info["VARSCORE_Q"].split(","), strict=True):
            rows = record[record.alt == alt]
            if rows.empty:
                assert q == "."
                continue
            best = rows.iloc[int(np.argmax(np.abs(rows.delta.to_numpy())))]  # the first of ties
            assert float(q) == pytest.approx(np.mean(pools[best.gene] < abs(best.delta)), abs=5e-7)
            checked += 1
    assert checked == len(table.groupby(["record", "alt"]))


def test_calibration_leaves_varscore_entries_alone_and_describes_q(elastic: dict[str, Any]) -> None:
    import pyarrow.parquet as pq

    plain = {(f[0], f[1], f[4]): _info(f) for f in _records(elastic["plain_vcf"])}
    calibrated = {(f[0], f[1], f[4]): _info(f) for f in _records(elastic["q_vcf"])}
    assert plain.keys() == calibrated.keys()
    for key, info in calibrated.items():
        assert info.get("VARSCORE") == plain[key].get("VARSCORE")
        assert info.get("VARSCORE_MAX") == plain[key].get("VARSCORE_MAX")
        for entry in info.get("VARSCORE", "").split(",") if "VARSCORE" in info else ():
            assert len(entry.split("|")) == 7 and entry.split("|")[6].endswith("variant")
    description = quantile_header().description
    assert f'##INFO=<ID=VARSCORE_Q,Number=A,Type=Float,Description="{description}">' in _header(elastic["q_vcf"])
    assert "largest |DELTA|" in description and "smaller than" in description
    assert not [line for line in _header(elastic["plain_vcf"]) if "VARSCORE_Q" in line]
    schema = pq.read_schema(elastic["q_detail"])
    assert schema.names[-1] == "q" and "background |delta|" in schema.field("q").metadata[b"description"].decode()
    assert "q" not in elastic["plain"].columns


def test_genes_without_background_get_no_quantile(elastic: dict[str, Any]) -> None:
    tmp = elastic["tmp"]
    # the first 100 scored records lie in the first genes along the contig only
    result = run_gene_calibration(GeneCalibrateJob("elastic-net-demo", COHORT, tmp / "partial", max_records=100))
    assert result.calibration.records == 100
    bg = elastic["plain"]
    first = bg[bg.record.isin(sorted(bg.record.unique())[:100])]
    assert {k.split("|", 1)[1] for k in result.calibration.counts} == set(first.gene)
    out, detail = tmp / "partial.vcf", tmp / "partial.parquet"
    run_scoring(ScoringJob(COHORT, tmp / "partial", out, detail=detail))
    table = pd.read_parquet(detail)
    missing = table[~table.gene.isin(first.gene)]
    assert len(missing) > 100 and missing.q.isna().all() and table[table.gene.isin(first.gene)].q.notna().all()
    dots = 0
    for fields in _records(out):
        info = _info(fields)
        if "VARSCORE" in info and {e.split("|")[1] for e in info["VARSCORE"].split(",")} <= set(missing.gene):
            assert set(info["VARSCORE_Q"].split(",")) == {"."}
            dots += 1
    assert dots > 100


def test_a_background_thin_for_a_gene_is_warned_about(elastic: dict[str, Any], caplog: Any) -> None:
    bg = elastic["plain"]
    sizes = bg.groupby("gene").size()
    gene, n = sizes.sort_values(kind="stable").index[0], int(sizes.min())
    with caplog.at_level(logging.WARNING, logger="varscore.scoring.gene_mode"):
        run_gene_calibration(GeneCalibrateJob("elastic-net-demo", COHORT, elastic["tmp"] / "thin"))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert f"only {n} scores for gene-window|{gene} (802 records)" in warnings[0]
    assert f"steps of 1/{n} = {1 / n:.3g}" in warnings[0] and "(5 of 5 keys rest on fewer than 1,000" in warnings[0]


def test_large_gene_backgrounds_keep_a_quantile_grid() -> None:
    rng = np.random.default_rng(3)
    deltas = rng.normal(size=4000)
    collector = GeneBackgroundCollector()
    for i in range(0, len(deltas), 2):  # records with an allele in two genes
        collector.add([AlleleScore("A", "G1", 0.0, float(deltas[i])), AlleleScore("A", "G2", 1.0, 1.0 + deltas[i + 1])])
    exact, grid = collector.finish(), collector.finish(exact_limit=100, grid=501)
    assert exact.records == 2000 and exact.counts == {"gene-window|G1": 2000, "gene-window|G2": 2000}
    assert exact.exact and not exact.grid and grid.grid and not grid.exact
    for x in (-2.5, -0.3, 0.0, 0.7, 4.0):
        empirical = np.mean(np.abs(deltas[0::2]) < abs(x))
        assert exact.quantile("G1", x) == pytest.approx(empirical, abs=1e-12)
        assert grid.quantile("G1", x) == pytest.approx(empirical, abs=3e-3)
    assert exact.quantile("G3", 1.0) is None


# --- variformer-demo (a sequence model): both calibrations in one bundle -------------------------


@pytest.fixture(scope="module")
def variformer(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A background of 6 example records per gene window of variformer-demo, calibrated for
    gene-window scoring, and the same background annotated (detail table)."""
    from varscore.models.bundle import load_bundle
    from varscore.types import tss_window

    tmp = tmp_path_factory.mktemp("variformer")
    bundle = load_bundle("variformer-demo")
    windows = [tss_window(g, bundle.window_size) for g in bundle.genes]
    records, chosen = _records(COHORT), []
    for window in windows:
        inside = [f for f in records if f[0] == window.chrom and window.start < int(f[1]) <= window.end]
        chosen += [f for f in inside[:: max(1, len(inside) // 6)][:6] if f not in chosen]
    chosen.sort(key=lambda f: int(f[1]))
    background = _sites_vcf(tmp / "background.vcf", chosen)
    gene_only = run_gene_calibration(GeneCalibrateJob("variformer-demo", background, tmp / "gene", device="cpu"))
    detail = tmp / "bg.parquet"
    run_scoring(ScoringJob(background, "variformer-demo", tmp / "bg.vcf", device="cpu", detail=detail))
    return {"tmp": tmp, "background": background, "gene": gene_only, "detail": pd.read_parquet(detail)}


def test_sequence_model_background_equals_annotate_deltas(variformer: dict[str, Any]) -> None:
    calibration = variformer["gene"].calibration
    detail = variformer["detail"]
    assert len(detail) >= 20 and detail.delta.abs().min() > 0
    expected = {gene_window_key(g): np.sort(np.abs(rows.delta.to_numpy())) for g, rows in detail.groupby("gene")}
    assert calibration.exact.keys() == expected.keys()
    for key, values in expected.items():
        np.testing.assert_array_equal(calibration.exact[key], values)
    assert calibration.records == detail.record.nunique()


def test_a_bundle_keeps_both_calibrations(variformer: dict[str, Any]) -> None:
    from varscore.models.bundle import load_bundle

    tmp, background = variformer["tmp"], variformer["background"]
    variant_job = {"stats": "SUM", "device": "cpu", "max_records": 5}
    # variant-centred first, then gene-window on top
    run_calibration(CalibrateJob("variformer-demo", background, tmp / "v", **variant_job))
    run_gene_calibration(GeneCalibrateJob(tmp / "v", background, tmp / "v+g", device="cpu"))
    # gene-window first (the fixture's), then variant-centred on top
    run_calibration(CalibrateJob(tmp / "gene", background, tmp / "g+v", **variant_job))
    v, vg, g, gv = (load_bundle(tmp / name) for name in ("v", "v+g", "gene", "g+v"))
    assert load_gene_calibration(v) is None and load_calibration(g) is None
    _same_calibration(load_calibration(vg), load_calibration(v))
    _same_calibration(load_calibration(gv), load_calibration(v))
    _same_calibration(load_gene_calibration(gv), load_gene_calibration(g))
    _same_calibration(load_gene_calibration(vg), variformer["gene"].calibration)
    entry = json.loads((tmp / "v+g" / "varscore.json").read_text())["calibration"]
    assert entry["records"] == 5 and entry["stats"] == ["SUM"] and entry[GENE_WINDOW_SCOPE]["genes"] == 5
    # models info says which parts a bundle holds
    from varscore.models.bundle import summarise_bundle

    def said(bundle: Any) -> str:
        return next(line for line in summarise_bundle(bundle).splitlines() if line.startswith("calibration:"))

    gene_part = f"--mode gene on {g.manifest['calibration'][GENE_WINDOW_SCOPE]['records']} background records (5 genes)"
    variant_part = "--mode variant on 5 background records (SUM; "
    assert said(vg) == said(gv) and gene_part in said(vg) and variant_part in said(vg)
    assert variant_part in said(v) and "--mode gene" not in said(v)
    assert gene_part in said(g) and "--mode variant" not in said(g)
    assert said(load_bundle("variformer-demo")).startswith("calibration:  none")
    # a version 1 file (the variant-centred calibration at the top level) still reads, and keeps
    # its calibration when the gene-window one is added
    _version_1(tmp / "v", tmp / "old")
    old = load_bundle(tmp / "old")
    _same_calibration(load_calibration(old), load_calibration(v))
    from varscore.scoring.calibrate import write_calibration

    write_calibration(old, variformer["gene"].calibration, tmp / "old+g")
    _same_calibration(load_calibration(load_bundle(tmp / "old+g")), load_calibration(v))
    _same_calibration(load_gene_calibration(load_bundle(tmp / "old+g")), variformer["gene"].calibration)


def _version_1(source: Path, target: Path) -> None:
    """A copy of ``source`` whose calibration.json is written as version 1 was."""
    from varscore.io.integrity import file_checksums, sha256

    shutil.copytree(source, target)
    data = json.loads((target / CALIBRATION_FILE).read_text())
    assert data["version"] == 2 and "gene" not in data
    (target / CALIBRATION_FILE).write_text(json.dumps({"version": 1, **data["variant"]}) + "\n")
    manifest = json.loads((target / "varscore.json").read_text())
    manifest["calibration"]["sha256"] = sha256(target / CALIBRATION_FILE)
    manifest["files"] = file_checksums(target, exclude=("varscore.json",))
    (target / "varscore.json").write_text(json.dumps(manifest, indent=2) + "\n")


def test_augmented_runs_are_warned_that_the_background_is_not(variformer: dict[str, Any], caplog: Any) -> None:
    out = variformer["tmp"] / "rc.vcf"
    with caplog.at_level(logging.WARNING, logger="varscore.scoring.gene_mode"):
        run_scoring(ScoringJob(variformer["background"], variformer["tmp"] / "gene", out, device="cpu", rc=True))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "variformer-demo was calibrated without --rc/--shifts (models calibrate does not augment): VARSCORE_Q "
        "compares this run's augmented scores with unaugmented background scores"
    ]
    assert all("VARSCORE_Q=" in ";".join(f[7:8]) for f in _records(out) if "VARSCORE=" in f[7])


# --- the command: --mode, one-line refusals ------------------------------------------------------


def _invoke(argv: list[str]) -> Any:
    return CliRunner().invoke(cli, argv)


def _one_line_error(result: Any) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith("Error: ")
    return lines[0]


def test_a_background_outside_every_gene_is_refused_in_one_line(tmp_path: Path) -> None:
    far = _sites_vcf(tmp_path / "far.vcf", [["chr20", str(pos), ".", "A", "G", ".", "PASS"] for pos in (100, 200)])
    out = tmp_path / "calibrated"
    line = _one_line_error(_invoke(["models", "calibrate", "elastic-net-demo", str(far), "-o", str(out)]))
    assert "none of its 2 records lies in the model's" in line and "Nothing to calibrate on" in line
    assert "--fail-if-none" not in line and not out.exists()
    line = _one_line_error(_invoke(["models", "calibrate", "variformer-demo", str(far), "-o", str(out)]))
    assert "gene windows (SNAP25 chr20:" in line and "Nothing to calibrate on" in line and not out.exists()


def test_options_of_the_other_mode_are_refused_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "calibrated"
    line = _one_line_error(
        _invoke(["models", "calibrate", "elastic-net-demo", str(COHORT), "-o", str(out), "--gtf", "x"])
    )
    assert (
        line
        == "Error: --gtf applies to --mode variant only (calibrating --mode gene): pass --mode variant, or drop it."
    )
    args = ["models", "calibrate", "variformer-demo", str(COHORT), "-o", str(out), "--mode", "variant"]
    line = _one_line_error(_invoke([*args, "--genes", str(EXAMPLE / "genes.tsv")]))
    assert "--genes applies to --mode gene only" in line and not out.exists()


def test_mode_picks_the_job(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import varscore.scoring.gene_mode as gene_mode
    import varscore.scoring.variant_mode as variant_mode

    seen: list[Any] = []

    def fake(job: Any) -> Any:
        seen.append(job)
        raise SystemExit(0)

    monkeypatch.setattr(gene_mode, "run_gene_calibration", fake)
    monkeypatch.setattr(variant_mode, "run_calibration", fake)
    genes = str(EXAMPLE / "genes.tsv")
    out = str(tmp_path / "cal")
    _invoke(["models", "calibrate", "variformer-demo", str(COHORT), "-o", out, "--genes", genes, "--max-variants", "9"])
    _invoke(["models", "calibrate", "variformer-demo", str(COHORT), "-o", out, "--mode", "variant", "--stats", "D2"])
    assert isinstance(seen[0], GeneCalibrateJob) and str(seen[0].genes) == genes and seen[0].max_records == 9
    assert isinstance(seen[1], CalibrateJob) and seen[1].stats == "D2"
