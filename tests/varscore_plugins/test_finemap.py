"""Fine-mapping tables, the finemap annotator, and auROC/auPR of variant weights for fine-mapped
eQTLs checked against scikit-learn and a plain re-implementation of the negative matching."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.metrics import average_precision_score, roc_auc_score

from tests.conftest import read_vcf_lines, write_vcf
from varscore.errors import InputError
from varscore.genome.fasta import load_genes
from varscore_plugins.finemap import (
    FinemapAnnotator,
    FinemapEvalJob,
    auroc,
    average_precision,
    evaluate_finemap,
    matched_negatives,
    read_finemap_table,
    run_finemap_eval,
)

GENE_A = "ENSG00000000001.5"
GENE_B = "ENSG00000000002.1"


@pytest.fixture
def full_cli():
    from varscore.cli import cli
    from varscore.plugin.manager import manager

    manager.add_commands(cli)
    return cli


def write_genes(path: Path) -> Path:
    path.write_text(
        f"gene_id\tgene_name\tchrom\ttss\tstrand\n{GENE_A}\tGENEA\tchr1\t1000\t+\n{GENE_B}\tGENEB\tchr1\t5000\t-\n"
    )
    return path


def write_caviar(path: Path, rows: list[tuple[str, int, float]]) -> Path:
    lines = ["TISSUE GENE eQTL CHROM POS Probability"]
    lines += [f"Whole_Blood {gene} chr1_{pos}_A_C_b38 1 {pos} {prob}" for gene, pos, prob in rows]
    lines.append(f"Lung {GENE_A} chr1_1010_A_C_b38 1 1010 0.9")  # another tissue
    path.write_text("\n".join(lines) + "\n")
    return path


def make_weights(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for gene, tss in (("GENEA", 1000), ("GENEB", 5000)):
        positions = tss + rng.choice(np.arange(-900, 900), size=40, replace=False)
        for pos in positions:
            for model in ("ridge", "variformer"):
                rows.append(("chr1", int(pos), "A", "C", gene, model, float(np.round(rng.normal(), 1))))
    return pd.DataFrame(rows, columns=["chrom", "pos", "ref", "alt", "gene", "model", "delta"])


@pytest.mark.parametrize("seed", range(6))
def test_auroc_and_average_precision_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    scores = np.round(rng.normal(size=n), 1 if seed % 2 else 3)  # ties on odd seeds
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert average_precision(labels, scores) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


def test_matched_negatives_by_hand():
    picked = matched_negatives(np.array([10.0, 100.0]), np.array([12, 8, 300, 95, 11, 101, 50], dtype=float), 2)
    assert picked.tolist() == [4, 0, 5, 3]
    assert matched_negatives(np.array([5.0]), np.array([1.0]), 5).tolist() == [0]  # fewer when they run out


def _expected(
    weights: pd.DataFrame,
    positives: dict[str, set[int]],
    excluded: dict[str, set[int]],
    tss: dict[str, int],
    model: str,
    n_neg: int = 5,
):
    """Independent computation: explicit loops for the matching, sklearn for the metrics."""
    per_gene, pooled_labels, pooled_scores = {}, [], []
    for gene, rows in weights[weights["model"] == model].groupby("gene"):
        site = rows.groupby("pos")["delta"].apply(lambda d: d.abs().max())
        pos_sites = [p for p in site.index if p in positives[gene]]
        candidates = [p for p in site.index if p not in positives[gene] and p not in excluded[gene]]
        chosen = []
        for p in pos_sites:
            d = abs(p - tss[gene])
            ranked = sorted(
                (c for c in candidates if c not in chosen),
                key=lambda c: (abs(abs(c - tss[gene]) - d), candidates.index(c)),
            )
            chosen += ranked[:n_neg]
        labels = [1] * len(pos_sites) + [0] * len(chosen)
        scores = [site[p] for p in pos_sites] + [site[c] for c in chosen]
        per_gene[gene] = (roc_auc_score(labels, scores), average_precision_score(labels, scores), len(chosen))
        pooled_labels += labels
        pooled_scores += scores
    return per_gene, roc_auc_score(pooled_labels, pooled_scores), average_precision_score(pooled_labels, pooled_scores)


def test_evaluation_equals_an_independent_computation(tmp_path):
    weights = make_weights()
    sites = {g: sorted(weights.loc[weights["gene"] == g, "pos"].unique()) for g in ("GENEA", "GENEB")}
    fm_rows = [
        (GENE_A, sites["GENEA"][3], 0.8),
        (GENE_A, sites["GENEA"][20], 0.35),
        (GENE_A, sites["GENEA"][30], 0.05),
        (GENE_B, sites["GENEB"][5], 0.95),
        (GENE_B, sites["GENEB"][6], 0.5),
    ]
    table = read_finemap_table(write_caviar(tmp_path / "caviar.txt", fm_rows), tissue="Whole_Blood")
    genes = {}
    for gene in load_genes(write_genes(tmp_path / "genes.tsv")):
        genes[gene.gene_id] = genes[gene.label] = gene
    result = evaluate_finemap(weights, table, genes, min_posterior=0.1, negatives=5)
    positives = {"GENEA": {sites["GENEA"][3], sites["GENEA"][20]}, "GENEB": {sites["GENEB"][5], sites["GENEB"][6]}}
    excluded = {"GENEA": {sites["GENEA"][30]}, "GENEB": set()}  # in the table, below min_posterior
    for model in ("ridge", "variformer"):
        per_gene, pooled_auroc, pooled_aupr = _expected(
            weights, positives, excluded, {"GENEA": 1000, "GENEB": 5000}, model
        )
        ours = result.per_gene[result.per_gene["model"] == model].set_index("gene")
        for gene, (roc, ap, n_neg) in per_gene.items():
            assert ours.loc[gene, "auroc"] == pytest.approx(roc, abs=1e-12)
            assert ours.loc[gene, "aupr"] == pytest.approx(ap, abs=1e-12)
            assert ours.loc[gene, "negatives"] == n_neg == 10 and ours.loc[gene, "positives"] == 2
        overall = result.overall.set_index("model").loc[model]
        assert overall["auroc"] == pytest.approx(pooled_auroc, abs=1e-12)
        assert overall["aupr"] == pytest.approx(pooled_aupr, abs=1e-12)
        assert overall["mean_gene_auroc"] == pytest.approx(np.mean([v[0] for v in per_gene.values()]))


def eval_inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Weights of two models, a CAVIAR table with two GENEA positives (and a Lung row), genes."""
    weights = make_weights(1)
    ism = tmp_path / "ism.tsv"
    weights.to_csv(ism, sep="\t", index=False)
    sites = sorted(weights.loc[weights["gene"] == "GENEA", "pos"].unique())
    caviar = write_caviar(tmp_path / "caviar.txt", [(GENE_A, sites[1], 0.9), (GENE_A, sites[2], 0.7)])
    return ism, caviar, write_genes(tmp_path / "genes.tsv")


