"""A third-party genotype backbone (tests/genotype_plugin.py, not additive in dosage) goes through
finetune, evaluate and annotate on the contracts of varscore.plugin.contracts alone; its scores are checked
against a computation from bcftools' own reading of the VCF."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tests.conftest import BCFTOOLS, needs_bcftools
from varscore.cli import cli
from varscore.plugin.conformance import check_backbone
from varscore.simulate import SimulationConfig, simulate_cohort
from varscore.training.cohort import CohortInputs
from varscore.training.evaluate import EvaluateJob, run_evaluation
from varscore.training.finetune import FinetuneJob, run_finetune

WINDOW = 2048


@pytest.fixture
def carrier_plugin():
    from tests import genotype_plugin as module
    from varscore.plugin.manager import manager

    manager.register(module, name="carrier-plugin")
    yield module
    manager.unregister("carrier-plugin")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return simulate_cohort(
        SimulationConfig(people=240, genes=4, window=WINDOW, seed=5, h2_mean=0.4),
        tmp_path_factory.mktemp("carrier_sim"),
    )


def _inputs(cohort) -> CohortInputs:  # type: ignore[no-untyped-def]
    return CohortInputs(cohort.vcf, cohort.expression, cohort.genes_tsv, cohort.fasta)


def test_the_carrier_backbone_passes_the_genotype_contract(carrier_plugin) -> None:  # type: ignore[no-untyped-def]
    class Fitted(carrier_plugin.CarrierBackbone):
        def build(self):  # type: ignore[no-untyped-def]
            super().build()
            rng = np.random.default_rng(1)
            x = rng.integers(0, 3, size=(80, 6)).astype(np.float64)
            y = 0.9 * (x[:, 1] >= 1) - 0.4 * (x[:, 4] >= 1) + rng.normal(scale=0.3, size=80)
            self.fit_gene("G1", [f"chr1:{100 + i}:A:G" for i in range(6)], x, y)
            return self

    check_backbone(Fitted, {"window_size": WINDOW})


def _bcftools_dosages(vcf: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Samples and, per ``chrom:pos:ref:alt`` SNV, the GT-derived ALT dosage of each sample."""
    samples = subprocess.run(
        [str(BCFTOOLS), "query", "-l", str(vcf)], capture_output=True, text=True, check=True
    ).stdout.split()
    out = subprocess.run(
        [str(BCFTOOLS), "query", "-f", "%CHROM\t%POS\t%REF\t%ALT[\t%GT]\n", str(vcf)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    dosages: dict[str, np.ndarray] = {}
    for line in out.splitlines():
        chrom, pos, ref, alts, *gts = line.split("\t")
        alleles = [gt.replace("|", "/").split("/") for gt in gts]
        for index, alt in enumerate(alts.split(","), start=1):
            dosages[f"{chrom}:{pos}:{ref}:{alt}"] = np.array([sum(a == str(index) for a in p) for p in alleles], float)
    return samples, dosages


@needs_bcftools
def test_a_third_party_genotype_model_trains_evaluates_and_annotates(carrier_plugin, cohort, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from sklearn.metrics import r2_score

    from varscore.models.bundle import load_bundle

    bundle_dir = tmp_path / "carrier-model"
    fit = run_finetune(FinetuneJob(_inputs(cohort), bundle_dir, backbone="carrier", settings={"window": WINDOW}))
    assert fit.bundle == bundle_dir and fit.genes == 4
    bundle = load_bundle(bundle_dir)
    model = bundle.backbone()
    assert isinstance(model, carrier_plugin.CarrierBackbone) and len(model.gene_ids()) == 4

    # evaluate: R2 on the test people equals one computed from bcftools' dosages and the saved weights
    table_path = tmp_path / "eval.tsv"
    evaluation = run_evaluation(EvaluateJob(_inputs(cohort), [bundle_dir], output=table_path))
    assert evaluation.written[0] == table_path
    table = pd.read_csv(table_path, sep="\t")
    samples, dosages = _bcftools_dosages(cohort.vcf)
    expression = pd.read_csv(cohort.expression, sep="\t").set_index("gene_id")
    test_people = bundle.manifest["people"]["test"]
    rows = [samples.index(p) for p in test_people]
    labels = {g.gene_id: g.label for g in bundle.genes}
    checked = 0
    for gene_id in model.gene_ids():
        keys, weights, intercept = model.model_[gene_id]
        carriers = np.column_stack([dosages[k][rows] >= 1 for k in keys]) if keys else np.zeros((len(rows), 0))
        predicted = intercept + carriers.astype(float) @ weights
        observed = expression.loc[gene_id, test_people].to_numpy(dtype=float)
        got = table.loc[table["gene"] == labels[gene_id], "r2"].item()
        assert got == pytest.approx(r2_score(observed, predicted), abs=5e-5)  # the TSV keeps 4 decimals
        checked += 1
    assert checked == 4

    # annotate: ALT_PRED - REF_PRED is the carrier weight (not twice it); other records get no score
    out = tmp_path / "carrier.vcf.gz"
    result = CliRunner().invoke(cli, ["annotate", str(cohort.vcf), "-m", str(bundle_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    expected: dict[str, list[tuple[str, float, float]]] = {}
    for gene_id in model.gene_ids():
        keys, weights, intercept = model.model_[gene_id]
        for key, weight in zip(keys, weights, strict=True):
            expected.setdefault(key, []).append((labels[gene_id], intercept, intercept + weight))
    with gzip.open(out, "rt") as handle:
        lines = handle.read().splitlines()
    header = [line for line in lines if line.startswith("##INFO=<ID=VARSCORE,")]
    assert header and "with this ALT homozygous (dosage 2)" in header[0]
    body = [line.split("\t") for line in lines if not line.startswith("#")]
    assert len(body) == len(dosages)  # records in = out (every simulated record is one biallelic SNV)
    scored = 0
    for fields in body:
        key = f"{fields[0]}:{fields[1]}:{fields[3]}:{fields[4]}"
        info = dict(kv.split("=", 1) for kv in fields[7].split(";") if "=" in kv)
        if key not in expected:
            assert "VARSCORE" not in info
            continue
        scored += 1
        entries = sorted(
            (e.split("|")[1], float(e.split("|")[3]), float(e.split("|")[4])) for e in info["VARSCORE"].split(",")
        )
        want = sorted(expected[key])
        assert [e[0] for e in entries] == [w[0] for w in want]
        np.testing.assert_allclose([e[1:] for e in entries], [w[1:] for w in want], rtol=1e-5, atol=1e-6)
    assert scored == len(expected) > 0
