"""Calibrated variant scores: the distribution of |score| over a background set of variants (e.g.
common SNVs of a 1000 Genomes VCF), stored in the bundle as ``calibration.json``; a new score's
quantile is the fraction of background scores with a smaller |score|. A bundle holds one or both
of two parts: variant-centred scoring (:class:`Calibration`, per scope (window / gene), track and
statistic) and gene-window scoring (:class:`GeneCalibration`, |DELTA| per gene).

Up to :data:`EXACT_LIMIT` background values per key are stored sorted, so the quantile equals the
empirical CDF exactly; larger backgrounds are stored as :data:`GRID` quantiles and interpolated.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from varscore.errors import BundleError, InputError
from varscore.scoring.centred import RecordScores

logger = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"
#: 1: the variant-centred calibration at the top level; 2: ``variant`` and ``gene`` parts (either may be absent)
CALIBRATION_VERSION = 2
READABLE_VERSIONS = (1, 2)
EXACT_LIMIT = 20_000
GRID = 2_001
QUANTILE_KEY = "VARSCORE_Q"
GENE_WINDOW_SCOPE = "gene-window"


def calibration_key(scope: str, track: int, stat: str) -> str:
    return f"{scope}|{track}|{stat}"


def gene_window_key(gene: str) -> str:
    """The key of one gene's background |DELTA| in gene-window scoring (the gene as VARSCORE names it)."""
    return f"{GENE_WINDOW_SCOPE}|{gene}"


def _quantile(exact: dict[str, np.ndarray], grid: dict[str, np.ndarray], key: str, value: float) -> float | None:
    """Fraction of the background |values| of ``key`` below ``|value|`` (None: no background)."""
    x = abs(float(value))
    if key in exact:
        values = exact[key]
        return float(np.searchsorted(values, x, side="left")) / len(values)
    if key in grid:
        return float(np.interp(x, grid[key], np.linspace(0.0, 1.0, len(grid[key]))))
    return None


def _distributions(
    values: dict[str, list[np.ndarray]], exact_limit: int, grid: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, int]]:
    """Per key the sorted values (up to ``exact_limit``) or ``grid`` quantiles, and the counts."""
    exact_of: dict[str, np.ndarray] = {}
    grid_of: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for key, parts in values.items():
        ordered = np.sort(np.concatenate(parts))
        counts[key] = len(ordered)
        if len(ordered) <= exact_limit:
            exact_of[key] = ordered
        else:
            grid_of[key] = np.quantile(ordered, np.linspace(0.0, 1.0, grid))
    return exact_of, grid_of, counts


