"""The annotated VCF as other tools read it: vcftools' ``vcf-validator`` reports nothing, and the
``VARSCORE`` header states the unit of REF_PRED / ALT_PRED / DELTA."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import BCFTOOLS, missing_tool, needs_bcftools, read_vcf_lines
from varscore.examples import data_dir
from varscore.io.vcf import PREDICTION_UNITS, SCORE_HEADERS, header_models
from varscore.scoring.gene_mode import ScoringJob, run_scoring


def test_score_header_states_the_units():
    description = SCORE_HEADERS[0].description
    assert PREDICTION_UNITS in description and "units" in PREDICTION_UNITS
    assert description.endswith("Format: ALLELE|GENE|MODEL|REF_PRED|ALT_PRED|DELTA")


@needs_bcftools
@pytest.mark.parametrize("model", ["elastic-net-demo"])
def test_vcf_validator_reports_nothing_on_annotate_output(tmp_path, model):
    """The example's SNAP25 and MKKS windows (every kind of record the example has), annotated:
    ``vcf-validator`` (vcftools) prints no warning or error and exits 0."""
    validator = shutil.which("vcf-validator")
    if validator is None:
        missing_tool("vcf-validator", "apt-get install vcftools")
    subset = tmp_path / "subset.vcf.gz"
    region = "chr20:10190000-10210000,chr20:10380000-10400000"
    subprocess.run(
        [BCFTOOLS, "view", "-r", region, "-Oz", "-o", str(subset), str(data_dir() / "cohort.vcf.gz")], check=True
    )
    out = tmp_path / "out.vcf.gz"
    run_scoring(ScoringJob(subset, model, out))
    lines = read_vcf_lines(out)
    assert any(";VARSCORE=" in line or "\tVARSCORE=" in line for line in lines if not line.startswith("#"))
    assert any(line.startswith("##INFO=<ID=VARSCORE,") and "units" in line for line in lines)
    done = subprocess.run([validator, str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "" and done.stderr.strip() == "", done.stdout + done.stderr
    assert header_models(out)[model]["Build"] == "hg19"
