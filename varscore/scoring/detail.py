"""The detail table of variant-centred scoring: one row per (record, allele, scope, gene, track,
statistic), written to Parquet in row groups as scoring proceeds, so memory stays bounded.

Schema (see ``docs/variant-centred.md``): ``record`` (0-based record number in the VCF),
``chrom``, ``pos`` (1-based), ``id``, ``ref``, ``alt``, ``window_start`` (0-based start of the
window scored), ``scope`` (``window``: all bins; ``gene``: the bins over the gene's exons),
``gene_id`` / ``gene_name`` (null for ``window`` rows), ``track``, ``track_name``, ``stat``,
``ref_value``, ``alt_value``, ``score``. Read it with pandas, polars or duckdb.

Gene-window mode (``annotate --detail`` without ``--mode variant``) writes one row per (record,
allele, gene): ``record``, ``chrom``, ``pos``, ``id``, ``ref``, ``alt``, ``gene``, ``model``,
``ref_pred``, ``alt_pred``, ``delta`` (the numbers of the VCF's ``VARSCORE`` entries at full
precision), for ensembles ``sd`` and, with a bundle calibrated for gene-window scoring, ``q`` (the
fraction of the gene's background |delta| below the row's |delta|; null for a gene without one).

Every column carries a ``description`` (with its unit) in its Parquet field metadata; the file's
key-value metadata holds the provenance (``varscore_version``, ``varscore_command``,
``varscore_model`` as JSON), which ``OUTPUT.provenance.json`` beside the table repeats.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from varscore.errors import InputError
from varscore.io.outputguard import (
    command_line,
    is_direct,
    model_provenance,
    replace_file,
    temporary_beside,
    write_provenance_sidecar,
)
from varscore.scoring.centred import RecordScores

logger = logging.getLogger(__name__)

ROW_GROUP_ROWS = 65_536


# the unit of a prediction: what the model was trained to predict, summed as its output mode says
PREDICTION_UNIT = (
    "in the model's output units: a model fine-tuned on expression predicts the values of the "
    "expression table it was trained on (per gene, e.g. inverse-normal transformed); a coverage "
    "track (CAGE, RNA-seq) predicts coverage per bin"
)
_RECORD_COLUMNS = {
    "record": "0-based number of the record in the input VCF",
    "chrom": "contig of the record, as named in the VCF",
    "pos": "1-based position of the record (VCF POS)",
    "id": "VCF ID of the record (null when '.')",
    "ref": "reference allele (VCF REF)",
    "alt": "alternate allele scored (one VCF ALT)",
}
DETAIL_DESCRIPTIONS = {
    **_RECORD_COLUMNS,
    "window_start": "0-based start on the contig of the window scored (bp)",
    "scope": "window: the statistic over every bin of the window; gene: over the bins of the gene's exons",
    "gene_id": "gene of a 'gene' row (null for 'window' rows)",
    "gene_name": "gene name of a 'gene' row (null when none is known)",
    "track": "0-based index of the output track in the model",
    "track_name": "name of the track (the targets file's description, the model's track list, else trackN)",
    "stat": "statistic: SUM (sum over bins), logSUM (sum of log2(x+1)), D1 / D2 (L1 / L2 distance of ALT and REF tracks)",
    "ref_value": "the statistic of the REF window's predicted track (SUM: predicted coverage summed over bins, "
    "in the track's units; logSUM: log2 units; D1/D2: 0)",
    "alt_value": "the statistic of the ALT window's predicted track, in the units of ref_value",
    "score": "variant score: alt_value - ref_value (SUM, logSUM) or the distance (D1, D2), in the units of ref_value",
}
GENE_DETAIL_DESCRIPTIONS = {
    **_RECORD_COLUMNS,
    "gene": "gene whose TSS-centred window holds the record (VCF VARSCORE GENE)",
    "model": "model that scored it (VCF VARSCORE MODEL)",
    "ref_pred": f"predicted expression of the gene for the reference allele (VCF REF_PRED; a linear model's "
    f"intercept), {PREDICTION_UNIT}",
    "alt_pred": "predicted expression with the ALT allele (VCF ALT_PRED), in the units of ref_pred",
    "delta": "alt_pred - ref_pred (VCF DELTA), in the units of ref_pred",
    "sd": "ensembles: standard deviation of delta over the replicates (VCF VARSCORE_SD), in the units of ref_pred",
    "q": "bundles calibrated for gene-window scoring (models calibrate --mode gene): fraction of the gene's "
    "background |delta| values smaller than this row's |delta|, from 0 to 1 (VCF VARSCORE_Q is the q of the "
    "allele's row with the largest |delta|); null when the gene has no background",
}


def _field(name: str, kind: Any, descriptions: Mapping[str, str]) -> Any:
    import pyarrow as pa

    return pa.field(name, kind, metadata={"description": descriptions[name]})


def detail_schema(provenance: Mapping[str, str] | None = None) -> Any:
    """The variant-centred detail schema, each column described; ``provenance``: the file's
    key-value metadata (see :func:`detail_provenance`)."""
    import pyarrow as pa

    text = pa.string()
    columns = [
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
    return pa.schema([_field(n, k, DETAIL_DESCRIPTIONS) for n, k in columns], metadata=dict(provenance or {}))


def detail_provenance(bundle: Any | None, argv: Sequence[str] | None = None) -> dict[str, str]:
    """The Parquet key-value metadata of a table: ``varscore_version``, ``varscore_command`` and
    (with a bundle) ``varscore_model`` (JSON: ID, Backbone, Build, SHA256), as the VCF header's
    ``##varscore_*`` lines and ``OUTPUT.provenance.json``."""
    from varscore import __version__

    meta = {"varscore_version": __version__, "varscore_command": command_line(argv)}
    if bundle is not None:
        meta["varscore_model"] = json.dumps(model_provenance(bundle), sort_keys=True)
    return meta


