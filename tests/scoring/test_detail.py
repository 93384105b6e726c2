"""The Parquet detail table: read back with pyarrow, its values equal the VCF's INFO values, its
columns are described, and its provenance equals the VCF header's (key-value metadata and the
``.provenance.json`` sidecar), in gene-window and variant-centred mode."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import ScoredVcf, read_vcf_lines, score_entries
from tests.scoring.test_centred import indel_world, track_bundle  # noqa: F401  (fixtures)
from varscore.errors import InputError
from varscore.examples import data_dir
from varscore.io.vcf import format_float
from varscore.scoring.detail import DETAIL_DESCRIPTIONS, GENE_DETAIL_DESCRIPTIONS
from varscore.scoring.gene_mode import ScoringJob, run_scoring
from varscore.scoring.variant_mode import VariantScoringJob, run_variant_scoring


def _header_model(vcf: Path) -> dict[str, str]:
    line = next(x for x in read_vcf_lines(vcf) if x.startswith("##varscore_model=<"))
    return dict(item.split("=", 1) for item in line[len("##varscore_model=<") : -1].split(","))


def _check_provenance(table_path: Path, vcf: Path) -> None:
    meta = {k.decode(): v.decode() for k, v in pq.read_schema(table_path).metadata.items()}
    sidecar = json.loads(Path(f"{table_path}.provenance.json").read_text())
    header = {x.split("=", 1)[0][2:]: x.split("=", 1)[1] for x in read_vcf_lines(vcf) if x.startswith("##varscore_")}
    assert json.loads(meta["varscore_model"]) == sidecar["varscore_model"] == _header_model(vcf)
    assert meta["varscore_version"] == sidecar["varscore_version"] == header["varscore_version"]
    assert meta["varscore_command"] == sidecar["varscore_command"]


def test_gene_mode_detail_equals_the_vcf_entries(elastic_net_scored: ScoredVcf):
    """One row per (record, allele, gene): REF_PRED, ALT_PRED, DELTA of the VCF's VARSCORE
    entries (6 significant digits there, full precision in the table), on the session's
    ``elastic_net_scored`` run (tests/conftest.py)."""
    vcf, detail = elastic_net_scored.vcf, elastic_net_scored.detail
    assert detail is not None
    table = pq.read_table(detail)
    optional = ("sd", "q")  # no ensemble: no sd column; no calibration: no q column
    assert table.column_names == [n for n in GENE_DETAIL_DESCRIPTIONS if n not in optional]
    for field in table.schema:
        assert field.metadata[b"description"].decode() == GENE_DETAIL_DESCRIPTIONS[field.name]
    assert "units" in GENE_DETAIL_DESCRIPTIONS["ref_pred"]
    rows = table.to_pylist()
    entries = []
    for fields, (allele, gene, model, ref_pred, alt_pred, delta, _) in score_entries(vcf):
        entries.append((fields[0], int(fields[1]), fields[3], allele, gene, model, ref_pred, alt_pred, delta))
    assert len(entries) == len(rows) > 100
    for row, entry in zip(rows, entries, strict=True):
        mine = (row["chrom"], row["pos"], row["ref"], row["alt"], row["gene"], row["model"])
        assert mine == entry[:6]
        assert tuple(format_float(row[k]) for k in ("ref_pred", "alt_pred", "delta")) == entry[6:]
    _check_provenance(detail, vcf)
    assert json.loads(Path(f"{detail}.provenance.json").read_text())["varscore_command"].endswith(str(detail))


def test_gene_mode_detail_needs_a_model(tmp_path):
    job = ScoringJob(
        data_dir() / "cohort.vcf.gz", "none", tmp_path / "o.vcf", detail=tmp_path / "d.parquet", annotators=("motifs",)
    )
    with pytest.raises(InputError, match="--detail holds model scores"):
        run_scoring(job)
    assert not (tmp_path / "d.parquet").exists()


def test_variant_mode_detail_names_tracks_from_the_bundle_and_records_provenance(track_bundle):  # noqa: F811
    """No --targets: the tracks take the names of the bundle's track list; the file's key-value
    metadata and sidecar carry the same provenance as the VCF header; columns are described."""
    from varscore.models.bundle import BundleMetadata, save_bundle
    from varscore_plugins.outputs import TrackOutput

    w = track_bundle
    tracks = w["tmp"] / "targets.txt"
    tracks.write_text("index\tidentifier\tdescription\n0\tT0\tCAGE:blood\n1\tT1\tDNASE:liver\n")
    bundle = save_bundle(
        w["tmp"] / "models" / "toy-named",
        name="toy-named",
        backbone=w["backbone"],
        output_mode=TrackOutput(track=0),
        genes=[],
        about=BundleMetadata(reference_fasta=w["fasta"], extra={"tracks": {"file": "tracks.txt", "count": 2}}),
        files={"tracks.txt": tracks},
    )
    out, detail = w["tmp"] / "out.vcf", w["tmp"] / "detail.parquet"
    run_variant_scoring(VariantScoringJob(w["vcf"], bundle, out, gtf=w["gtf"], stats="SUM", detail=detail))
    table = pq.read_table(detail)
    assert set(table.column("track_name").to_pylist()) == {"CAGE:blood", "DNASE:liver"}
    named = dict(zip(table.column("track").to_pylist(), table.column("track_name").to_pylist(), strict=True))
    assert named == {0: "CAGE:blood", 1: "DNASE:liver"}
    for field in table.schema:
        assert field.metadata[b"description"].decode() == DETAIL_DESCRIPTIONS[field.name]
    _check_provenance(detail, out)
    # the VCF headline names the same tracks
    tops = [x for x in read_vcf_lines(out) if not x.startswith("#") and "VARSCORE_TOP=" in x]
    assert tops and all("SUM|CAGE:blood|" in x or "SUM|DNASE:liver|" in x for x in tops)