def test_finemap_eval_job(tmp_path):
    ism, caviar, genes = eval_inputs(tmp_path)
    job = FinemapEvalJob(ism, caviar, genes, tissue="Whole_Blood", per_gene=tmp_path / "genes_out.tsv")
    result = run_finemap_eval(job)
    table = pd.read_csv(io.StringIO("\n".join(result.lines())), sep="\t")
    assert sorted(table["model"]) == ["ridge", "variformer"]
    assert (table["positives"] == 2).all() and (table["negatives"] == 10).all()
    assert table["auroc"].between(0, 1).all()
    per_gene = pd.read_csv(tmp_path / "genes_out.tsv", sep="\t")
    assert set(per_gene["gene"]) == {"GENEA"}
    # one gene: the pooled numbers are that gene's
    assert per_gene.set_index("model")["auroc"].to_dict() == pytest.approx(table.set_index("model")["auroc"].to_dict())
    # the Lung row is left out (--tissue); min_posterior 0.8 drops the 0.7 positive
    strict = run_finemap_eval(FinemapEvalJob(ism, caviar, genes, tissue="Whole_Blood", min_posterior=0.8, negatives=3))
    assert (strict.evaluation.overall["positives"] == 1).all() and (strict.evaluation.overall["negatives"] == 3).all()


def test_finemap_eval_job_writes_the_output_file(tmp_path):
    ism, caviar, genes = eval_inputs(tmp_path)
    result = run_finemap_eval(FinemapEvalJob(ism, caviar, genes, "caviar", "Whole_Blood", output=tmp_path / "o.tsv"))
    assert result.lines() == []
    assert (tmp_path / "o.tsv").read_text() == result.text()
    assert result.text().splitlines()[0].split("\t") == list(result.evaluation.overall.columns)


def test_finemap_eval_command_parses_into_the_job(tmp_path, full_cli):
    ism, caviar, genes = eval_inputs(tmp_path)
    args = ["finemap-eval", str(ism), "--finemap", str(caviar), "--genes", str(genes), "--tissue", "Whole_Blood"]
    args += ["--format", "caviar", "--min-posterior", "0.5", "--negatives", "4"]
    result = CliRunner().invoke(full_cli, args)
    assert result.exit_code == 0, result.output
    job = FinemapEvalJob(ism, caviar, genes, "caviar", "Whole_Blood", min_posterior=0.5, negatives=4)
    assert result.output == run_finemap_eval(job).text()
    result = CliRunner().invoke(full_cli, [*args[:-2], "--negatives", "0"])
    assert result.exit_code == 2 and "--negatives" in result.output
    result = CliRunner().invoke(full_cli, [*args[:-4], "--min-posterior", "1"])  # no positive left
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "No gene has both a fine-mapped positive" in result.output


