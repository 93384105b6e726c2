"""``evaluate``'s uncertainty: bootstrap CIs over held-out people against a slow explicit loop
(sklearn ``r2_score`` and scipy ``pearsonr`` per resample), paired differences, summaries that
count NaN genes, and the CLI on the bundled demo models."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import pearsonr
from sklearn.metrics import r2_score

from varscore.cli import cli
from varscore.errors import InputError
from varscore.examples import data_dir, models_dir
from varscore.training.cohort import CohortInputs
from varscore.training.evaluate import EvaluateJob, run_evaluation
from varscore.training.uncertainty import (
    bootstrap_indices,
    gene_uncertainty,
    paired_difference,
    pearson_p,
    replicate_summary,
    summarise,
)

DATA = data_dir()
INPUTS = CohortInputs(
    DATA / "cohort.vcf.gz",
    DATA / "cohort.expression.bed.gz",
    DATA / "genes.tsv",
    DATA / "ucsc.hg19.chr20.unittest.fasta.gz",
)
COHORT = [
    "--vcf",
    str(DATA / "cohort.vcf.gz"),
    "--expression",
    str(DATA / "cohort.expression.bed.gz"),
    "--genes",
    str(DATA / "genes.tsv"),
    "--fasta",
    str(DATA / "ucsc.hg19.chr20.unittest.fasta.gz"),
]


def slow_percentile_ci(values: list[float]) -> tuple[float, float]:
    finite = sorted(v for v in values if not math.isnan(v))
    return float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))


def slow_bootstrap(y: np.ndarray, p: np.ndarray, n_boot: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(y), size=(n_boot, len(y)))  # people drawn with replacement
    r2s, rs = [], []
    for b in range(n_boot):
        ys = [y[draws[b, i]] for i in range(len(y))]
        ps = [p[draws[b, i]] for i in range(len(y))]
        r2s.append(r2_score(ys, ps) if np.ptp(ys) > 0 else math.nan)
        rs.append(pearsonr(ys, ps)[0] if np.ptp(ys) > 0 and np.ptp(ps) > 0 else math.nan)
    (r2_lo, r2_hi), (r_lo, r_hi) = slow_percentile_ci(r2s), slow_percentile_ci(rs)
    return {"r2_lo": r2_lo, "r2_hi": r2_hi, "pearson_lo": r_lo, "pearson_hi": r_hi}


@pytest.mark.parametrize("seed", [0, 7])
def test_bootstrap_cis_equal_a_slow_explicit_loop(seed):
    rng = np.random.default_rng(100 + seed)
    y = rng.normal(size=25)
    p = 0.6 * y + rng.normal(size=25)
    p[:3] = p[3]  # ties: some resamples are near-constant
    fast = gene_uncertainty(y, p, bootstrap_indices(len(y), 400, seed))
    slow = slow_bootstrap(y, p, 400, seed)
    for key, value in slow.items():
        assert fast[key] == pytest.approx(value, abs=1e-10), key
    assert fast["pearson_p"] == pytest.approx(pearsonr(y, p).pvalue, rel=1e-9)
    # seeded: the same seed gives the same interval, another seed another one
    assert gene_uncertainty(y, p, bootstrap_indices(len(y), 400, seed)) == fast
    assert gene_uncertainty(y, p, bootstrap_indices(len(y), 400, seed + 1))["r2_lo"] != fast["r2_lo"]
    assert fast["r2_lo"] < r2_score(y, p) < fast["r2_hi"]


def test_paired_difference_equals_a_slow_loop_on_the_same_resamples():
    rng = np.random.default_rng(3)
    y = rng.normal(size=30)
    a = 0.3 * y + rng.normal(size=30)
    b = 0.8 * y + 0.5 * rng.normal(size=30)
    indices = bootstrap_indices(len(y), 300, 5)
    fast = paired_difference(y, a, b, indices)
    diffs = [r2_score(y[i], b[i]) - r2_score(y[i], a[i]) for i in indices]
    assert fast["d_r2"] == pytest.approx(r2_score(y, b) - r2_score(y, a))
    assert (fast["d_r2_lo"], fast["d_r2_hi"]) == pytest.approx(slow_percentile_ci(diffs), abs=1e-10)
    share_not_better = sum(d <= 0 for d in diffs) / len(diffs)
    assert fast["d_r2_p"] == pytest.approx(min(1.0, 2 * min(share_not_better, sum(d >= 0 for d in diffs) / 300)))
    r_diffs = [pearsonr(y[i], b[i])[0] - pearsonr(y[i], a[i])[0] for i in indices]
    assert (fast["d_pearson_lo"], fast["d_pearson_hi"]) == pytest.approx(slow_percentile_ci(r_diffs), abs=1e-10)
    assert fast["d_r2_lo"] > 0  # b is clearly better


def test_pearson_p_is_scipys_two_sided_p():
    rng = np.random.default_rng(1)
    for n in (3, 5, 40):
        x, y = rng.normal(size=n), rng.normal(size=n)
        result = pearsonr(x, y)
        assert pearson_p(float(result.statistic), n) == pytest.approx(result.pvalue, rel=1e-9, abs=1e-15)
    assert math.isnan(pearson_p(math.nan, 10))


def test_summaries_count_the_genes_they_average_and_the_nan_ones():
    table = pd.DataFrame(
        {
            "model": "m",
            "set": ["HOP", "HOP", "HOP", "HOGP"],
            "gene": list("abcd"),
            "r2": [0.2, 0.4, -0.1, 0.3],
            "pearson": [0.5, np.nan, 0.1, 0.6],
        }
    )
    row = summarise(table).set_index("set").loc["HOP"]
    assert row["genes"] == 3 and row["pearson_n"] == 2 and row["pearson_nan"] == 1
    assert row["pearson_mean"] == pytest.approx(0.3)  # the NaN gene is counted, not averaged as 0
    assert row["r2_mean"] == pytest.approx(0.5 / 3)
    reps = pd.concat([table.assign(replicate=i, r2=table["r2"] + 0.1 * i) for i in range(3)])
    over = replicate_summary(reps).set_index("set").loc["HOP"]
    assert over["replicates"] == 3
    assert over["r2_mean"] == pytest.approx(0.5 / 3 + 0.1)
    assert over["r2_sd"] == pytest.approx(np.std([0.5 / 3 + 0.1 * i for i in range(3)], ddof=1))


def test_evaluate_writes_ci_and_p_columns(tmp_path):
    out = tmp_path / "t.tsv"
    result = run_evaluation(EvaluateJob(INPUTS, [models_dir() / "elastic-net-demo"], n_boot=200, output=out))
    assert result.written == [out, tmp_path / "t.tsv.provenance.json"]
    table = pd.read_csv(out, sep="\t")
    for column in ("r2_lo", "r2_hi", "pearson_lo", "pearson_hi", "pearson_p"):
        assert table[column].notna().all(), column
    assert (table["r2_lo"] <= table["r2"]).all() and (table["r2"] <= table["r2_hi"]).all()
    snap = table.set_index("gene").loc["SNAP25"]
    assert snap["pearson_p"] < 1e-6 and snap["pearson_lo"] > 0.4
    shown = "\n".join(result.lines())
    assert "r2_nan" in shown and "pearson_n" in shown


def test_evaluate_command_prints_the_jobs_lines(tmp_path):
    """The command is parse -> job -> run -> print: its output is the result's lines."""
    model = str(models_dir() / "elastic-net-demo")
    args = ["evaluate", *COHORT, "-m", model, "--gene", "SNAP25", "--bootstrap", "50", "--bootstrap-seed", "3"]
    result = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "cli.tsv")])
    assert result.exit_code == 0, result.output
    inputs = replace(INPUTS, gene_names=["SNAP25"])
    job = EvaluateJob(inputs, [model], n_boot=50, seed=3, output=tmp_path / "job.tsv")
    assert result.output == "\n".join(run_evaluation(job).lines()) + "\n"
    assert (tmp_path / "cli.tsv").read_text() == (tmp_path / "job.tsv").read_text()


