"""``varscore track``: genome-browser tracks read back equal the scores ``annotate`` writes."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pybigtools
import pyBigWig
import pytest
from click.testing import CliRunner

from tests.conftest import ScoredVcf, missing_tool, read_vcf_lines, write_vcf
from varscore.cli import cli
from varscore.errors import InputError
from varscore.examples import examples_dir
from varscore.io.vcf import SCORE_KEY
from varscore.models.bundle import BundleMetadata
from varscore.scoring.gene_mode import ScoringJob, run_scoring
from varscore.scoring.tracks import (
    DECREASE_RGB,
    INCREASE_RGB,
    Interval,
    TrackJob,
    VariantEffect,
    check_intervals,
    parse_formats,
    run_tracks,
    strongest_per_position,
    top_variants,
)
from varscore.types import tss_window


def _alt(base: str, step: int = 1) -> str:
    return "ACGT"[("ACGT".index(base) + step) % 4]


def _records(seqs: dict[str, str]) -> list[tuple[str, int, str, str]]:
    chr1, chr2 = seqs["chr1"], seqs["chr2"]
    return [
        ("chr1", 5, chr1[4], _alt(chr1[4])),  # outside every window
        ("chr1", 180, chr1[179], _alt(chr1[179])),  # G1 only
        ("chr1", 200, chr1[199], f"{_alt(chr1[199])},{_alt(chr1[199], 2)},{_alt(chr1[199], 3)}"),  # G1+G2, 3 ALTs
        ("chr1", 215, chr1[214], _alt(chr1[214])),  # G1 + G2
        ("chr1", 215, chr1[214], _alt(chr1[214], 2)),  # the same position again, another record
        ("chr1", 226, chr1[225], _alt(chr1[225])),  # G1 + G2
        ("chr1", 255, chr1[254], _alt(chr1[254])),  # G2 only
        ("chr2", 10, chr2[9], _alt(chr2[9])),  # G3 (window runs off the contig start)
        ("chr2", 30, chr2[29], _alt(chr2[29], 2)),  # G3
    ]


def _vcf_deltas(path: Path) -> dict[str, dict[tuple[str, int], float]]:
    """Per gene, each position's DELTA with the largest |DELTA| over alleles and records, parsed
    from the annotated VCF's text (``"*"`` = over every gene)."""
    best: dict[str, dict[tuple[str, int], float]] = {}
    for line in read_vcf_lines(path):
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        info = dict(kv.split("=", 1) for kv in fields[7].split(";") if "=" in kv)
        for entry in info.get(SCORE_KEY, "").split(",") if SCORE_KEY in info else []:
            _, gene, _, _, _, delta, _ = entry.split("|")
            for key in (gene, "*"):
                table = best.setdefault(key, {})
                site = (fields[0], int(fields[1]))
                value = float(delta)
                if site not in table or (abs(value), value) > (abs(table[site]), table[site]):
                    table[site] = value
    return best


def _bigwig_values(path: Path) -> dict[tuple[str, int], float]:
    """Every interval of a bigWig read with pyBigWig (libBigWig), keyed by 1-based position."""
    handle = pyBigWig.open(str(path))
    try:
        values = {}
        for chrom in handle.chroms():
            for start, end, value in handle.intervals(chrom) or ():
                assert end == start + 1
                values[(chrom, end)] = value
        return values
    finally:
        handle.close()


@pytest.fixture
def world(toy_world):
    """The toy world with a bundle whose score sums all 8 bins of track 1: every variant in a
    window changes it (the toy world's own bundle reads only the centre bin)."""
    from varscore.models.bundle import BundleMetadata, save_bundle
    from varscore_plugins.outputs import ScalarOutput

    toy_world["bundle"] = save_bundle(
        toy_world["tmp"] / "models" / "toy-all-bins",
        name="toy-model",
        backbone=toy_world["backbone"],
        output_mode=ScalarOutput(track=1, center_bins=8),
        genes=toy_world["genes"],
        about=BundleMetadata(reference_fasta=toy_world["fasta"]),
    )
    return toy_world


def _annotate_and_track(world: dict, **track_options: Any) -> tuple[Path, Path]:
    tmp = world["tmp"]
    vcf = write_vcf(tmp / "in.vcf", _records(world["seqs"]))
    annotated = tmp / "annotated.vcf"
    run_scoring(ScoringJob(vcf, world["bundle"], annotated))
    out = tmp / "tracks"
    run_tracks(TrackJob(vcf, out, model=world["bundle"], **track_options))
    return annotated, out


