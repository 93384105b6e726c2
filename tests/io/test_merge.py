"""varscore merge: shards in order, and one-line refusals of missing, repeated or mismatched shards."""

from __future__ import annotations

import gzip
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.scoring.test_centred import indel_world, track_bundle  # noqa: F401  (fixtures)
from varscore.cli import cli
from varscore.errors import InputError
from varscore.io.merge import MergeJob, run_merge

HEADER = (
    "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=1000>\n"
    '##INFO=<ID=VARSCORE,Number=.,Type=String,Description="x">\n'
    "{shard}##varscore_command=varscore annotate in.vcf {extra}\n"
    "##varscore_model=<ID={model}>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
)


def _shard(folder: Path, index: int, count: int, positions: list[int], model: str = "m") -> Path:
    path = folder / f"s{index}of{count}.vcf"
    shard = f"##varscore_shard={index}/{count}\n" if index else ""
    body = "".join(f"chr1\t{p}\t.\tA\tC\t.\t.\tVARSCORE=C|G|m|1|2|{p}\n" for p in positions)
    path.write_text(HEADER.format(shard=shard, extra=f"--shard {index}/{count}", model=model) + body)
    return path


def test_shards_are_merged_in_shard_order(tmp_path: Path) -> None:
    parts = [_shard(tmp_path, 1, 3, [1, 2]), _shard(tmp_path, 2, 3, []), _shard(tmp_path, 3, 3, [5, 9])]
    out = tmp_path / "merged.vcf.gz"
    result = run_merge(MergeJob([parts[2], parts[1], parts[0]], out))
    assert result.records == [2, 0, 2]
    text = gzip.open(out, "rt").read()
    assert "##varscore_shard" not in text
    positions = [int(line.split("\t")[1]) for line in text.splitlines() if not line.startswith("#")]
    assert positions == [1, 2, 5, 9]
    assert (tmp_path / "merged.vcf.gz.tbi").exists()
    # bcftools reads it as the same records
    listed = subprocess.run(["bcftools", "query", "-f", "%POS\n", str(out)], capture_output=True, text=True, check=True)
    assert listed.stdout.split() == ["1", "2", "5", "9"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: [_shard(d, 1, 3, [1]), _shard(d, 3, 3, [2])], "Shard 2 of 3 missing"),
        (lambda d: [_shard(d, 1, 2, [1]), _shard(d, 1, 2, [1]), _shard(d, 2, 2, [2])], "given twice"),
        (lambda d: [_shard(d, 1, 2, [1]), _shard(d, 2, 3, [2])], "different numbers of shards"),
        (lambda d: [_shard(d, 1, 2, [1]), _shard(d, 2, 2, [2], model="other")], "different headers"),
        (lambda d: [_shard(d, 0, 1, [1])], "not the output of a sharded run"),
    ],
)
def test_bad_shard_sets_are_refused_in_one_line(
    tmp_path: Path, make: Callable[[Path], list[Path]], message: str
) -> None:
    parts = make(tmp_path)
    out = tmp_path / "merged.vcf"
    with pytest.raises(InputError, match=message):
        run_merge(MergeJob(parts, out))
    assert not out.exists()
    result = CliRunner().invoke(cli, ["merge", *map(str, parts), "-o", str(out)])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output


def test_merge_refuses_to_overwrite_a_shard(tmp_path: Path) -> None:
    parts = [_shard(tmp_path, 1, 2, [1]), _shard(tmp_path, 2, 2, [2])]
    result = CliRunner().invoke(cli, ["merge", *map(str, parts), "-o", str(parts[0])])
    assert result.exit_code != 0 and "Error" in result.output
    assert "##varscore_shard=1/2" in parts[0].read_text()


def _table_shard(folder: Path, index: int, count: int, rows: list[str], model: str = "m") -> Path:
    path = folder / f"t{index}of{count}.tsv"
    path.write_text("chrom\tpos\tdelta\n" + "".join(f"chr1\t{row}\n" for row in rows))
    record = {"varscore_command": f"varscore ism --shard {index}/{count}", "varscore_model": {"ID": model}}
    if index:
        record["varscore_shard"] = f"{index}/{count}"
    Path(f"{path}.provenance.json").write_text(json.dumps(record))
    return path


def _without_sidecar(path: Path) -> Path:
    Path(f"{path}.provenance.json").unlink()
    return path


