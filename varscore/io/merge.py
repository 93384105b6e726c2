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
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from varscore.errors import InputError
from varscore.io.outputguard import Target, atomic_file, guarded_outputs

SHARD_LINE = "##varscore_shard="
RUN_SPECIFIC = (SHARD_LINE, "##varscore_command=")


@dataclass(frozen=True)
class MergeJob:
    """Concatenate the shard VCFs ``inputs`` (any order) into ``output`` (``-``, ``*.vcf``,
    ``*.vcf.gz``), or the shard ISM tables (TSV) into a TSV."""

    inputs: Sequence[str | Path]
    output: str | Path = "-"


@dataclass
class MergeResult:
    """What :func:`run_merge` wrote: the shard count and records per shard, in shard order."""

    output: str
    shards: int
    records: list[int] = field(default_factory=list)
    rows: bool = False  # the shards were tables (counts are rows)

    def lines(self) -> list[str]:
        per = ", ".join(str(n) for n in self.records)
        what = "rows" if self.rows else "records"
        return [f"merged {self.shards} shards ({sum(self.records)} {what}: {per}) into {self.output}"]


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
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise InputError(f"Cannot read {path} as a VCF: {exc}.") from exc
    if not lines or not lines[0].startswith("##fileformat=VCF") or not lines[-1].startswith("#CHROM"):
        raise InputError(f"{path} is not a VCF (no '##fileformat=VCF' ... '#CHROM' header).")
    return lines


def _shard_of(path: Path, header: Sequence[str]) -> tuple[int, int]:
    found = [line for line in header if line.startswith(SHARD_LINE)]
    if not found:
        raise InputError(f"{path} is not the output of a sharded run (no {SHARD_LINE}i/N line): run with --shard i/N.")
    match = re.fullmatch(r"(\d+)/(\d+)", found[0][len(SHARD_LINE) :].strip())
    if match is None:
        raise InputError(f"{path}: cannot read its shard line '{found[0].strip()}'.")
    return int(match.group(1)), int(match.group(2))


def _records(path: Path) -> Iterator[str]:
    with _open(path) as handle:
        for line in handle:
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
    except (OSError, UnicodeDecodeError, EOFError):
        return False
    return not first.startswith("#") and "\t" in first


def run_merge(job: MergeJob) -> MergeResult:
    """Check the shards (one N, each of 1..N once, matching headers) and write them in order."""
    if not job.inputs:
        raise InputError("varscore merge needs the shard VCFs to merge.")
    paths = [Path(p) for p in job.inputs]
    tables = [_is_table(path) for path in paths]
    if any(tables):
        if not all(tables):
            raise InputError("varscore merge takes shard VCFs or shard tables (TSV), not both at once.")
        return _merge_tables(job, paths)
    headers = {path: _header(path) for path in paths}
    ordered = _in_order([(path, *_shard_of(path, headers[path])) for path in paths])
    total = len(ordered)
    first = [line for line in headers[ordered[0]] if not line.startswith(RUN_SPECIFIC)]
    for path in ordered[1:]:
        other = [line for line in headers[path] if not line.startswith(RUN_SPECIFIC)]
        if other != first:
            differ = next((a for a, b in zip(first, other, strict=False) if a != b), None) or "their length"
            raise InputError(
                f"{path} and {ordered[0]} have different headers (other model, options or input?): "
                f"first difference at {differ.strip()[:120]}."
            )
    header = [line for line in headers[ordered[0]] if not line.startswith(SHARD_LINE)]
    result = MergeResult(str(job.output), total)
    with guarded_outputs([Target("-o", job.output)], paths):
        _write(job.output, header, ordered, result)
    return result


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
    except (OSError, UnicodeDecodeError, EOFError) as exc:
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
        with _open(path) as handle:
            for number, line in enumerate(handle):
                if number >= skip_lines:
                    yield line

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
                if tmp != out:
                    from varscore.io.vcf import _tabix_index

                    _tabix_index(tmp, out)
            else:
                with open(tmp, "w") as handle:
                    emit(handle)
    except OSError as exc:
        raise InputError(f"Cannot write {out}: {exc.strerror or exc}; nothing was written.") from exc


class _Bgzf:
    def __init__(self, raw: object) -> None:
        self.raw = raw

    def write(self, text: str) -> None:
        self.raw.write(text.encode())  # type: ignore[attr-defined]


__all__ = ["MergeJob", "MergeResult", "run_merge"]
