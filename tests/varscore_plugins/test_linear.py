"""Linear eQTL baselines: contract, equality with a direct scikit-learn fit, recovery of simulated
heritability, bundles and the PredictDB round trip."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tests.conftest import LINEAR_WINDOW
from varscore.cli import cli
from varscore.plugin.conformance import check_backbone
from varscore.training.lightning import CohortInputs, load_cohort, per_gene_metrics
from varscore_plugins.linear import (
    ElasticNetBackbone,
    LassoBackbone,
    RidgeBackbone,
    cv_splits,
    fit_enet_cv,
    imputed_dosage,
    predictdb_id,
    read_predictdb,
)

WINDOW = 2048


def _matrix(seed: int = 0, n: int = 120, v: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.binomial(2, rng.uniform(0.05, 0.5, size=v), size=(n, v)).astype(np.float64)
    x[:, 3] = 1.0  # a constant column: VarianceThreshold drops it, its coefficient must be 0
    y = 0.8 * x[:, 0] - 0.5 * x[:, 5] + rng.normal(size=n)
    return x, y


class _FittedElasticNet(ElasticNetBackbone):
    """``build()`` fits one gene, so the conformance check has something to predict with."""

    def build(self) -> _FittedElasticNet:
        super().build()
        x, y = _matrix()
        self.fit_gene_matrix("G1", [f"c1:{i + 1}:A:G" for i in range(x.shape[1])], x, y)
        return self


def test_check_backbone() -> None:
    check_backbone(_FittedElasticNet, {"window_size": WINDOW, "n_alphas": 10})


@pytest.mark.parametrize("cls", [ElasticNetBackbone, LassoBackbone, RidgeBackbone])
def test_predictions_equal_direct_sklearn_fit(cls: type) -> None:
    from sklearn.feature_selection import VarianceThreshold
    from sklearn.linear_model import ElasticNetCV, LassoCV, RidgeCV
    from sklearn.pipeline import Pipeline

    x, y = _matrix(seed=1)
    splits = cv_splits(len(y), 5, seed=7)
    direct_model = {
        "elastic-net": ElasticNetCV(l1_ratio=0.5, alphas=20, max_iter=2000, cv=splits),
        "lasso": LassoCV(alphas=20, max_iter=2000, cv=splits),
        "ridge": RidgeCV(alphas=np.logspace(-2, 5, 20), cv=splits),
    }[cls.name]
    direct = Pipeline([("variance", VarianceThreshold()), ("model", direct_model)]).fit(x, y)
    model = cls(n_alphas=20).build()
    weights = model.fit_gene_matrix("G", [f"c1:{i + 1}:A:G" for i in range(x.shape[1])], x, y, splits)
    new = _matrix(seed=2)[0]
    np.testing.assert_allclose(model.predict(new)[:, 0], direct.predict(new), rtol=1e-5, atol=1e-6)
    assert weights.coef[3] == 0.0 and len(weights.coef) == x.shape[1]  # mapped back through VarianceThreshold


@pytest.mark.parametrize("threads", [1, 2])
def test_fast_elastic_net_cv_equals_sklearn_on_correlated_dosages(threads: int) -> None:
    """Blocks of correlated SNVs (LD), many more variants than causal ones: the Gram/warm-start
    solver picks the same penalty as ``ElasticNetCV`` and the same coefficients to its tolerance."""
    from sklearn.linear_model import ElasticNetCV

    rng = np.random.default_rng(3)
    n, v = 300, 150
    block = np.repeat(rng.normal(size=(n, v // 10)), 10, axis=1)
    x = ((0.8 * block + 0.6 * rng.normal(size=(n, v))) > 0.5).astype(np.float64)
    x += (0.8 * block + 0.6 * rng.normal(size=(n, v))) > 1.0
    y = x[:, 7] - 0.7 * x[:, 80] + rng.normal(size=n)
    splits = cv_splits(n, 5, seed=2)
    direct = ElasticNetCV(l1_ratio=0.5, alphas=30, max_iter=2000, cv=splits).fit(x, y)
    coef, intercept, alpha = fit_enet_cv(x, y, splits, 0.5, 30, 2000, threads=threads)
    assert alpha == pytest.approx(direct.alpha_, rel=1e-9)
    np.testing.assert_allclose(coef, direct.coef_, atol=2e-3)
    np.testing.assert_allclose(x @ coef + intercept, direct.predict(x), atol=5e-3)
    assert np.count_nonzero(coef) > 2  # a real path, not the all-zero end


def test_missing_genotypes_take_the_train_mean() -> None:
    from types import SimpleNamespace

    haplotypes = np.array([[1, 0], [1, 1], [-1, 0], [0, 0]], dtype=np.int8)[:, :, None]  # (P=4, 2, V=1)
    dosage, n_missing = imputed_dosage(SimpleNamespace(haplotypes=haplotypes), train=np.array([0, 1, 3]))
    assert n_missing == 1
    np.testing.assert_allclose(dosage[:, 0], [1.0, 2.0, 1.0, 0.0])  # train mean (1 + 2 + 0) / 3


@pytest.fixture(scope="module")
def cohort(linear_cohort):  # type: ignore[no-untyped-def]
    """The session's simulated cohort (tests/conftest.py)."""
    assert WINDOW == LINEAR_WINDOW
    return linear_cohort


