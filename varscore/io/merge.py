"""``varscore merge``: the VCFs of ``--shard i/N`` runs concatenated in shard order into the
output of the whole run (what ``bcftools concat`` does, with the checks a sharded run needs).

Every input must carry the ``##varscore_shard=i/N`` line its run wrote; together they must be
shards 1..N of one N, each once, with the same header apart from that line and the command line
(same model, same options, same input header). The merged file has the first shard's header
without the shard line, then every shard's records in shard order; ``.vcf.gz`` is bgzipped and
tabix-indexed, ``-`` is standard output; files are written through the output guard.

ISM tables (``varscore ism --shard i/N``, TSV) merge the same way: each records its shard in its
``OUTPUT.provenance.json`` (``varscore_shard``); the shards must share the column line and the
provenance apart from the command line (model, version, input, genes, regions). The merged table
is the column line once and the shards' rows in shard order, with a provenance sidecar beside it.

Detail tables (``annotate --shard i/N --detail SHARD.parquet``, gene or variant mode) number their
``record`` column within their shard, so they are merged together with the shard VCFs of the same
runs (``--detail OUT.parquet``): each table is paired with the VCF whose ``##varscore_command`` is
its ``varscore_command`` (one run wrote both), which gives its shard and, by the records of the
shards before it, the offset that turns its record numbers into those of the unsharded run. The
tables must have the same columns and the same provenance apart from the command line; the
merged table holds the shards' rows in shard order (row groups copied one by one, so memory stays
bounded), the provenance of the shards with the merge's command line and
``varscore_merged_shards``, and a ``.provenance.json`` sidecar beside it.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from varscore.errors import InputError
from varscore.io.outputguard import Target, atomic_file, guarded_outputs

SHARD_LINE = "##varscore_shard="
RUN_SPECIFIC = (SHARD_LINE, "##varscore_command=")


@dataclass(frozen=True)
class MergeJob:
    """Concatenate the shard VCFs ``inputs`` (any order) into ``output`` (``-``, ``*.vcf``,
    ``*.vcf.gz``), or the shard ISM tables (TSV) into a TSV. Parquet detail tables among
    ``inputs`` (with the shard VCFs of their runs) are merged into ``detail``."""

    inputs: Sequence[str | Path]
    output: str | Path = "-"
    detail: str | Path | None = None


@dataclass
class MergeResult:
    """What :func:`run_merge` wrote: the shard count and records per shard, in shard order."""

    output: str
    shards: int
    records: list[int] = field(default_factory=list)
    rows: bool = False  # the shards were tables (counts are rows)
    detail: str | None = None  # where the detail tables went
    detail_rows: list[int] = field(default_factory=list)

    def lines(self) -> list[str]:
        per = ", ".join(str(n) for n in self.records)
        what = "rows" if self.rows else "records"
        lines = [f"merged {self.shards} shards ({sum(self.records)} {what}: {per}) into {self.output}"]
        if self.detail is not None:
            per = ", ".join(str(n) for n in self.detail_rows)
            lines.append(f"merged {self.shards} detail tables ({sum(self.detail_rows)} rows: {per}) into {self.detail}")
        return lines


def _open(path: Path) -> IO[str]:
    if not path.is_file():
        raise InputError(f"Shard file not found: {path}.")
    with open(path, "rb") as raw:
        magic = raw.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt")
    return open(path)


def _header(path: Path) -> list[str]:
    lines = []
    try:
        with _open(path) as handle:
            for line in handle:
                if not line.startswith("#"):
                    break
                lines.append(line)
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as exc:
        raise InputError(f"Cannot read {path} as a VCF: {exc}.") from exc
    if not lines or not lines[0].startswith("##fileformat=VCF") or not lines[-1].startswith("#CHROM"):
        raise InputError(f"{path} is not a VCF (no '##fileformat=VCF' ... '#CHROM' header).")
    return lines


def _shard_of(path: Path, header: Sequence[str]) -> tuple[int, int]:
    found = [line for line in header if line.startswith(SHARD_LINE)]
    if not found:
        raise InputError(f"{path} is not the output of a sharded run (no {SHARD_LINE}i/N line): run with --shard i/N.")
    # the last one is the run's own: earlier ones came with its input (a shard of a sharded run's output)
    match = re.fullmatch(r"(\d+)/(\d+)", found[-1][len(SHARD_LINE) :].strip())
    if match is None:
        raise InputError(f"{path}: cannot read its shard line '{found[-1].strip()}'.")
    return int(match.group(1)), int(match.group(2))


#: the empty block that ends every complete BGZF file (SAM/BAM specification, 4.1.2)
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def _check_complete(path: Path) -> None:
    """Refuse a shard cut short (a copy or a run that stopped): a bgzipped file without the BGZF
    end-of-file block, or a plain one whose last line has no newline."""
    try:
        with open(path, "rb") as raw:
            head = raw.read(18)
            size = raw.seek(0, 2)
            raw.seek(max(size - len(BGZF_EOF), 0))
            tail = raw.read()
    except OSError as exc:
        raise InputError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    if head[:2] == b"\x1f\x8b":
        if head[12:14] == b"BC" and tail != BGZF_EOF:
            raise InputError(f"{path} is truncated (its bgzip end-of-file block is missing): write that shard again.")
    elif size and not tail.endswith(b"\n"):
        raise InputError(f"{path} is truncated (its last line has no newline): write that shard again.")


def _lines(path: Path) -> Iterator[str]:
    """The lines of ``path`` (plain or gzipped); a read error or a line cut short is one line."""
    try:
        with _open(path) as handle:
            for line in handle:
                if not line.endswith("\n"):
                    raise InputError(f"{path} is truncated (its last line has no newline): write that shard again.")
                yield line
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
        raise InputError(f"Cannot read {path}: {exc} (a truncated or damaged file?).") from exc


def _without_last(header: Sequence[str], prefixes: Sequence[str]) -> list[str]:
    """``header`` without the last line of each of ``prefixes``: the lines the sharded run itself
    wrote (lines its input carried, e.g. the shard line of an outer sharded run, stay)."""
    drop = set()
    for prefix in prefixes:
        where = [i for i, line in enumerate(header) if line.startswith(prefix)]
        drop.update(where[-1:])
    return [line for i, line in enumerate(header) if i not in drop]


def _records(path: Path) -> Iterator[str]:
    for line in _lines(path):
        if not line.startswith("#"):
            yield line


def _in_order(shards: Sequence[tuple[Path, int, int]]) -> list[Path]:
    """The shard files in shard order: one N, each of 1..N exactly once."""
    counts = {n for _, _, n in shards}
    if len(counts) > 1:
        raise InputError(f"The shards come from runs split in different numbers of shards: {sorted(counts)}.")
    total = counts.pop()
    by_index: dict[int, Path] = {}
    for path, index, _ in shards:
        if not 1 <= index <= total:
            raise InputError(f"{path} names shard {index}/{total}: a shard i/N needs 1 <= i <= N.")
        if index in by_index:
            raise InputError(f"Shard {index}/{total} is given twice: {by_index[index]} and {path}.")
        by_index[index] = path
    missing = [str(i) for i in range(1, total + 1) if i not in by_index]
    if missing:
        raise InputError(f"Shard {', '.join(missing)} of {total} missing: merge needs all {total} shards.")
    return [by_index[i] for i in range(1, total + 1)]


def _is_table(path: Path) -> bool:
    """Whether ``path`` is a table (TSV) rather than a VCF: by its name, else its first line."""
    if path.name.endswith((".tsv", ".tsv.txt")):
        return True
    if path.name.endswith((".vcf", ".vcf.gz", ".bcf", ".vcf.bgz")) or not path.is_file():
        return False
    try:
        with _open(path) as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError, EOFError, zlib.error):
        return False
    return not first.startswith("#") and "\t" in first


def run_merge(job: MergeJob) -> MergeResult:
    """Check the shards (one N, each of 1..N once, matching headers) and write them in order."""
    if not job.inputs:
        raise InputError("varscore merge needs the shard VCFs to merge.")
    paths = [Path(p) for p in job.inputs]
    details = [path for path in paths if _is_parquet(path)]
    if details or job.detail is not None:
        return _merge_with_details(job, [path for path in paths if path not in details], details)
    tables = [_is_table(path) for path in paths]
    if any(tables):
        if not all(tables):
            raise InputError("varscore merge takes shard VCFs or shard tables (TSV), not both at once.")
        return _merge_tables(job, paths)
    headers = {path: _header(path) for path in paths}
    ordered = _checked_vcf_shards(paths, headers)
    header = _without_last(headers[ordered[0]], [SHARD_LINE])
    result = MergeResult(str(job.output), len(ordered))
    with guarded_outputs([Target("-o", job.output)], paths):
        _write(job.output, header, ordered, result)
    return result


def _checked_vcf_shards(paths: Sequence[Path], headers: dict[Path, list[str]]) -> list[Path]:
    """The shard VCFs ``paths`` (with their ``headers``) in shard order, after checking they are
    shards 1..N of one run (same header apart from the shard and command lines)."""
    ordered = _in_order([(path, *_shard_of(path, headers[path])) for path in paths])
    first = _without_last(headers[ordered[0]], RUN_SPECIFIC)
    for path in ordered[1:]:
        other = _without_last(headers[path], RUN_SPECIFIC)
        if other != first:
            differ = next((a for a, b in zip(first, other, strict=False) if a != b), None) or "their length"
            raise InputError(
                f"{path} and {ordered[0]} have different headers (other model, options or input?): "
                f"first difference at {differ.strip()[:120]}."
            )
    return ordered


# --- tables (varscore ism --shard) -----------------------------------------------------------

TABLE_RUN_SPECIFIC = ("varscore_command", "varscore_shard")


def _table_provenance(path: Path) -> dict[str, object]:
    sidecar = Path(f"{path}.provenance.json")
    if not path.is_file():
        raise InputError(f"Shard file not found: {path}.")
    try:
        record = json.loads(sidecar.read_text())
    except FileNotFoundError:
        raise InputError(
            f"{path} has no provenance sidecar {sidecar.name}, so its shard is unknown: merge the tables "
            "'varscore ism --shard i/N' wrote, each with its sidecar."
        ) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"Cannot read {sidecar}: {exc}.") from exc
    if not isinstance(record, dict):
        raise InputError(f"{sidecar} is not a varscore provenance record.")
    return record


def _table_shard(path: Path, record: dict[str, object]) -> tuple[int, int]:
    shard = record.get("varscore_shard")
    if shard is None:
        raise InputError(
            f"{path} is not the output of a sharded run (no varscore_shard in its sidecar): run with --shard i/N."
        )
    match = re.fullmatch(r"(\d+)/(\d+)", str(shard))
    if match is None:
        raise InputError(f"{path}: cannot read its shard '{shard}'.")
    return int(match.group(1)), int(match.group(2))


def _first_line(path: Path) -> str:
    try:
        with _open(path) as handle:
            return handle.readline()
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as exc:
        raise InputError(f"Cannot read {path} as a table: {exc}.") from exc


def _merge_tables(job: MergeJob, paths: list[Path]) -> MergeResult:
    """Shard tables: one column line, equal provenance apart from the command, rows in shard order."""
    from varscore.io.outputguard import command_line, write_text

    records = {path: _table_provenance(path) for path in paths}
    ordered = _in_order([(path, *_table_shard(path, records[path])) for path in paths])
    columns = _first_line(ordered[0])
    kept = {k: v for k, v in records[ordered[0]].items() if k not in TABLE_RUN_SPECIFIC}
    for path in ordered[1:]:
        if _first_line(path) != columns:
            raise InputError(f"{path} and {ordered[0]} have different columns: they are not shards of one run.")
        other = {k: v for k, v in records[path].items() if k not in TABLE_RUN_SPECIFIC}
        if other != kept:
            differ = sorted(key for key in kept.keys() | other.keys() if kept.get(key) != other.get(key))
            raise InputError(
                f"{path} and {ordered[0]} have different provenance (other model, options or input?): "
                f"{', '.join(differ)} differ."
            )
    result = MergeResult(str(job.output), len(ordered), rows=True)
    sidecar = {**kept, "varscore_command": command_line(None), "varscore_merged_shards": len(ordered)}
    with guarded_outputs([Target("-o", job.output)], paths):
        _write(job.output, [columns], ordered, result, skip_lines=1)
        if str(job.output) != "-":
            write_text(f"{job.output}.provenance.json", json.dumps(sidecar, indent=2) + "\n")
    return result


def _write(
    output: str | Path, header: Sequence[str], shards: Sequence[Path], result: MergeResult, skip_lines: int = 0
) -> None:
    """``header``, then the records of ``shards`` (lines not starting ``#``; with ``skip_lines``,
    every line after the first ``skip_lines``) into ``output``."""

    def lines_of(path: Path) -> Iterator[str]:
        if not skip_lines:
            yield from _records(path)
            return
        fields = header[0].count("\t") if header else None
        for number, line in enumerate(_lines(path)):
            if number < skip_lines:
                continue
            if fields is not None and line.count("\t") != fields:
                raise InputError(
                    f"{path} line {number + 1} has {line.count(chr(9)) + 1} fields, not the {fields + 1} of its "
                    "column line: a damaged shard."
                )
            yield line

    for path in shards:
        _check_complete(path)

    def emit(handle: IO[str] | _Bgzf) -> None:
        for line in header:
            handle.write(line)
        for path in shards:
            count = 0
            for line in lines_of(path):
                handle.write(line)
                count += 1
            result.records.append(count)

    if str(output) == "-":
        emit(sys.stdout)
        sys.stdout.flush()
        return
    out = Path(output)
    try:
        with atomic_file(out) as tmp:
            if out.name.endswith((".gz", ".bgz")):
                from pysam import libcbgzf

                with libcbgzf.BGZFile(str(tmp), "wb", None) as raw:
                    emit(_Bgzf(raw))
                if tmp != out and not skip_lines:  # a VCF is indexed; a table (no tabix layout) is not
                    from varscore.io.vcf import _tabix_index

                    _tabix_index(tmp, out)
            else:
                with open(tmp, "w") as handle:
                    emit(handle)
    except OSError as exc:
        raise InputError(f"Cannot write {out}: {exc.strerror or exc}; nothing was written.") from exc


# --- detail tables (annotate --shard --detail, Parquet) ----------------------------------------

PARQUET_MAGIC = b"PAR1"
DETAIL_RUN_SPECIFIC = ("varscore_command",)


def _is_parquet(path: Path) -> bool:
    """Whether ``path`` is a Parquet file: by its name, else its first bytes."""
    if path.name.endswith((".parquet", ".pq")):
        return True
    try:
        with open(path, "rb") as raw:
            return raw.read(4) == PARQUET_MAGIC
    except OSError:
        return False


@dataclass
class _DetailShard:
    path: Path
    file: Any  # pyarrow.parquet.ParquetFile
    metadata: dict[str, str]

    @property
    def command(self) -> str:
        return self.metadata.get("varscore_command", "")


def _open_detail(path: Path) -> _DetailShard:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise InputError(f"Shard file not found: {path}.")
    try:
        file = pq.ParquetFile(str(path))
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"Cannot read {path} as a Parquet detail table: {exc}.") from exc
    raw = file.schema_arrow.metadata or {}
    metadata = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in raw.items()}
    if "varscore_command" not in metadata or "record" not in file.schema_arrow.names:
        raise InputError(
            f"{path} is not a varscore detail table (no varscore_command in its metadata or no record "
            "column): merge the tables 'varscore annotate --shard i/N --detail' wrote."
        )
    return _DetailShard(path, file, metadata)


def _command_of(header: Sequence[str]) -> str:
    prefix = "##varscore_command="  # the last one is the run's own (earlier ones came with its input)
    return next((line[len(prefix) :].rstrip("\n") for line in reversed(header) if line.startswith(prefix)), "")


def _paired_details(
    ordered: Sequence[Path], headers: dict[Path, list[str]], details: Sequence[_DetailShard]
) -> list[_DetailShard]:
    """The detail table of each shard VCF (in shard order): the one with the VCF's command line."""
    by_command: dict[str, Path] = {}
    for path in ordered:
        command = _command_of(headers[path])
        if command in by_command:
            raise InputError(
                f"{by_command[command]} and {path} record the same command line, so their detail tables cannot "
                "be told apart: run each shard with its own --shard i/N on the command line."
            )
        by_command[command] = path
    paired: dict[Path, _DetailShard] = {}
    for detail in details:
        vcf = by_command.get(detail.command)
        if vcf is None:
            raise InputError(
                f"{detail.path} comes from none of the runs of the shard VCFs given (its command line is in "
                "none of their headers): give each detail table with the VCF its run wrote."
            )
        if vcf in paired:
            raise InputError(f"The detail table of {vcf} is given twice: {paired[vcf].path} and {detail.path}.")
        paired[vcf] = detail
    missing = [str(i) for i, path in enumerate(ordered, 1) if path not in paired]
    if missing:
        raise InputError(
            f"The detail table of shard {', '.join(missing)} of {len(ordered)} is missing: merge needs the detail "
            "table of every shard."
        )
    return [paired[path] for path in ordered]