def test_bigwig_tracks_equal_the_vcf_scores(world):
    annotated, out = _annotate_and_track(world, formats="bigwig,bedgraph,bed")
    expected = _vcf_deltas(annotated)
    assert set(expected) == {"GENEA", "GENEB", "GENEC", "*"}
    assert len(expected["*"]) == 7  # 8 scored records, two at chr1:215
    assert set(expected["GENEA"]) & set(expected["GENEB"])  # overlapping windows share positions
    for gene, table in expected.items():
        path = out / ("ism.merged.bw" if gene == "*" else f"ism.{gene}.bw")
        got = _bigwig_values(path)
        assert set(got) == set(table), gene
        for site, value in table.items():
            assert got[site] == pytest.approx(value, rel=1e-5, abs=1e-9), (gene, site)
    # the second bigWig library reads the same values
    reader = pybigtools.open(str(out / "ism.merged.bw"))
    try:
        again = {("chr1", end): v for _, end, v in reader.records("chr1")}
    finally:
        reader.close()
    assert again == {k: v for k, v in _bigwig_values(out / "ism.merged.bw").items() if k[0] == "chr1"}


def test_from_vcf_draws_the_same_tracks_as_scoring(world):
    annotated, out = _annotate_and_track(world)
    again = world["tmp"] / "again"
    run_tracks(TrackJob(annotated, again, from_vcf=True, fasta=world["fasta"]))
    # a VCF that already holds VARSCORE entries is read without from_vcf when no model is given
    implicit = world["tmp"] / "implicit"
    run_tracks(TrackJob(annotated, implicit, genome="hg19", fasta=world["fasta"]))
    for name in ("ism.merged.bw", "ism.GENEA.bw", "ism.GENEB.bw", "ism.GENEC.bw"):
        scored = _bigwig_values(out / name)  # the VCF holds 6 significant digits
        assert _bigwig_values(again / name) == pytest.approx(scored, rel=1e-5, abs=1e-9)
        assert _bigwig_values(implicit / name) == pytest.approx(scored, rel=1e-5, abs=1e-9)
    bed_rows = [line.split("\t") for line in (out / "top_variants.bed").read_text().splitlines()[1:]]
    again_rows = [line.split("\t") for line in (again / "top_variants.bed").read_text().splitlines()[1:]]
    assert [r[:4] + r[5:] for r in again_rows] == [r[:4] + r[5:] for r in bed_rows]
    assert [int(r[4]) for r in again_rows] == pytest.approx([int(r[4]) for r in bed_rows], abs=1)


def test_tracks_use_the_fasta_contig_names(world):
    """A VCF naming contigs 1, 2 against a FASTA with chr1, chr2: tracks follow the FASTA."""
    tmp = world["tmp"]
    records = [(chrom.removeprefix("chr"), pos, ref, alt) for chrom, pos, ref, alt in _records(world["seqs"])]
    vcf = write_vcf(tmp / "nochr.vcf", records)
    run_tracks(TrackJob(vcf, tmp / "t", model=world["bundle"]))
    assert {chrom for chrom, _ in _bigwig_values(tmp / "t" / "ism.merged.bw")} == {"chr1", "chr2"}
    assert {line.split("\t")[0] for line in (tmp / "t" / "top_variants.bed").read_text().splitlines()[1:]} == {
        "chr1",
        "chr2",
    }


def test_bigwig_header_has_the_fasta_contig_sizes(world):
    _, out = _annotate_and_track(world)
    fasta_sizes = {name: len(seq) for name, seq in world["seqs"].items()}
    fai = dict(line.split("\t")[:2] for line in Path(f"{world['fasta']}.fai").read_text().splitlines())
    assert {k: int(v) for k, v in fai.items()} == fasta_sizes
    # a bigWig's chromosome tree lists the contigs that hold data (as bedGraphToBigWig writes it)
    with_data = {
        "ism.merged.bw": {"chr1", "chr2"},
        "ism.GENEA.bw": {"chr1"},
        "ism.GENEB.bw": {"chr1"},
        "ism.GENEC.bw": {"chr2"},
    }
    assert sorted(p.name for p in out.glob("*.bw")) == sorted(with_data)
    for name, contigs in with_data.items():
        handle = pyBigWig.open(str(out / name))
        assert handle.chroms() == {c: fasta_sizes[c] for c in contigs}, name
        handle.close()
    reader = pybigtools.open(str(out / "top_variants.bb"))
    try:
        assert reader.chroms() == fasta_sizes
    finally:
        reader.close()


