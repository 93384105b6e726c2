"""Variant-centred scoring: windows centred on each variant (or its genome tile), statistics over
chosen tracks and over exon bins of overlapping genes, the Parquet detail table and calibrated
quantiles — each checked against an explicit computation (forward passes on windows built from
strings, loops over bins, numpy's empirical CDF)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tests.conftest import DATA, perturb_weights, random_sequence, read_vcf_lines, write_fasta, write_vcf
from varscore.errors import BundleError, InputError
from varscore.genome.exons import GeneModel, load_gene_models
from varscore.genome.fasta import Genome
from varscore.genome.sequence import one_hot
from varscore.io.vcf import consequence, iter_variants
from varscore.scoring.centred import (
    STATS,
    Geometry,
    ScorerSettings,
    VariantCentredScorer,
    read_targets,
    select_tracks,
    statistics,
    window_start,
)
from varscore.scoring.variant_mode import CalibrateJob, VariantScoringJob, run_calibration, run_variant_scoring

EXAMPLE_GTF = DATA / "example_exons" / "example_exons.gtf"


# --- explicit reference computations ------------------------------------------------------------


def explicit_windows(seq: str, pos: int, ref: str, alt: str, length: int, start: int) -> tuple[str, str]:
    """REF and ALT windows as strings: the contig padded with N, the allele spliced in after the
    bases REF and ALT share (VCF padding), the window starting at ``start`` in both."""

    def bases(a: int, b: int) -> str:  # contig [a, b), N off its ends
        return "".join(seq[i] if 0 <= i < len(seq) else "N" for i in range(a, b))

    lead = 0
    while lead < min(len(ref), len(alt)) and ref[lead] == alt[lead]:
        lead += 1
    begin = pos - 1 + lead
    lo, hi = start - 2 * length, start + 3 * length
    edited = bases(lo, begin) + alt[lead:] + bases(begin + len(ref) - lead, hi)
    return bases(start, start + length), edited[start - lo : start - lo + length]


def loop_stats(ref: np.ndarray, alt: np.ndarray, stat: str) -> tuple[float, float, float]:
    """One track's statistic by plain Python loops over bins."""
    if stat == "SUM":
        r, a = sum(float(x) for x in ref), sum(float(x) for x in alt)
        return r, a, a - r
    if stat == "logSUM":
        r, a = sum(float(np.log2(x + 1)) for x in ref), sum(float(np.log2(x + 1)) for x in alt)
        return r, a, a - r
    diffs = [float(b) - float(c) for b, c in zip(alt, ref, strict=True)]
    d = sum(abs(x) for x in diffs) if stat == "D1" else float(np.sqrt(sum(x * x for x in diffs)))
    return 0.0, d, d


# --- statistics and track selection ------------------------------------------------------------


def test_statistics_equal_the_output_modes_track_scores():
    from varscore_plugins.outputs import track_scores

    rng = np.random.default_rng(3)
    ref = rng.gamma(2.0, size=(12, 3))
    alts = rng.gamma(2.0, size=(5, 12, 3))
    stats = ("SUM", "logSUM", "D1", "D2")
    values = statistics(ref, alts, stats)
    assert values.shape == (5, 3, 4, 3)
    for t in range(3):
        for k, stat in enumerate(stats):
            expected = track_scores(stat, ref[:, t], alts[:, :, t])
            np.testing.assert_allclose(values[:, t, k, 0], np.broadcast_to(expected.reference, (5,)), rtol=1e-12)
            np.testing.assert_allclose(values[:, t, k, 1], expected.alternates[:, 0], rtol=1e-12)
            np.testing.assert_allclose(values[:, t, k, 2], expected.delta[:, 0], rtol=1e-12, atol=1e-12)
            for m in range(5):
                np.testing.assert_allclose(values[m, t, k], loop_stats(ref[:, t], alts[m, :, t], stat), rtol=1e-10)


def test_select_tracks_by_index_pattern_and_all():
    descriptions = read_targets(DATA / "enformer" / "targets_human.txt")
    assert len(descriptions) == 5313 and descriptions[4950] == "CAGE:blood, adult, pool1"
    blood = select_tracks("CAGE.*blood", 5313, descriptions)
    expected = [i for i, d in enumerate(descriptions) if re.search("CAGE.*blood", d)]
    assert list(blood.indices) == expected and 4950 in blood.indices
    assert all("CAGE" in n and "blood" in n for n in blood.names)
    picked = select_tracks("0,5,10-12", 5313, descriptions)
    assert picked.indices == (0, 5, 10, 11, 12) and picked.names[0] == descriptions[0]
    assert select_tracks("all", 3).indices == (0, 1, 2) and select_tracks("all", 3).names == (
        "track0",
        "track1",
        "track2",
    )
    with pytest.raises(InputError, match="targets file"):
        select_tracks("CAGE", 3)
    with pytest.raises(InputError, match="outside"):
        select_tracks("2-7", 5)
    with pytest.raises(InputError, match="No track description"):
        select_tracks("no such assay", 5313, descriptions)
    with pytest.raises(InputError, match="regular expression"):
        select_tracks("CAGE(", 5313, descriptions)
    with pytest.raises(InputError, match="lists 5313 tracks"):
        select_tracks("all", 8, descriptions)