@pytest.mark.slow
def test_evaluate_compare_gives_paired_differences(tmp_path):
    out = tmp_path / "t.tsv"
    models = models_dir()
    inputs = replace(INPUTS, gene_names=["SNAP25", "JAG1"])
    job = EvaluateJob(
        inputs, [models / "variformer-demo"], compare=[models / "elastic-net-demo"], n_boot=300, output=out
    )
    result = run_evaluation(job)
    assert result.written[-1] == tmp_path / "t.compare.tsv" and result.reference == "variformer-demo"
    paired = pd.read_csv(tmp_path / "t.compare.tsv", sep="\t").set_index("gene")
    table = pd.read_csv(out, sep="\t").set_index(["model", "gene"])
    for gene in ("SNAP25", "JAG1"):
        row = paired.loc[gene]
        expected = table.loc[("elastic-net-demo", gene), "r2"] - table.loc[("variformer-demo", gene), "r2"]
        assert row["d_r2"] == pytest.approx(expected, abs=2e-3)  # the TSV rounds to 4 digits
        assert row["d_r2_lo"] <= row["d_r2"] <= row["d_r2_hi"]
    assert "paired difference from variformer-demo" in "\n".join(result.lines())


@pytest.mark.slow
def test_evaluate_replicates_gives_mean_and_sd_over_fold_replicates(tmp_path):
    """Three elastic nets fitted on the 3 fold replicates of the demo folds: each is evaluated on
    its own test people; the replicate summary is the mean ± sd of the per-replicate gene means."""
    from varscore.models.bundle import load_bundle
    from varscore.training.finetune import FinetuneJob, run_finetune

    folds = models_dir() / "variformer-demo" / "folds.tsv"
    bundles = []
    for replicate in range(3):
        out = tmp_path / f"enet{replicate}"
        inputs = replace(INPUTS, folds=folds, replicate=replicate, gene_names=["SNAP25", "MKKS"])
        job = FinetuneJob(inputs, out, backbone="elastic-net", settings={"window": 16384})
        assert run_finetune(job).bundle == out
        bundles.append(out)
    table_path = tmp_path / "t.tsv"
    result = run_evaluation(EvaluateJob(INPUTS, bundles, replicates=True, n_boot=100, output=table_path))
    table = pd.read_csv(table_path, sep="\t")
    assert sorted(table["replicate"].unique()) == [0, 1, 2]
    for replicate, path in enumerate(bundles):  # its own test people
        assert (
            table.loc[table["replicate"] == replicate, "people"] == len(load_bundle(path).manifest["people"]["test"])
        ).all()
    means = table.groupby("replicate")["r2"].mean()
    line = next(ln for ln in result.lines()[::-1] if ln.strip().startswith("HOP"))
    values = line.split()
    assert int(values[1]) == 3
    assert float(values[2]) == pytest.approx(means.mean(), abs=2e-3)
    assert float(values[3]) == pytest.approx(means.std(ddof=1), abs=2e-3)