def test_susie_dapg_and_caviar_tables_read_alike(tmp_path):
    caviar = read_finemap_table(write_caviar(tmp_path / "c.txt", [(GENE_A, 1200, 0.8)]), tissue="Whole_Blood")
    (tmp_path / "susie.tsv").write_text(
        f"molecular_trait_id\tvariant\tchromosome\tposition\tpip\tcs_id\n{GENE_A}\tchr1_1200_A_C\t1\t1200\t0.8\tL1\n"
    )
    (tmp_path / "dapg.txt").write_text(
        f"tissue_id\tgene_id\tcluster_id\tvariant_id\tvariant_pip\nWhole_Blood\t{GENE_A}\t1\tchr1_1200_A_C_b38\t0.8\n"
    )
    susie = read_finemap_table(tmp_path / "susie.tsv")
    dapg = read_finemap_table(tmp_path / "dapg.txt")
    assert (caviar["method"].iloc[0], susie["method"].iloc[0], dapg["method"].iloc[0]) == ("caviar", "susie", "dapg")
    for table in (caviar, susie, dapg):
        row = table.iloc[0]
        assert (row["gene"], row["chrom"], row["pos"], row["posterior"]) == (GENE_A, "1", 1200, 0.8)
        assert (row["ref"], row["alt"]) == ("A", "C")


def test_annotator_adds_posteriors_matching_alleles(tmp_path):
    from varscore.cli import cli

    caviar = write_caviar(tmp_path / "caviar.txt", [(GENE_A, 1200, 0.8), (GENE_B, 1200, 0.25), (GENE_A, 1300, 0.6)])
    vcf = write_vcf(tmp_path / "in.vcf", [("chr1", 1200, "A", "C"), ("chr1", 1300, "A", "G"), ("chr1", 1400, "A", "C")])
    result = CliRunner().invoke(
        cli,
        [
            "annotate",
            str(vcf),
            "--model",
            "none",
            "--annotate",
            "finemap",
            "--annotator-opt",
            f"finemap.table={caviar}",
            "--annotator-opt",
            "finemap.tissue=Whole_Blood",
            "-o",
            str(tmp_path / "out.vcf"),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = read_vcf_lines(tmp_path / "out.vcf")
    assert any("ID=VARSCORE_FINEMAP" in line and "Format: GENE|TISSUE|METHOD|POSTERIOR" in line for line in lines)
    records = [line.split("\t")[7] for line in lines if not line.startswith("#")]
    assert f"VARSCORE_FINEMAP={GENE_A}|Whole_Blood|caviar|0.8,{GENE_B}|Whole_Blood|caviar|0.25" in records[0]
    assert "VARSCORE_FINEMAP" not in records[1]  # the table's allele is C, the VCF's G
    assert "VARSCORE_FINEMAP" not in records[2]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("TISSUE GENE eQTL CHROM Probability\nWB G1 chr1_5_A_C_b38 1 0.5\n", ["POS", "caviar"]),
        ("gene_id\tvariant_id\nG1\tchr1_5_A_C\n", ["posterior", "pip"]),
        ("gene\tpip\nG1\t0.5\n", ["variant"]),
        ("gene\tvariant_id\tpip\nG1\trs123\t0.5\n", ["rs123", "position"]),
        ("gene\tvariant_id\tpip\nG1\tchr1_5_A_C\t1.5\n", ["[0, 1]"]),
    ],
)
def test_tables_with_missing_columns_fail_with_one_line_via_cli(tmp_path, full_cli, text, words):
    table = tmp_path / "fm.txt"
    table.write_text(text)
    ism = tmp_path / "ism.tsv"
    make_weights().to_csv(ism, sep="\t", index=False)
    for args in (
        ["finemap-eval", str(ism), "--finemap", str(table), "--genes", str(write_genes(tmp_path / "g.tsv"))],
        [
            "annotate",
            str(write_vcf(tmp_path / "in.vcf", [("chr1", 5, "A", "C")])),
            "--model",
            "none",
            "--annotate",
            "finemap",
            "--annotator-opt",
            f"finemap.table={table}",
        ],
    ):
        result = CliRunner().invoke(full_cli, args)
        assert result.exit_code == 1, result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert "fm.txt" in result.output
        for word in words:
            assert word in result.output


def test_option_errors():
    with pytest.raises(InputError, match="finemap.table"):
        FinemapAnnotator()
    with pytest.raises(InputError, match="unknown option"):
        FinemapAnnotator(table="x", threshold=1)
    assert math.isnan(auroc(np.array([1, 1]), np.array([0.1, 0.2])))
