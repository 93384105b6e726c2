"""The annotated VCF as other tools read it: vcftools' ``vcf-validator`` reports nothing,
``bcftools +split-vep`` splits ``VARSCORE`` like VEP's CSQ, and the ``VARSCORE`` header states the
unit of REF_PRED / ALT_PRED / DELTA."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from tests.conftest import BCFTOOLS, missing_tool, needs_bcftools, read_vcf_lines, score_entries
from varscore.errors import InputError
from varscore.examples import data_dir
from varscore.io.vcf import (
    DECREASED,
    INCREASED,
    PREDICTION_UNITS,
    SCORE_HEADERS,
    UNCHANGED,
    UNDIRECTED,
    consequence,
    header_models,
    score_columns,
)
from varscore.scoring.gene_mode import ScoringJob, run_scoring


def test_score_header_states_the_units():
    description = SCORE_HEADERS[0].description
    assert PREDICTION_UNITS in description and "units" in PREDICTION_UNITS
    assert description.endswith("Format: ALLELE|GENE|MODEL|REF_PRED|ALT_PRED|DELTA|Consequence")


def test_consequence_names_the_direction_of_delta():
    assert [consequence(d) for d in (0.5, -1e-9, 0.0, -0.0)] == [INCREASED, DECREASED, UNCHANGED, UNCHANGED]
    assert consequence(2.0, signed=False) == UNDIRECTED and consequence(0.0, signed=False) == UNCHANGED
    assert consequence(float("nan")) == "."


def test_score_columns_read_old_and_new_headers():
    """Files written before ``Consequence`` was appended keep working: columns are found by name."""
    old = "Predicted effect. Format: ALLELE|GENE|MODEL|REF_PRED|ALT_PRED|DELTA"
    assert score_columns(old, "old.vcf", ("GENE", "DELTA")) == ({"GENE": 1, "DELTA": 5}, 6)
    assert score_columns(SCORE_HEADERS[0].description, "new.vcf", ("DELTA", "Consequence")) == (
        {"DELTA": 5, "Consequence": 6},
        7,
    )
    with pytest.raises(InputError, match="lacks DELTA"):
        score_columns("Format: ALLELE|GENE", "bad.vcf", ("GENE", "DELTA"))


MODEL = "elastic-net-demo"


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    """The example's SNAP25 and MKKS windows (every kind of record the example has), annotated."""
    if BCFTOOLS is None:
        missing_tool("bcftools", "apt-get install bcftools")
    folder = tmp_path_factory.mktemp("annotated")
    subset = folder / "subset.vcf.gz"
    region = "chr20:10190000-10210000,chr20:10380000-10400000"
    subprocess.run(
        [BCFTOOLS, "view", "-r", region, "-Oz", "-o", str(subset), str(data_dir() / "cohort.vcf.gz")], check=True
    )
    out = folder / "out.vcf.gz"
    run_scoring(ScoringJob(subset, MODEL, out))
    return out


@needs_bcftools
def test_vcf_validator_reports_nothing_on_annotate_output(annotated):
    """``vcf-validator`` (vcftools) prints no warning or error and exits 0."""
    validator = shutil.which("vcf-validator")
    if validator is None:
        missing_tool("vcf-validator", "apt-get install vcftools")
    out, model = annotated, MODEL
    lines = read_vcf_lines(out)
    assert any(";VARSCORE=" in line or "\tVARSCORE=" in line for line in lines if not line.startswith("#"))
    assert any(line.startswith("##INFO=<ID=VARSCORE,") and "units" in line for line in lines)
    done = subprocess.run([validator, str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "" and done.stderr.strip() == "", done.stdout + done.stderr
    assert header_models(out)[model]["Build"] == "hg19"


@needs_bcftools
def test_bcftools_split_vep_reads_the_score_field(annotated):
    """``bcftools +split-vep -a VARSCORE`` lists the subfields, and splits every entry into the rows
    our own reading of the INFO text gives; its numeric filter selects exactly the negative DELTAs,
    whose Consequence says so."""
    listed = subprocess.run(
        [BCFTOOLS, "+split-vep", "-a", "VARSCORE", "-l", str(annotated)], capture_output=True, text=True, check=True
    )
    names = [line.split("\t")[1] for line in listed.stdout.splitlines()]
    assert names == ["ALLELE", "GENE", "MODEL", "REF_PRED", "ALT_PRED", "DELTA", "Consequence"]
    split = subprocess.run(
        [BCFTOOLS, "+split-vep", "-a", "VARSCORE", "-d", "-f", "%POS\t%ALLELE\t%GENE\t%DELTA\t%Consequence\n"]
        + [str(annotated)],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [tuple(line.split("\t")) for line in split.stdout.splitlines()]
    ours = []
    for fields, (allele, gene, _, _, _, delta, effect) in score_entries(annotated):
        ours.append((fields[1], allele, gene, delta, effect))
    assert len(ours) > 100 and rows == ours
    # the elastic net keeps few variants: most alleles change nothing
    assert {effect for *_, effect in ours} == {INCREASED, DECREASED, UNCHANGED}
    expected = {1: INCREASED, -1: DECREASED, 0: UNCHANGED}
    assert all(effect == expected[int(np.sign(float(delta)))] for *_, delta, effect in ours)
    negative = subprocess.run(
        [BCFTOOLS, "+split-vep", "-a", "VARSCORE", "-d", "-c", "ALLELE,GENE,DELTA:Float,Consequence", "-i", "DELTA<0"]
        + ["-f", "%POS\t%ALLELE\t%GENE\t%DELTA\t%Consequence\n", str(annotated)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert [tuple(line.split("\t")) for line in negative.stdout.splitlines()] == [
        row for row in ours if row[4] == DECREASED
    ]
