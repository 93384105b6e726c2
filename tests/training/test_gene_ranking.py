"""``rank-genes``: the average-expression ranking of genes equals scipy's Pearson/Spearman on
numbers computed here independently (pandas means of log2(TPM + 2); predictions by running the
backbone on each reference window and reading its centre bins with numpy)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import pearsonr, spearmanr

from varscore.cli import cli
from varscore.errors import InputError
from varscore.examples import data_dir, models_dir
from varscore.training.gene_ranking import GeneRankingJob, rank_correlations, run_gene_ranking

DATA = data_dir()
MODEL = models_dir() / "variformer-demo"
TPM = DATA / "cohort.tpm.tsv"
GENES = DATA / "genes.tsv"


def _reference_outputs() -> dict[str, np.ndarray]:
    """Per gene name: the demo backbone's ``(bins, tracks)`` output on the reference window whose
    centre base (index L // 2) is the TSS, the window read here with pysam and one-hot encoded with numpy."""
    import pysam

    from varscore.models.bundle import load_bundle

    bundle = load_bundle(MODEL)
    backbone = bundle.backbone()
    genome = pysam.FastaFile(str(DATA / "ucsc.hg19.chr20.unittest.fasta.gz"))
    genes = pd.read_csv(GENES, sep="\t")
    length = bundle.window_size
    out = {}
    for row in genes.itertuples():
        start = int(row.tss) - 1 - length // 2
        sequence = genome.fetch(row.chrom, start, start + length).upper()
        assert len(sequence) == length
        one_hot = np.zeros((length, 4), dtype=np.float32)
        for i, base in enumerate("ACGT"):
            one_hot[np.frombuffer(sequence.encode(), dtype="S1") == base.encode(), i] = 1.0
        out[row.gene_name] = backbone.predict(one_hot[None])[0]
    return out


@pytest.fixture(scope="module")
def outputs() -> dict[str, np.ndarray]:
    return _reference_outputs()


def test_the_ranking_equals_scipy_on_independently_computed_numbers(outputs):
    tpm = pd.read_csv(TPM, sep="\t", index_col=0)
    observed = np.log2(tpm + 2).mean(axis=1)  # mean over all people of log2(TPM + 2)
    result = run_gene_ranking(GeneRankingJob([MODEL], TPM, GENES))
    table = result.table.set_index("gene")
    genes = list(table.index)
    assert genes == list(pd.read_csv(GENES, sep="\t")["gene_name"])
    centre = {g: float(o[o.shape[0] // 2, 0]) for g, o in outputs.items()}  # Variformer: the centre bin
    predicted = np.array([centre[g] for g in genes])
    np.testing.assert_allclose(table["observed"], observed.loc[genes], rtol=1e-12)
    np.testing.assert_allclose(table["predicted"], predicted, rtol=1e-5, atol=1e-6)
    row = result.summary.iloc[0]
    expected_r = pearsonr(observed.loc[genes], predicted)
    expected_rho = spearmanr(observed.loc[genes], predicted)
    assert row["pearson"] == pytest.approx(expected_r.statistic, abs=1e-6)
    assert row["pearson_p"] == pytest.approx(expected_r.pvalue, rel=1e-4)
    assert row["spearman"] == pytest.approx(expected_rho.statistic, abs=1e-9)
    assert row["spearman_p"] == pytest.approx(expected_rho.pvalue, rel=1e-6)
    assert row["genes"] == len(genes) and result.people == tpm.shape[1]


def test_a_track_and_centre_bins_score_like_pretrained_enformer(outputs, tmp_path):
    """--track/--center-bins: the sum of the 3 centre bins (Enformer's 191-193 of 384) of one track,
    averaged over the people of --people only."""
    tpm = pd.read_csv(TPM, sep="\t", index_col=0)
    people = list(tpm.columns[::3])
    (tmp_path / "people.txt").write_text("\n".join(people) + "\n")
    job = GeneRankingJob([MODEL], TPM, GENES, track=0, center_bins=3, people_file=tmp_path / "people.txt")
    result = run_gene_ranking(job)
    table = result.table.set_index("gene")
    genes = list(table.index)
    mid = next(iter(outputs.values())).shape[0] // 2
    predicted = np.array([outputs[g][mid - 1 : mid + 2, 0].sum() for g in genes])
    observed = np.log2(tpm[people] + 2).mean(axis=1).loc[genes]
    np.testing.assert_allclose(table["predicted"], predicted, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(table["observed"], observed, rtol=1e-12)
    assert result.summary.iloc[0]["spearman"] == pytest.approx(spearmanr(observed, predicted).statistic)
    assert result.people == len(people)


def test_rank_correlations_match_scipy_with_ties():
    rng = np.random.default_rng(4)
    x = rng.normal(size=30)
    y = np.round(x + rng.normal(size=30), 1)
    y[:5] = y[5]  # ties
    got = rank_correlations(x, y)
    assert got["pearson"] == pytest.approx(pearsonr(x, y).statistic, abs=1e-12)
    assert got["spearman"] == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert got["spearman_p"] == pytest.approx(spearmanr(x, y).pvalue, rel=1e-9)
    assert np.isnan(rank_correlations(x, np.ones(30))["pearson"])


def test_normalised_expression_and_genotype_models_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="negative values"):
        run_gene_ranking(GeneRankingJob([MODEL], DATA / "cohort.expression.bed.gz", GENES))
    with pytest.raises(InputError, match="genotype model"):
        run_gene_ranking(GeneRankingJob([models_dir() / "elastic-net-demo"], TPM, GENES))
    (tmp_path / "people.txt").write_text("NOBODY\n")
    with pytest.raises(InputError, match="not columns of the TPM table"):
        run_gene_ranking(GeneRankingJob([MODEL], TPM, GENES, people_file=tmp_path / "people.txt"))


def test_rank_genes_command_prints_the_jobs_lines(tmp_path):
    args = ["rank-genes", "-m", str(MODEL), "--tpm", str(TPM), "--genes", str(GENES)]
    result = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "cli.tsv")])
    assert result.exit_code == 0, result.output
    job = GeneRankingJob([MODEL], TPM, GENES, output=tmp_path / "job.tsv")
    lines = run_gene_ranking(job).lines()
    assert result.output.splitlines()[:-2] == lines[:-2]  # the last two name the files written
    assert (tmp_path / "cli.tsv").read_text() == (tmp_path / "job.tsv").read_text()
    assert (tmp_path / "cli.tsv.provenance.json").is_file()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "names nobody"),  # averaged over nobody: NaN correlations, 'over 670 people' printed
        ("\n\n", "names nobody"),
        ("SIM0001\nSIM0002\nSIM0001\n", "names SIM0001 more than once"),  # counted twice, 'over 3 people'
    ],
)
def test_a_people_file_naming_nobody_or_someone_twice_is_refused(tmp_path, text, message):
    people = tmp_path / "people.txt"
    people.write_text(text)
    with pytest.raises(InputError, match=message) as caught:
        run_gene_ranking(GeneRankingJob([MODEL], TPM, GENES, people_file=people))
    assert "\n" not in str(caught.value)
    people.write_bytes(b"\x1f\x8b\x08\x00binary")
    with pytest.raises(InputError, match="Cannot read the people file"):
        run_gene_ranking(GeneRankingJob([MODEL], TPM, GENES, people_file=people))


def test_the_mean_over_no_people_is_refused():
    from varscore.training.gene_ranking import mean_log_tpm

    with pytest.raises(InputError, match="at least one person"):
        mean_log_tpm(pd.DataFrame({"a": [1.0]}, index=["g"]), [])
