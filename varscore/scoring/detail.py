"""The detail table of variant-centred scoring: one row per (record, allele, scope, gene, track,
statistic), written to Parquet in row groups as scoring proceeds, so memory stays bounded.

Schema (see ``docs/variant-centred.md``): ``record`` (0-based record number in the VCF),
``chrom``, ``pos`` (1-based), ``id``, ``ref``, ``alt``, ``window_start`` (0-based start of the
window scored), ``scope`` (``window``: all bins; ``gene``: the bins over the gene's exons),
``gene_id`` / ``gene_name`` (null for ``window`` rows), ``track``, ``track_name``, ``stat``,
``ref_value``, ``alt_value``, ``score``. Read it with pandas, polars or duckdb.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from varscore.errors import InputError
from varscore.io.outputguard import is_direct, replace_file, temporary_beside
from varscore.scoring.centred import RecordScores

logger = logging.getLogger(__name__)

ROW_GROUP_ROWS = 65_536


def detail_schema() -> Any:
    import pyarrow as pa

    text = pa.string()
    return pa.schema(
        [
            ("record", pa.int64()),
            ("chrom", text),
            ("pos", pa.int64()),
            ("id", text),
            ("ref", text),
            ("alt", text),
            ("window_start", pa.int64()),
            ("scope", text),
            ("gene_id", text),
            ("gene_name", text),
            ("track", pa.int32()),
            ("track_name", text),
            ("stat", text),
            ("ref_value", pa.float64()),
            ("alt_value", pa.float64()),
            ("score", pa.float64()),
        ]
    )


class DetailWriter:
    """Appends :class:`RecordScores` to a Parquet file; a row group is written every
    ``row_group_rows`` rows. The file appears under its name only when :meth:`close` succeeds
    (written to a temporary name beside it first)."""

    def __init__(
        self,
        path: str | Path,
        tracks: Sequence[int],
        track_names: Sequence[str],
        stats: Sequence[str],
        row_group_rows: int = ROW_GROUP_ROWS,
    ) -> None:
        import pyarrow.parquet as pq

        if row_group_rows < 1:
            raise InputError(f"row_group_rows must be >= 1; got {row_group_rows}.")
        self.path = Path(path)
        if self.path.is_dir():
            raise InputError(f"--detail must name a file, not a directory: {self.path}.")
        self._direct = is_direct(self.path)
        try:
            self._tmp = self.path if self._direct else temporary_beside(self.path)
        except OSError as exc:
            raise InputError(f"Cannot write --detail {self.path}: {exc.strerror or exc}.") from exc
        self.schema = detail_schema()
        try:
            self._writer = pq.ParquetWriter(str(self._tmp), self.schema, compression="zstd")
        except OSError as exc:
            if not self._direct:
                self._tmp.unlink(missing_ok=True)
            raise self._failed(exc) from exc
        self.tracks = np.asarray(tracks, dtype=np.int32)
        self.track_names = np.asarray(track_names, dtype=object)
        self.stats = np.asarray(stats, dtype=object)
        self.row_group_rows = row_group_rows
        self.rows = 0
        self._columns: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        self._buffered = 0

    def add(self, record: RecordScores) -> int:
        """Buffer the rows of one record (none for an unscored one); returns how many."""
        n_tracks, n_stats = len(self.tracks), len(self.stats)
        block = n_tracks * n_stats
        added = 0
        variant = record.variant
        for allele in record.alleles:
            scopes = [("window", None, None, allele.window)] + [
                ("gene", gene.gene_id, gene.name or None, values) for gene, values in allele.genes
            ]
            for scope, gene_id, gene_name, values in scopes:
                c = self._columns
                for name, value in (
                    ("record", variant.index),
                    ("chrom", variant.chrom),
                    ("pos", variant.pos),
                    ("id", variant.id),
                    ("ref", variant.ref),
                    ("alt", allele.allele),
                    ("window_start", record.window_start),
                    ("scope", scope),
                    ("gene_id", gene_id),
                    ("gene_name", gene_name),
                ):
                    c[name].append(np.full(block, value, dtype=object))
                c["track"].append(np.repeat(self.tracks, n_stats))
                c["track_name"].append(np.repeat(self.track_names, n_stats))
                c["stat"].append(np.tile(self.stats, n_tracks))
                flat = np.asarray(values, dtype=np.float64).reshape(block, 3)
                c["ref_value"].append(flat[:, 0])
                c["alt_value"].append(flat[:, 1])
                c["score"].append(flat[:, 2])
                added += block
        self._buffered += added
        self.rows += added
        if self._buffered >= self.row_group_rows:
            self._write_group()
        return added

    def _write_group(self) -> None:
        import pyarrow as pa

        if not self._buffered:
            return
        arrays = [pa.array(np.concatenate(self._columns[f.name]), type=f.type) for f in self.schema]
        try:
            self._writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema), row_group_size=self._buffered)
        except OSError as exc:
            raise self._failed(exc) from exc
        self._columns = {name: [] for name in self.schema.names}
        self._buffered = 0

    def close(self) -> None:
        """Write the last row group and move the file into place (a failure drops the partial file)."""
        try:
            self._write_group()
            self._writer.close()
            if not self._direct:
                replace_file(self._tmp, self.path)
        except (OSError, InputError) as exc:
            self.abort()
            raise exc if isinstance(exc, InputError) else self._failed(exc) from exc

    def _failed(self, exc: OSError) -> InputError:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        return InputError(f"Cannot write --detail {self.path}: {reason}; nothing was written there.")

    def abort(self) -> None:
        """Drop the partial file."""
        try:
            with contextlib.suppress(OSError):  # e.g. a full disk that already failed the write
                self._writer.close()
        finally:
            if not self._direct:
                self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> DetailWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


__all__ = ["ROW_GROUP_ROWS", "DetailWriter", "detail_schema"]