def test_table_shards_are_merged_in_shard_order_with_a_sidecar(tmp_path: Path) -> None:
    parts = [_table_shard(tmp_path, i, 3, rows) for i, rows in ((1, ["1\t0.5"]), (2, []), (3, ["7\t-1.25", "9\t2"]))]
    out = tmp_path / "merged.tsv"
    result = run_merge(MergeJob(parts[::-1], out))
    assert out.read_text() == "chrom\tpos\tdelta\nchr1\t1\t0.5\nchr1\t7\t-1.25\nchr1\t9\t2\n"
    assert result.records == [1, 0, 2] and result.lines() == [f"merged 3 shards (3 rows: 1, 0, 2) into {out}"]
    sidecar = json.loads(Path(f"{out}.provenance.json").read_text())
    assert sidecar["varscore_model"] == {"ID": "m"} and "varscore_shard" not in sidecar


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda d: [_table_shard(d, 1, 2, ["1\t0"]), _table_shard(d, 2, 2, ["2\t0"], model="x")],
            "different provenance",
        ),
        (lambda d: [_table_shard(d, 0, 1, ["1\t0"])], "not the output of a sharded run"),
        (lambda d: [_table_shard(d, 1, 2, ["1\t0"]), _shard(d, 2, 2, [2])], "not both"),
        (lambda d: [_table_shard(d, 1, 2, ["1\t0"]), _without_sidecar(_table_shard(d, 2, 2, []))], "no provenance"),
    ],
)
def test_bad_table_shard_sets_are_refused_in_one_line(
    tmp_path: Path, make: Callable[[Path], list[Path]], message: str
) -> None:
    parts = make(tmp_path)
    out = tmp_path / "merged.tsv"
    with pytest.raises(InputError, match=message):
        run_merge(MergeJob(parts, out))
    result = CliRunner().invoke(cli, ["merge", *map(str, parts), "-o", str(out)])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert not out.exists()


def _cut(path: Path, keep: int = -5) -> Path:
    """``path`` cut in the middle of its last line (a copy that stopped early)."""
    path.write_bytes(path.read_bytes()[:keep])
    return path