def model_track_names(bundle: Any) -> list[str] | None:
    """The descriptions of a bundle's tracks from the track list it holds (``tracks.file`` in the
    manifest, e.g. Borzoi's targets.txt with a ``description`` column), when its length is the
    manifest's ``tracks.count`` (if recorded); None otherwise (tracks are then named ``trackN``)."""
    import pandas as pd

    info = bundle.manifest.get("tracks") if isinstance(getattr(bundle, "manifest", None), dict) else None
    name = info.get("file") if isinstance(info, dict) else None
    path = Path(bundle.path) / name if name else None
    if path is None or not path.is_file():
        return None
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except Exception:  # pandas raises many types; an unreadable list names no tracks
        logger.warning("%s: the track list %s is unreadable; tracks are named trackN", bundle.name, path.name)
        return None
    column = next((c for c in ("description", "identifier", "name") if c in table.columns), None)
    count = info.get("count") if isinstance(info, dict) else None
    if column is None or (count is not None and len(table) != int(count)):
        return None
    return list(table[column])


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
        bundle: Any | None = None,
        argv: Sequence[str] | None = None,
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
        self.schema = detail_schema(detail_provenance(bundle, argv))
        self._bundle, self._argv = bundle, argv
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
                write_provenance_sidecar(self.path, self._bundle, self._argv)
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


def gene_detail_table(
    variants: Mapping[int, Any],
    scores: Mapping[int, Sequence[Any]],
    model: str,
    spread: Mapping[int, Sequence[float]] | None = None,
    provenance: Mapping[str, str] | None = None,
    quantiles: Mapping[int, Sequence[float | None]] | None = None,
) -> Any:
    """Gene-window scores as an Arrow table, one row per (record, allele, gene) in record order:
    ``variants`` by record index, ``scores`` their :class:`~varscore.scoring.engine.AlleleScore`
    lists, ``spread`` the ensembles' SD per score (same order), ``quantiles`` (calibrated bundles;
    None: no ``q`` column) the calibrated quantile per score (same order; None: no background)."""
    import pyarrow as pa

    columns: dict[str, list[Any]] = {name: [] for name in GENE_DETAIL_DESCRIPTIONS}
    with_sd, with_q = bool(spread), quantiles is not None
    for record in sorted(scores):
        variant = variants[record]
        sds = list((spread or {}).get(record, ()))
        qs = list((quantiles or {}).get(record, ()))
        for k, score in enumerate(scores[record]):
            for name, value in (
                ("record", record),
                ("chrom", variant.chrom),
                ("pos", variant.pos),
                ("id", variant.id or None),
                ("ref", variant.ref),
                ("alt", score.allele),
                ("gene", score.gene),
                ("model", model),
                ("ref_pred", float(score.ref_pred)),
                ("alt_pred", float(score.alt_pred)),
                ("delta", float(score.delta)),
                ("sd", float(sds[k]) if k < len(sds) else None),
                ("q", qs[k] if k < len(qs) else None),
            ):
                columns[name].append(value)
    kinds = {"record": pa.int64(), "pos": pa.int64(), "ref_pred": pa.float64(), "alt_pred": pa.float64()}
    kinds.update(delta=pa.float64(), sd=pa.float64(), q=pa.float64())
    optional = {"sd": with_sd, "q": with_q}
    names = [n for n in GENE_DETAIL_DESCRIPTIONS if optional.get(n, True)]
    schema = pa.schema(
        [_field(n, kinds.get(n, pa.string()), GENE_DETAIL_DESCRIPTIONS) for n in names],
        metadata=dict(provenance or {}),
    )
    return pa.Table.from_pydict({n: columns[n] for n in names}, schema=schema)


def write_gene_detail(path: str | Path, table: Any, bundle: Any | None, argv: Sequence[str] | None = None) -> None:
    """Write a :func:`gene_detail_table` to Parquet atomically, with ``PATH.provenance.json``."""
    import pyarrow.parquet as pq

    from varscore.io.outputguard import atomic_file

    path = Path(path)
    try:
        with atomic_file(path) as tmp:
            pq.write_table(table, str(tmp), compression="zstd")
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise InputError(f"Cannot write --detail {path}: {reason}; nothing was written there.") from exc
    if is_direct(path):
        return
    write_provenance_sidecar(path, bundle, argv)


__all__ = [
    "DETAIL_DESCRIPTIONS",
    "GENE_DETAIL_DESCRIPTIONS",
    "ROW_GROUP_ROWS",
    "DetailWriter",
    "detail_provenance",
    "detail_schema",
    "gene_detail_table",
    "model_track_names",
    "write_gene_detail",
]