def test_geometry_bin_mask_equals_a_loop_over_bins():
    rng = np.random.default_rng(0)
    geometry = Geometry(length=100, bin_size=8, n_bins=10)  # bins cover window indices 10..90
    assert geometry.offset == 10
    for _ in range(200):
        start = int(rng.integers(-50, 50))
        intervals = []
        for _ in range(int(rng.integers(1, 4))):
            a = int(rng.integers(start - 20, start + 120))
            intervals.append((a, a + int(rng.integers(1, 30))))
        expected = [
            any(s < start + 10 + (b + 1) * 8 and e > start + 10 + b * 8 for s, e in intervals) for b in range(10)
        ]
        assert geometry.bin_mask(start, intervals).tolist() == expected


def test_window_start_exact_and_tiled():
    assert window_start(101, 64, "exact", 8) == 100 - 32  # POS base at index 32
    for pos in range(1, 200):
        start = window_start(pos, 64, "tiled", 16)
        tile = (pos - 1) // 16
        assert start + 32 == tile * 16 + 8  # centred on the tile's middle
        assert abs((pos - 1) - (start + 32)) <= 8


# --- the example VCF: every record scored, equal to explicit forward passes ---------------------


@pytest.fixture
def example_toy(toy_plugin):
    from tests.toy_plugin import ToyBackbone
    from varscore.examples import data_dir

    backbone = ToyBackbone(window_size=64, bin_size=8, tracks=3).build()
    genome = Genome(data_dir() / "ucsc.hg19.chr20.unittest.fasta.gz")
    return backbone, genome, data_dir() / "cohort.vcf.gz"


def test_every_example_record_equals_explicit_forward_passes(example_toy):
    backbone, genome, vcf = example_toy
    stats = ("SUM", "D1", "D2")
    scorer = VariantCentredScorer(backbone, genome, ScorerSettings(stats=stats, centring="exact", batch_size=16))
    records = list(scorer.score(iter_variants(vcf)))
    summary = scorer.summary
    assert summary.records_read == len(records) == 4227
    assert summary.records_scored == 4227 and not summary.not_scored
    assert summary.reference_passes == len({(r.variant.chrom, r.variant.pos) for r in records})
    chrom = genome.resolve("chr20")
    refs, alts = [], []
    for record in records:
        v = record.variant
        start = v.pos - 1 - 32
        assert record.window_start == start
        # the contig around the record, as text (an offset string keeps the indices)
        local = genome.fetch(genome_window(chrom, start - 128, start + 192))
        ref_s, alt_s = explicit_windows(local, v.pos - (start - 128), v.ref, v.alts[0], 64, 128)
        refs.append(one_hot(ref_s))
        alts.append(one_hot(alt_s))
    ref_pred = backbone.predict(np.stack(refs))
    alt_pred = backbone.predict(np.stack(alts))
    for i, record in enumerate(records):
        (allele,) = record.alleles
        for t in range(3):
            for k, stat in enumerate(stats):
                np.testing.assert_allclose(
                    allele.window[t, k], loop_stats(ref_pred[i, :, t], alt_pred[i, :, t], stat), rtol=1e-5, atol=1e-4
                )


def genome_window(chrom: str, start: int, end: int):
    from varscore.types import Window

    return Window(chrom, start, end)


@pytest.fixture
def indel_world(tmp_path, toy_plugin):
    from tests.toy_plugin import ToyBackbone

    rng = np.random.default_rng(5)
    seqs = {"chr1": random_sequence(rng, 400), "chr2": random_sequence(rng, 150)}
    fasta = write_fasta(tmp_path / "ref.fa", seqs)
    s1 = seqs["chr1"]
    records = [
        ("chr1", 10, s1[9], "ACGT".replace(s1[9], "")[0]),  # window runs off the contig start
        ("chr1", 100, s1[99], s1[99] + "GA"),  # insertion
        ("chr1", 100, s1[99:103], s1[99]),  # deletion at the same position: same reference pass
        ("chr1", 150, s1[149:151], "TT" if s1[149:151] != "TT" else "GG"),  # MNP
        ("chr1", 200, s1[199], ",".join(b for b in "ACGT" if b != s1[199])),  # three ALT alleles
        ("chr1", 250, s1[249], "<DEL>"),  # symbolic
        ("chr1", 260, "N", "A"),  # ambiguous REF
        ("chr1", 270, "A" if s1[269] != "A" else "C", "G"),  # REF differs from the FASTA
        ("chr9", 5, "A", "C"),  # contig not in the FASTA
        ("chr2", 148, seqs["chr2"][147], seqs["chr2"][147] + "TTTT"),  # insertion near the contig end
    ]
    vcf = write_vcf(tmp_path / "in.vcf", records)
    backbone = ToyBackbone(window_size=64, bin_size=8, tracks=2, seed=3).build()
    return {"fasta": fasta, "seqs": seqs, "vcf": vcf, "backbone": backbone, "records": records, "tmp": tmp_path}