def _check_details(shards: Sequence[_DetailShard]) -> Any:
    """The shards' common schema (of the first one with rows), after checking the provenance apart
    from the command line and the columns of every table with rows."""
    first = shards[0]
    kept = {k: v for k, v in first.metadata.items() if k not in DETAIL_RUN_SPECIFIC}
    with_rows = [shard for shard in shards if shard.file.metadata.num_rows] or [first]
    schema = with_rows[0].file.schema_arrow
    for shard in shards[1:]:
        other = {k: v for k, v in shard.metadata.items() if k not in DETAIL_RUN_SPECIFIC}
        if other != kept:
            differ = sorted(key for key in kept.keys() | other.keys() if kept.get(key) != other.get(key))
            raise InputError(
                f"{shard.path} and {first.path} have different provenance (other model or version?): "
                f"{', '.join(differ)} differ."
            )
    for shard in with_rows[1:]:
        if not shard.file.schema_arrow.equals(schema, check_metadata=False):
            raise InputError(
                f"{shard.path} and {with_rows[0].path} have different columns: they are not detail tables of one run."
            )
    return schema


def _merge_with_details(job: MergeJob, vcfs: list[Path], detail_paths: list[Path]) -> MergeResult:
    """Shard VCFs merged into ``job.output`` and their detail tables into ``job.detail``."""
    if job.detail is None:
        raise InputError("Detail tables (Parquet) among the shards: name the merged table with --detail OUT.parquet.")
    if not detail_paths:
        raise InputError("--detail merges the shards' detail tables (Parquet): none is among the shards given.")
    if not vcfs or any(_is_table(path) for path in vcfs):
        raise InputError(
            "Detail tables number their records within their shard: give the shard VCFs of the same runs too "
            "(their records place each table's rows), and no other tables."
        )
    headers = {path: _header(path) for path in vcfs}
    ordered = _checked_vcf_shards(vcfs, headers)
    shards = _paired_details(ordered, headers, [_open_detail(path) for path in detail_paths])
    schema = _check_details(shards)
    header = _without_last(headers[ordered[0]], [SHARD_LINE])
    result = MergeResult(str(job.output), len(ordered), detail=str(job.detail))
    paths = vcfs + detail_paths
    with guarded_outputs([Target("-o", job.output), Target("--detail", job.detail)], paths):
        _write(job.output, header, ordered, result)
        _write_detail(Path(job.detail), schema, shards, result)
    return result