@pytest.fixture(scope="module")
def fitted(cohort):  # type: ignore[no-untyped-def]
    loaded = load_cohort(CohortInputs(cohort.vcf, cohort.expression, cohort.genes_tsv, cohort.fasta), WINDOW)
    model = ElasticNetBackbone(window_size=WINDOW, n_alphas=20).build()
    result = model.finetune(loaded.data)
    return loaded.data, model, result


def test_held_out_r2_tracks_simulated_h2(cohort, fitted) -> None:  # type: ignore[no-untyped-def]
    data, model, result = fitted
    truth = pd.read_csv(cohort.truth_genes, sep="\t").set_index("gene_id")
    r2 = []
    for gene in data.genes:
        x, _ = imputed_dosage(gene.windows.genotypes, data.train)
        pred = model.predict(x[data.test], gene=gene.gene.gene_id)[:, 0]
        ((value, _),) = per_gene_metrics(np.zeros(len(data.test), dtype=np.int64), pred, gene.expression[data.test], 1)
        r2.append(value)
    h2 = truth.loc[[g.gene.gene_id for g in data.genes], "h2_realised"].to_numpy()
    # measured 0.79-0.98 over simulation seeds 1-6 (0.98 with seed 3); 30 test people are noisy
    assert np.corrcoef(r2, h2)[0, 1] > 0.6
    assert len(result.rows) == len(data.genes) and all("tune_r2" in row for row in result.rows)


