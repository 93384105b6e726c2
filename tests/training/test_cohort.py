"""Cohort data: expression tables, sample matching, normalisation, folds and gene sets."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from varscore.errors import InputError
from varscore.training.cohort import (
    expression_matrix,
    fold_people,
    gtex_donor_id,
    inverse_normal_transform,
    make_folds,
    match_samples,
    normalise_expression,
    read_expression,
    read_folds,
    read_gene_sets,
    read_gene_table,
    split_genes,
    tmm_factors,
    write_folds,
    write_gene_sets,
)
from varscore.types import Gene


def write_expression(path: Path, people: list[str], rows: list[tuple[str, int, str, list[str]]]) -> Path:
    """GTEx layout; ``rows`` are (chrom, tss, gene_id, values as text)."""
    lines = ["\t".join(["#chr", "start", "end", "gene_id", *people])]
    lines += ["\t".join([c, str(t - 1), str(t), g, *v]) for c, t, g, v in rows]
    text = "\n".join(lines) + "\n"
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


@pytest.fixture
def expression_file(tmp_path: Path) -> Path:
    return write_expression(
        tmp_path / "expr.bed.gz",
        ["GTEX-A", "GTEX-B", "GTEX-C"],
        [
            ("chr20", 1000, "ENSG01.3", ["0.5", "-1.25", "0"]),
            ("chr20", 5000, "ENSG02.1", ["1e-3", "2", "-0.75"]),
            ("chr21", 42, "ENSG03", ["1", "1", "1"]),
        ],
    )


def test_read_expression_gtex_layout(expression_file: Path) -> None:
    data = read_expression(expression_file)
    assert data.people == ["GTEX-A", "GTEX-B", "GTEX-C"]
    assert data.genes == ["ENSG01.3", "ENSG02.1", "ENSG03"]
    np.testing.assert_array_equal(data.values.loc["ENSG02.1"].to_numpy(), [1e-3, 2, -0.75])
    assert data.coordinates.loc["ENSG01.3"].tolist() == ["chr20", 999, 1000]
    assert data.values.dtypes.unique().tolist() == [np.float64]


def test_read_expression_errors(tmp_path: Path) -> None:
    bad_header = tmp_path / "bad.tsv"
    bad_header.write_text("gene\tA\tB\nG1\t1\t2\n")
    with pytest.raises(InputError, match="#chr start end gene_id"):
        read_expression(bad_header)
    repeated = write_expression(tmp_path / "rep.bed", ["A", "B", "A"], [("1", 5, "G", ["1", "2", "3"])])
    with pytest.raises(InputError, match="more than one column: A"):
        read_expression(repeated)
    text = write_expression(
        tmp_path / "text.bed", ["A", "B"], [("1", 5, "G1", ["1", "2"]), ("1", 9, "G2", ["x", "NA"])]
    )
    with pytest.raises(InputError, match="2 values are missing or not numbers, e.g. gene G2, person A: 'x'"):
        read_expression(text)
    with pytest.raises(InputError, match="not found"):
        read_expression(tmp_path / "absent.bed.gz")


def test_match_samples_reports_both_sides_in_stable_order(caplog: pytest.LogCaptureFixture) -> None:
    expression = ["P9", "P2", "P5", "X1", "X2"]
    vcf = ["P2", "P5", "P9", "V1", "V2", "V3", "V4", "V5", "V6", "V7"]
    with caplog.at_level(logging.WARNING, logger="varscore.training.cohort"):
        match = match_samples(expression, vcf)
    assert match.people == ["P9", "P2", "P5"]
    assert match.expression_only == ["X1", "X2"]
    assert match.vcf_only == ["V1", "V2", "V3", "V4", "V5", "V6", "V7"]
    report = match.report()
    assert report.startswith("3 people matched") and "2 only in the expression table (X1, X2)" in report
    assert "7 only in the VCF (V1, V2, V3, V4, V5…)" in report
    assert report in caplog.text


def test_no_shared_ids_is_an_error_with_a_hint() -> None:
    with pytest.raises(InputError, match="GTEx sample IDs") as info:
        match_samples(["GTEX-1117F-0226-SM-5GZZ7", "GTEX-111CU-0326-SM-5GZXO"], ["GTEX-1117F", "GTEX-111CU"])
    assert "GTEX-1117F-0226-SM-5GZZ7" in str(info.value) and "GTEX-111CU" in str(info.value)
    assert gtex_donor_id("GTEX-1117F-0226-SM-5GZZ7") == "GTEX-1117F"
    with pytest.raises(InputError, match="differ only in letter case"):
        match_samples(["na12878"], ["NA12878"])
    with pytest.raises(InputError, match="No person ID is shared"):
        match_samples(["A", "B"], ["C", "D"])
    with pytest.raises(InputError, match="more than once: A"):
        match_samples(["A", "A"], ["A"])


def test_inverse_normal_transform_matches_independent_computation() -> None:
    rng = np.random.default_rng(0)
    values = np.round(rng.normal(size=(4, 25)), 1)  # rounding makes ties
    values[3] = 7.0  # a constant gene: every rank ties
    expected = norm.ppf((pd.DataFrame(values).rank(axis=1, method="average").to_numpy() - 0.5) / 25)
    result = inverse_normal_transform(values)
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result[3], 0.0, atol=1e-12)
    # By hand: n = 4, ranks 1, 2.5, 2.5, 4.
    np.testing.assert_allclose(
        inverse_normal_transform(np.array([3.0, 5.0, 5.0, 9.0])), norm.ppf([0.5 / 4, 2 / 4, 2 / 4, 3.5 / 4])
    )
    with pytest.raises(InputError, match="NaN"):
        inverse_normal_transform(np.array([1.0, np.nan]))


# Computed once with rnanorm 2.2.0 (an independent TMM implementation that follows edgeR):
# rnanorm.TMM().fit(X).get_norm_factors(X), X = TMM_COUNTS (samples × genes).
# fmt: off
TMM_COUNTS = np.array([
    [99, 148, 1, 0, 8, 94, 57, 38, 47, 129, 80, 1108, 99, 27, 7, 101, 21, 48, 5, 8, 24, 306, 530, 22, 76, 119, 76, 31, 4, 84],
    [80, 91, 4, 0, 3, 12, 46, 25, 41, 100, 58, 230, 76, 33, 7, 73, 9, 28, 4, 4, 83, 59, 90, 19, 63, 69, 52, 24, 4, 64],
    [140, 190, 5, 0, 12, 0, 88, 43, 71, 165, 148, 364, 142, 53, 9, 130, 25, 40, 15, 18, 49, 103, 161, 40, 91, 147, 89, 37, 4, 72],
    [140, 185, 31, 0, 7, 28, 81, 44, 243, 163, 122, 381, 139, 49, 15, 97, 15, 43, 6, 17, 37, 106, 660, 28, 356, 138, 100, 33, 34, 79],
    [608, 184, 3, 0, 8, 26, 360, 51, 64, 173, 131, 379, 157, 194, 6, 135, 34, 44, 4, 16, 48, 122, 194, 39, 96, 136, 106, 44, 10, 89],
]).T  # (genes, samples)
# fmt: on
TMM_RNANORM = [0.7394128780663141, 1.1656625782892396, 1.287911051554625, 0.9313376476828228, 0.9672686376324171]


def test_tmm_matches_an_independent_implementation() -> None:
    np.testing.assert_allclose(tmm_factors(TMM_COUNTS), TMM_RNANORM, rtol=1e-12)


def test_tmm_by_hand_two_samples() -> None:
    """Ten genes: the log-ratio trim keeps ranks 4..7 (floor(10 · 0.3) + 1 = 4); the 5 % sum trim
    keeps all (floor(10 · 0.05) + 1 = 1); factor = 2^(Σ M/v / Σ 1/v) over the kept genes."""
    a = np.array([10, 20, 30, 40, 50, 60, 70, 80, 90, 100], dtype=float)
    ratio = np.array([0.2, 0.5, 0.6, 0.9, 1.0, 1.1, 1.2, 3.0, 4.0, 8.0])
    b = np.round(a * ratio)
    counts = np.stack([a, b], axis=1)
    na, nb = a.sum(), b.sum()
    m = np.log2((b / nb) / (a / na))
    assert list(np.argsort(m)[3:7]) == [3, 4, 5, 6]  # the genes with ratios 0.9 .. 1.2
    kept = [3, 4, 5, 6]
    v = (nb - b[kept]) / nb / b[kept] + (na - a[kept]) / na / a[kept]
    f_b = 2 ** (np.sum(m[kept] / v) / np.sum(1 / v))
    # Both upper quartiles are equally far from their mean: the first sample is the reference.
    expected = np.array([1.0, f_b]) / np.sqrt(f_b)
    np.testing.assert_allclose(tmm_factors(counts), expected, rtol=1e-12)
    f_unweighted = 2 ** np.mean(m[kept])
    np.testing.assert_allclose(
        tmm_factors(counts, weighted=False), np.array([1.0, f_unweighted]) / np.sqrt(f_unweighted)
    )


def test_tmm_properties() -> None:
    rng = np.random.default_rng(3)
    counts = rng.poisson(rng.gamma(1.0, 80, size=(200, 1)) * rng.uniform(0.5, 2, size=(1, 6))).astype(float)
    # Identical samples: factor 1.
    np.testing.assert_allclose(tmm_factors(np.repeat(counts[:, :1], 4, axis=1)), 1.0)
    # Library size is normalised away: scaling one sample's counts leaves the unweighted factors
    # unchanged exactly; edgeR's precision weights depend on depth, so weighted ones barely move.
    scaled = counts.copy()
    scaled[:, 2] *= 3
    np.testing.assert_allclose(tmm_factors(scaled, weighted=False), tmm_factors(counts, weighted=False), rtol=1e-12)
    np.testing.assert_allclose(tmm_factors(scaled), tmm_factors(counts), rtol=2e-3)
    # A scaled copy of the reference sample gets the reference's factor.
    reference = 0
    with_copy = np.column_stack([counts, counts[:, reference] * 5])
    factors = tmm_factors(with_copy, reference=reference)
    assert factors[-1] == pytest.approx(factors[reference], rel=1e-12)
    # Geometric mean 1; all-zero genes ignored.
    assert np.exp(np.log(tmm_factors(counts)).mean()) == pytest.approx(1.0)
    np.testing.assert_allclose(tmm_factors(np.vstack([counts, np.zeros((5, 6))])), tmm_factors(counts))
    with pytest.raises(InputError, match="no reads"):
        tmm_factors(np.column_stack([counts, np.zeros(200)]))


def test_normalise_expression_filters_then_tmm_then_int() -> None:
    rng = np.random.default_rng(8)
    samples = [f"S{i}" for i in range(10)]
    genes = [f"G{i}" for i in range(40)]
    counts = pd.DataFrame(
        rng.poisson(rng.uniform(50, 500, size=(40, 1)), size=(40, 10)).astype(float), index=genes, columns=samples
    )
    tpm = counts / counts.sum() * 1e6 / 50
    tpm.loc["G0"] = 0.05  # below 0.1 TPM everywhere: dropped
    tpm.loc["G1"] = [0.2, 0.2] + [0.0] * 8  # ≥ 0.1 TPM in exactly 20 % of samples: kept if reads allow
    counts.loc["G1"] = [10, 10] + [0] * 8
    counts.loc["G2"] = [5] * 10  # < 6 reads everywhere: dropped
    result = normalise_expression(tpm, counts)
    assert result.dropped_genes == ["G0", "G2"]
    assert "G1" in result.values.index and result.values.shape == (38, 10)
    factors = tmm_factors(counts.to_numpy())
    np.testing.assert_allclose(result.norm_factors.to_numpy(), factors)
    cpm = counts / (counts.sum() * factors) * 1e6
    np.testing.assert_allclose(
        result.values.to_numpy(), inverse_normal_transform(cpm.drop(index=["G0", "G2"]).to_numpy())
    )
    with pytest.raises(InputError, match="same genes and samples"):
        normalise_expression(tpm, counts.drop(columns="S3"))


def test_read_gene_table_tsv_and_gct(tmp_path: Path) -> None:
    tsv = tmp_path / "counts.tsv"
    tsv.write_text("gene_id\tA\tB\nG1\t1\t2\nG2\t3\t4\n")
    gct = tmp_path / "tpm.gct.gz"
    with gzip.open(gct, "wt") as handle:
        handle.write("#1.2\n2\t2\nName\tDescription\tA\tB\nG1\tONE\t0.5\t1.5\nG2\tTWO\t2\t3\n")
    assert read_gene_table(tsv).to_numpy().tolist() == [[1, 2], [3, 4]]
    table = read_gene_table(gct)
    assert list(table.columns) == ["A", "B"] and list(table.index) == ["G1", "G2"]


def test_expression_matrix_and_missing_genes(expression_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = read_expression(expression_file)
    matrix = expression_matrix(data, ["ENSG02.1", Gene("ENSG01", "chr20", 1000)], ["GTEX-C", "GTEX-A"])
    assert matrix.values.dtype == np.float32 and matrix.values.shape == (2, 2)
    np.testing.assert_array_equal(matrix.values, np.array([[-0.75, 1e-3], [0, 0.5]], dtype=np.float32))
    assert matrix.genes == ["ENSG02.1", "ENSG01"] and matrix.people == ["GTEX-C", "GTEX-A"]
    with pytest.raises(InputError, match="2 of 3 genes are not in .*: ENSG99, ENSG98"):
        expression_matrix(data, ["ENSG99", "ENSG03", "ENSG98"], ["GTEX-A"])
    with caplog.at_level(logging.WARNING, logger="varscore.training.cohort"):
        skipped = expression_matrix(data, ["ENSG99", "ENSG03"], ["GTEX-A"], missing="skip")
    assert skipped.genes == ["ENSG03"] and skipped.missing_genes == ["ENSG99"] and "ENSG99" in caplog.text
    with pytest.raises(InputError, match="people are not columns .*: NA12878"):
        expression_matrix(data, ["ENSG03"], ["GTEX-A", "NA12878"])


PEOPLE = [f"P{i:03d}" for i in range(100)]


def test_make_folds_sizes_disjoint_replicates_deterministic() -> None:
    folds = make_folds(PEOPLE)
    assert list(folds.columns) == ["person", "replicate", "split"] and len(folds) == 300
    assert sorted(folds["replicate"].unique()) == [0, 1, 2]
    tests = []
    for r in range(3):
        split = {s: set(fold_people(folds, r, s)) for s in ("train", "tune", "test")}
        assert [len(split[s]) for s in ("train", "tune", "test")] == [80, 10, 10]
        assert set.union(*split.values()) == set(PEOPLE)
        tests.append(split["test"])
    assert tests[0] != tests[1] and tests[1] != tests[2] and tests[0] != tests[2]
    pd.testing.assert_frame_equal(folds, make_folds(list(reversed(PEOPLE))))  # order does not matter
    assert not make_folds(PEOPLE, seed=1).equals(folds)
    small = make_folds(PEOPLE[:7], n_replicates=1)
    assert small["split"].value_counts().to_dict() == {"train": 5, "tune": 1, "test": 1}
    with pytest.raises(InputError, match="too few"):
        make_folds(PEOPLE[:2])
    with pytest.raises(InputError, match="summing to 1"):
        make_folds(PEOPLE, fractions=(0.8, 0.1, 0.2))
    with pytest.raises(InputError, match="more than once"):
        make_folds(["A", "B", "A"])


def test_folds_round_trip_unknown_and_missing_people(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folds = make_folds(PEOPLE, seed=4)
    path = write_folds(folds, tmp_path / "folds.tsv")
    assert path.read_text().splitlines()[0] == "person\treplicate\tsplit"
    pd.testing.assert_frame_equal(read_folds(path, PEOPLE), folds)
    with pytest.raises(InputError, match="names 95 people who are not in the cohort: P005, P006"):
        read_folds(path, PEOPLE[:5])
    with caplog.at_level(logging.WARNING, logger="varscore.training.cohort"):
        read = read_folds(path, [*PEOPLE, "NEW1", "NEW2"])
    assert read.attrs["missing_people"] == ["NEW1", "NEW2"] and "NEW1, NEW2" in caplog.text
    bad = tmp_path / "bad.tsv"
    bad.write_text("person\treplicate\tsplit\nA\t0\ttraining\n")
    with pytest.raises(InputError, match="train, tune or test; got training"):
        read_folds(bad)


def test_gene_sets_split_and_round_trip(tmp_path: Path) -> None:
    genes = [f"ENSG{i:05d}" for i in range(50)]
    sets = split_genes(genes, seed=2)
    assert sets["set"].value_counts().to_dict() == {"train": 40, "tune": 5, "test": 5}
    pd.testing.assert_frame_equal(sets, split_genes([Gene(g, "chr1", 1) for g in reversed(genes)], seed=2))
    path = write_gene_sets(sets, tmp_path / "genes.tsv")
    pd.testing.assert_frame_equal(read_gene_sets(path, genes), sets)
    paper_style = tmp_path / "paper.tsv"
    paper_style.write_text("gene_id\tset\nG1\ttrain\nG2\tvalid\nG3\ttest\n")
    assert read_gene_sets(paper_style)["set"].tolist() == ["train", "tune", "test"]
    with pytest.raises(InputError, match="unknown genes: G3"):
        read_gene_sets(paper_style, ["G1", "G2"])


def test_one_inverse_normal_transform_gives_both_formulas_bit_for_bit():
    """simulate's GTEx form rank/(n+1) is the shared transform with offset 0; the default is (rank-0.5)/n."""
    from scipy.stats import norm, rankdata

    from varscore.simulate import inverse_normal
    from varscore.training.cohort import inverse_normal_transform

    rng = np.random.default_rng(4)
    for n in (2, 9, 670):
        values = np.round(rng.normal(size=n), 1)  # ties included
        assert np.array_equal(inverse_normal(values), norm.ppf(rankdata(values) / (n + 1)))
        assert np.array_equal(inverse_normal_transform(values), norm.ppf((rankdata(values) - 0.5) / n))
    with pytest.raises(InputError, match="offset"):
        inverse_normal_transform(np.arange(3.0), offset=0.7)