def test_indels_and_unscorable_records_are_all_accounted_for(indel_world):
    w = indel_world
    scorer = VariantCentredScorer(w["backbone"], Genome(w["fasta"]), ScorerSettings(stats=("SUM", "D2"), batch_size=3))
    records = list(scorer.score(iter_variants(w["vcf"])))
    s = scorer.summary
    assert [r.variant.index for r in records] == list(range(10))
    assert s.records_read == 10 and s.records_scored == 6
    assert dict(s.not_scored) == {"symbolic": 1, "ambiguous_ref": 1, "ref_mismatch": 1, "not_in_fasta": 1}
    assert s.indel_records == 4 and s.windows_padded == 2
    assert s.reference_passes == 5  # the insertion and deletion at chr1:100 share one
    assert [r.reason for r in records] == [None] * 5 + [
        "symbolic",
        "ambiguous_ref",
        "ref_mismatch",
        "not_in_fasta",
        None,
    ]
    for record in records:
        if record.reason:
            assert not record.alleles
            continue
        v = record.variant
        seq = w["seqs"][v.chrom]
        start = v.pos - 1 - 32
        assert [a.allele for a in record.alleles] == list(v.alts)
        for allele in record.alleles:
            ref_s, alt_s = explicit_windows(seq, v.pos, v.ref, allele.allele, 64, start)
            pred = w["backbone"].predict(np.stack([one_hot(ref_s), one_hot(alt_s)]))
            for t in range(2):
                for k, stat in enumerate(("SUM", "D2")):
                    np.testing.assert_allclose(
                        allele.window[t, k], loop_stats(pred[0, :, t], pred[1, :, t], stat), rtol=1e-5, atol=1e-4
                    )


def test_log_sum_refuses_predictions_below_minus_one(indel_world):
    w = indel_world
    scorer = VariantCentredScorer(w["backbone"], Genome(w["fasta"]), ScorerSettings(stats=("logSUM",)))
    with pytest.raises(InputError, match="logSUM"):
        list(scorer.score(iter_variants(w["vcf"])))


# --- gene-level values over exon bins -----------------------------------------------------------


def write_gtf(path: Path, genes: list[tuple[str, str, int, int, str, list[tuple[int, int]]]]) -> Path:
    """``(gene_id, chrom, start, end, strand, exons)`` with 1-based inclusive coordinates."""
    lines = []
    for gene_id, chrom, start, end, strand, exons in genes:
        attrs = f'gene_id "{gene_id}"; gene_name "{gene_id}N";'
        lines.append(f"{chrom}\ttest\tgene\t{start}\t{end}\t.\t{strand}\t.\t{attrs}")
        for s, e in exons:
            lines.append(f'{chrom}\ttest\texon\t{s}\t{e}\t.\t{strand}\t.\t{attrs} transcript_id "{gene_id}.1";')
    path.write_text("\n".join(lines) + "\n")
    return path


def test_gene_values_equal_an_explicit_sum_over_exon_bins(indel_world):
    w = indel_world
    gtf = write_gtf(
        w["tmp"] / "genes.gtf",
        [
            ("GA", "chr1", 80, 160, "+", [(80, 95), (120, 125), (150, 160)]),
            ("GB", "chr1", 190, 260, "-", [(190, 200), (201, 204), (255, 260)]),  # two exons touching: merged
            ("GC", "chr1", 300, 390, "+", [(380, 390)]),  # span overlaps some windows, exons only far off
        ],
    )
    models = load_gene_models(gtf)
    assert {m.gene_id: m.exons for m in models}["GB"] == ((189, 204), (254, 260))
    scorer = VariantCentredScorer(
        w["backbone"], Genome(w["fasta"]), ScorerSettings(stats=STATS[:1] + STATS[2:]), models
    )
    checked = 0
    for record in scorer.score(iter_variants(w["vcf"])):
        if record.reason:
            continue
        v = record.variant
        start = record.window_start
        # the genes whose span overlaps the window and that have an exon base in some bin
        expected_genes = [
            m
            for m in models
            if m.chrom == v.chrom
            and m.start < start + 64
            and m.end > start
            and any(s < start + 64 and e > start for s, e in m.exons)
        ]
        for allele in record.alleles:
            assert [g.gene_id for g, _ in allele.genes] == [g.gene_id for g in expected_genes]
            ref_s, alt_s = explicit_windows(w["seqs"][v.chrom], v.pos, v.ref, allele.allele, 64, start)
            pred = w["backbone"].predict(np.stack([one_hot(ref_s), one_hot(alt_s)]))
            for gene, values in allele.genes:
                bins = [
                    b for b in range(8) if any(s < start + (b + 1) * 8 and e > start + b * 8 for s, e in gene.exons)
                ]
                for t in range(2):
                    ref_sum = sum(float(pred[0, b, t]) for b in bins)
                    alt_sum = sum(float(pred[1, b, t]) for b in bins)
                    np.testing.assert_allclose(
                        values[t, 0], (ref_sum, alt_sum, alt_sum - ref_sum), rtol=1e-5, atol=1e-4
                    )
                    d1 = sum(abs(float(pred[1, b, t]) - float(pred[0, b, t])) for b in bins)
                    np.testing.assert_allclose(values[t, 1], (0.0, d1, d1), rtol=1e-5, atol=1e-4)
                checked += 1
    assert checked >= 4


def test_gff3_exons_hang_off_transcripts(tmp_path):
    gff = tmp_path / "genes.gff3"
    gff.write_text(
        "##gff-version 3\n"
        + "\n".join(
            [
                "chr1\tt\tgene\t100\t300\t.\t+\t.\tID=gene:G1;Name=ONE",
                "chr1\tt\tmRNA\t100\t300\t.\t+\t.\tID=transcript:T1;Parent=gene:G1",
                "chr1\tt\texon\t100\t150\t.\t+\t.\tParent=transcript:T1",
                "chr1\tt\texon\t200\t300\t.\t+\t.\tParent=transcript:T1",
                "chr1\tt\tmRNA\t100\t300\t.\t+\t.\tID=transcript:T2;Parent=gene:G1",
                "chr1\tt\texon\t140\t160\t.\t+\t.\tParent=transcript:T2",
            ]
        )
        + "\n"
    )
    (model,) = load_gene_models(gff)
    assert model == GeneModel("G1", "ONE", "chr1", 99, 300, "+", ((99, 160), (199, 300)))


