"""Calibrated variant scores: the distribution of |score| over a background set of variants (e.g.
common SNVs of a 1000 Genomes VCF), per scope (window / gene), track and statistic, stored in the
bundle as ``calibration.json``; a new score's quantile is the fraction of background scores with
a smaller |score|.

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
CALIBRATION_VERSION = 1
EXACT_LIMIT = 20_000
GRID = 2_001


def calibration_key(scope: str, track: int, stat: str) -> str:
    return f"{scope}|{track}|{stat}"


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
        key = calibration_key(scope, track, stat)
        x = abs(float(value))
        if key in self.exact:
            values = self.exact[key]
            return float(np.searchsorted(values, x, side="left")) / len(values)
        if key in self.grid:
            return float(np.interp(x, self.grid[key], np.linspace(0.0, 1.0, len(self.grid[key]))))
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": CALIBRATION_VERSION,
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
        if data.get("version") != CALIBRATION_VERSION:
            raise BundleError(f"Calibration version {data.get('version')} is not {CALIBRATION_VERSION}: recalibrate.")
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
        calibration = Calibration(self.stats, self.tracks, self.track_names, self.centring, self.records)
        for key, parts in self._values.items():
            values = np.sort(np.concatenate(parts))
            calibration.counts[key] = len(values)
            if len(values) <= exact_limit:
                calibration.exact[key] = values
            else:
                calibration.grid[key] = np.quantile(values, np.linspace(0.0, 1.0, grid))
        return calibration


#: The fewest background scores per key for a calibration to trust: a quantile from n scores moves
#: in steps of 1/n, so 1,000 tell Q 0.999 from 1 while 10 give only steps of 0.1 (every variant
#: above the background's maximum gets Q = 1).
MIN_BACKGROUND = 1000


def resolution_warning(calibration: Calibration) -> str | None:
    """One line when a key of ``calibration`` rests on fewer than :data:`MIN_BACKGROUND` scores."""
    if not calibration.counts:
        return None
    key = min(calibration.counts, key=lambda k: (calibration.counts[k], k))
    n = calibration.counts[key]
    if n >= MIN_BACKGROUND:
        return None
    return (
        f"the background gave only {n:,} scores for {key} ({calibration.records:,} records): its quantiles Q move "
        f"in steps of 1/{n} = {1 / n:.3g}; calibrate on at least {MIN_BACKGROUND:,} background variants "
        f"(steps of {1 / MIN_BACKGROUND:g}) for Q to separate the top 1%."
    )


def load_calibration(bundle: Any) -> Calibration | None:
    """A bundle's calibration, checked against the sha256 its manifest records; None if it has none."""
    from varscore.models.bundle import sha256

    entry = bundle.manifest.get("calibration")
    if not entry:
        return None
    from varscore.io.integrity import inside

    path = inside(Path(bundle.path), str(entry.get("file", CALIBRATION_FILE)), "calibration.file")
    if not path.is_file():
        raise BundleError(f"{bundle.path} names a calibration file {path.name} that is missing.")
    if sha256(path) != entry.get("sha256"):
        raise BundleError(f"{path} does not match the sha256 in the manifest: the bundle was altered; recalibrate.")
    try:
        return Calibration.from_json(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{path} is not a valid calibration: {exc}.") from exc


def write_calibration(bundle: Any, calibration: Calibration, output: str | Path | None = None) -> Path:
    """Store ``calibration`` in a copy of the bundle written atomically to ``output`` (default: the
    bundle's own directory, replaced): ``calibration.json`` plus a manifest entry with its sha256
    (also recorded, with every other file's, in the manifest's checksums)."""
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
    with _atomic_directory(target) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        (tmp / CALIBRATION_FILE).write_text(json.dumps(calibration.to_json()) + "\n")
        manifest["calibration"] = {
            "file": CALIBRATION_FILE,
            "sha256": sha256(tmp / CALIBRATION_FILE),
            "records": calibration.records,
            "stats": list(calibration.stats),
            "tracks": list(calibration.tracks),
            "centring": calibration.centring,
        }
        manifest["files"] = file_checksums(tmp, exclude=(MANIFEST,))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return target


__all__ = [
    "CALIBRATION_FILE",
    "BackgroundCollector",
    "Calibration",
    "calibration_key",
    "load_calibration",
    "write_calibration",
]