def test_bedgraph_is_sorted_non_overlapping_half_open(world):
    annotated, out = _annotate_and_track(world, formats="bedgraph")
    expected = _vcf_deltas(annotated)
    assert not list(out.glob("*.bw"))
    for gene, table in expected.items():
        lines = (out / ("ism.merged.bedGraph" if gene == "*" else f"ism.{gene}.bedGraph")).read_text().splitlines()
        assert lines[0].startswith("track type=bedGraph")
        rows = [(c, int(s), int(e), float(v)) for c, s, e, v in (line.split("\t") for line in lines[1:])]
        assert rows == sorted(rows)
        for (c1, _, e1, _), (c2, s2, _, _) in zip(rows, rows[1:], strict=False):
            assert c1 != c2 or e1 <= s2
        assert all(e == s + 1 for _, s, e, _ in rows)  # 0-based half-open: VCF POS p is [p-1, p)
        assert {(c, e): v for c, _, e, v in rows} == pytest.approx(table, rel=1e-5)


def test_bed9_colours_follow_the_sign(world):
    annotated, out = _annotate_and_track(world, formats="bigwig,bed", top=2)
    expected = _vcf_deltas(annotated)
    lines = (out / "top_variants.bed").read_text().splitlines()
    # the bigBed holds the same items, declared as BED9 (fieldCount = definedFieldCount = 9)
    header = (out / "top_variants.bb").read_bytes()[:44]
    magic, *_, field_count, defined_count, _ = struct.unpack("<IHHQQQHHQ", header)
    assert (magic, field_count, defined_count) == (0x8789F2EB, 9, 9)
    handle = pyBigWig.open(str(out / "top_variants.bb"))
    items = [
        f"{chrom}\t{s}\t{e}\t{rest}"
        for chrom in ("chr1", "chr2")
        for s, e, rest in handle.entries(chrom, 0, handle.chroms(chrom)) or ()
    ]
    handle.close()
    assert items == lines[1:]
    assert lines[0].startswith("track ") and 'itemRgb="On"' in lines[0]
    rows = [line.split("\t") for line in lines[1:]]
    assert all(len(row) == 9 for row in rows)
    per_gene: dict[str, int] = {}
    scores = []
    for chrom, start, end, name, score, strand, thick_start, thick_end, rgb in rows:
        gene = name.rsplit(":", 1)[1]
        per_gene[gene] = per_gene.get(gene, 0) + 1
        delta = expected[gene][(chrom, int(end))]
        assert int(end) == int(start) + 1 and (thick_start, thick_end) == (start, end) and strand == "."
        assert delta != 0 and rgb == (INCREASE_RGB if delta > 0 else DECREASE_RGB)
        scores.append((abs(delta), int(score)))
    assert per_gene == {"GENEA": 2, "GENEB": 2, "GENEC": 2}
    largest = max(d for d, _ in scores)
    assert all(0 <= s <= 1000 and s == round(1000 * d / largest) for d, s in scores)
    assert any(s == 1000 for _, s in scores)
    # the top 2 of each gene are its 2 largest |delta|
    for gene in per_gene:
        ranked = sorted(expected[gene].values(), key=abs, reverse=True)[:2]
        names = [r for r in rows if r[3].endswith(f":{gene}")]
        assert sorted(abs(expected[gene][(r[0], int(r[2]))]) for r in names) == sorted(abs(v) for v in ranked)