def test_example_gtf_reads_the_five_genes():
    models = load_gene_models(EXAMPLE_GTF)
    assert sorted(m.gene_id for m in models) == ["C20orf187", "JAG1", "MKKS", "SLX4IP", "SNAP25"]
    tss = {"SNAP25": 10199479, "MKKS": 10414871, "SLX4IP": 10415952, "JAG1": 10654695, "C20orf187": 11008409}
    for m in models:
        assert (m.start + 1 if m.strand == "+" else m.end) == tss[m.gene_id]
        assert all(m.start <= s < e <= m.end for s, e in m.exons)


# --- annotate --mode variant: VCF headline, Parquet detail, calibration --------------------------


@pytest.fixture
def track_bundle(indel_world):
    from varscore.models.bundle import BundleMetadata, save_bundle
    from varscore_plugins.outputs import TrackOutput

    w = indel_world
    gtf = write_gtf(
        w["tmp"] / "genes.gtf",
        [
            ("GA", "chr1", 80, 160, "+", [(80, 95), (120, 125), (150, 160)]),
            ("GB", "chr1", 190, 260, "-", [(190, 200), (255, 260)]),
        ],
    )
    bundle = save_bundle(
        w["tmp"] / "models" / "toy-track",
        name="toy-track",
        backbone=w["backbone"],
        output_mode=TrackOutput(track=0),
        genes=[],
        about=BundleMetadata(reference_fasta=w["fasta"]),
    )
    return {**w, "bundle": bundle, "gtf": gtf}


def _info(line: str) -> dict[str, str]:
    fields = line.split("\t")[7].split(";")
    return dict(f.split("=", 1) for f in fields if "=" in f)


def test_parquet_detail_round_trips_with_one_row_per_allele_gene_track_stat(track_bundle):
    w = track_bundle
    out, detail = w["tmp"] / "out.vcf", w["tmp"] / "detail.parquet"
    job = VariantScoringJob(w["vcf"], w["bundle"], out, gtf=w["gtf"], stats="SUM,D1,D2", detail=detail)
    output = "\n".join(run_variant_scoring(job).lines())
    assert "records read: 10" in output and "records scored: 6" in output
    scorer = VariantCentredScorer(
        w["backbone"], Genome(w["fasta"]), ScorerSettings(stats=("SUM", "D1", "D2")), load_gene_models(w["gtf"])
    )
    records = [r for r in scorer.score(iter_variants(w["vcf"]))]
    n_alleles = sum(len(r.alleles) for r in records)
    n_gene_pairs = sum(len(a.genes) for r in records for a in r.alleles)
    assert n_gene_pairs > 0
    table = pd.read_parquet(detail)
    assert len(table) == (n_alleles + n_gene_pairs) * 2 * 3
    assert (table["scope"] == "gene").sum() == n_gene_pairs * 2 * 3  # alleles x genes x tracks x statistics
    assert (table["scope"] == "window").sum() == n_alleles * 2 * 3
    assert output.count("detail rows") == 1
    # every value in the table is the scorer's
    for record in records:
        for allele in record.alleles:
            rows = table[(table.record == record.variant.index) & (table.alt == allele.allele)]
            scopes = [(None, allele.window)] + [(g.gene_id, v) for g, v in allele.genes]
            for gene_id, values in scopes:
                part = rows[rows.gene_id.isna()] if gene_id is None else rows[rows.gene_id == gene_id]
                part = part.sort_values(
                    ["track", "stat"], key=lambda c: c.map({"SUM": 0, "D1": 1, "D2": 2}) if c.name == "stat" else c
                )
                np.testing.assert_allclose(
                    part[["ref_value", "alt_value", "score"]].to_numpy(), np.asarray(values).reshape(-1, 3), rtol=1e-12
                )
    # the VCF headline: largest |SUM| over tracks, window and genes, and where it is
    lines = [line for line in read_vcf_lines(out) if not line.startswith("#")]
    assert len(lines) == 10
    for record, line in zip(records, lines, strict=True):
        info = _info(line)
        if record.reason:
            assert info["VARSCORE_SKIP"] == record.reason and "VARSCORE_MAX" not in info
            continue
        maxima = [float(x) for x in info["VARSCORE_MAX"].split(",")]
        tops = info["VARSCORE_TOP"].split(",")
        for allele, top, maximum in zip(record.alleles, tops, maxima, strict=True):
            rows = table[(table.record == record.variant.index) & (table.alt == allele.allele) & (table.stat == "SUM")]
            best = rows.iloc[int(np.argmax(rows.score.abs().to_numpy()))]
            assert maximum == pytest.approx(abs(best.score), rel=1e-5)
            assert top == f"SUM|{best.track_name}|{best.gene_name if best.scope == 'gene' else '.'}"
        n_entries = sum(1 + len(a.genes) for a in record.alleles)
        assert len(info["VARSCORE"].split(",")) == n_entries
        for entry in info["VARSCORE"].split(","):
            *_, delta, direction = entry.split("|")
            assert direction == consequence(float(delta))  # SUM is signed