def _bgzipped(path: Path, cut: str = "") -> Path:
    """``path`` bgzipped; ``cut``: ``block`` drops the end-of-file block (a cut at a block
    boundary, which gzip readers accept), ``middle`` cuts inside the compressed data."""
    from pysam import tabix_compress

    out = path.with_name(path.name + ".gz")
    tabix_compress(str(path), str(out), force=True)
    data = out.read_bytes()
    out.write_bytes(data[:-28] if cut == "block" else data[: len(data) // 2] if cut == "middle" else data)
    return out


def _gzipped_cut(path: Path) -> Path:
    """``path`` gzipped (not bgzipped) and cut in the middle of its compressed data."""
    out = path.with_name(path.name + ".gz")
    data = gzip.compress(path.read_bytes())
    out.write_bytes(data[: len(data) // 2])
    return out


def _named_shard(path: Path, spec: str) -> Path:
    path.write_text(path.read_text().replace("##varscore_shard=1/2", f"##varscore_shard={spec}"))
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        # a shard line naming a shard outside 1..N: a traceback (N = 0) or silently left out (i > N, i = 0)
        (lambda d: [_named_shard(_shard(d, 1, 2, [1]), "1/0")], "1 <= i <= N"),
        (lambda d: [_shard(d, 1, 2, [1]), _shard(d, 2, 2, [2]), _named_shard(_shard(d, 1, 2, [3]), "3/2")], "3/2"),
        (lambda d: [_shard(d, 1, 2, [1]), _shard(d, 2, 2, [2]), _named_shard(_shard(d, 1, 2, [3]), "0/2")], "0/2"),
        # shards cut short: a plain one's partial last line was glued to the next shard's first record
        (lambda d: [_shard(d, 1, 2, [1, 2]), _cut(_shard(d, 2, 2, [3, 4]))], "truncated"),
        (lambda d: [_cut(_shard(d, 1, 2, [1, 2])), _shard(d, 2, 2, [3, 4])], "truncated"),
        # bgzipped: cut inside the data ended in 'Aborted!', cut at a block boundary was merged silently
        (lambda d: [_bgzipped(_shard(d, 1, 2, [1])), _bgzipped(_shard(d, 2, 2, [2]), "block")], "truncated"),
        (lambda d: [_bgzipped(_shard(d, 1, 2, list(range(1, 900))), "middle"), _shard(d, 2, 2, [901])], "truncated"),
        (lambda d: [_gzipped_cut(_shard(d, 1, 2, list(range(1, 900)))), _shard(d, 2, 2, [901])], "Cannot read"),
        (lambda d: [_table_shard(d, 1, 2, ["1\t0"]), _cut(_table_shard(d, 2, 2, ["2\t0.25"]), -3)], "truncated"),
        (lambda d: [_table_shard(d, 1, 2, ["1\t0", "2"]), _table_shard(d, 2, 2, ["3\t1"])], "2 fields, not the 3"),
    ],
)
def test_damaged_shards_are_refused_in_one_line(
    tmp_path: Path, make: Callable[[Path], list[Path]], message: str
) -> None:
    parts = make(tmp_path)
    for out in (tmp_path / "merged.tsv" if parts[0].name.startswith("t") else tmp_path / "merged.vcf.gz",):
        with pytest.raises(InputError, match=message) as caught:
            run_merge(MergeJob(parts, out))
        assert "\n" not in str(caught.value)
        result = CliRunner().invoke(cli, ["merge", *map(str, parts), "-o", str(out)])
        assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
        assert message in result.output
        assert not out.exists()


# --- detail tables (annotate --shard --detail) -----------------------------------------------


def _detail_shard(
    folder: Path, index: int, count: int, records: list[int], model: str = "m", command: str | None = None
) -> Path:
    """A detail table of the run that wrote ``_shard(folder, index, count, ...)``: its command line,
    one row per local record number in ``records``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / f"d{index}of{count}.parquet"
    meta = {
        "varscore_version": "0.1.0",
        "varscore_command": command or f"varscore annotate in.vcf --shard {index}/{count}",
        "varscore_model": json.dumps({"ID": model}),
    }
    schema = pa.schema(
        [pa.field("record", pa.int64(), metadata={"description": "record"}), pa.field("delta", pa.float64())],
        metadata=meta,
    )
    table = pa.Table.from_pydict({"record": records, "delta": [0.5 * r + index for r in records]}, schema=schema)
    pq.write_table(table, str(path))
    return path


def test_detail_shards_are_renumbered_by_the_records_of_the_shards_before(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    vcfs = [_shard(tmp_path, 1, 3, [1, 2, 3]), _shard(tmp_path, 2, 3, []), _shard(tmp_path, 3, 3, [5, 9])]
    # shard 1: its last record has no row; shard 2: no record; shard 3: both records, local numbers 0, 1
    details = [_detail_shard(tmp_path, 1, 3, [0, 0, 1]), _detail_shard(tmp_path, 2, 3, [])]
    details.append(_detail_shard(tmp_path, 3, 3, [0, 1, 1]))
    out, detail = tmp_path / "merged.vcf", tmp_path / "merged.parquet"
    result = run_merge(MergeJob([details[2], vcfs[1], details[0], vcfs[2], vcfs[0], details[1]], out, detail))
    assert result.records == [3, 0, 2] and result.detail_rows == [3, 0, 3]
    assert result.lines()[1] == f"merged 3 detail tables (6 rows: 3, 0, 3) into {detail}"
    table = pq.read_table(detail)
    assert table.column("record").to_pylist() == [0, 0, 1, 3, 4, 4]  # shard 3 starts after 3 + 0 records
    assert table.column("delta").to_pylist() == [1.0, 1.0, 1.5, 3.0, 3.5, 3.5]
    assert table.schema.field("record").metadata == {b"description": b"record"}
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert meta["varscore_model"] == json.dumps({"ID": "m"}) and meta["varscore_merged_shards"] == "3"
    assert "--shard" not in meta["varscore_command"]
    sidecar = json.loads(Path(f"{detail}.provenance.json").read_text())
    assert sidecar["varscore_model"] == {"ID": "m"} and sidecar["varscore_merged_shards"] == 3
    assert [line.split("\t")[1] for line in out.read_text().splitlines() if not line.startswith("#")] == [
        "1",
        "2",
        "3",
        "5",
        "9",
    ]


def _not_a_detail_table(folder: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / "plain.parquet"
    pq.write_table(pa.table({"record": [0]}), str(path))
    return path


def _other_columns(folder: Path) -> Path:
    import pyarrow.parquet as pq

    path = _detail_shard(folder, 2, 2, [0])
    pq.write_table(pq.read_table(path).drop_columns(["delta"]), str(path))
    return path


def _vcfs(folder: Path, count: int = 2) -> list[Path]:
    return [_shard(folder, i, count, [i]) for i in range(1, count + 1)]


@pytest.mark.parametrize(
    ("make", "detail", "message"),
    [
        (lambda d: [*_vcfs(d), _detail_shard(d, 1, 2, [0])], True, "shard 2 of 2 is missing"),
        (lambda d: [*_vcfs(d), *[_detail_shard(d, 1, 2, [0])] * 2, _detail_shard(d, 2, 2, [0])], True, "twice"),
        (
            lambda d: [*_vcfs(d), _detail_shard(d, 1, 2, [0]), _detail_shard(d, 2, 2, [0], command="varscore x")],
            True,
            "comes from none of the runs",
        ),
        (
            lambda d: [*_vcfs(d), _detail_shard(d, 1, 2, [0]), _detail_shard(d, 2, 2, [0], model="other")],
            True,
            "different provenance",
        ),
        (lambda d: [*_vcfs(d), _detail_shard(d, 1, 2, [0]), _other_columns(d)], True, "different columns"),
        (lambda d: [*_vcfs(d), _detail_shard(d, 1, 2, [0]), _not_a_detail_table(d)], True, "not a varscore detail"),
        (lambda d: [_detail_shard(d, 1, 2, [0]), _detail_shard(d, 2, 2, [0])], True, "give the shard VCFs"),
        (lambda d: [*_vcfs(d), _detail_shard(d, 1, 2, [0]), _detail_shard(d, 2, 2, [0])], False, "--detail OUT"),
        (lambda d: _vcfs(d), True, "none is among the shards"),
    ],
)
def test_bad_detail_shard_sets_are_refused_in_one_line(
    tmp_path: Path, make: Callable[[Path], list[Path]], detail: bool, message: str
) -> None:
    parts = make(tmp_path)
    out, table = tmp_path / "merged.vcf", tmp_path / "merged.parquet"
    with pytest.raises(InputError, match=message):
        run_merge(MergeJob(parts, out, table if detail else None))
    args = ["merge", *map(str, parts), "-o", str(out), *(["--detail", str(table)] if detail else [])]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert not out.exists() and not table.exists()


def test_shard_vcfs_with_one_command_line_cannot_pair_detail_tables(tmp_path: Path) -> None:
    vcfs = _vcfs(tmp_path)
    for path in vcfs:  # as a library caller that records no command line of its own gets
        path.write_text(path.read_text().replace(" --shard 2/2", " --shard 1/2"))
    details = [_detail_shard(tmp_path, i, 2, [0], command="varscore annotate in.vcf --shard 1/2") for i in (1, 2)]
    with pytest.raises(InputError, match="cannot be told apart"):
        run_merge(MergeJob([*vcfs, *details], tmp_path / "m.vcf", tmp_path / "m.parquet"))


def _assert_same_detail(merged: Path, whole: Path) -> None:
    """Rows, columns, column descriptions and values equal; provenance that of the run but the command."""
    import pandas as pd
    import pyarrow.parquet as pq

    from varscore.io.outputguard import command_line

    a, b = pq.read_table(merged), pq.read_table(whole)
    assert a.schema.equals(b.schema, check_metadata=False)
    assert [f.metadata for f in a.schema] == [f.metadata for f in b.schema]
    assert a.num_rows == b.num_rows > 0 and a.equals(b)
    pd.testing.assert_frame_equal(a.to_pandas(), b.to_pandas(), check_exact=True)
    meta_a, meta_b = dict(a.schema.metadata), dict(b.schema.metadata)
    assert meta_a.pop(b"varscore_merged_shards") == b"3"
    assert meta_a.pop(b"varscore_command") == command_line(None).encode()  # the merge's (this process's)
    meta_b.pop(b"varscore_command")
    assert meta_a == meta_b


@pytest.mark.slow
def test_gene_mode_detail_shards_merge_into_the_unsharded_table(tmp_path: Path) -> None:
    """The bundled example scored by elastic-net-demo in 3 shards and in one run: the merged
    detail table equals the unsharded one (and the merged VCF its body)."""
    import pyarrow.parquet as pq

    from varscore.examples import data_dir
    from varscore.scoring.gene_mode import ScoringJob
    from varscore.scoring.gene_mode import run_scoring as score
    from varscore.scoring.selection import Selection, Shard

    vcf = data_dir() / "cohort.vcf.gz"
    whole, whole_detail = tmp_path / "whole.vcf", tmp_path / "whole.parquet"
    score(ScoringJob(vcf, "elastic-net-demo", whole, detail=whole_detail, argv=["varscore", "annotate"]))
    parts: list[Path] = []
    for i in (1, 2, 3):
        out, detail = tmp_path / f"s{i}.vcf", tmp_path / f"s{i}.parquet"
        argv = ["varscore", "annotate", str(vcf), "--shard", f"{i}/3", "--detail", str(detail), "-o", str(out)]
        score(
            ScoringJob(vcf, "elastic-net-demo", out, detail=detail, argv=argv, selection=Selection(shard=Shard(i, 3)))
        )
        assert pq.read_metadata(detail).num_rows > 0  # every shard holds scores
        parts += [out, detail]
    merged, merged_detail = tmp_path / "merged.vcf", tmp_path / "merged.parquet"
    result = CliRunner().invoke(
        cli, ["merge", *map(str, parts[::-1]), "-o", str(merged), "--detail", str(merged_detail)]
    )
    assert result.exit_code == 0, result.output
    _assert_same_detail(merged_detail, whole_detail)

    def body(path: Path) -> list[str]:
        return [line for line in path.read_text().splitlines() if not line.startswith("#")]

    assert body(merged) == body(whole)


def test_variant_mode_detail_shards_merge_into_the_unsharded_table(
    track_bundle: dict,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Variant-centred scoring of a tiny track model: 3 shards' detail tables merged == one run's."""
    from varscore.scoring.selection import Selection, Shard
    from varscore.scoring.variant_mode import VariantScoringJob, run_variant_scoring

    w = track_bundle
    settings = {"gtf": w["gtf"], "batch_size": 3, "stats": "SUM,D1"}
    whole_detail = tmp_path / "whole.parquet"
    run_variant_scoring(
        VariantScoringJob(w["vcf"], w["bundle"], tmp_path / "whole.vcf", detail=whole_detail, **settings)
    )
    parts: list[Path] = []
    for i in (1, 2, 3):
        out, detail = tmp_path / f"s{i}.vcf", tmp_path / f"s{i}.parquet"
        # the command line each shard records (a job records this process's)
        monkeypatch.setattr("sys.argv", ["varscore", "annotate", "in.vcf", "--mode", "variant", "--shard", f"{i}/3"])
        selection = Selection(shard=Shard(i, 3))
        run_variant_scoring(
            VariantScoringJob(w["vcf"], w["bundle"], out, detail=detail, selection=selection, **settings)
        )
        parts += [detail, out]
    monkeypatch.undo()
    merged_detail = tmp_path / "merged.parquet"
    run_merge(MergeJob(parts, tmp_path / "merged.vcf", merged_detail))
    _assert_same_detail(merged_detail, whole_detail)


def _nested(folder: Path, outer: str, index: int, positions: list[int]) -> Path:
    """Shard ``index``/2 of annotating the output of an outer sharded run (its shard ``outer``):
    the input's shard and command lines come first, then the run's own."""
    inherited = f"##varscore_shard={outer}\n##varscore_command=varscore annotate in.vcf --shard {outer}\n"
    path = _shard(folder, index, 2, positions)
    header, _, body = path.read_text().partition("#CHROM")
    path.write_text(header.replace("##fileformat=VCFv4.2\n", "##fileformat=VCFv4.2\n" + inherited) + "#CHROM" + body)
    return path.rename(folder / f"{outer.replace('/', 'of')}-{path.name}")


def test_shards_of_a_sharded_runs_output_merge_by_their_own_shard_line(tmp_path: Path) -> None:
    """'annotate shard1of3.vcf --shard i/2': merge read the inherited 1/3 line ('Shard 1/3 is given
    twice'); the last shard line is the run's own, the inherited one stays in the merged header."""
    parts = [_nested(tmp_path, "1/3", 1, [1, 2]), _nested(tmp_path, "1/3", 2, [5])]
    out = tmp_path / "merged.vcf"
    assert run_merge(MergeJob(parts[::-1], out)).records == [2, 1]
    text = out.read_text()
    assert text.count("##varscore_shard=") == 1 and "##varscore_shard=1/3\n" in text
    assert [line.split("\t")[1] for line in text.splitlines() if not line.startswith("#")] == ["1", "2", "5"]
    # inner shards of different outer shards are not one run
    with pytest.raises(InputError, match="different headers"):
        run_merge(MergeJob([parts[0], _nested(tmp_path, "2/3", 2, [5])], tmp_path / "mixed.vcf"))


def test_table_shards_merge_into_a_bgzipped_table_without_an_index(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A table is not a VCF: '-o ism.tsv.gz' was tabix-indexed as one (an htslib error and advice to
    'bcftools sort' it)."""
    parts = [_table_shard(tmp_path, i, 2, rows) for i, rows in ((1, ["1\t0.5"]), (2, ["7\t-1.25"]))]
    out = tmp_path / "merged.tsv.gz"
    run_merge(MergeJob(parts, out))
    assert gzip.open(out, "rt").read() == "chrom\tpos\tdelta\nchr1\t1\t0.5\nchr1\t7\t-1.25\n"
    assert not Path(f"{out}.tbi").exists() and "TBX" not in capfd.readouterr().err
    assert "not indexed" not in caplog.text
