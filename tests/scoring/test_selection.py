"""--regions, --regions-file, --genes-only and --shard: parsing, the records each keeps (against
bcftools and an independent window computation), and N shards concatenated == the whole run."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.scoring.test_centred import indel_world, track_bundle  # noqa: F401  (fixtures)
from varscore.errors import InputError
from varscore.examples import data_dir
from varscore.genome.fasta import load_genes
from varscore.io.vcf import iter_variants
from varscore.scoring.selection import (
    Region,
    Selection,
    Shard,
    parse_regions,
    parse_selection,
    parse_shard,
    read_regions_file,
    select_variants,
    shard_of_records,
)
from varscore.types import Gene, Variant

VCF = data_dir() / "cohort.vcf.gz"
WINDOW = 16_384  # the demo model's window
# SNAP25's window, records outside every window, the overlapping windows of MKKS and SLX4IP, more outside
REGIONS = "chr20:10195000-10200000,chr20:10300000-10302000,chr20:10405000-10425000,chr20:10430000-10434000"


def _positions(variants: list[Variant]) -> list[tuple[str, int]]:
    return [(v.chrom, v.pos) for v in variants]


def _bcftools_positions(*args: str) -> list[tuple[str, int]]:
    out = subprocess.run(
        ["bcftools", "query", "-f", "%CHROM\t%POS\n", *args, str(VCF)], check=True, capture_output=True, text=True
    ).stdout
    return [(chrom, int(pos)) for chrom, pos in (line.split("\t") for line in out.splitlines())]


@pytest.mark.parametrize("spec", ["3/2", "0/0", "0/3", "1/0", "x", "1/", "-1/3", "2/3/4", ""])
def test_bad_shard_specs_are_one_line_errors(spec: str) -> None:
    with pytest.raises(InputError, match="--shard") as caught:
        parse_shard(spec)
    assert "\n" not in str(caught.value)


def test_shard_spec() -> None:
    assert parse_shard("2/8") == Shard(2, 8)
    assert parse_shard(" 1 / 1 ") == Shard(1, 1)


@pytest.mark.parametrize("spec", ["chr20:", "chr20:x-5", "chr20:10-5", "chr20:0-5", ":1-5", "chr20:1-2-3", ","])
def test_bad_regions_are_one_line_errors(spec: str) -> None:
    with pytest.raises(InputError, match="--regions") as caught:
        parse_regions(spec)
    assert "\n" not in str(caught.value)


def test_region_spellings() -> None:
    assert parse_regions("chr20:1000-2000,chr21,chr22:5") == (
        Region("chr20", 999, 2000),
        Region("chr21", 0, None),
        Region("chr22", 4, 5),
    )
    assert parse_regions("chr20:100-")[0] == Region("chr20", 99, None)


def test_bed_is_zero_based_half_open(tmp_path: Path) -> None:
    bed = tmp_path / "r.bed"
    bed.write_text("track name=x\n# comment\nchr20\t99\t200\tname\n")
    (region,) = read_regions_file(bed)
    assert not region.holds(99) and region.holds(100) and region.holds(200) and not region.holds(201)
    bad = tmp_path / "bad.bed"
    bad.write_text("chr20\t200\t100\n")
    with pytest.raises(InputError, match="line 1"):
        read_regions_file(bad)


def test_regions_select_what_bcftools_selects(tmp_path: Path) -> None:
    spec = "chr20:10190000-10200000,chr20:10410000-10415000"
    ours = select_variants(iter_variants(VCF), parse_selection(regions=spec), [], None)
    theirs = _bcftools_positions("-r", spec, "--regions-overlap", "pos")
    assert len(theirs) > 50
    assert _positions(ours) == theirs
    bed = tmp_path / "r.bed"
    bed.write_text("chr20\t10189999\t10200000\n20\t10409999\t10415000\n")  # '20' matches the VCF's chr20
    from_file = select_variants(iter_variants(VCF), parse_selection(regions_file=bed), [], None)
    assert _positions(from_file) == theirs


def test_genes_only_selects_the_records_of_their_windows() -> None:
    genes = load_genes(data_dir() / "genes.tsv")
    selection = parse_selection(genes_only="MKKS,JAG1")
    chosen = selection.genes_of(genes)
    assert sorted(g.gene_id for g in chosen) == ["JAG1", "MKKS"]
    ours = select_variants(iter_variants(VCF), selection, chosen, WINDOW)
    # independently: a window of W bp with the TSS base at index W // 2 holds 1-based POS in (start, start + W]
    table = pd.read_csv(data_dir() / "genes.tsv", sep="\t")
    table = table[table.gene_id.isin(["MKKS", "JAG1"])]
    records = pd.DataFrame(_bcftools_positions(), columns=["chrom", "pos"])
    inside = pd.Series(False, index=records.index)
    for tss in table.tss:
        start = tss - 1 - WINDOW // 2
        inside |= (records.pos > start) & (records.pos <= start + WINDOW)
    expected = list(records[inside].itertuples(index=False, name=None))
    assert len(expected) > 20
    assert _positions(ours) == expected


def test_unknown_genes_are_one_line_errors() -> None:
    genes = load_genes(data_dir() / "genes.tsv")
    with pytest.raises(InputError, match="NOPE") as caught:
        Selection(genes_only=("SNAP25", "NOPE")).genes_of(genes)
    assert "\n" not in str(caught.value)


def _variant(index: int, pos: int, chrom: str = "chr1") -> Variant:
    return Variant(chrom=chrom, pos=pos, ref="A", alts=("C",), id=".", index=index)


def test_shards_keep_each_window_together_and_cover_everything() -> None:
    # windows of 1,000 bp: genes at 5,000 and 5,600 overlap (one unit), 20,000 is alone
    genes = [Gene("A", "chr1", 5000), Gene("B", "chr1", 5600), Gene("C", "chr1", 20000)]
    positions = [100, 4600, 4900, 5300, 5900, 6050, 9000, 19800, 20100, 30000, 30001, 30002]
    variants = [_variant(i, p) for i, p in enumerate(positions)]
    for count in (1, 2, 3, 5, 20):
        shards = [shard_of_records(variants, Shard(i, count), genes, 1000) for i in range(1, count + 1)]
        assert [v for shard in shards for v in shard] == variants  # in order, each record once
        for shard in shards:
            held = {v.pos for v in shard}
            linked = {4600, 4900, 5300, 5900, 6050}  # in window A or B (B's window reaches 6,100)
            assert not (held & linked) or linked <= held
            assert not (held & {19800, 20100}) or {19800, 20100} <= held


def test_shards_refuse_an_unsorted_window() -> None:
    genes = [Gene("A", "chr1", 5000)]
    variants = [_variant(0, 4800), _variant(1, 100), _variant(2, 5200)]
    with pytest.raises(InputError, match="bcftools sort"):
        shard_of_records(variants, Shard(1, 2), genes, 1000)


@pytest.mark.slow
def test_three_shards_concatenated_equal_the_whole_run(tmp_path: Path) -> None:
    """Gene mode on the example (SNAP25, MKKS and SLX4IP, whose windows overlap, and records
    outside every window): the bodies of shards 1..3 in order equal the unsharded output."""
    from varscore.io.merge import MergeJob, run_merge
    from varscore.scoring.gene_mode import ScoringJob, run_scoring

    subset = tmp_path / "subset.vcf"
    subprocess.run(
        ["bcftools", "view", "-r", REGIONS, "-o", str(subset), str(VCF)],
        check=True,
    )
    whole = tmp_path / "whole.vcf"
    run_scoring(ScoringJob(subset, "variformer-demo", whole, device="cpu"))
    parts = []
    for index in (1, 2, 3):
        part = tmp_path / f"shard{index}.vcf"
        run_scoring(
            ScoringJob(subset, "variformer-demo", part, device="cpu", selection=Selection(shard=Shard(index, 3)))
        )
        parts.append(part)

    def body(path: Path) -> list[str]:
        return [line for line in path.read_text().splitlines() if not line.startswith("#")]

    assert all(body(part) for part in parts)
    assert sum((body(part) for part in parts), []) == body(whole)
    assert sum("VARSCORE=" in line for line in body(whole)) > 10  # scores, not only pass-through records
    merged = tmp_path / "merged.vcf"
    run_merge(MergeJob([parts[2], parts[0], parts[1]], merged))
    assert body(merged) == body(whole)
    header = [line for line in merged.read_text().splitlines() if line.startswith("##")]
    assert not any(line.startswith("##varscore_shard") for line in header)


def test_variant_mode_shards_concatenated_equal_the_whole_run(track_bundle: dict, tmp_path: Path) -> None:  # noqa: F811
    """Variant-centred scoring (each record its own window): 3 shards in order equal one run."""
    from varscore.scoring.variant_mode import VariantScoringJob, run_variant_scoring

    w = track_bundle
    settings = {"gtf": w["gtf"], "batch_size": 3, "stats": "SUM,D1"}
    whole = tmp_path / "whole.vcf"
    run_variant_scoring(VariantScoringJob(w["vcf"], w["bundle"], whole, **settings))
    parts = []
    for index in (1, 2, 3):
        part = tmp_path / f"part{index}.vcf"
        selection = Selection(shard=Shard(index, 3))
        run_variant_scoring(VariantScoringJob(w["vcf"], w["bundle"], part, selection=selection, **settings))
        parts.append(part)

    def body(path: Path) -> list[str]:
        return [line for line in path.read_text().splitlines() if not line.startswith("#")]

    assert all(body(part) for part in parts)
    assert sum((body(part) for part in parts), []) == body(whole)
    assert sum("VARSCORE=" in line for line in body(whole)) >= 5
    regions = Selection(regions=(Region("chr1", 100, 200),))
    picked = tmp_path / "picked.vcf"
    run_variant_scoring(VariantScoringJob(w["vcf"], w["bundle"], picked, selection=regions, **settings))
    expected = [line for line in body(whole) if line.startswith("chr1\t") and 100 < int(line.split("\t")[1]) <= 200]
    assert expected and body(picked) == expected


@pytest.mark.slow
def test_track_draws_only_the_selected_records(tmp_path: Path) -> None:
    from varscore.scoring.tracks import TrackJob, run_tracks

    selection = parse_selection(regions="chr20:10195000-10200000,chr20:10410000-10412000", genes_only="SNAP25,MKKS")
    job = TrackJob(VCF, tmp_path / "tracks", model="variformer-demo", formats="bed", top=0, device="cpu")
    result = run_tracks(dataclasses.replace(job, selection=selection))
    (bed,) = [tmp_path / "tracks" / f.path for f in result.files if str(f.path).endswith(".bed")]
    lines = [line.split("\t") for line in bed.read_text().splitlines() if not line.startswith(("track", "browser"))]
    drawn = {(fields[3].rsplit(":", 1)[1], int(fields[1]) + 1) for fields in lines}
    # independently: POS in the regions and in the window of SNAP25 or MKKS (gene, POS)
    records = _bcftools_positions("-r", "chr20:10195000-10200000,chr20:10410000-10412000", "--regions-overlap", "pos")
    assert len(records) > 10
    starts = {"SNAP25": 10199479 - 1 - WINDOW // 2, "MKKS": 10414871 - 1 - WINDOW // 2}
    expected = {(gene, pos) for _, pos in records for gene, start in starts.items() if start < pos <= start + WINDOW}
    assert {gene for gene, _ in expected} == {"SNAP25", "MKKS"}
    assert drawn == expected
    with pytest.raises(InputError, match="cut it first"):
        run_tracks(TrackJob(VCF, tmp_path / "t2", from_vcf=True, selection=selection))


@pytest.mark.parametrize("option", ["regions", "shard"])
def test_an_empty_value_selects_nothing_not_everything(option: str) -> None:
    # an unset shell variable (--regions "$R") must not turn into a run over every record
    with pytest.raises(InputError, match=f"--{option}") as caught:
        parse_selection(**{option: ""})
    assert "\n" not in str(caught.value)


def test_regions_on_contigs_the_input_lacks(caplog: pytest.LogCaptureFixture) -> None:
    records = list(iter_variants(VCF))
    # no region names a contig of the input: an error naming the contig, not an empty output
    with pytest.raises(InputError, match="no contig chrX .*chr20") as caught:
        select_variants(records, Selection(parse_regions("chrX:1-100")), [], None)
    assert "\n" not in str(caught.value)
    # a contig the header declares is known even without records on it: an empty selection
    assert select_variants(records, Selection(parse_regions("chrX:1-100")), [], None, ["chr20", "chrX"]) == []
    # some regions on unknown contigs: the others still select, with a warning
    kept = select_variants(records, Selection(parse_regions("chrX:1-100,20:10199000-10199100")), [], None)
    assert _positions(kept) == _bcftools_positions("-t", "chr20:10199000-10199100")
    assert "no contig chrX" in caplog.text


def test_gzipped_bed_and_a_header_line(tmp_path: Path) -> None:
    import gzip

    bed = tmp_path / "regions.bed.gz"
    bed.write_bytes(gzip.compress(b"#chrom\tstart\tend\r\nchr20\t10189999\t10200000\r\n"))
    assert read_regions_file(bed) == (Region("chr20", 10189999, 10200000),)
    header = tmp_path / "header.bed"
    header.write_text("chrom\tstart\tend\nchr20\t1\t5\n")
    with pytest.raises(InputError, match="header line must start with '#'"):
        read_regions_file(header)
    truncated = tmp_path / "truncated.bed.gz"
    truncated.write_bytes(bed.read_bytes()[:20])
    with pytest.raises(InputError, match="Cannot read the --regions-file"):
        read_regions_file(truncated)


def test_positions_with_thousands_separators_are_refused() -> None:
    # as genome browsers print them: read as chr20:10 plus contigs '000-20' and '000' before
    with pytest.raises(InputError, match="thousands separators") as caught:
        parse_regions("chr20:10,000-20,000")
    assert "\n" not in str(caught.value)
    assert parse_regions("1,2,3") == (Region("1"), Region("2"), Region("3"))
    assert parse_regions("chr1:100,chr2") == (Region("chr1", 99, 100), Region("chr2"))


def test_many_regions_select_what_a_scan_of_each_selects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records are placed among the regions by bisection (every record scanned every region before:
    an exome BED against a large VCF ran for hours); overlapping, nested, adjacent and open-ended
    regions select what Region.holds says, checked region by region."""
    import random

    rng = random.Random(3)
    records = [Variant("c", pos, "A", ("C",), index=pos) for pos in range(1, 400)]
    for _ in range(100):
        regions = []
        for _ in range(rng.randint(1, 12)):
            start = rng.randint(0, 350)
            regions.append(Region("c", start, None if rng.random() < 0.1 else start + rng.randint(1, 40)))
        with monkeypatch.context() as patched:  # no record is tested against every region in turn
            patched.setattr(Region, "holds", lambda self, pos: pytest.fail("scanned the regions one by one"))
            kept = select_variants(records, Selection(tuple(regions)), [], None)
        assert [v.pos for v in kept] == [v.pos for v in records if any(r.holds(v.pos) for r in regions)]