def test_detail_row_groups_are_written_as_scoring_proceeds(track_bundle, tmp_path):
    import pyarrow.parquet as pq

    from varscore.scoring.detail import DetailWriter

    w = track_bundle
    scorer = VariantCentredScorer(
        w["backbone"], Genome(w["fasta"]), ScorerSettings(stats=("SUM", "D2")), load_gene_models(w["gtf"])
    )
    path = tmp_path / "d.parquet"
    with DetailWriter(path, [0, 1], ["a", "b"], ["SUM", "D2"], row_group_rows=8) as writer:
        for record in scorer.score(iter_variants(w["vcf"])):
            writer.add(record)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == writer.rows > 8 and meta.num_row_groups > 1
    assert not list(tmp_path.glob(".d.parquet.*"))  # no temporary left behind


def test_calibrated_quantiles_equal_numpys_empirical_cdf(track_bundle, tmp_path):
    from varscore.models.bundle import load_bundle
    from varscore.scoring.calibrate import CALIBRATION_FILE, load_calibration

    w = track_bundle
    rng = np.random.default_rng(11)
    s1 = w["seqs"]["chr1"]
    positions = sorted(rng.choice(np.arange(5, 395), size=120, replace=False))
    background = write_vcf(
        tmp_path / "bg.vcf", [("chr1", int(p), s1[p - 1], "ACGT".replace(s1[p - 1], "")[int(p) % 3]) for p in positions]
    )
    calibrated = tmp_path / "calibrated"
    calibrated_lines = run_calibration(
        CalibrateJob(w["bundle"], background, calibrated, gtf=w["gtf"], stats="SUM,D2")
    ).lines()
    assert "calibrated" in calibrated_lines[-1] and (calibrated / CALIBRATION_FILE).exists()
    manifest = json.loads((calibrated / "varscore.json").read_text())
    assert manifest["calibration"]["records"] == 120
    # the background's |scores|, from its own detail table
    bg_detail = tmp_path / "bg.parquet"
    run_variant_scoring(
        VariantScoringJob(
            background, w["bundle"], tmp_path / "bg.out.vcf", gtf=w["gtf"], stats="SUM,D2", detail=bg_detail
        )
    )
    bg = pd.read_parquet(bg_detail)
    # score the test VCF with the calibrated copy
    out, detail = tmp_path / "out.vcf.gz", tmp_path / "detail.parquet"
    run_variant_scoring(VariantScoringJob(w["vcf"], calibrated, out, gtf=w["gtf"], stats="SUM,D2", detail=detail))
    table = pd.read_parquet(detail)
    header = "\n".join(line for line in read_vcf_lines(out) if line.startswith("##INFO=<ID=VARSCORE_Q"))
    assert "Fraction of the model's background" in header
    checked = 0
    for line in (line for line in read_vcf_lines(out) if not line.startswith("#")):
        info = _info(line)
        if "VARSCORE_Q" not in info:
            continue
        record = int(line.split("\t")[2][2:])  # IDs rsN = record N
        for alt, top, q in zip(
            line.split("\t")[4].split(","), info["VARSCORE_TOP"].split(","), info["VARSCORE_Q"].split(","), strict=True
        ):
            stat, track_name, gene = top.split("|")
            rows = table[(table.record == record) & (table.alt == alt) & (table.stat == stat)]
            best = rows.iloc[int(np.argmax(rows.score.abs().to_numpy()))]
            scope = "window" if gene == "." else "gene"
            pool = bg[(bg.scope == scope) & (bg.track == best.track) & (bg.stat == stat)].score.abs().to_numpy()
            assert float(q) == pytest.approx(np.mean(pool < abs(best.score)), abs=1e-6)
            checked += 1
    assert checked >= 6
    # a tampered calibration is refused
    (calibrated / CALIBRATION_FILE).write_text((calibrated / CALIBRATION_FILE).read_text().replace("[", "[0.0, ", 1))
    with pytest.raises(BundleError, match="sha256|Checksum mismatch"):
        load_calibration(load_bundle(calibrated))


def test_a_background_too_small_for_its_quantile_steps_is_warned_about(track_bundle, tmp_path, caplog):
    from varscore.scoring.calibrate import MIN_BACKGROUND, Calibration, resolution_warning

    w = track_bundle
    s1 = w["seqs"]["chr1"]
    background = write_vcf(
        tmp_path / "bg.vcf", [("chr1", p, s1[p - 1], "ACGT".replace(s1[p - 1], "")[0]) for p in (60, 90, 130, 170, 300)]
    )
    with caplog.at_level("WARNING", logger="varscore.scoring.variant_mode"):
        result = run_calibration(CalibrateJob(w["bundle"], background, tmp_path / "calibrated", stats="SUM"))
    n = min(result.calibration.counts.values())
    assert n == 5  # one window score per background SNV
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert f"only 5 scores for {min(result.calibration.counts)} (5 records)" in warnings[0]
    assert "steps of 1/5 = 0.2" in warnings[0] and "at least 1,000 background variants" in warnings[0]
    # enough scores for every key: no warning
    enough = Calibration(("SUM",), (0,), ("t0",), "exact", MIN_BACKGROUND, counts={"a": MIN_BACKGROUND, "b": 5000})
    assert resolution_warning(enough) is None
    assert "only 999 scores for b" in (resolution_warning(replace_counts(enough, {"a": 1000, "b": 999})) or "")


def replace_counts(calibration, counts):
    from dataclasses import replace

    return replace(calibration, counts=counts)