def test_igv_session_and_ucsc_hub_reference_existing_files(world):
    _, out = _annotate_and_track(world, formats="bigwig,bedgraph,bed", genome="hg19", hub_email="lab@example.org")
    root = ET.parse(out / "igv_session.xml").getroot()
    assert root.tag == "Session" and root.get("genome") == "hg19"
    chrom, span = root.get("locus").split(":")
    start, end = map(int, span.split("-"))
    assert chrom in ("chr1", "chr2") and 1 <= start < end
    paths = [r.get("path") for r in root.iter("Resource")]
    assert paths and all((out / p).is_file() for p in paths)
    assert {"ism.merged.bw", "ism.GENEA.bw", "ism.GENEB.bw", "ism.GENEC.bw", "top_variants.bb"} == set(paths)
    stanzas = (out / "trackDb.txt").read_text().strip().split("\n\n")
    urls = [line.split(" ", 1)[1] for s in stanzas for line in s.splitlines() if line.startswith("bigDataUrl ")]
    assert len(urls) == len(stanzas) == 5 and all((out / u).is_file() for u in urls)
    names = [s.splitlines()[0].split(" ", 1)[1] for s in stanzas]
    assert len(set(names)) == len(names)
    assert any("type bigBed 9" in s and "itemRgb on" in s for s in stanzas)
    assert all(
        len(line) <= len("shortLabel ") + 17
        for s in stanzas
        for line in s.splitlines()
        if line.startswith("shortLabel ")
    )
    hub = dict(line.split(" ", 1) for line in (out / "hub.txt").read_text().splitlines())
    assert hub["genomesFile"] == "genomes.txt" and hub["email"] == "lab@example.org"
    genomes = dict(line.split(" ", 1) for line in (out / "genomes.txt").read_text().splitlines())
    assert genomes == {"genome": "hg19", "trackDb": "trackDb.txt"}


def test_session_without_a_build_loads_the_fasta(world):
    _, out = _annotate_and_track(world, formats="bed")
    root = ET.parse(out / "igv_session.xml").getroot()
    genome = Path(root.get("genome"))  # relative to the session, so the folder moves as a whole
    assert not genome.is_absolute() and (out / genome).resolve() == Path(world["fasta"]).resolve()
    assert [r.get("path") for r in root.iter("Resource")] == ["top_variants.bed"]
    assert not (out / "trackDb.txt").exists() and not (out / "hub.txt").exists()


def test_track_model_coverage_equals_direct_predictions(world):
    """A ``track`` output-mode bundle: ref, alt and delta coverage per gene, bin by bin, equal the
    toy model's own predictions on hand-built windows."""
    from tests.toy_plugin import ToyBackbone
    from varscore.models.bundle import save_bundle
    from varscore_plugins.outputs import TrackOutput

    tmp, seqs, genes = world["tmp"], world["seqs"], world["genes"]
    backbone = ToyBackbone().build()
    bundle = save_bundle(
        tmp / "models" / "toy-track",
        name="toy-track",
        backbone=backbone,
        output_mode=TrackOutput(track=1),
        genes=genes,
        about=BundleMetadata(reference_fasta=world["fasta"]),
    )
    vcf = write_vcf(tmp / "in.vcf", _records(seqs))
    result = run_tracks(TrackJob(vcf, tmp / "cov", model=bundle, formats="bigwig", coverage_top=10))
    from varscore.genome.fasta import Genome

    genome = Genome(world["fasta"])
    positions = {"GENEA": [180, 200, 215, 226], "GENEB": [200, 215, 226, 255], "GENEC": [10, 30]}
    for gene in genes:
        window = tss_window(gene, backbone.window_size)
        reference = genome.window_sequence(window).one_hot
        ref_pred = backbone.predict(reference[None])[0, :, 1]
        size = len(seqs[gene.chrom])
        bins = [(max(window.start + 8 * i, 0), min(window.start + 8 * (i + 1), size), i) for i in range(8)]
        bins = [(lo, hi, i) for lo, hi, i in bins if lo < hi]

        def read(path: Path, chrom: str = gene.chrom) -> list[tuple[int, int, float]]:
            handle = pyBigWig.open(str(path))
            rows = list(handle.intervals(chrom))
            handle.close()
            return rows

        got_ref = read(tmp / "cov" / f"coverage.{gene.label}.ref.bw")
        assert [(s, e) for s, e, _ in got_ref] == [(lo, hi) for lo, hi, _ in bins]
        assert [v for _, _, v in got_ref] == pytest.approx([ref_pred[i] for _, _, i in bins], rel=1e-5, abs=1e-5)
        # every scored position of the gene gets an alt track (coverage_top=10 > positions); match them up
        alts = {}
        for pos in positions[gene.label]:
            for base in set("ACGT") - {seqs[gene.chrom][pos - 1]}:
                mutated = reference.copy()
                mutated[window.offset(pos)] = 0
                mutated[window.offset(pos), "ACGT".index(base)] = 1
                alts[(pos, base)] = backbone.predict(mutated[None])[0, :, 1]
        # each alt track names its variant (VCF ID rsN = record N); ranks follow |ISM delta|
        described = {f.path: f.description for f in result.files}
        ism = _bigwig_values(tmp / "cov" / f"ism.{gene.label}.bw")
        strengths = []
        for rank in range(1, len(positions[gene.label]) + 1):
            path = tmp / "cov" / f"coverage.{gene.label}.top{rank}.alt.bw"
            record, change = described[path.name].split(" with ")[1].split(" ")[:2]
            pos, allele = _records(seqs)[int(record[2:])][1], change.split(">")[1]
            values = np.array([v for _, _, v in read(path)])
            assert values == pytest.approx([alts[(pos, allele)][i] for _, _, i in bins], rel=1e-5, abs=1e-5)
            delta = np.array([v for _, _, v in read(Path(str(path).replace(".alt.bw", ".delta.bw")))])
            assert delta == pytest.approx(values - [ref_pred[i] for _, _, i in bins], rel=1e-4, abs=1e-4)
            strengths.append(abs(ism[(gene.chrom, pos)]))
        assert strengths == sorted(strengths, reverse=True)
        assert not (tmp / "cov" / f"coverage.{gene.label}.top{len(positions[gene.label]) + 1}.alt.bw").exists()
    session = ET.parse(result.session).getroot()
    assert all((result.out_dir / r.get("path")).is_file() for r in session.iter("Resource"))
    assert sum("coverage." in r.get("path") for r in session.iter("Resource")) == 3 + 2 * (4 + 4 + 2)