def test_nested_train_subsets_grow_within_each_other():
    from varscore.training.cohort import nested_train_subset

    people = [f"P{i:03d}" for i in range(41)]
    subsets = [nested_train_subset(people, f, seed=3) for f in (0.25, 0.5, 0.75, 1.0)]
    assert [len(s) for s in subsets] == [round(0.25 * 41), round(0.5 * 41), round(0.75 * 41), 41]
    for small, large in zip(subsets, subsets[1:], strict=False):
        assert set(small) < set(large)
    assert subsets[-1] == sorted(people)
    # the input order does not matter; another seed draws other people
    assert nested_train_subset(people[::-1], 0.5, seed=3) == subsets[1]
    assert nested_train_subset(people, 0.5, seed=4) != subsets[1]
    assert len(nested_train_subset(people[:3], 0.1)) == 2  # never fewer than the loss's pair
    with pytest.raises(InputError, match=r"in \(0, 1\]"):
        nested_train_subset(people, 0.0)


def test_log2tpm_targets_from_a_gene_table_and_from_gtex_layout(tmp_path: Path):
    from varscore.training.cohort import read_targets

    rng = np.random.default_rng(0)
    people = ["A", "B", "C"]
    tpm = pd.DataFrame(rng.gamma(2.0, 10.0, size=(2, 3)).round(3), index=["G1", "G2"], columns=people)
    table = tmp_path / "tpm.tsv"
    tpm.rename_axis("gene_id").to_csv(table, sep="\t")
    bed = write_expression(
        tmp_path / "tpm.bed.gz",
        people,
        [("chr1", 100 * (i + 1), g, [str(v) for v in tpm.loc[g]]) for i, g in enumerate(tpm.index)],
    )
    expected = np.log2(pd.read_csv(table, sep="\t", index_col=0) + 2)
    for path in (table, bed):
        got = read_targets(path, "log2tpm").values
        pd.testing.assert_frame_equal(got, expected, check_names=False)
    # the default reads the values as they are
    pd.testing.assert_frame_equal(read_targets(bed).values, tpm, check_names=False)
    negative = tmp_path / "neg.tsv"
    (tpm - 100).rename_axis("gene_id").to_csv(negative, sep="\t")
    with pytest.raises(InputError, match="negative"):
        read_targets(negative, "log2tpm")
    with pytest.raises(InputError, match="Unknown targets"):
        read_targets(table, "tpm")


def test_a_people_file_naming_nobody_or_someone_twice_is_refused_everywhere(tmp_path: Path) -> None:
    """held_out_people (evaluate, drivers, attribute, report, plot-coverage) reads --people as rank-genes does."""
    from varscore.training.cohort import held_out_people, read_people_file

    people = tmp_path / "people.txt"
    people.write_text("A\nB\n\nA\n")
    with pytest.raises(InputError, match="names A more than once"):
        held_out_people(None, people)
    people.write_text("  \n")
    with pytest.raises(InputError, match="names nobody"):  # was: 'Model ... records no test people'
        held_out_people(None, people)
    people.write_text("A\r\nB\r\n")
    assert read_people_file(people) == ["A", "B"]
    assert held_out_people(None, people, cohort_people=["B", "A"]) == ["A", "B"]