def test_distance_statistics_name_no_direction(track_bundle, tmp_path):
    """With a distance (D2) as the headline statistic, a changed allele's Consequence says the level
    changed without a direction: the distance's sign is not the change's."""
    from varscore.io.vcf import UNCHANGED, UNDIRECTED

    w = track_bundle
    out = tmp_path / "d2.vcf"
    run_variant_scoring(VariantScoringJob(w["vcf"], w["bundle"], out, stats="D2,SUM"))
    entries = [
        entry.split("|")
        for line in read_vcf_lines(out)
        if not line.startswith("#") and "VARSCORE=" in line
        for entry in _info(line)["VARSCORE"].split(",")
    ]
    assert entries and all(float(e[5]) >= 0 for e in entries)
    assert all(e[6] == (UNDIRECTED if float(e[5]) > 0 else UNCHANGED) for e in entries)
    assert any(e[6] == UNDIRECTED for e in entries)


def test_variant_mode_warns_when_the_model_learned_the_centre_bin_only(track_bundle, tmp_path, caplog):
    from varscore.models.bundle import BundleMetadata, save_bundle
    from varscore_plugins.outputs import ScalarOutput

    w = track_bundle
    centre = save_bundle(
        tmp_path / "centre-only",
        name="centre-only",
        backbone=w["backbone"],
        output_mode=ScalarOutput(track=0, center_bins=3, stat="center"),
        genes=[],
        about=BundleMetadata(reference_fasta=w["fasta"]),
    )
    with caplog.at_level("WARNING", logger="varscore.scoring.variant_mode"):
        run_variant_scoring(VariantScoringJob(w["vcf"], w["bundle"], tmp_path / "track.vcf", stats="SUM"))
        assert not [r for r in caplog.records if r.levelname == "WARNING"]  # a whole-track model: no warning
        run_variant_scoring(VariantScoringJob(w["vcf"], centre, tmp_path / "centre.vcf", stats="SUM"))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    n_bins = 64 // 8
    assert warnings == [
        f"model 'centre-only' was trained on output bins 3-5 of {n_bins} only (its output mode 'scalar'): "
        "variant-centred scores read every bin, and the others were never fitted, so they may mislead; prefer a "
        "model trained on whole tracks (finetune --output-mode track)."
    ]
    header = [line for line in read_vcf_lines(tmp_path / "centre.vcf") if line.startswith("##varscore_warning=")]
    assert header == [f'##varscore_warning="{warnings[0]}"']
    assert not [line for line in read_vcf_lines(tmp_path / "track.vcf") if line.startswith("##varscore_warning")]


def test_large_backgrounds_keep_a_quantile_grid():
    from varscore.genome.edits import Edit
    from varscore.scoring.calibrate import BackgroundCollector
    from varscore.scoring.centred import AlleleValues, RecordScores
    from varscore.types import Variant

    rng = np.random.default_rng(2)
    collector = BackgroundCollector([0], ["t"], ["SUM"], "exact")
    scores = rng.normal(size=5000)
    for i, score in enumerate(scores):
        values = np.array([[[0.0, score, score]]])
        collector.add(
            RecordScores(
                Variant("c", i + 1, "A", ("C",), index=i), None, 0, [AlleleValues("C", Edit(i, 1, "C"), values)]
            )
        )
    exact = collector.finish()
    grid = collector.finish(exact_limit=100, grid=501)
    assert exact.exact and not exact.grid and grid.grid and not grid.exact
    for x in (-3.0, -0.5, 0.0, 0.1, 1.0, 2.5, 9.0):
        empirical = np.mean(np.abs(scores) < abs(x))
        assert exact.quantile("window", 0, "SUM", x) == pytest.approx(empirical, abs=1e-12)
        assert grid.quantile("window", 0, "SUM", x) == pytest.approx(empirical, abs=3e-3)
    assert exact.quantile("gene", 0, "SUM", 1.0) is None


# --- tiled centring ------------------------------------------------------------------------------