def test_linear_bundle_tracks_equal_its_vcf_scores(elastic_net_scored: ScoredVcf, tmp_path):
    """The bundled elastic-net demo on the bundled cohort: no FASTA pass needed, same equality
    (the VCF is the session's ``elastic_net_scored`` run, tests/conftest.py)."""
    examples = examples_dir()
    vcf, model = examples / "data" / "cohort.vcf.gz", str(examples / "models" / "elastic-net-demo")
    annotated = elastic_net_scored.vcf
    run_tracks(TrackJob(vcf, tmp_path / "t", model=model, top=0))
    expected = _vcf_deltas(annotated)
    for gene, table in expected.items():
        got = _bigwig_values(tmp_path / "t" / ("ism.merged.bw" if gene == "*" else f"ism.{gene}.bw"))
        assert got == pytest.approx(table, rel=1e-5, abs=1e-9), gene
    handle = pyBigWig.open(str(tmp_path / "t" / "ism.merged.bw"))
    assert handle.chroms() == {"chr20": 63_025_520}  # the FASTA's full-length contig (see examples/data)
    handle.close()
    rows = (tmp_path / "t" / "top_variants.bed").read_text().splitlines()[1:]
    assert len(rows) == sum(1 for g, t in expected.items() if g != "*" for v in t.values() if v != 0)
    root = ET.parse(tmp_path / "t" / "igv_session.xml").getroot()
    assert root.get("genome") == "hg19"  # the bundle's genome_build


def test_strongest_allele_and_gene_rules():
    def effect(pos: int, gene: str, delta: float, allele: str = "A") -> VariantEffect:
        return VariantEffect("chr1", pos, "C", allele, gene, delta, f"v{pos}")

    effects = [
        effect(5, "g1", 0.5),
        effect(5, "g1", -0.7, "G"),
        effect(5, "g2", 0.6),
        effect(9, "g2", 0.2),
        effect(9, "g1", -0.2),
        effect(3, "g1", float("nan")),
        effect(11, "g2", 0.0),
    ]
    merged = strongest_per_position(effects)
    assert [(e.pos, e.delta) for e in merged] == [(5, -0.7), (9, 0.2), (11, 0.0)]  # ties: the larger value
    assert [e.delta for e in strongest_per_position(effects[::-1])] == [-0.7, 0.2, 0.0]  # order does not matter
    assert len(top_variants(effects, per_gene=0)) == 4  # every non-zero position of each gene
    items = top_variants(effects, per_gene=1)
    assert [(i.name, i.score, i.rgb) for i in items] == [  # sorted by position, then name
        ("v5:C>A:g2", round(1000 * 0.6 / 0.7), INCREASE_RGB),
        ("v5:C>G:g1", 1000, DECREASE_RGB),
    ]