def _write_detail(output: Path, schema: Any, shards: Sequence[_DetailShard], result: MergeResult) -> None:
    """The shards' row groups in shard order, record numbers moved by the records of the shards
    before (``result.records``), into ``output`` with the merged provenance and its sidecar."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from varscore.io.outputguard import command_line, is_direct, write_text

    provenance = dict(shards[0].metadata)  # in the order the shards hold it, the command replaced
    provenance.update(varscore_command=command_line(None), varscore_merged_shards=str(len(shards)))
    merged_schema = schema.with_metadata(provenance)
    position = merged_schema.get_field_index("record")
    offset = 0
    try:
        with atomic_file(output) as tmp:
            with pq.ParquetWriter(str(tmp), merged_schema, compression="zstd") as writer:
                for shard, records in zip(shards, result.records, strict=True):
                    rows = 0
                    for group in range(shard.file.num_row_groups):
                        table = shard.file.read_row_group(group)
                        if not table.num_rows:
                            continue
                        moved = pc.add(table.column("record"), pa.scalar(offset, table.schema.field("record").type))
                        table = table.set_column(position, merged_schema.field(position), moved)
                        writer.write_table(table.cast(merged_schema), row_group_size=table.num_rows)
                        rows += table.num_rows
                    result.detail_rows.append(rows)
                    offset += records
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"Cannot write --detail {output}: {exc}; nothing was written there.") from exc
    if is_direct(output):
        return
    sidecar: dict[str, object] = dict(provenance)
    sidecar["varscore_merged_shards"] = len(shards)
    if "varscore_model" in sidecar:
        try:
            sidecar["varscore_model"] = json.loads(provenance["varscore_model"])
        except ValueError:
            pass
    write_text(f"{output}.provenance.json", json.dumps(sidecar, indent=2) + "\n")


class _Bgzf:
    def __init__(self, raw: object) -> None:
        self.raw = raw

    def write(self, text: str) -> None:
        self.raw.write(text.encode())  # type: ignore[attr-defined]


__all__ = ["MergeJob", "MergeResult", "run_merge"]
