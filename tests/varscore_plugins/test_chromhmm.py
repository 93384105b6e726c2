"""ChromHMM annotator and the enrichment of high-scoring variants across chromatin states,
checked against counts worked out by hand."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from tests.conftest import read_vcf_lines, write_fasta, write_vcf
from varscore.analysis.enrichment import read_segmentation, read_variant_weights, select_hsvs, state_enrichment
from varscore.errors import InputError
from varscore.types import Window
from varscore_plugins.chromhmm import EnrichmentJob, run_enrichment

# [0,60) TssA, [60,90) Enh, [90,150) Quies, [150,170) Enh, [170,200) TssA on chr1
SEGMENTS = [(0, 60, "1_TssA"), (60, 90, "7_Enh"), (90, 150, "15_Quies"), (150, 170, "7_Enh"), (170, 200, "1_TssA")]
COLOURS = {"1_TssA": "255,0,0", "7_Enh": "255,255,0", "15_Quies": "255,255,255"}


def write_segments(path: Path, style: str = "segments", chrom: str = "chr1") -> Path:
    lines = []
    if style != "segments":
        lines.append('track name="sample" description="sample (ChromHMM)" visibility=1 itemRgb="On"')
    if style == "expanded":  # zero-length placeholder rows that order the states in the browser
        lines += [f"{chrom}\t0\t0\t{state}\t0\t.\t0\t0\t{COLOURS[state]}" for state in COLOURS]
    for start, end, state in SEGMENTS:
        if style == "segments":
            lines.append(f"{chrom}\t{start}\t{end}\t{state}")
        else:
            lines.append(f"{chrom}\t{start}\t{end}\t{state}\t0\t.\t{start}\t{end}\t{COLOURS[state]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_genes(path: Path) -> Path:
    # windows of 100 bp: G1 [0, 100), G2 [100, 200)
    path.write_text("gene_id\tgene_name\tchrom\ttss\tstrand\nG1\tGENEA\tchr1\t51\t+\nG2\tGENEB\tchr1\t151\t-\n")
    return path


ISM = [  # gene, pos (1-based), delta
    ("GENEA", 10, 0.9),
    ("GENEA", 70, -0.8),
    ("GENEA", 95, 0.1),
    ("GENEA", 30, 0.05),
    ("GENEB", 160, 1.0),
    ("GENEB", 120, 0.5),
    ("GENEB", 180, 0.2),
]


def write_ism(path: Path, model: str = "m1") -> Path:
    rows = [f"chr1\t{pos}\tA\tC\t{gene}\t{model}\t{delta}" for gene, pos, delta in ISM]
    path.write_text("chrom\tpos\tref\talt\tgene\tmodel\tdelta\n" + "\n".join(rows) + "\n")
    return path


# Top 2 per gene: GENEA -> 10 (TssA), 70 (Enh); GENEB -> 160 (Enh), 120 (Quies).
# Expected: GENEA window shares TssA .6, Enh .3, Quies .1; GENEB Quies .5, Enh .2, TssA .3; x 2 HSVs.
@pytest.fixture
def full_cli():
    """The ``varscore`` group with plugin commands added, as ``main()`` builds it."""
    from varscore.cli import cli
    from varscore.plugin.manager import manager

    manager.add_commands(cli)
    return cli


HAND = {
    "1_TssA": (1, 2 * 0.6 + 2 * 0.3),
    "7_Enh": (2, 2 * 0.3 + 2 * 0.2),
    "15_Quies": (1, 2 * 0.1 + 2 * 0.5),
}


@pytest.mark.parametrize("style", ["segments", "dense", "expanded"])
def test_segmentation_formats_give_the_same_states(tmp_path, style):
    segmentation = read_segmentation(write_segments(tmp_path / f"{style}.bed", style))
    assert segmentation.states_at("chr1", [1, 60, 61, 91, 200, 201]) == [
        "1_TssA",
        "1_TssA",
        "7_Enh",
        "15_Quies",
        "1_TssA",
        None,
    ]
    assert segmentation.states_at("1", [61]) == ["7_Enh"]  # chr-prefix spelling
    assert segmentation.state_bases(Window("chr1", 0, 100)) == {"1_TssA": 60, "7_Enh": 30, "15_Quies": 10}


def test_enrichment_equals_hand_computation(tmp_path):
    weights = read_variant_weights(write_ism(tmp_path / "ism.tsv"))
    second_allele = weights.iloc[[0]].assign(alt="G", delta=0.85)  # a multi-allelic site is one variant
    weights = pd.concat([weights, second_allele], ignore_index=True)
    segmentation = read_segmentation(write_segments(tmp_path / "s.bed"))
    windows = {"GENEA": Window("chr1", 0, 100), "GENEB": Window("chr1", 100, 200)}
    result = state_enrichment(select_hsvs(weights, top=2), windows, segmentation)
    table = result.per_state.set_index("state")
    assert sorted(table.index) == sorted(HAND)
    for state, (observed, expected) in HAND.items():
        assert table.loc[state, "observed"] == observed
        assert table.loc[state, "expected"] == pytest.approx(expected)
        assert table.loc[state, "log_enrichment"] == pytest.approx(math.log(observed / expected))
    genea = result.per_gene[result.per_gene["gene"] == "GENEA"].set_index("state")
    assert genea.loc["15_Quies", "observed"] == 0 and genea.loc["15_Quies", "expected"] == pytest.approx(0.2)


def write_scored_vcf(path: Path) -> Path:
    """ISM's deltas as model m1 and an elastic net 'enet' (k: GENEA 1, GENEB 2) in VARSCORE entries."""
    lines = [
        "##fileformat=VCFv4.2",
        "##contig=<ID=chr1,length=200>",
        '##INFO=<ID=VARSCORE,Number=.,Type=String,Description="Predicted effect. '
        'Format: ALLELE|GENE|MODEL|REF_PRED|ALT_PRED|DELTA">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
    ]
    enet = {("GENEA", 10): 0.3, ("GENEB", 160): 0.1, ("GENEB", 180): -0.2}
    for gene, pos, delta in sorted(ISM, key=lambda r: r[1]):
        entries = [f"C|{gene}|m1|0|{delta}|{delta}", f"C|{gene}|enet|0|0|{enet.get((gene, pos), 0)}"]
        lines.append(f"chr1\t{pos}\t.\tA\tC\t.\t.\tVARSCORE={','.join(entries)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_enrichment_job_on_an_annotated_vcf_with_k_from_a_linear_model(tmp_path):
    job = EnrichmentJob(
        write_scored_vcf(tmp_path / "scored.vcf"),
        write_segments(tmp_path / "s.bed", "dense"),
        write_genes(tmp_path / "genes.tsv"),
        window=100,
        k_from="enet",
        fasta=write_fasta(tmp_path / "ref.fa", {"chr1": "ACGT" * 60}),
        per_gene=tmp_path / "per_gene.tsv",
        output=tmp_path / "out.tsv",
    )
    result = run_enrichment(job)
    assert result.lines() == []  # the table went to the file
    assert (tmp_path / "out.tsv").read_text() == result.text()
    table = pd.read_csv(tmp_path / "out.tsv", sep="\t").set_index(["model", "state"])
    # m1 HSVs: GENEA top 1 -> 10 (TssA); GENEB top 2 -> 160 (Enh), 120 (Quies)
    expected = {"1_TssA": (1, 0.6 + 2 * 0.3), "7_Enh": (1, 0.3 + 2 * 0.2), "15_Quies": (1, 0.1 + 2 * 0.5)}
    for state, (observed, exp) in expected.items():
        assert table.loc[("m1", state), "observed"] == observed
        assert table.loc[("m1", state), "log_enrichment"] == pytest.approx(math.log(observed / exp), rel=1e-5)
    per_gene = pd.read_csv(tmp_path / "per_gene.tsv", sep="\t").set_index(["model", "gene", "state"])
    assert per_gene.loc[("m1", "GENEB", "15_Quies"), "observed"] == 1
    assert per_gene.loc[("m1", "GENEA", "7_Enh"), "expected"] == pytest.approx(0.3)


def test_enrichment_job_prints_the_table_without_output(tmp_path):
    job = EnrichmentJob(
        write_ism(tmp_path / "ism.tsv"), write_segments(tmp_path / "s.bed"), write_genes(tmp_path / "g.tsv"), 100, top=2
    )
    result = run_enrichment(job)
    printed = pd.read_csv(io.StringIO("\n".join(result.lines())), sep="\t").set_index("state")
    for state, (observed, expected) in HAND.items():
        assert printed.loc[state, "observed"] == observed
        assert printed.loc[state, "expected"] == pytest.approx(expected)


def test_enrichment_command_parses_into_the_job(tmp_path, full_cli):
    ism, bed, genes = (
        write_ism(tmp_path / "ism.tsv"),
        write_segments(tmp_path / "s.bed"),
        write_genes(tmp_path / "g.tsv"),
    )
    args = ["enrichment", str(ism), "--bed", str(bed), "--genes", str(genes), "--window", "100", "--top", "2"]
    result = CliRunner().invoke(full_cli, args)
    assert result.exit_code == 0, result.output
    expected = run_enrichment(EnrichmentJob(ism, bed, genes, window=100, top=2)).text()
    assert result.output == expected
    result = CliRunner().invoke(full_cli, [*args, "-o", str(tmp_path / "out.tsv")])
    assert result.exit_code == 0 and result.output == ""
    assert (tmp_path / "out.tsv").read_text() == expected
    result = CliRunner().invoke(full_cli, args[:-2])  # neither --top nor --k-from
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "--top" in result.output and "--k-from" in result.output


def test_annotator_adds_states_through_the_cli(tmp_path):
    from varscore.cli import cli

    fasta = write_fasta(tmp_path / "ref.fa", {"chr1": "ACGT" * 60})
    vcf = write_vcf(tmp_path / "in.vcf", [("chr1", 10, "C", "A"), ("chr1", 70, "C", "A"), ("chr1", 230, "C", "A")])
    bed = write_segments(tmp_path / "s.bed", "expanded")
    result = CliRunner().invoke(
        cli,
        [
            "annotate",
            str(vcf),
            "--model",
            "none",
            "--fasta",
            str(fasta),
            "--annotate",
            "chromhmm",
            "--annotator-opt",
            f"chromhmm.bed={bed}",
            "-o",
            str(tmp_path / "out.vcf"),
        ],
    )
    assert result.exit_code == 0, result.output
    records = [line.split("\t") for line in read_vcf_lines(tmp_path / "out.vcf") if not line.startswith("#")]
    assert "VARSCORE_CHROMHMM=1_TssA" in records[0][7]
    assert "VARSCORE_CHROMHMM=7_Enh" in records[1][7]
    assert "VARSCORE_CHROMHMM" not in records[2][7]


def test_bed_with_unknown_contigs_is_a_one_line_error(tmp_path, full_cli):
    cli = full_cli

    fasta = write_fasta(tmp_path / "ref.fa", {"chr1": "ACGT" * 60})
    vcf = write_vcf(tmp_path / "in.vcf", [("chr1", 10, "C", "A")])
    bed = write_segments(tmp_path / "other.bed", chrom="chrUn_gl000220")
    result = CliRunner().invoke(
        cli,
        [
            "annotate",
            str(vcf),
            "--model",
            "none",
            "--fasta",
            str(fasta),
            "--annotate",
            "chromhmm",
            "--annotator-opt",
            f"chromhmm.bed={bed}",
            "-o",
            str(tmp_path / "out.vcf"),
        ],
    )
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert "chrUn_gl000220" in result.output and "other.bed" in result.output
    result = CliRunner().invoke(
        cli,
        [
            "enrichment",
            str(write_ism(tmp_path / "ism.tsv")),
            "--bed",
            str(bed),
            "--genes",
            str(write_genes(tmp_path / "genes.tsv")),
            "--top",
            "2",
        ],
    )
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert "chr1" in result.output and "chrUn_gl000220" in result.output


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("chr1\t0\t10\n", ["3 column"]),
        ("chr1\tx\t10\tE1\n", ["integers"]),
        ("chr1\t20\t10\tE1\n", ["invalid interval"]),
        ("chr1\t0\t20\tE1\nchr1\t10\t30\tE2\n", ["overlap"]),
        ("track name=x\n", ["no segments"]),
    ],
)
def test_malformed_segmentations(tmp_path, text, words):
    path = tmp_path / "bad.bed"
    path.write_text(text)
    with pytest.raises(InputError) as error:
        read_segmentation(path)
    assert "\n" not in str(error.value)
    for word in words:
        assert word in str(error.value)


def test_missing_bed_option_and_bad_ism_table(tmp_path):
    from varscore_plugins.chromhmm import ChromHMMAnnotator

    with pytest.raises(InputError, match="chromhmm.bed"):
        ChromHMMAnnotator()
    bad = tmp_path / "ism.tsv"
    bad.write_text("chrom\tpos\tgene\nchr1\t1\tG\n")
    with pytest.raises(InputError, match="delta"):
        read_variant_weights(bad)
