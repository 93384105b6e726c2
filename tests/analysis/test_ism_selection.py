"""``varscore ism --regions/--shard``: shards concatenated equal one run, regions as bcftools
selects them, refusals in one line; and ``varscore merge`` of ISM shard tables."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import random_sequence, write_fasta, write_vcf
from varscore.analysis.inputs import AnalysisInputs
from varscore.analysis.ism import IsmJob, run_ism
from varscore.cli import cli
from varscore.errors import InputError
from varscore.io.merge import MergeJob, run_merge
from varscore.scoring.selection import parse_selection
from varscore.types import Gene

PEOPLE = [f"P{i}" for i in range(6)]
# 64-bp windows (the toy backbone's): G1 and G2 overlap, the others stand apart
GENES = [
    Gene("G1", "chr1", 100, "+", "GENEA"),
    Gene("G2", "chr1", 130, "-", "GENEB"),
    Gene("G3", "chr1", 300, "+", "GENEC"),
    Gene("G4", "chr1", 500, "-", "GENED"),
    Gene("G5", "chr1", 700, "+", "GENEE"),
    Gene("G6", "chr2", 250, "+", "GENEF"),
]
POSITIONS = {
    "chr1": [75, 90, 101, 120, 150, 160, 200, 280, 290, 310, 320, 400, 480, 499, 520, 690, 700, 705, 900],
    "chr2": [230, 240, 260, 270, 400],
}


def _world(folder: Path, genes: list[Gene] = GENES) -> dict[str, Any]:
    from tests.toy_plugin import ToyBackbone
    from varscore.models.bundle import BundleMetadata, save_bundle
    from varscore_plugins.outputs import ScalarOutput

    rng = np.random.default_rng(3)
    seqs = {"chr1": random_sequence(rng, 1000), "chr2": random_sequence(rng, 500)}
    fasta = write_fasta(folder / "ref.fa", seqs)
    bundle = save_bundle(
        folder / "models" / "toy",
        name="toy",
        backbone=ToyBackbone().build(),
        output_mode=ScalarOutput(track=1, center_bins=1),
        genes=genes,
        about=BundleMetadata(reference_fasta=fasta),
    )
    records, genotypes = [], []
    for chrom, positions in POSITIONS.items():
        for pos in positions:
            ref = seqs[chrom][pos - 1]
            records.append((chrom, pos, ref, next(b for b in "ACGT" if b != ref)))
            genotypes.append([f"{rng.integers(0, 2)}|{rng.integers(0, 2)}" for _ in PEOPLE])
    vcf = write_vcf(
        folder / "cohort.vcf.gz", records, samples=PEOPLE, contigs={"chr1": 1000, "chr2": 500}, genotypes=genotypes
    )
    return {"bundle": str(bundle), "vcf": vcf, "records": records}


@pytest.fixture
def world(tmp_path: Path, toy_plugin: Any) -> dict[str, Any]:
    return _world(tmp_path)


def _ism(world: dict[str, Any], out: Path, **selection: Any) -> Path:
    run_ism(IsmJob(AnalysisInputs(world["bundle"], world["vcf"]), out, selection=parse_selection(**selection)))
    return out


def test_three_shards_merged_equal_the_whole_table(world: dict[str, Any], tmp_path: Path) -> None:
    whole = _ism(world, tmp_path / "whole.tsv").read_text()
    shards = [_ism(world, tmp_path / f"ism.{i}.tsv", shard=f"{i}/3") for i in (1, 2, 3)]
    bodies = [path.read_text().splitlines(keepends=True) for path in shards]
    header = whole.splitlines(keepends=True)[0]
    assert all(body[0] == header for body in bodies)
    assert all(len(body) > 1 for body in bodies)  # every shard holds rows: the split is real
    assert header + "".join(line for body in bodies for line in body[1:]) == whole
    # G1 and G2 share a window: their rows stay in one shard
    genes_per_shard = [{line.split("\t")[4] for line in body[1:]} for body in bodies]
    assert sum({"GENEA", "GENEB"} <= genes for genes in genes_per_shard) == 1
    sidecar = json.loads(Path(f"{shards[1]}.provenance.json").read_text())
    assert sidecar["varscore_shard"] == "2/3"

    merged = tmp_path / "merged.tsv"
    result = run_merge(MergeJob([shards[2], shards[0], shards[1]], merged))
    assert merged.read_text() == whole
    assert sum(result.records) == len(whole.splitlines()) - 1
    recorded = json.loads(Path(f"{merged}.provenance.json").read_text())
    assert "varscore_shard" not in recorded and recorded["varscore_model"] == sidecar["varscore_model"]


def test_regions_keep_the_records_bcftools_selects(world: dict[str, Any], tmp_path: Path) -> None:
    regions = "chr1:90-150,chr1:480-520,chr2:245-400"
    bed = tmp_path / "regions.bed"
    bed.write_text("chr1\t89\t150\nchr1\t479\t520\nchr2\t244\t400\n")
    subprocess.run(["bcftools", "index", "-t", str(world["vcf"])], check=True)
    listed = subprocess.run(
        ["bcftools", "view", "-H", "-r", regions, "--regions-overlap", "pos", str(world["vcf"])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    expected = {(line.split("\t")[0], int(line.split("\t")[1])) for line in listed}
    whole = run_ism(IsmJob(AnalysisInputs(world["bundle"], world["vcf"]), tmp_path / "whole.tsv")).table
    in_windows = {(c, int(p)) for c, p in zip(whole["chrom"], whole["pos"], strict=True)}
    for selection, name in (({"regions": regions}, "r.tsv"), ({"regions_file": bed}, "bed.tsv")):
        table = run_ism(
            IsmJob(
                AnalysisInputs(world["bundle"], world["vcf"]), tmp_path / name, selection=parse_selection(**selection)
            )
        ).table
        assert {(c, int(p)) for c, p in zip(table["chrom"], table["pos"], strict=True)} == expected & in_windows
        # the rows kept are the whole table's rows, with the same numbers
        kept = whole[[(c, int(p)) in expected for c, p in zip(whole["chrom"], whole["pos"], strict=True)]]
        assert table.reset_index(drop=True).equals(kept.reset_index(drop=True))
    assert len(expected & in_windows) >= 5


def test_selection_refusals_are_one_line(world: dict[str, Any], tmp_path: Path) -> None:
    base = ["ism", world["vcf"].as_posix(), "-m", world["bundle"], "--no-progress"]
    cases = [
        (["--saturation", "--genes-only", "GENEA", "--shard", "1/2"], "--saturation scores whole gene windows"),
        (["--shard", "3/2"], "--shard 3/2"),
        (["--regions", "chr1:9-2"], "--regions"),
    ]
    for extra, message in cases:
        result = CliRunner().invoke(cli, [*base, *extra, "-o", str(tmp_path / "x.tsv")])
        assert result.exit_code == 1, result.output
        assert len(result.output.strip().splitlines()) == 1 and message in result.output, result.output
        assert not (tmp_path / "x.tsv").exists()


def test_shards_of_genes_out_of_genome_order_are_refused(tmp_path: Path, toy_plugin: Any) -> None:
    world = _world(tmp_path, [GENES[3], *GENES[:3]])
    with pytest.raises(InputError, match="needs the genes in the order of their records"):
        _ism(world, tmp_path / "x.tsv", shard="1/2")
    _ism(world, tmp_path / "r.tsv", regions="chr1:1-1000")  # regions do not reorder anything


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"drop": 2}, "Shard 2 of 3 missing"),
        ({"twice": 1}, "given twice"),
        ({"other_count": True}, "different numbers of shards"),
        ({"other_genes": True}, "different provenance"),
        ({"other_input": True}, "different provenance"),
    ],
)
def test_bad_ism_shard_sets_are_refused_in_one_line(
    world: dict[str, Any], tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    shards = [_ism(world, tmp_path / f"ism.{i}.tsv", shard=f"{i}/3") for i in (1, 2, 3)]
    if "drop" in change:
        shards.pop(change["drop"] - 1)
    if "twice" in change:
        shards.append(shards[change["twice"] - 1])
    if "other_count" in change:
        shards[0] = _ism(world, tmp_path / "other.tsv", shard="1/2")
    if "other_genes" in change:
        run_ism(
            IsmJob(
                AnalysisInputs(world["bundle"], world["vcf"], gene_names=("GENEC", "GENED")),
                tmp_path / "genes.tsv",
                selection=parse_selection(shard="2/3"),
            )
        )
        shards[1] = tmp_path / "genes.tsv"
    if "other_input" in change:  # another cohort.vcf.gz (one record fewer): the same file name
        other = tmp_path / "other" / Path(world["vcf"]).name
        other.parent.mkdir()
        subprocess.run(["bcftools", "view", "-t", "^chr2:400", "-Oz", "-o", str(other), str(world["vcf"])], check=True)
        job = IsmJob(
            AnalysisInputs(world["bundle"], other), tmp_path / "input.tsv", selection=parse_selection(shard="3/3")
        )
        run_ism(job)
        shards[2] = tmp_path / "input.tsv"
    out = tmp_path / "merged.tsv"
    with pytest.raises(InputError, match=message):
        run_merge(MergeJob(shards, out))
    result = CliRunner().invoke(cli, ["merge", *map(str, shards), "-o", str(out)])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert not out.exists()
