"""ISM tables against explicit mutate-and-predict, linear weights, tracks and the analysis CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tests.conftest import write_vcf
from varscore.analysis.ism import (
    ModelScorer,
    distance_to_tss,
    ism_table,
    read_gene_variants,
    write_ism_track,
)
from varscore.cli import cli
from varscore.errors import InputError
from varscore.examples import examples_dir
from varscore.genome.fasta import Genome
from varscore.genome.sequence import BASE_INDEX
from varscore.models.bundle import load_bundle
from varscore.types import Gene, tss_window

EXAMPLES = examples_dir()
PEOPLE = [f"P{i}" for i in range(8)]


@pytest.fixture
def cohort(toy_world):
    """Six SNVs in G1's and G2's windows (chr1, 64-bp windows around 200 and 230) for 8 people."""
    seqs = toy_world["seqs"]
    rng = np.random.default_rng(5)
    records, genotypes = [], []
    for pos in (175, 190, 199, 205, 222, 240):
        ref = seqs["chr1"][pos - 1]
        alt = next(b for b in "ACGT" if b != ref)
        records.append(("chr1", pos, ref, alt))
        genotypes.append([f"{rng.integers(0, 2)}|{rng.integers(0, 2)}" for _ in PEOPLE])
    vcf = write_vcf(
        toy_world["tmp"] / "cohort.vcf",
        records,
        samples=PEOPLE,
        contigs={"chr1": 1000, "chr2": 500},
        genotypes=genotypes,
    )
    return {**toy_world, "vcf": vcf, "records": records, "genotypes": genotypes}


def test_ism_table_matches_explicit_mutation(cohort):
    bundle = load_bundle(cohort["bundle"])
    scorer = ModelScorer.from_bundle(bundle)
    genome = Genome(cohort["fasta"])
    gene = cohort["genes"][1]  # minus strand
    variants = read_gene_variants(cohort["vcf"], [gene], genome, scorer.window_size)[gene.gene_id]
    table = ism_table(scorer, gene, genome, variants)
    window = tss_window(gene, scorer.window_size)
    reference = genome.window_sequence(window).one_hot
    mode = bundle.output_mode()
    ref_pred = mode.reduce(scorer.backbone.predict(reference[None]))[0, 0]
    inside = [r for r in cohort["records"] if window.start < r[1] <= window.end]
    assert table["pos"].tolist() == [r[1] for r in inside]
    for row in table.itertuples():
        mutated = reference.copy()
        mutated[row.pos - 1 - window.start] = np.eye(4)[BASE_INDEX[row.alt]]
        alt_pred = mode.reduce(scorer.backbone.predict(mutated[None]))[0, 0]
        assert row.delta == pytest.approx(alt_pred - ref_pred, rel=1e-5, abs=1e-6)
        assert row.distance_to_tss == gene.tss - row.pos  # minus strand: upstream is larger pos
    # MAF from the genotypes, explicitly
    for row in table.itertuples():
        i = [r[1] for r in cohort["records"]].index(row.pos)
        alt = sum(int(a) for gt in cohort["genotypes"][i] for a in gt.split("|")) / (2 * len(PEOPLE))
        assert row.maf == pytest.approx(min(alt, 1 - alt))


def test_saturation_scores_every_position_times_three(cohort):
    bundle = load_bundle(cohort["bundle"])
    scorer = ModelScorer.from_bundle(bundle)
    genome = Genome(cohort["fasta"])
    gene = cohort["genes"][0]
    table = ism_table(scorer, gene, genome, saturation=True)
    assert len(table) == 3 * scorer.window_size
    assert (table["ref"] != table["alt"]).all()
    assert table.groupby("pos").size().eq(3).all()
    assert table["maf"].isna().all()


def test_distance_to_tss_is_strand_aware():
    plus, minus = Gene("a", "chr1", 1000, "+"), Gene("b", "chr1", 1000, "-")
    assert distance_to_tss(np.array([900, 1100]), plus).tolist() == [-100, 100]
    assert distance_to_tss(np.array([900, 1100]), minus).tolist() == [100, -100]


def test_linear_model_weights_are_two_times_the_coefficient():
    bundle = load_bundle(EXAMPLES / "models" / "elastic-net-demo")
    scorer = ModelScorer.from_bundle(bundle)
    gene = next(g for g in bundle.genes if g.label == "SNAP25")
    weights = scorer.backbone.gene_weights(gene.gene_id)
    chrom, pos, ref, alt = zip(*(k.split(":") for k in weights.variant_keys), strict=True)
    table = pd.DataFrame({"chrom": chrom, "pos": np.array(pos, dtype=int), "ref": ref, "alt": alt})
    scored = scorer.score(gene, np.zeros((0, 4)), table)
    np.testing.assert_allclose(scored["delta"], 2 * weights.coef)
    assert (scored["ref_pred"] == weights.intercept).all()


def test_track_keeps_the_largest_effect_per_position(tmp_path):
    table = pd.DataFrame({"chrom": "chr1", "pos": [10, 10, 10, 12], "delta": [0.1, -0.5, 0.2, 0.3]})
    path = write_ism_track(table, tmp_path / "ism.bedGraph", {"chr1": 100})
    lines = path.read_text().splitlines()
    assert lines[0].startswith("track type=bedGraph")
    assert lines[1:] == ["chr1\t9\t10\t-0.5", "chr1\t11\t12\t0.3"]
    import pybigtools

    bigwig = write_ism_track(table, tmp_path / "ism.bw", {"chr1": 100})
    values = list(pybigtools.open(str(bigwig)).records("chr1"))
    assert [(s, e, round(v, 6)) for s, e, v in values] == [(9, 10, -0.5), (11, 12, 0.3)]


def test_analysis_jobs_on_the_toy_world(cohort, tmp_path):
    from varscore.analysis.drivers import DriversJob, run_drivers
    from varscore.analysis.hsv import HsvJob, run_hsv
    from varscore.analysis.inputs import AnalysisInputs
    from varscore.analysis.ism import IsmJob, run_ism

    bundle = str(cohort["bundle"])
    people = tmp_path / "people.txt"
    people.write_text("\n".join(PEOPLE) + "\n")
    out = tmp_path / "ism.tsv"
    track = tmp_path / "ism.bedGraph"
    ism = run_ism(IsmJob(AnalysisInputs(bundle, cohort["vcf"], gene_names=("GENEA",)), out, track=track))
    assert ism.output == out and ism.track == track and track.is_file()
    assert ism.notes()[0] == f"wrote {out} ({len(ism.table)} substitutions, 1 genes)"
    table = pd.read_csv(out, sep="\t")
    assert list(table.columns) == [
        "chrom",
        "pos",
        "ref",
        "alt",
        "gene",
        "distance_to_tss",
        "ref_pred",
        "alt_pred",
        "delta",
        "maf",
    ]
    result = run_hsv(HsvJob(AnalysisInputs(bundle, cohort["vcf"]), tmp_path / "hsv.tsv", k=2))
    hsv = pd.read_csv(tmp_path / "hsv.tsv", sep="\t")
    assert hsv["pos"].tolist() == result.hsvs["pos"].tolist()
    top = hsv[hsv["gene"] == "GENEA"]
    assert len(top) == 2
    assert sorted(top["delta"].abs()) == pytest.approx(sorted(table["delta"].abs().nlargest(2)), rel=1e-5)  # 6 digits
    drivers = run_drivers(DriversJob(AnalysisInputs(bundle, cohort["vcf"]), tmp_path / "drivers.tsv", people))
    assert (tmp_path / "drivers.tsv").is_file()
    assert "explained_all" in drivers.lines()[0]


def test_saturation_job_without_a_vcf_writes_no_maf(cohort, tmp_path):
    from varscore.analysis.inputs import AnalysisInputs
    from varscore.analysis.ism import IsmJob, run_ism

    out = tmp_path / "saturation.tsv"
    result = run_ism(IsmJob(AnalysisInputs(str(cohort["bundle"]), gene_names=("GENEA",)), out, saturation=True))
    table = pd.read_csv(out, sep="\t")
    assert len(table) == len(result.table) == 3 * 64 and "maf" not in table.columns
    assert result.lines() == [] and result.notes() == [f"wrote {out} (192 substitutions, 1 genes)"]


def test_analysis_commands_parse_and_give_one_line_errors(cohort, tmp_path):
    runner = CliRunner()
    bundle = str(cohort["bundle"])
    out = tmp_path / "ism.tsv"
    result = runner.invoke(cli, ["ism", "-m", bundle, "--vcf", str(cohort["vcf"]), "-o", str(out), "--gene", "GENEA"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (" in result.output and out.is_file()
    # user errors are one line, no traceback
    result = runner.invoke(cli, ["hsv", "-m", bundle, "--vcf", str(cohort["vcf"]), "-o", str(tmp_path / "x.tsv")])
    assert result.exit_code == 1 and "exactly one of --linear" in result.output
    result = runner.invoke(cli, ["ism", "-m", bundle, "-o", str(tmp_path / "x.tsv")])
    assert result.exit_code == 1 and "--saturation" in result.output
    result = runner.invoke(cli, ["drivers", "-m", bundle, "--vcf", str(cohort["vcf"]), "-o", str(tmp_path / "x.tsv")])
    assert result.exit_code == 1 and "--people" in result.output
    assert "Traceback" not in result.output


def test_saturation_progress_moves_per_allele_and_chunks_do_not_change_scores(cohort, monkeypatch):
    """A saturation scan of one gene reports progress per chunk of alleles; chunking is exact."""
    import varscore.analysis.ism as ism_module

    scorer = ModelScorer.from_bundle(load_bundle(cohort["bundle"]))
    genome = Genome(cohort["fasta"])
    gene = cohort["genes"][0]
    whole = ism_table(scorer, gene, genome, saturation=True)
    monkeypatch.setattr(ism_module, "CHUNK_ALLELES", 10)
    steps: list[int] = []
    chunked = ism_table(scorer, gene, genome, saturation=True, advance=steps.append)
    assert (
        sum(steps)
        == len(chunked)
        == 3 * scorer.window_size
        == ism_module.alleles_to_score(scorer, [gene], None, saturation=True)
    )
    assert len(steps) == -(-len(chunked) // 10) and max(steps) == 10
    pd.testing.assert_frame_equal(whole, chunked)


def test_a_precomputed_ism_table_gives_the_same_results_exactly_without_scoring(cohort, tmp_path, monkeypatch):
    """hsv and drivers given the table ``ism`` wrote (``--ism``) equal the runs that compute the
    ISM themselves, file for file, and run no model forward for the ISM."""
    from varscore.analysis.drivers import DriversJob, run_drivers
    from varscore.analysis.hsv import HsvJob, run_hsv
    from varscore.analysis.inputs import AnalysisInputs
    from varscore.analysis.ism import IsmJob, SequenceScorer, run_ism

    inputs = AnalysisInputs(str(cohort["bundle"]), cohort["vcf"])
    people = tmp_path / "people.txt"
    people.write_text("\n".join(PEOPLE) + "\n")
    run_ism(IsmJob(inputs, tmp_path / "ism.tsv"))
    hsv = run_hsv(HsvJob(inputs, tmp_path / "hsv.tsv", k=2))
    drivers = run_drivers(DriversJob(inputs, tmp_path / "drivers.tsv", people, summary_output=tmp_path / "sum.tsv"))
    calls = {"n": 0}
    original = SequenceScorer._predictions

    def counted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SequenceScorer, "_predictions", counted)
    hsv_reused = run_hsv(HsvJob(inputs, tmp_path / "hsv2.tsv", k=2, ism=tmp_path / "ism.tsv"))
    drivers_reused = run_drivers(
        DriversJob(
            inputs, tmp_path / "drivers2.tsv", people, summary_output=tmp_path / "sum2.tsv", ism=tmp_path / "ism.tsv"
        )
    )
    assert calls["n"] == 0
    pd.testing.assert_frame_equal(hsv_reused.hsvs, hsv.hsvs)
    pd.testing.assert_frame_equal(hsv_reused.controls, hsv.controls)
    pd.testing.assert_frame_equal(drivers_reused.drivers, drivers.drivers)
    pd.testing.assert_frame_equal(drivers_reused.summary, drivers.summary)
    for first, second in [("hsv.tsv", "hsv2.tsv"), ("drivers.tsv", "drivers2.tsv"), ("sum.tsv", "sum2.tsv")]:
        assert (tmp_path / first).read_bytes() == (tmp_path / second).read_bytes()
    assert len(hsv.hsvs) and len(drivers.summary)


def test_an_ism_table_of_another_model_or_other_variants_is_refused(cohort, tmp_path):
    import json

    from varscore.analysis.hsv import HsvJob, run_hsv
    from varscore.analysis.inputs import AnalysisInputs
    from varscore.analysis.ism import IsmJob, run_ism

    bundle = str(cohort["bundle"])
    table = tmp_path / "ism.tsv"
    run_ism(IsmJob(AnalysisInputs(bundle, cohort["vcf"], gene_names=("GENEA",)), table))
    sidecar = tmp_path / "ism.tsv.provenance.json"
    recorded = json.loads(sidecar.read_text())

    def hsv_error(**changes: object) -> str:
        with pytest.raises(InputError) as caught:
            run_hsv(HsvJob(AnalysisInputs(bundle, cohort["vcf"], **changes), tmp_path / "hsv.tsv", k=1, ism=table))  # type: ignore[arg-type]
        assert "\n" not in str(caught.value)
        return str(caught.value)

    # the table scores GENEA only: GENEB's SNVs are missing
    assert "does not score" in hsv_error() and "of GENEB in this VCF" in hsv_error()
    assert not (tmp_path / "hsv.tsv").exists()
    sha = recorded["varscore_model"]["SHA256"]
    sidecar.write_text(json.dumps({**recorded, "varscore_model": {**recorded["varscore_model"], "SHA256": "0" * 64}}))
    assert hsv_error(gene_names=("GENEA",)) == (
        f"--ism {table} was computed with model 'toy-model' (weights sha256 000000000000), not 'toy-model' ({sha[:12]}): "
        "compute it with 'varscore ism -m toy-model --vcf VCF'."
    )
    sidecar.write_text(json.dumps(recorded))
    pd.read_csv(table, sep="\t").drop(columns=["delta"]).to_csv(table, sep="\t", index=False)
    assert hsv_error(gene_names=("GENEA",)) == f"--ism {table} lacks the ISM column(s) delta."
    sidecar.unlink()
    assert "has no provenance sidecar" in hsv_error(gene_names=("GENEA",))


def test_hsv_and_drivers_commands_take_an_ism_table(cohort, tmp_path):
    runner = CliRunner()
    bundle, vcf = str(cohort["bundle"]), str(cohort["vcf"])
    table = tmp_path / "ism.tsv"
    assert runner.invoke(cli, ["ism", "-m", bundle, "--vcf", vcf, "-o", str(table)]).exit_code == 0
    people = tmp_path / "people.txt"
    people.write_text("\n".join(PEOPLE) + "\n")
    for args in (["hsv", "--k", "2"], ["drivers", "--people", str(people)]):
        plain = runner.invoke(cli, [*args, "-m", bundle, "--vcf", vcf, "-o", str(tmp_path / "a.tsv")])
        reused = runner.invoke(
            cli, [*args, "-m", bundle, "--vcf", vcf, "--ism", str(table), "-o", str(tmp_path / "b.tsv")]
        )
        assert plain.exit_code == reused.exit_code == 0, reused.output
        assert plain.stdout == reused.stdout
        assert (tmp_path / "a.tsv").read_bytes() == (tmp_path / "b.tsv").read_bytes()
    missing = runner.invoke(
        cli, ["hsv", "--k", "2", "-m", bundle, "--vcf", vcf, "--ism", str(tmp_path / "no.tsv"), "-o", "x"]
    )
    assert missing.exit_code == 2 and "does not exist" in missing.output


def _edited(table: pd.DataFrame, row: int, column: str, value: object) -> pd.DataFrame:
    edited = table.astype({column: object})
    edited.loc[row, column] = value
    return edited


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # silently ranked before: a NaN dropped the SNV from the HSVs, an inf topped them
        (lambda t: _edited(t, 0, "delta", float("nan")), "missing, NaN or infinite prediction"),
        (lambda t: _edited(t, 0, "delta", float("inf")), "missing, NaN or infinite prediction"),
        (lambda t: _edited(t, 0, "ref_pred", ""), "missing, NaN or infinite prediction"),
        # tracebacks before
        (lambda t: _edited(t, 1, "pos", "abc"), "line 3: pos 'abc' is not an integer position"),
        (lambda t: _edited(t, 1, "delta", "x"), "line 3: delta 'x' is not a number"),
        # silently truncated to an integer before
        (lambda t: _edited(t, 1, "pos", t["pos"][1] + 0.5), "is not an integer position"),
        # the first of two disagreeing rows was used before
        (
            lambda t: pd.concat([_edited(t.iloc[[0]], 0, "delta", 99.0).assign(alt_pred=99.0 + t["ref_pred"][0]), t]),
            "more than once, with different values",
        ),
        (lambda t: _edited(t, 0, "delta", t["delta"][0] + 1), "delta is not alt_pred - ref_pred"),
    ],
)
def test_a_damaged_ism_table_is_refused_in_one_line(cohort, tmp_path, edit, message):
    from varscore.analysis.hsv import HsvJob, run_hsv
    from varscore.analysis.inputs import AnalysisInputs
    from varscore.analysis.ism import IsmJob, run_ism

    inputs = AnalysisInputs(str(cohort["bundle"]), cohort["vcf"], gene_names=("GENEA",))
    table = tmp_path / "ism.tsv"
    run_ism(IsmJob(inputs, table))
    edit(pd.read_csv(table, sep="\t")).to_csv(table, sep="\t", index=False)
    with pytest.raises(InputError, match=message) as caught:
        run_hsv(HsvJob(inputs, tmp_path / "hsv.tsv", k=1, ism=table))
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "hsv.tsv").exists()


def test_an_ism_table_takes_maf_and_distance_from_the_vcf_and_repeats_that_agree(cohort, tmp_path):
    from varscore.analysis.hsv import HsvJob, run_hsv
    from varscore.analysis.inputs import AnalysisInputs
    from varscore.analysis.ism import IsmJob, run_ism

    inputs = AnalysisInputs(str(cohort["bundle"]), cohort["vcf"], gene_names=("GENEA",))
    table = tmp_path / "ism.tsv"
    run_ism(IsmJob(inputs, table))
    computed = run_hsv(HsvJob(inputs, tmp_path / "a.tsv", k=2)).hsvs
    original = pd.read_csv(table, sep="\t")
    # a table from other people (other MAFs), with a wrong distance and a row repeated identically
    edited = original.assign(maf=0.5, distance_to_tss=original["distance_to_tss"] + 7)
    pd.concat([edited, edited.iloc[[0]]]).to_csv(table, sep="\t", index=False)
    reused = run_hsv(HsvJob(inputs, tmp_path / "b.tsv", k=2, ism=table)).hsvs
    pd.testing.assert_frame_equal(reused, computed)
    assert (tmp_path / "a.tsv").read_bytes() == (tmp_path / "b.tsv").read_bytes()