def test_save_load_round_trip_without_pickle(fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data, model, _ = fitted
    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.safetensors"]
    assert b"\x80\x04\x95" not in (tmp_path / "weights.safetensors").read_bytes()[:16]  # no pickle protocol header
    restored = ElasticNetBackbone(**model.params).load(tmp_path)
    gene = data.genes[0]
    x, _ = imputed_dosage(gene.windows.genotypes, data.train)
    gid = gene.gene.gene_id
    np.testing.assert_array_equal(restored.predict(x, gene=gid), model.predict(x, gene=gid))
    assert restored.genes[gid].variant_keys == model.genes[gid].variant_keys


@pytest.fixture(scope="module")
def bundle_dir(linear_bundle: Path) -> Path:
    """The session's elastic-net bundle fine-tuned on ``cohort`` (tests/conftest.py); read only."""
    return linear_bundle


def test_finetune_writes_a_bundle(bundle_dir: Path, fitted) -> None:  # type: ignore[no-untyped-def]
    from varscore.models.bundle import load_bundle

    data, model, _ = fitted
    bundle = load_bundle(bundle_dir)
    manifest = bundle.manifest
    assert manifest["backbone"]["name"] == "elastic-net"
    assert manifest["train_genes"] == [g.gene.gene_id for g in data.genes]
    assert set(manifest["people"]) == {"train", "tune", "test"}
    folds = pd.read_csv(bundle_dir / "folds.tsv", sep="\t")
    assert set(manifest["people"]["test"]) == set(folds.query("replicate == 0 and split == 'test'")["person"])
    assert not [p for p in bundle_dir.rglob("*") if p.suffix in {".pkl", ".pickle", ".joblib"}]
    restored = bundle.backbone()  # same folds and seed as the in-process fit: same weights
    for gid, weights in model.genes.items():
        np.testing.assert_allclose(restored.genes[gid].coef, weights.coef, atol=1e-10)
    json.dumps(manifest["metrics"], allow_nan=False)  # strict JSON


def test_predictdb_export_import_round_trip(bundle_dir: Path, cohort, fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from varscore.models.bundle import load_bundle

    db = tmp_path / "en.db"
    runner = CliRunner()
    result = runner.invoke(cli, ["models", "export", str(bundle_dir), "--format", "predictdb", "-o", str(db)])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(db) as con:
        weights_cols = [r[1] for r in con.execute("PRAGMA table_info(weights)")]
        extra_cols = [r[1] for r in con.execute("PRAGMA table_info(extra)")]
        first = con.execute("SELECT rsid, ref_allele, eff_allele, varID FROM weights LIMIT 1").fetchone()
    assert weights_cols == ["gene", "rsid", "varID", "ref_allele", "eff_allele", "weight"]  # GTEx v8's
    assert first[3] == first[0]
    assert extra_cols == ["gene", "genename", "n.snps.in.model", "pred.perf.R2", "pred.perf.pval", "pred.perf.qval"]
    assert first[0].startswith("chr") and first[0].endswith(f"_{first[1]}_{first[2]}_b38")

    out = tmp_path / "imported"
    result = runner.invoke(
        cli,
        [
            "models",
            "import-predictdb",
            str(db),
            "-o",
            str(out),
            "--vcf",
            str(cohort.vcf),
            "--genes",
            str(cohort.genes_tsv),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "(100.0%) are in cohort.vcf.gz" in result.output
    original, imported = load_bundle(bundle_dir).backbone(), load_bundle(out).backbone()
    data = fitted[0]
    for gene in data.genes:
        x, _ = imputed_dosage(gene.windows.genotypes, data.train)
        from varscore_plugins.linear import variant_keys

        keys = variant_keys(gene.windows.genotypes)
        gid = gene.gene.gene_id
        expected = original.predict(x, gene=gid)[:, 0]
        got, absent = imported.genes[gid].predict_aligned(keys, x)
        assert absent == 0
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_predictdb_p_and_q_values_match_scipy(bundle_dir: Path, fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from scipy.stats import pearsonr

    from varscore_plugins.linear import variant_keys

    data, model, _ = fitted
    db = tmp_path / "pq.db"
    result = CliRunner().invoke(cli, ["models", "export", str(bundle_dir), "--format", "predictdb", "-o", str(db)])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(db) as con:
        extra = {r[0]: (r[1], r[2]) for r in con.execute('SELECT gene, "pred.perf.pval", "pred.perf.qval" FROM extra')}
    expected_p = {}
    for gene in data.genes:
        x, _ = imputed_dosage(gene.windows.genotypes, data.train)
        weights = model.genes[gene.gene.gene_id]
        pred, _ = weights.predict_aligned(variant_keys(gene.windows.genotypes), x[data.tune])
        observed = np.asarray(gene.expression)[data.tune]
        if weights.n_nonzero and np.ptp(pred) > 1e-9:
            expected_p[gene.gene.gene_id] = pearsonr(pred, observed).pvalue
    assert expected_p, "no gene with a non-constant prediction"
    for gid, p in expected_p.items():
        assert extra[gid][0] == pytest.approx(p, rel=1e-6)
    # Benjamini-Hochberg by hand over the genes with a p-value
    genes = sorted(expected_p, key=expected_p.get)  # type: ignore[arg-type]
    m = len(genes)
    for i, gid in enumerate(genes):
        q = min(min(1.0, expected_p[g] * m / (j + 1)) for j, g in enumerate(genes) if j >= i)
        assert extra[gid][1] == pytest.approx(q, rel=1e-6)


def test_predictdb_import_explains_a_build_mismatch(bundle_dir: Path, cohort, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "b37.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE weights (rsid TEXT, gene TEXT, weight DOUBLE, ref_allele TEXT, eff_allele TEXT)")
        con.execute(
            'CREATE TABLE extra (gene TEXT, genename TEXT, "n.snps.in.model" INTEGER, "pred.perf.R2" DOUBLE, '
            '"pred.perf.pval" DOUBLE, "pred.perf.qval" DOUBLE)'
        )
        contig = pd.read_csv(cohort.truth_genes, sep="\t")["chrom"].iloc[0]
        con.execute(
            "INSERT INTO weights VALUES (?, 'G1', 0.5, 'A', 'G')", (predictdb_id(f"{contig}:999999999:A:G", "b37"),)
        )
        con.execute("INSERT INTO weights VALUES ('rs123', 'G1', 0.5, 'A', 'G')")
        con.execute("INSERT INTO extra VALUES ('G1', 'G1', 2, 0.1, NULL, NULL)")
    imported = read_predictdb(db, vcf=cohort.vcf)
    text = "\n".join(imported.report)
    assert "0 of 1 model SNPs (0.0%)" in text
    assert "build b37" in text and "rsIDs" in text


def test_evaluate_scores_a_linear_bundle(bundle_dir: Path, cohort, fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from varscore.training.evaluate import EvaluateJob, run_evaluation

    data, model, _ = fitted
    out = tmp_path / "eval.tsv"
    inputs = CohortInputs(cohort.vcf, cohort.expression, cohort.genes_tsv, cohort.fasta)
    run_evaluation(EvaluateJob(inputs, models=[bundle_dir], output=out))
    table = pd.read_csv(out, sep="\t")
    assert set(table["set"]) == {"HOP"} and len(table) == len(data.genes)
    gene = data.genes[0]
    x, _ = imputed_dosage(gene.windows.genotypes, data.train)
    pred = model.predict(x[data.test], gene=gene.gene.gene_id)[:, 0]
    ((r2, _),) = per_gene_metrics(np.zeros(len(data.test), dtype=np.int64), pred, gene.expression[data.test], 1)
    assert table.loc[table["gene"] == gene.gene.label, "r2"].item() == pytest.approx(r2, abs=1e-3)


def test_annotate_with_a_linear_bundle_gives_twice_the_coefficient(bundle_dir: Path, cohort, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import gzip

    from varscore.models.bundle import load_bundle
    from varscore.scoring.gene_mode import ScoringJob, run_scoring

    bundle = load_bundle(bundle_dir)
    backbone = bundle.backbone()
    labels = {g.gene_id: g.label for g in bundle.genes}  # VARSCORE names genes by symbol
    expected: dict[str, list[tuple[str, float, float]]] = {}
    for gene_id, weights in backbone.genes.items():
        for key, coef in zip(weights.variant_keys, weights.coef, strict=True):
            expected.setdefault(key, []).append((labels[gene_id], weights.intercept, weights.intercept + 2 * coef))
    out = tmp_path / "linear.vcf.gz"
    summary = run_scoring(ScoringJob(cohort.vcf, bundle_dir, out))
    with gzip.open(out, "rt") as handle:
        lines = handle.read().splitlines()
    assert any("intercept + 2 x coefficient" in line for line in lines if line.startswith("##INFO"))
    body = [line.split("\t") for line in lines if not line.startswith("#")]
    n_scored = 0
    for fields in body:
        key = f"{fields[0]}:{fields[1]}:{fields[3]}:{fields[4]}"
        info = dict(kv.split("=", 1) for kv in fields[7].split(";") if "=" in kv)
        if key not in expected:
            assert "VARSCORE" not in info
            continue
        n_scored += 1
        entries = [e.split("|") for e in info["VARSCORE"].split(",")]
        got = sorted((gene, float(ref), float(alt)) for _, gene, _, ref, alt, _, _ in entries)
        want = sorted(expected[key])
        assert [g for g, _, _ in got] == [g for g, _, _ in want]
        np.testing.assert_allclose([r for _, r, _ in got], [r for _, r, _ in want], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose([a for _, _, a in got], [a for _, _, a in want], rtol=1e-5, atol=1e-6)
    assert n_scored == len(expected) and f"records scored: {n_scored}" in summary.lines()
    assert f"not scored (not_in_model): {len(body) - n_scored}" in summary.lines()


def test_sequence_only_options_are_named_unused_for_a_linear_bundle(bundle_dir: Path, cohort, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    """--rc/--shifts and --cache act on sequence windows: a genotype model's run says it does not use
    them, and its scores are those of the plain run."""
    from varscore.scoring.gene_mode import ScoringJob, run_scoring

    plain, options = tmp_path / "plain.vcf", tmp_path / "options.vcf"
    run_scoring(ScoringJob(cohort.vcf, bundle_dir, plain))
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    with caplog.at_level("WARNING", logger="varscore.scoring.gene_mode"):
        run_scoring(ScoringJob(cohort.vcf, bundle_dir, options, rc=True, cache=tmp_path / "cache"))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith("--rc/--shifts and --cache not used:"), warnings
    assert not (tmp_path / "cache").exists()
    body = [[line for line in path.read_text().splitlines() if not line.startswith("##")] for path in (plain, options)]
    assert body[0] == body[1]


def _bcftools_dosages(vcf: Path, region: str) -> tuple[list[tuple[int, str, str]], np.ndarray, np.ndarray]:
    """Per (record, SNV ALT) column: ``(pos, ref, alt)``, GT-derived ALT dosage ``(P, V)`` and a
    missing mask ``(P, V)`` (either allele '.'), from ``bcftools query`` output parsed here."""
    import subprocess

    from tests.conftest import BCFTOOLS

    out = subprocess.run(
        [str(BCFTOOLS), "query", "-r", region, "-f", "%POS\t%REF\t%ALT[\t%GT]\n", str(vcf)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    keys, dosage, missing = [], [], []
    for line in out.splitlines():
        pos, ref, alts, *gts = line.split("\t")
        alleles = [gt.replace("|", "/").split("/") for gt in gts]
        for index, alt in enumerate(alts.split(","), start=1):
            if len(ref) != 1 or len(alt) != 1:
                continue  # linear models use SNVs only
            keys.append((int(pos), ref, alt))
            dosage.append([sum(a == str(index) for a in person) for person in alleles])
            missing.append(["." in person for person in alleles])
    return keys, np.array(dosage, dtype=np.float64).T, np.array(missing, dtype=bool).T


def test_genotype_matrix_equals_bcftools_dosage_of_every_record(tmp_path: Path) -> None:
    """Split multi-allelic and duplicate records at one position (their ALT calls collide on a
    haplotype) and unsplit multi-allelic records: the linear models' genotype matrix counts each
    record's own ALT alleles, as ``bcftools query`` GTs do; personal sequences still apply the
    first record only, and the summary names the collisions."""
    from tests.conftest import BCFTOOLS, missing_tool
    from tests.genome.test_personal import write_vcf
    from varscore.genome.personal import personal_one_hot, read_window_genotypes
    from varscore.genome.sequence import one_hot
    from varscore.types import Window

    if BCFTOOLS is None:
        missing_tool("bcftools", "apt-get install bcftools")
    rng = np.random.default_rng(3)
    contig = "".join(rng.choice(list("ACGT"), size=60))
    ref = {p: contig[p - 1] for p in (5, 12, 20, 30, 40)}
    other = {p: [b for b in "ACGT" if b != ref[p]] for p in ref}
    samples = ["P1", "P2", "P3", "P4", "P5"]
    rows = [
        (5, ref[5], other[5][0], ["0/1", "1/1", "0|1", "0/0", "1/0"]),  # split multi-allelic, first part
        (5, ref[5], other[5][1], ["0/1", "0/0", "1|0", "1/1", "0/1"]),  # second part: collides unphased
        (12, ref[12], other[12][0], ["0/1", "1/1", "0/0", "./1", "0/1"]),  # duplicate records
        (12, ref[12], other[12][0], ["0/1", "0/1", "1/1", "0/0", "./."]),
        (20, ref[20], f"{other[20][0]},{other[20][1]}", ["1/2", "2/2", "0/1", "1|2", "0/2"]),  # unsplit
        (30, ref[30], other[30][2], ["0/0", "0/1", "1/1", "./.", "0/1"]),
        (40, ref[40], f"{ref[40]}A,{other[40][0]}", ["1/2", "0/2", "2/2", "0/1", "0/0"]),  # indel + SNV ALT
    ]
    vcf = write_vcf(tmp_path / "collide.vcf.gz", "chr20", len(contig), samples, rows)
    reference = one_hot(contig)
    genotypes = read_window_genotypes(vcf, Window("chr20", 0, len(contig)), reference)
    keys, expected, missing = _bcftools_dosages(vcf, "chr20:1-60")
    assert [(int(p), r, a) for p, r, a in zip(genotypes.positions, genotypes.refs, genotypes.alts, strict=True)] == keys
    assert genotypes.summary.overlapping_calls > 0 and genotypes.summary.overlap_examples
    train = np.arange(len(samples))
    dosage, n_missing = imputed_dosage(genotypes, train)
    assert n_missing == int(missing.sum()) > 0
    np.testing.assert_array_equal(dosage[~missing], expected[~missing])
    means = np.array([expected[~missing[:, j], j].mean() for j in range(expected.shape[1])])
    np.testing.assert_allclose(dosage[missing], np.broadcast_to(means, expected.shape)[missing])
    np.testing.assert_array_equal(genotypes.dosage(), expected)  # raw counts: a missing allele counts 0
    # personal sequences: the first record at position 5 wins on the haplotype both carry
    haplotypes = personal_one_hot(reference, genotypes, mode="haplotypes")
    assert "ACGT"[int(haplotypes[0, 1, 4].argmax())] == other[5][0]


def test_predictdb_covariance_equals_numpy_cov_of_bcftools_dosages(bundle_dir: Path, cohort, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The S-PrediXcan covariance file: per gene every pair of its weights' SNPs (diagonal
    included), the covariance of the train people's ALT dosages, equal to ``numpy.cov`` of the
    dosages ``bcftools query`` reads (missing calls: the train people's mean)."""
    import gzip

    from tests.conftest import BCFTOOLS, missing_tool
    from varscore.models.bundle import load_bundle

    if BCFTOOLS is None:
        missing_tool("bcftools", "apt-get install bcftools")
    db, cov = tmp_path / "en.db", tmp_path / "en.cov.txt.gz"
    args = ["models", "export", str(bundle_dir), "-o", str(db), "--covariance", str(cov), "--vcf", str(cohort.vcf)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = gzip.open(cov, "rt").read().splitlines()
    assert lines[0] == "GENE RSID1 RSID2 VALUE"
    rows = [line.split(" ") for line in lines[1:]]
    with sqlite3.connect(db) as con:
        weights = con.execute("SELECT gene, rsid FROM weights").fetchall()
    by_gene: dict[str, list[str]] = {}
    for gene, rsid in weights:
        by_gene.setdefault(gene, []).append(rsid)
    assert len(rows) == sum(len(ids) * (len(ids) + 1) // 2 for ids in by_gene.values()) > 0
    bundle = load_bundle(bundle_dir)
    train = bundle.manifest["people"]["train"]
    samples = subprocess.run([str(BCFTOOLS), "query", "-l", str(cohort.vcf)], capture_output=True, text=True)
    columns = [samples.stdout.split().index(p) for p in train]
    got = {(g, a, b): float(v) for g, a, b, v in rows}
    contigs = subprocess.run([str(BCFTOOLS), "index", "-s", str(cohort.vcf)], capture_output=True, text=True)
    names = {line.split("\t")[0] for line in contigs.stdout.splitlines()}
    for gene, ids in by_gene.items():
        bare = ids[0].split("_")[0].removeprefix("chr")
        chrom = bare if bare in names else f"chr{bare}"
        positions = [int(i.split("_")[1]) for i in ids]
        keys, dosage, missing = _bcftools_dosages(cohort.vcf, f"{chrom}:{min(positions)}-{max(positions)}")
        dosage, missing = dosage[columns], missing[columns]
        for j in range(dosage.shape[1]):
            dosage[missing[:, j], j] = dosage[~missing[:, j], j].mean()
        index = {predictdb_id(f"chr{bare}:{p}:{r}:{a}", "b38"): j for j, (p, r, a) in enumerate(keys)}
        matrix = np.cov(dosage[:, [index[i] for i in ids]], rowvar=False)
        for i, first in enumerate(ids):
            for j in range(i, len(ids)):
                assert got[(gene, first, ids[j])] == pytest.approx(matrix[i, j], rel=1e-12, abs=1e-15)


def test_predictdb_import_reads_the_varid_column(bundle_dir: Path, cohort, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """GTEx v8 elastic-net databases hold dbSNP IDs in ``rsid`` and the position in ``varID``:
    import places the variants by ``varID``."""
    from varscore.models.bundle import load_bundle

    db = tmp_path / "en.db"
    assert CliRunner().invoke(cli, ["models", "export", str(bundle_dir), "-o", str(db)]).exit_code == 0
    with sqlite3.connect(db) as con:
        con.execute("UPDATE weights SET rsid = 'rs' || rowid")
    imported = read_predictdb(db, vcf=cohort.vcf)
    assert not any("rsIDs" in line for line in imported.report)
    original = load_bundle(bundle_dir).backbone()
    for gene_id, weights in imported.backbone.genes.items():
        source = original.genes[gene_id]
        kept = {k: w for k, w in zip(source.variant_keys, source.coef, strict=True) if w != 0}
        assert dict(zip(weights.variant_keys, weights.coef, strict=True)) == pytest.approx(kept)


@pytest.mark.parametrize(("n", "folds", "message"), [(2, 5, "at least 5 train people; got 2"), (10, 1, "at least 2")])
def test_cross_validation_with_too_few_people_or_folds_is_one_line(n: int, folds: int, message: str) -> None:
    from varscore.errors import InputError

    with pytest.raises(InputError, match=message) as caught:  # a scikit-learn ValueError traceback before
        cv_splits(n, folds, 0)
    assert "\n" not in str(caught.value)
    assert len(cv_splits(5, 5, 0)) == 5


def test_finetune_a_linear_model_on_a_tiny_train_fraction_is_one_line(tmp_path: Path) -> None:
    from varscore.examples import data_dir

    data = data_dir()
    result = CliRunner().invoke(
        cli,
        [
            "finetune", str(data / "cohort.vcf.gz"), "--expression", str(data / "cohort.expression.bed.gz"),
            "--genes", str(data / "genes.tsv"), "--fasta", str(data / "ucsc.hg19.chr20.unittest.fasta.gz"),
            "-o", str(tmp_path / "model"), "-q", "--backbone", "elastic-net", "--train-fraction", "0.001",
            "--genes-only", "SNAP25",
        ],
    )  # fmt: skip
    assert result.exit_code == 1 and "needs at least 5 train people; got 2" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "model").exists()
    assert list(tmp_path.iterdir()) == []  # no model.training/folds.tsv left behind


def test_variants_of_the_model_missing_from_the_vcf_are_a_recorded_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Evaluating on another cohort (evaluate --all-people) whose VCF lacks the model's variants gave
    constant predictions without a word."""
    import varscore.plugin.contracts as contracts
    from varscore.examples import data_dir
    from varscore.models.bundle import load_bundle

    data = data_dir()
    bundle = load_bundle("elastic-net-demo")
    inputs = CohortInputs(
        data / "cohort.vcf.gz",
        data / "cohort.expression.bed.gz",
        data / "genes.tsv",
        data / "ucsc.hg19.chr20.unittest.fasta.gz",
        gene_names=["SNAP25"],
    )
    cohort = load_cohort(inputs, bundle.window_size).data
    backbone, gene = bundle.backbone(), cohort.genes[0]
    people = np.arange(20)
    varied = backbone.predict_people(gene, people, cohort.train)
    assert np.ptp(varied) > 0 and "not in the VCF" not in caplog.text
    original = contracts.variant_keys
    monkeypatch.setattr(contracts, "variant_keys", lambda g: [f"other:{k}" for k in original(g)])
    constant = backbone.predict_people(gene, people, cohort.train)
    assert np.ptp(constant) == 0
    used = len(backbone.used_variants("SNAP25"))
    assert f"SNAP25: {used} of the {used} variants the model uses are not in the VCF" in caplog.text
