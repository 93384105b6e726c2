"""PredictDB export of the bundled elastic-net demo: p- and q-values in the ``extra`` table."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from varscore.cli import cli
from varscore.training.lightning import CohortInputs, load_cohort
from varscore_plugins.linear import imputed_dosage


def test_predictdb_export_of_the_demo_fills_p_and_q_values(tmp_path: Path) -> None:
    """The bundled elastic-net-demo recorded its tune correlations in the manifest only; the export
    still gives every gene a p-value (scipy's pearsonr on the tune people, predicted again here) and
    a Benjamini-Hochberg q-value (computed by hand)."""
    from scipy.stats import pearsonr

    from varscore.examples import data_dir, models_dir
    from varscore.models.bundle import load_bundle
    from varscore_plugins.linear import variant_keys

    bundle_path = models_dir() / "elastic-net-demo"
    db = tmp_path / "demo.db"
    result = CliRunner().invoke(cli, ["models", "export", str(bundle_path), "--format", "predictdb", "-o", str(db)])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(db) as con:
        extra = {r[0]: (r[1], r[2]) for r in con.execute('SELECT gene, "pred.perf.pval", "pred.perf.qval" FROM extra')}
    bundle = load_bundle(bundle_path)
    model = bundle.backbone()
    assert set(extra) == set(model.genes) and len(extra) == 5
    assert all(p is not None and q is not None for p, q in extra.values())
    data_path = data_dir()
    data = load_cohort(
        CohortInputs(
            data_path / "cohort.vcf.gz",
            data_path / "cohort.expression.bed.gz",
            data_path / "genes.tsv",
            data_path / "ucsc.hg19.chr20.unittest.fasta.gz",
            bundle_path / "folds.tsv",
        ),
        model.window_size,
    ).data
    tune = np.array([data.people.index(p) for p in bundle.manifest["people"]["tune"]])
    assert len(tune) >= 10
    expected_p = {}
    for gene in data.genes:
        x, _ = imputed_dosage(gene.windows.genotypes, data.train)
        pred, _ = model.genes[gene.gene.gene_id].predict_aligned(variant_keys(gene.windows.genotypes), x[tune])
        expected_p[gene.gene.gene_id] = pearsonr(pred, np.asarray(gene.expression)[tune]).pvalue
    for gid, p in expected_p.items():
        assert extra[gid][0] == pytest.approx(p, rel=1e-6), gid
    order = sorted(expected_p, key=expected_p.get)  # type: ignore[arg-type]
    m = len(order)
    for i, gid in enumerate(order):
        q = min(min(1.0, expected_p[g] * m / (j + 1)) for j, g in enumerate(order) if j >= i)
        assert extra[gid][1] == pytest.approx(q, rel=1e-6), gid
    assert extra["SNAP25"][0] < 1e-3  # the genes the demo learned are significant on the tune people