def _other_cohort(source: CohortInputs, people: list[str], folder, prefix: str = "ROS-") -> CohortInputs:
    """``people`` of ``source`` as another cohort would ship them: samples renamed ``prefix`` +
    name, contigs renamed chr20 -> 20 (bcftools annotate --rename-chrs), expression columns renamed
    to match; the gene table and FASTA stay as they are."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "people.txt").write_text("\n".join(people) + "\n")
    (folder / "names.txt").write_text("".join(f"{p} {prefix}{p}\n" for p in people))
    (folder / "chrs.txt").write_text("chr20 20\n")
    vcf = folder / "cohort.vcf.gz"
    subset = subprocess.run(
        ["bcftools", "view", "-S", str(folder / "people.txt"), "-Ou", str(source.vcf)], check=True, capture_output=True
    ).stdout
    renamed = subprocess.run(
        ["bcftools", "annotate", "--rename-chrs", str(folder / "chrs.txt"), "-Ou", "-"],
        input=subset,
        check=True,
        capture_output=True,
    ).stdout
    reheadered = subprocess.run(
        ["bcftools", "reheader", "-s", str(folder / "names.txt"), "-"], input=renamed, check=True, capture_output=True
    ).stdout
    subprocess.run(["bcftools", "view", "-Oz", "-o", str(vcf), "-"], input=reheadered, check=True)
    subprocess.run(["bcftools", "index", "-t", str(vcf)], check=True)
    table = pd.read_csv(source.expression, sep="\t")
    table = table[[*table.columns[:4], *people]].rename(columns={p: f"{prefix}{p}" for p in people})
    expression = folder / "cohort.expression.bed"
    table.to_csv(expression, sep="\t", index=False)
    return CohortInputs(vcf, expression, source.genes, source.fasta)


@pytest.mark.slow
def test_evaluate_on_another_cohort_with_other_names_and_contigs(tmp_path):
    """Fig. 1d: models trained on one cohort, evaluated in one call on another whose people carry
    other sample names and whose VCF names the contig 20 instead of chr20 (``--all-people``). Here
    the other cohort is the demo models' own test people renamed: every metric equals the ordinary
    evaluation on those people in the original cohort (the manual harmonisation)."""
    from varscore.models.bundle import load_bundle

    models = [models_dir() / "variformer-demo", models_dir() / "elastic-net-demo"]
    test_people = load_bundle(models[0]).spec.held_out("test")
    genes = ["SNAP25", "MKKS"]
    other = replace(_other_cohort(INPUTS, test_people, tmp_path / "other"), gene_names=genes)
    assert "20" in subprocess_contigs(other.vcf) and "chr20" not in subprocess_contigs(other.vcf)
    with pytest.raises(InputError, match="not in the cohort"):  # without --all-people: the models' own folds
        run_evaluation(EvaluateJob(other, models, n_boot=20))
    crossed = run_evaluation(EvaluateJob(other, models, n_boot=20, all_people=True))
    original = run_evaluation(EvaluateJob(replace(INPUTS, gene_names=genes), models, n_boot=20)).table
    assert not any("share their names" in line for line in crossed.lines())
    table = crossed.table
    assert (table["people"] == len(test_people)).all() and len(table) == len(original) == 4
    table, original = (t.set_index(["model", "gene"]).sort_index() for t in (table, original))
    for column in ("r2", "pearson", "pearson_p"):
        np.testing.assert_allclose(table[column], original[column], rtol=1e-6, atol=1e-9, err_msg=column)
    assert table["pearson"].notna().all()  # the elastic net found its variants under the other contig name
    # people named as the models' training people are flagged (the same people seen in training?)
    train_people = load_bundle(models[1]).spec.held_out("train")[:20]
    same = replace(_other_cohort(INPUTS, train_people, tmp_path / "same", prefix=""), gene_names=["SNAP25"])
    flagged = run_evaluation(EvaluateJob(same, models[1:], n_boot=20, all_people=True)).lines()
    assert any("20 of the 20 people evaluated share their names with elastic-net-demo" in ln for ln in flagged)
    with pytest.raises(InputError, match="not both"):
        run_evaluation(EvaluateJob(other, models, people_file=tmp_path / "p.txt", all_people=True))


def subprocess_contigs(vcf) -> set[str]:
    import subprocess

    text = subprocess.run(["bcftools", "index", "-s", str(vcf)], check=True, capture_output=True, text=True).stdout
    return {line.split("\t")[0] for line in text.splitlines()}


@pytest.mark.slow
def test_evaluate_on_a_second_simulated_cohort_equals_its_harmonised_copy(tmp_path):
    """A second cohort simulated with another seed over the same genes (other people), shipped
    with other sample names and contig 20: one ``--all-people`` call gives the metrics of the same
    cohort after manual harmonisation (contig renamed back to chr20 with bcftools)."""
    import subprocess

    data = data_dir()
    simulated = tmp_path / "second"
    args = ["simulate", "-o", str(simulated), "--fasta", str(data / "ucsc.hg19.chr20.unittest.fasta.gz")]
    args += ["--gene-table", str(data / "protein_coding_tss_hg19.tsv"), "--region", "chr20:9,995,001-11,095,000"]
    result = CliRunner().invoke(cli, [*args, "--seed", "11", "--people", "40", "--window", "16384"])
    assert result.exit_code == 0, result.output
    source = replace(INPUTS, vcf=simulated / "cohort.vcf.gz", expression=simulated / "cohort.expression.bed.gz")
    people = pd.read_csv(source.expression, sep="\t", nrows=0).columns[4:].tolist()
    shipped = replace(_other_cohort(source, people, tmp_path / "shipped", prefix="DLPFC-"), gene_names=["SNAP25"])
    harmonised = tmp_path / "harmonised.vcf.gz"
    (tmp_path / "back.txt").write_text("20 chr20\n")
    subprocess.run(
        ["bcftools", "annotate", "--rename-chrs", str(tmp_path / "back.txt"), "-Oz", "-o", str(harmonised)]
        + [str(shipped.vcf)],
        check=True,
    )
    subprocess.run(["bcftools", "index", "-t", str(harmonised)], check=True)
    assert subprocess_contigs(harmonised) == {"chr20"}
    models = [models_dir() / "variformer-demo", models_dir() / "elastic-net-demo"]
    tables = [
        run_evaluation(EvaluateJob(inputs, models, n_boot=50, all_people=True)).table
        for inputs in (shipped, replace(shipped, vcf=harmonised))
    ]
    assert (tables[0]["people"] == 40).all()
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert tables[0]["r2"].notna().all()


def test_all_people_evaluates_a_cohort_too_small_to_split(tmp_path):
    """--all-people uses no folds, yet a cohort of 5 people was refused as 'too few to split
    (0.8, 0.1, 0.1)'; every person is evaluated (metrics equal numpy's on the same predictions),
    and one person is a one-line error."""
    from varscore.models.bundle import load_bundle

    model = models_dir() / "elastic-net-demo"
    people = load_bundle(model).spec.held_out("test")[:5]
    other = replace(_other_cohort(INPUTS, people, tmp_path / "five"), gene_names=["SNAP25"])
    result = run_evaluation(EvaluateJob(other, [model], n_boot=20, all_people=True))
    row = result.table.iloc[0]
    assert row["people"] == 5
    whole = run_evaluation(
        EvaluateJob(
            replace(INPUTS, gene_names=["SNAP25"]), [model], n_boot=20, people_file=tmp_path / "five/people.txt"
        )
    ).table.iloc[0]
    assert row["r2"] == pytest.approx(whole["r2"], abs=1e-9) and row["pearson"] == pytest.approx(whole["pearson"])
    one = replace(_other_cohort(INPUTS, people[:1], tmp_path / "one"), gene_names=["SNAP25"])
    with pytest.raises(InputError, match="needs at least 2 people .*; got 1"):
        run_evaluation(EvaluateJob(one, [model], n_boot=20, all_people=True))