def test_tiled_windows_equal_explicit_forward_passes_at_the_tile(indel_world):
    w = indel_world
    scorer = VariantCentredScorer(
        w["backbone"], Genome(w["fasta"]), ScorerSettings(stats=("SUM", "D1"), centring="tiled", tile_bins=2)
    )
    records = list(scorer.score(iter_variants(w["vcf"])))
    assert scorer.tile == 16
    scored = [r for r in records if not r.reason]
    assert scorer.summary.reference_passes == len({(r.variant.chrom, (r.variant.pos - 1) // 16) for r in scored})
    for record in scored:
        v = record.variant
        start = ((v.pos - 1) // 16) * 16 + 8 - 32
        assert record.window_start == start
        for allele in record.alleles:
            ref_s, alt_s = explicit_windows(w["seqs"][v.chrom], v.pos, v.ref, allele.allele, 64, start)
            if len(allele.allele) != len(v.ref):
                # indels keep the window's centre base in place: only those right of the centre are plain splices
                if v.pos - 1 < start + 32:
                    continue
            pred = w["backbone"].predict(np.stack([one_hot(ref_s), one_hot(alt_s)]))
            for t in range(2):
                np.testing.assert_allclose(
                    allele.window[t, 0], loop_stats(pred[0, :, t], pred[1, :, t], "SUM"), rtol=1e-5, atol=1e-4
                )


def test_tiled_enformer_patch_ism_equals_full_forwards(tmp_path):
    """A tiny Enformer: tiled scores (one reference pass per tile, alternates through the backbone's
    ISM entry point) equal full forward passes of the explicit windows."""
    from varscore.plugin.manager import get_backbone
    from varscore_plugins.enformer import tiny_params

    rng = np.random.default_rng(8)
    seq = random_sequence(rng, 6000)
    fasta = write_fasta(tmp_path / "ref.fa", {"chr1": seq})
    positions = [3000, 3010, 3100, 3500, 4100]
    vcf = write_vcf(tmp_path / "v.vcf", [("chr1", p, seq[p - 1], "ACGT".replace(seq[p - 1], "")[0]) for p in positions])
    backbone = get_backbone("enformer")(**tiny_params(2048, head="pretrained", seed=1)).build()
    scorer = VariantCentredScorer(
        backbone, Genome(fasta), ScorerSettings(tracks=[0, 3], stats=("SUM", "D2"), centring="tiled", tile_bins=4)
    )
    records = list(scorer.score(iter_variants(vcf)))
    assert scorer.summary.reference_passes == len({(p - 1) // 512 for p in positions})
    for record in records:
        v = record.variant
        ref_s, alt_s = explicit_windows(seq, v.pos, v.ref, v.alts[0], 2048, record.window_start)
        pred = backbone.predict(np.stack([one_hot(ref_s), one_hot(alt_s)]))[:, :, [0, 3]]
        (allele,) = record.alleles
        for t in range(2):
            for k, stat in enumerate(("SUM", "D2")):
                np.testing.assert_allclose(
                    allele.window[t, k], loop_stats(pred[0, :, t], pred[1, :, t], stat), rtol=1e-4, atol=1e-4
                )


@pytest.mark.parametrize("backbone_name", ["enformer", "borzoi"])
def test_exact_centring_through_the_fast_ism_equals_full_forwards(tmp_path, backbone_name):
    """Exact centring on a backbone with ``fast_ism``: each window's SNV alternates (every ALT of a
    multi-allelic site) come from its reference pass through the exact fast ISM, indels and MNPs
    from full forwards; every statistic equals full forward passes of windows built from strings.

    Tolerance: the fast path sums in another order (the first attention layer updated in float64
    from the cached reference, the tower recomputed on sub-spans), so its float32 predictions
    differ from full forwards by round-off (~1e-7 relative); a SUM score is the difference of two
    sums over every bin, so the differences reach ~1e-5 of the largest score (measured 8e-6 and
    1e-5 here). The bound, 5e-5 of each statistic's largest |value|, is 6 times smaller than the
    smallest variant effect, which is checked."""
    pytest.importorskip(f"{backbone_name}_pytorch")
    from varscore.plugin.manager import get_backbone

    rng = np.random.default_rng(21)
    seq = random_sequence(rng, 5000)
    fasta = write_fasta(tmp_path / "ref.fa", {"chr1": seq})

    def other(base: str, k: int = 0) -> str:
        return "ACGT".replace(base, "")[k]

    p = [60, 1500, 1500, 2500, 2600, 3300, 3301, 4990]
    records = [
        ("chr1", p[0], seq[p[0] - 1], other(seq[p[0] - 1])),  # SNV whose window runs off the contig (N)
        ("chr1", p[1], seq[p[1] - 1], ",".join("ACGT".replace(seq[p[1] - 1], ""))),  # every ALT at one site
        ("chr1", p[2], seq[p[2] - 1], other(seq[p[2] - 1], 1)),  # a split record at the same site
        ("chr1", p[3], seq[p[3] - 1], f"{other(seq[p[3] - 1])},{seq[p[3] - 1]}TT"),  # SNV + insertion
        ("chr1", p[4], seq[p[4] - 1 : p[4] + 3], seq[p[4] - 1]),  # deletion
        ("chr1", p[5], seq[p[5] - 1 : p[5] + 1], other(seq[p[5] - 1]) + other(seq[p[5]])),  # MNP
        ("chr1", p[6], seq[p[6] - 1], other(seq[p[6] - 1], 2)),  # SNV next to the MNP
        ("chr1", p[7], seq[p[7] - 1], other(seq[p[7] - 1])),  # SNV near the contig's end
    ]
    vcf = write_vcf(tmp_path / "v.vcf", records)
    if backbone_name == "enformer":
        from varscore_plugins.enformer import tiny_params

        backbone = get_backbone("enformer")(**tiny_params(2048, head="pretrained", seed=3)).build()
    else:
        from varscore_plugins.borzoi import tiny_params as borzoi_tiny

        backbone = get_backbone("borzoi")(**borzoi_tiny(2048, depth=2, head="track", n_tracks=3, seed=3)).build()
    perturb_weights(backbone.model_, 5)  # every weight and batch-norm statistic off its initial value: large effects
    stats = ("SUM", "logSUM", "D1", "D2") if backbone_name == "borzoi" else ("SUM", "D1", "D2")
    tracks = [0, 2]
    scorer = VariantCentredScorer(backbone, Genome(fasta), ScorerSettings(tracks=tracks, stats=stats))
    scored = list(scorer.score(iter_variants(vcf)))
    n_snv_alleles = 1 + 3 + 1 + 1 + 1 + 1  # the split record's ALT repeats one of the site's three
    assert scorer.summary.ism_alternates == n_snv_alleles - 1
    assert scorer.summary.reference_passes == len(set(p))
    length = backbone.window_size
    expected, got = [], []
    for record in scored:
        v = record.variant
        assert record.window_start == v.pos - 1 - length // 2
        for allele in record.alleles:
            ref_s, alt_s = explicit_windows(seq, v.pos, v.ref, allele.allele, length, record.window_start)
            pred = backbone.predict(np.stack([one_hot(ref_s), one_hot(alt_s)]))[:, :, tracks]
            for t in range(len(tracks)):
                for k, stat in enumerate(stats):
                    expected.append(loop_stats(pred[0, :, t], pred[1, :, t], stat))
                    got.append(allele.window[t, k])
    expected_a, got_a = np.asarray(expected), np.asarray(got)
    assert len(expected_a) == sum(len(r.alleles) for r in scored) * len(tracks) * len(stats) == 11 * 2 * len(stats)
    scale = np.abs(expected_a).max(axis=0, keepdims=True)
    assert (np.abs(got_a - expected_a) <= 5e-5 * scale).all(), np.abs(got_a - expected_a).max(axis=0) / scale
    assert (np.abs(expected_a[:, 2]) > 3e-4 * scale[0, 2]).all()  # every allele moves every statistic


def test_exact_centring_reaches_the_flop_models_centred_bound(tmp_path):
    """torch's flop counter over a whole exact-centring run (one SNV per window, every bin read):
    naive ISM over fast ISM equals :meth:`IsmFlops.centred_bound` of the FLOP model (the reference
    passes' relative-position keys, which the model leaves out, are the only difference)."""
    from torch.utils.flop_counter import FlopCounterMode

    from varscore_plugins.enformer import EnformerBackbone, tiny_params
    from varscore_plugins.flops import enformer_ism_flops

    rng = np.random.default_rng(0)
    seq = random_sequence(rng, 12000)
    fasta = write_fasta(tmp_path / "ref.fa", {"chr1": seq})
    positions = [3000 + 1000 * i for i in range(5)]
    vcf = write_vcf(tmp_path / "v.vcf", [("chr1", p, seq[p - 1], "ACGT".replace(seq[p - 1], "")[0]) for p in positions])
    params = tiny_params(4096, head="pretrained")
    backbone = EnformerBackbone(**params).build()
    counts = {}
    for method in ("naive", "fast"):
        backbone.ism_method = method
        scorer = VariantCentredScorer(backbone, Genome(fasta), ScorerSettings(stats=("SUM",)))
        counter = FlopCounterMode(display=False)
        with counter:
            assert len(list(scorer.score(iter_variants(vcf)))) == 5
        counts[method] = counter.get_total_flops()
    bound = enformer_ism_flops(params, rows=None).centred_bound(1)
    assert 1.5 < bound < 2
    assert counts["naive"] / counts["fast"] == pytest.approx(bound, rel=1e-3)


def test_variant_mode_bad_input_is_one_line(track_bundle):
    from varscore.cli import cli

    w = track_bundle
    runner = CliRunner()
    base = ["annotate", str(w["vcf"]), "-m", str(w["bundle"]), "-o", str(w["tmp"] / "x.vcf"), "--mode", "variant"]
    for extra, message in (
        (["--tracks", "CAGE"], "targets file"),
        (["--tracks", "5"], "outside"),
        (["--stats", "MEAN"], "Unknown statistic"),
        (["--gtf", str(w["vcf"])], "GTF"),
    ):
        result = runner.invoke(cli, base + extra)
        assert result.exit_code != 0 and message in result.output, result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (w["tmp"] / "x.vcf").exists()


def test_gzip_vcf_output_is_indexed(track_bundle):
    from varscore.scoring.variant_mode import VariantScoringJob, run_variant_scoring

    w = track_bundle
    out = w["tmp"] / "o.vcf.gz"
    summary = run_variant_scoring(VariantScoringJob(w["vcf"], w["bundle"], out, centring="tiled", stats="D1"))
    assert "centring: tiled" in "\n".join(summary.lines())
    with gzip.open(out, "rt") as handle:
        assert sum(1 for line in handle if not line.startswith("#")) == 10
    assert Path(f"{out}.tbi").exists()


def test_fetch_starting_at_a_bgzf_block_end_equals_pysam():
    """pyfaidx cannot start a read of a bgzipped FASTA exactly at a BGZF block end (chr20:10922661 of the
    example is one); the genome reads one base earlier there."""
    import pysam

    from varscore.examples import data_dir

    path = data_dir() / "ucsc.hg19.chr20.unittest.fasta.gz"
    genome = Genome(path)
    reference = pysam.FastaFile(str(path))
    for start in (10922659, 10922660, 10922661):
        assert (
            genome.fetch(genome_window("chr20", start, start + 64))
            == reference.fetch("chr20", start, start + 64).upper()
        )


def test_retained_memory_is_reused_without_page_faults():
    """After :func:`retain_freed_memory`, a "window" that allocates eight 3 MiB buffers and frees
    them reuses the previous window's memory: no fresh page faults. (glibc's default trims the
    freed heap top and every one of the 6,144 pages of each later window faults again: measured
    30,560 faults for 30,720 pages in a fresh process.)"""
    import resource
    import sys

    from varscore.scoring.variant_mode import retain_freed_memory

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's allocator only")
    assert retain_freed_memory()

    def window() -> None:
        buffers = [np.ones((3 << 20) // 8) for _ in range(8)]
        del buffers

    for _ in range(2):  # the heap grows to hold one window
        window()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        window()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 5 * 8 * (3 << 20) // 4096 // 10, faults  # under a tenth of the pages touched