@dataclass
class Calibration:
    """Background |score| distributions by :func:`calibration_key`. ``exact[key]`` holds sorted
    values; ``grid[key]`` the values at probabilities ``linspace(0, 1, GRID)``."""

    stats: tuple[str, ...]
    tracks: tuple[int, ...]
    track_names: tuple[str, ...]
    centring: str
    records: int
    exact: dict[str, np.ndarray] = field(default_factory=dict)
    grid: dict[str, np.ndarray] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def quantile(self, scope: str, track: int, stat: str, value: float) -> float | None:
        """Fraction of background |scores| below ``|value|`` (None: no background for this key)."""
        return _quantile(self.exact, self.grid, calibration_key(scope, track, stat), value)

    def to_json(self) -> dict[str, Any]:
        return {
            "stats": list(self.stats),
            "tracks": list(self.tracks),
            "track_names": list(self.track_names),
            "centring": self.centring,
            "records": self.records,
            "counts": self.counts,
            "exact": {k: v.tolist() for k, v in self.exact.items()},
            "grid": {k: v.tolist() for k, v in self.grid.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        return cls(
            tuple(data["stats"]),
            tuple(int(t) for t in data["tracks"]),
            tuple(data["track_names"]),
            str(data["centring"]),
            int(data["records"]),
            {k: np.asarray(v, dtype=np.float64) for k, v in data["exact"].items()},
            {k: np.asarray(v, dtype=np.float64) for k, v in data["grid"].items()},
            {k: int(v) for k, v in data["counts"].items()},
        )


class BackgroundCollector:
    """Collects the background's |scores| from scored records."""

    def __init__(self, tracks: Sequence[int], track_names: Sequence[str], stats: Sequence[str], centring: str) -> None:
        self.tracks, self.track_names, self.stats, self.centring = (
            tuple(tracks),
            tuple(track_names),
            tuple(stats),
            centring,
        )
        self.records = 0
        self._values: dict[str, list[np.ndarray]] = defaultdict(list)

    def add(self, record: RecordScores) -> None:
        if not record.alleles:
            return
        self.records += 1
        for allele in record.alleles:
            scopes = [("window", allele.window)] + [("gene", values) for _, values in allele.genes]
            for scope, values in scopes:
                scores = np.abs(np.asarray(values)[:, :, 2])  # (T, S)
                for t, track in enumerate(self.tracks):
                    for s, stat in enumerate(self.stats):
                        self._values[calibration_key(scope, track, stat)].append(scores[t, s : s + 1])

    def finish(self, exact_limit: int = EXACT_LIMIT, grid: int = GRID) -> Calibration:
        if not self._values:
            raise InputError("The background VCF gave no scored variants: nothing to calibrate on.")
        exact, grid_of, counts = _distributions(self._values, exact_limit, grid)
        return Calibration(
            self.stats, self.tracks, self.track_names, self.centring, self.records, exact, grid_of, counts
        )


@dataclass
class GeneCalibration:
    """Background |DELTA| of gene-window scoring (``annotate`` without ``--mode variant``), one
    key per gene (:func:`gene_window_key`): ``exact[key]`` sorted values, ``grid[key]`` the values
    at probabilities ``linspace(0, 1, GRID)``; ``records``: background records that gave scores."""

    records: int
    exact: dict[str, np.ndarray] = field(default_factory=dict)
    grid: dict[str, np.ndarray] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def quantile(self, gene: str, delta: float) -> float | None:
        """Fraction of ``gene``'s background |DELTA| below ``|delta|`` (None: no background for the gene)."""
        return _quantile(self.exact, self.grid, gene_window_key(gene), delta)

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": GENE_WINDOW_SCOPE,
            "records": self.records,
            "counts": self.counts,
            "exact": {k: v.tolist() for k, v in self.exact.items()},
            "grid": {k: v.tolist() for k, v in self.grid.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GeneCalibration:
        if data.get("scope") != GENE_WINDOW_SCOPE:
            raise ValueError(f"the gene part's scope is {data.get('scope')!r}, not {GENE_WINDOW_SCOPE!r}")
        return cls(
            int(data["records"]),
            {k: np.asarray(v, dtype=np.float64) for k, v in data["exact"].items()},
            {k: np.asarray(v, dtype=np.float64) for k, v in data["grid"].items()},
            {k: int(v) for k, v in data["counts"].items()},
        )


class GeneBackgroundCollector:
    """Collects the background's |DELTA| per gene from gene-window scores
    (:class:`~varscore.scoring.engine.AlleleScore` lists, one per record)."""

    def __init__(self) -> None:
        self.records = 0
        self._values: dict[str, list[float]] = defaultdict(list)

    def add(self, scores: Sequence[Any]) -> None:
        if not scores:
            return
        self.records += 1
        for score in scores:
            self._values[gene_window_key(score.gene)].append(abs(float(score.delta)))

    def finish(self, exact_limit: int = EXACT_LIMIT, grid: int = GRID) -> GeneCalibration:
        if not self._values:
            raise InputError("The background VCF gave no scored variants: nothing to calibrate on.")
        arrays = {key: [np.asarray(values, dtype=np.float64)] for key, values in self._values.items()}
        exact, grid_of, counts = _distributions(arrays, exact_limit, grid)
        return GeneCalibration(self.records, exact, grid_of, counts)


@dataclass(frozen=True)
class CalibrationFile:
    """What ``calibration.json`` holds: the variant-centred part, the gene-window part, or both."""

    variant: Calibration | None = None
    gene: GeneCalibration | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"version": CALIBRATION_VERSION}
        if self.variant is not None:
            data["variant"] = self.variant.to_json()
        if self.gene is not None:
            data["gene"] = self.gene.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CalibrationFile:
        version = data.get("version")
        if version not in READABLE_VERSIONS:
            raise BundleError(
                f"Calibration version {version} is not one of {', '.join(map(str, READABLE_VERSIONS))}: recalibrate."
            )
        if version == 1:  # the variant-centred calibration at the top level
            return cls(variant=Calibration.from_json(data))
        variant, gene = data.get("variant"), data.get("gene")
        return cls(
            Calibration.from_json(variant) if variant is not None else None,
            GeneCalibration.from_json(gene) if gene is not None else None,
        )


#: The fewest background scores per key for a calibration to trust: a quantile from n scores moves
#: in steps of 1/n, so 1,000 tell Q 0.999 from 1 while 10 give only steps of 0.1 (every variant
#: above the background's maximum gets Q = 1).
MIN_BACKGROUND = 1000


def resolution_warning(calibration: Calibration | GeneCalibration) -> str | None:
    """One line when a key of ``calibration`` (a gene, in gene-window scoring) rests on fewer than
    :data:`MIN_BACKGROUND` scores: it names the key with the fewest and how many keys fall short."""
    if not calibration.counts:
        return None
    key = min(calibration.counts, key=lambda k: (calibration.counts[k], k))
    n = calibration.counts[key]
    if n >= MIN_BACKGROUND:
        return None
    short = sum(count < MIN_BACKGROUND for count in calibration.counts.values())
    return (
        f"the background gave only {n:,} scores for {key} ({calibration.records:,} records): its quantiles Q move "
        f"in steps of 1/{n} = {1 / n:.3g}; calibrate on at least {MIN_BACKGROUND:,} background variants "
        f"(steps of {1 / MIN_BACKGROUND:g}) for Q to separate the top 1% ({short:,} of {len(calibration.counts):,} "
        f"keys rest on fewer than {MIN_BACKGROUND:,} scores)."
    )


def load_calibration(bundle: Any) -> Calibration | None:
    """A bundle's variant-centred calibration, checked against the sha256 its manifest records;
    None if it has none."""
    return read_calibration_file(bundle).variant


def load_gene_calibration(bundle: Any) -> GeneCalibration | None:
    """A bundle's gene-window calibration, checked against the sha256 its manifest records; None
    if it has none."""
    return read_calibration_file(bundle).gene


def read_calibration_file(bundle: Any) -> CalibrationFile:
    """Both parts of a bundle's ``calibration.json`` (empty when the manifest names none), the
    file checked against the sha256 the manifest records."""
    from varscore.models.bundle import sha256

    entry = bundle.manifest.get("calibration")
    if not entry:
        return CalibrationFile()
    from varscore.io.integrity import inside

    path = inside(Path(bundle.path), str(entry.get("file", CALIBRATION_FILE)), "calibration.file")
    if not path.is_file():
        raise BundleError(f"{bundle.path} names a calibration file {path.name} that is missing.")
    if sha256(path) != entry.get("sha256"):
        raise BundleError(f"{path} does not match the sha256 in the manifest: the bundle was altered; recalibrate.")
    try:
        return CalibrationFile.from_json(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BundleError(f"{path} is not a valid calibration: {exc}.") from exc


def _kept_part(bundle: Any, calibration: Calibration | GeneCalibration) -> CalibrationFile:
    """The bundle's calibration with ``calibration`` in place of the part of its mode (the other
    part kept; an unreadable or altered file is replaced whole, with a warning)."""
    try:
        current = read_calibration_file(bundle)
    except BundleError as exc:
        logger.warning("%s; it is replaced by the new calibration alone", str(exc).rstrip("."))
        current = CalibrationFile()
    if isinstance(calibration, GeneCalibration):
        return CalibrationFile(current.variant, calibration)
    return CalibrationFile(calibration, current.gene)


def write_calibration(
    bundle: Any, calibration: Calibration | GeneCalibration, output: str | Path | None = None
) -> Path:
    """Store ``calibration`` in a copy of the bundle written atomically to ``output`` (default: the
    bundle's own directory, replaced): ``calibration.json`` plus a manifest entry with its sha256
    (also recorded, with every other file's, in the manifest's checksums). A variant-centred
    calibration replaces only the bundle's variant-centred part, a gene-window one only its
    gene-window part: a bundle may carry both."""
    from varscore.genome.reference import ReferenceRecord
    from varscore.io.integrity import file_checksums, sha256
    from varscore.models.bundle import MANIFEST, _atomic_directory

    source = Path(bundle.path)
    target = Path(output) if output is not None else source
    manifest = json.loads((source / MANIFEST).read_text())
    record, fasta = bundle.reference, bundle.reference_fasta
    if target.resolve() != source.resolve() and record is not None and fasta is not None:
        # the relative hint to the reference is re-made from the new directory (never an absolute path)
        manifest["reference"] = ReferenceRecord.of(fasta, record.build, target).to_json()
    stored = _kept_part(bundle, calibration)
    with _atomic_directory(target) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        (tmp / CALIBRATION_FILE).write_text(json.dumps(stored.to_json()) + "\n")
        entry: dict[str, Any] = {"file": CALIBRATION_FILE, "sha256": sha256(tmp / CALIBRATION_FILE)}
        if stored.variant is not None:  # as version 1 recorded it
            entry.update(
                records=stored.variant.records,
                stats=list(stored.variant.stats),
                tracks=list(stored.variant.tracks),
                centring=stored.variant.centring,
            )
        if stored.gene is not None:
            entry[GENE_WINDOW_SCOPE] = {"records": stored.gene.records, "genes": len(stored.gene.counts)}
        manifest["calibration"] = entry
        manifest["files"] = file_checksums(tmp, exclude=(MANIFEST,))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return target


__all__ = [
    "CALIBRATION_FILE",
    "GENE_WINDOW_SCOPE",
    "QUANTILE_KEY",
    "BackgroundCollector",
    "Calibration",
    "CalibrationFile",
    "GeneBackgroundCollector",
    "GeneCalibration",
    "calibration_key",
    "gene_window_key",
    "load_calibration",
    "load_gene_calibration",
    "read_calibration_file",
    "resolution_warning",
    "write_calibration",
]