def test_interval_checks_and_formats():
    sizes = {"chr1": 100}
    check_intervals([Interval("chr1", 0, 1, 1.0), Interval("chr1", 1, 2, 1.0)], sizes, "ok")
    for bad, fragment in [
        ([Interval("chr1", 5, 10, 1.0), Interval("chr1", 7, 8, 1.0)], "overlap"),
        ([Interval("chr1", 99, 101, 1.0)], "outside the contig"),
        ([Interval("chrX", 1, 2, 1.0)], "no known length"),
    ]:
        with pytest.raises(InputError, match=fragment):
            check_intervals(bad, sizes, "t")
    assert parse_formats("bed, BigWig") == ["bigwig", "bed"]
    with pytest.raises(InputError, match="bigwig, bedgraph, bed"):
        parse_formats("bigwig,wig")


def _assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    message = [line for line in result.output.splitlines() if line.strip()]
    assert len(message) == 1 and message[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in message[0], message[0]


def test_bad_input_gives_one_line_errors(world):
    tmp, bundle = world["tmp"], str(world["bundle"])
    runner = CliRunner()
    vcf = write_vcf(tmp / "in.vcf", _records(world["seqs"]))
    out = str(tmp / "t")
    _assert_one_line_error(
        runner.invoke(cli, ["track", str(tmp / "missing.vcf"), "-m", bundle, "-o", out]), "not found"
    )
    _assert_one_line_error(
        runner.invoke(cli, ["track", str(vcf), "-m", bundle, "-o", out, "--format", "wig"]),
        "Unknown track format",
        "bigwig",
    )
    _assert_one_line_error(runner.invoke(cli, ["track", str(vcf), "-o", out]), "no VARSCORE", "--model")
    _assert_one_line_error(
        runner.invoke(cli, ["track", str(vcf), "--from-vcf", "-o", out]), "VARSCORE", "varscore annotate"
    )
    # scores but no contig lengths anywhere (no ##contig lines, no FASTA)
    annotated = tmp / "annotated.vcf"
    assert runner.invoke(cli, ["annotate", str(vcf), "-m", bundle, "-o", str(annotated)]).exit_code == 0
    _assert_one_line_error(runner.invoke(cli, ["track", str(annotated), "-o", out]), "--fasta")
    _assert_one_line_error(
        runner.invoke(cli, ["track", str(annotated), "-o", out, "--from-vcf", "--model", "other"]),
        "no scores of model 'other'",
        "toy-model",
    )
    # contig lines too short for the variants: a different build
    short = write_vcf(tmp / "short.vcf", [("chr1", 180, "A", "C")], contigs={"chr1": 100})
    short.write_text(short.read_text().replace("\tDP=10", f"\tDP=10;{SCORE_KEY}=C|G|m|1|2|1"))
    text = short.read_text().replace(
        "##INFO=<ID=DP",
        f'##INFO=<ID={SCORE_KEY},Number=.,Type=String,Description="x. Format: ALLELE|GENE|MODEL|REF_PRED|ALT_PRED|DELTA">\n'
        "##INFO=<ID=DP",
    )
    short.write_text(text)
    _assert_one_line_error(
        runner.invoke(cli, ["track", str(short), "-o", out, "--genome", "hg19"]), "outside the contig", "build"
    )
    outside = write_vcf(tmp / "outside.vcf", [("chr1", 5, world["seqs"]["chr1"][4], "N")])
    _assert_one_line_error(
        runner.invoke(cli, ["track", str(outside), "-m", bundle, "-o", out]),
        "No variant",
        "outside_windows",
        "nothing to draw",
    )
    not_dir = tmp / "file.txt"
    not_dir.write_text("x")
    assert "is a file" in runner.invoke(cli, ["track", str(vcf), "-m", bundle, "-o", str(not_dir)]).output
    with pytest.raises(InputError, match="not a directory"):
        run_tracks(TrackJob(vcf, not_dir, model=bundle))
    assert not_dir.read_text() == "x"


# --- IGV session, igv.html, UCSC labels, --from-vcf genome ---


def _bundle(world: dict, name: str, build: str | None = None) -> Path:
    from varscore.models.bundle import save_bundle
    from varscore_plugins.outputs import ScalarOutput

    return save_bundle(
        world["tmp"] / "models" / name,
        name=name,
        backbone=world["backbone"],
        output_mode=ScalarOutput(track=1, center_bins=8),
        genes=world["genes"],
        about=BundleMetadata(reference_fasta=world["fasta"], genome_build=build),
    )


def test_igv_session_tracks_are_the_elements_igv_writes(world):
    """``<Panel><Track>`` elements name and colour each track (igv.js ignores ``<Resource name
    color>``); their ids are the resources' paths, relative to the session; the BED9 has no colour."""
    _, out = _annotate_and_track(world, formats="bigwig,bed", genome="hg19", hub_email="lab@example.org")
    root = ET.parse(out / "igv_session.xml").getroot()
    paths = [r.get("path") for r in root.iter("Resource")]
    tracks = {t.get("id"): t for t in root.find("Panel").iter("Track")}
    assert list(tracks) == paths and all(not Path(p).is_absolute() and (out / p).is_file() for p in paths)
    assert tracks["ism.merged.bw"].get("name") == "ISM merged"
    assert tracks["ism.GENEA.bw"].get("name") == "ISM GENEA"
    for path, element in tracks.items():
        if path.endswith(".bw"):
            assert element.get("clazz") == "org.broad.igv.track.DataSourceTrack"
            assert (element.get("color"), element.get("altColor")) == (INCREASE_RGB, DECREASE_RGB)
        else:
            assert element.get("clazz") == "org.broad.igv.track.FeatureTrack"
            assert element.get("color") is None and element.get("altColor") is None
    page = (out / "igv.html").read_text()
    assert "https://cdn.jsdelivr.net/npm/igv@3/dist/igv.min.js" in page  # the default igv.js


def test_ucsc_labels_fit_without_cutting_a_name_mid_word(world):
    from varscore.scoring.tracks import fit_label

    assert fit_label("varscore variant effects: model variformer-blood", 17) == "varscore variant"
    assert fit_label("variformer-blood-replicates", 17) == "variformer-blood"
    assert fit_label("ISM SNAP25", 17) == "ISM SNAP25"
    assert fit_label("abcdefghijklmnopqrstuvwxyz", 17) == "abcdefghijklmnopq"  # one word: the only cut
    long_model = "variformer-whole-blood-gtex-v8"
    bundle = _bundle(world, long_model)
    tmp = world["tmp"]
    vcf = write_vcf(tmp / "in.vcf", _records(world["seqs"]))
    out = tmp / "tracks"
    result = run_tracks(TrackJob(vcf, out, model=bundle, genome="hg38"))
    hub = dict(line.split(" ", 1) for line in (out / "hub.txt").read_text().splitlines())
    assert hub["shortLabel"] == "variformer-whole"  # 16 characters, cut between the name's words
    assert len(hub["longLabel"]) <= 76 and hub["longLabel"].endswith(long_model)
    assert "email" not in hub and any("--hub-email" in line for line in result.lines())
    for stanza in (out / "trackDb.txt").read_text().strip().split("\n\n"):
        labels = dict(line.split(" ", 1) for line in stanza.splitlines() if line.startswith(("short", "long")))
        assert len(labels["shortLabel"]) <= 17 and len(labels["longLabel"]) <= 76
        # every word kept is whole: the label is a prefix of the full text ending at a word end
        for word in labels["longLabel"].split():
            assert word.rstrip(":") in stanza.replace("longLabel", "", 1) or word in long_model


def test_from_vcf_takes_the_genome_from_the_varscore_model_header(world):
    """A VCF annotated by a bundle of build hg19 names it in ##varscore_model: ``--from-vcf``
    without --genome uses it for the session (the FASTA only gives contig lengths here)."""
    world["bundle"] = _bundle(world, "toy-hg19", build="hg19")
    annotated, _ = _annotate_and_track(world)
    out = world["tmp"] / "from-vcf"
    run_tracks(TrackJob(annotated, out, from_vcf=True, formats="bed", fasta=world["fasta"]))
    assert ET.parse(out / "igv_session.xml").getroot().get("genome") == "hg19"
    bare = world["tmp"] / "bare.vcf"
    bare.write_text(
        "".join(line for line in annotated.read_text().splitlines(keepends=True) if "##varscore_model" not in line)
    )
    run_tracks(TrackJob(bare, world["tmp"] / "bare", from_vcf=True, formats="bed", fasta=world["fasta"]))
    assert ET.parse(world["tmp"] / "bare" / "igv_session.xml").getroot().get("genome").endswith("ref.fa")


IGV_NPM = Path(os.environ.get("VARSCORE_TEST_NPM", Path.home() / ".cache" / "varscore-test" / "npm"))


def _igv_js() -> Path:
    """igv.js from the npm package ``igv`` (installed into ``$VARSCORE_TEST_NPM`` by ``.ci/run``,
    or here with npm when missing)."""
    dist = IGV_NPM / "node_modules" / "igv" / "dist" / "igv.min.js"
    if not dist.is_file():
        if shutil.which("npm") is None:
            missing_tool("npm", "apt-get install npm")
        IGV_NPM.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["npm", "install", "--prefix", str(IGV_NPM), "igv@3"], capture_output=True, text=True)
        if done.returncode != 0 or not dist.is_file():
            pytest.fail(f"npm install igv failed: {done.stderr.strip()[-500:]}")
    return dist


