"""varscore merge: shards in order, and one-line refusals of missing, repeated or mismatched shards."""

from __future__ import annotations

import gzip
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

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