@pytest.mark.slow
def test_igv_html_loads_the_tracks_in_headless_chromium(elastic_net_scored: ScoredVcf, tmp_path):
    """igv.html opened in headless Chromium from a 127.0.0.1 server: igv.js loads every track at
    the session's locus under the session's names, and the bigWig values it reads in view are the
    intervals pyBigWig reads there."""
    import functools
    import http.server
    import json
    import re
    import threading

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        missing_tool("chromium", "apt-get install chromium")
    igv_js = _igv_js()
    from varscore.examples import data_dir

    data = data_dir()
    root = tmp_path / "site"
    (root / "ref").mkdir(parents=True)
    for suffix in ("", ".fai", ".gzi"):
        shutil.copy(data / f"ucsc.hg19.chr20.unittest.fasta.gz{suffix}", root / "ref")
    shutil.copy(igv_js, root / "igv.min.js")
    annotated = elastic_net_scored.vcf
    out = root / "tracks"
    fasta = root / "ref" / "ucsc.hg19.chr20.unittest.fasta.gz"
    result = run_tracks(TrackJob(annotated, out, from_vcf=True, genome=str(fasta), igv_js="../igv.min.js"))
    session = ET.parse(out / "igv_session.xml").getroot()
    names = {t.get("id"): t.get("name") for t in session.find("Panel").iter("Track")}
    assert len(names) == len(result.files) - 1  # top_variants.bed and .bb are one track

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/tracks/igv.html"
        profile = tmp_path / "profile"
        profile.mkdir()
        command = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ]
        page = subprocess.run(command, capture_output=True, text=True, timeout=180).stdout
    finally:
        server.shutdown()
    found = re.search(r'<pre id="varscore-status">(.*?)</pre>', page, re.S)
    assert found, page[-2000:]
    text = found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    assert text.startswith("{"), text
    shown = json.loads(text)
    chrom, span = session.get("locus").split(":")
    start, end = map(int, span.split("-"))
    locus = shown["locus"][0] if isinstance(shown["locus"], list) else shown["locus"]
    shown_chrom, shown_span = locus.split(":")
    shown_start, shown_end = (float(x.replace(",", "")) for x in shown_span.split("-"))
    # igv.js fits the end to the view's width in pixels: same start, end within a few percent
    assert shown_chrom == chrom and shown_start == start and abs(shown_end - end) <= 0.05 * (end - start)
    assert {t["url"]: t["name"] for t in shown["tracks"]} == names
    for track in shown["tracks"]:
        if track["url"].endswith(".bw"):
            assert track["color"] == f"rgb({INCREASE_RGB})"
            handle = pyBigWig.open(str(out / track["url"]))
            try:
                view_start, view_end = int(shown_start) - 1, int(np.ceil(shown_end))
                expected = len(handle.intervals(chrom, view_start, min(view_end, handle.chroms(chrom))) or ())
            finally:
                handle.close()
            assert track["items"] == expected
    counts = {t["url"]: t["items"] for t in shown["tracks"]}
    assert counts["ism.merged.bw"] > 0 and counts["top_variants.bb"] > 0
