"""An on-disk cache of in-silico mutagenesis results (``--cache DIR``, off by default): per model and
reference window, the reference pass and each substitution's outputs, so a second ``annotate``,
``ism``, ``hsv``, ``drivers`` or ``report`` on the same windows runs no forward pass for what an
earlier run scored.

An entry is keyed by the sha256 of (model checksum and settings, output reduction, window sequence,
window size): the window's bases stand for the reference checksum and the window, so a different FASTA or window
never matches. Each entry is one ``.npz`` file (numpy arrays only, read with ``allow_pickle=False``)
named by its key, written atomically beside its final name, and checked on read (its stored key,
shapes, number types, finite outputs and substitutions inside the window); an entry that fails the
check is recomputed and replaced. An entry that cannot be written (a full disk, a folder shared
read-only) is a warning: the run goes on without keeping it. Substitutions by other bases than
A, C, G, T are computed and never kept. Substitutions
missing from an entry are scored (with one reference pass) and merged into it."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from varscore.errors import InputError

logger = logging.getLogger(__name__)

BASES = "ACGT"
#: bumped when the entry layout changes, so old entries are never misread
FORMAT = "varscore-effect-cache-1"


@dataclass
class CacheCounts:
    """How many substitutions came from the cache (``hits``) and were scored (``scored``), and how
    many entries were unreadable and recomputed (``corrupt``)."""

    hits: int = 0
    scored: int = 0
    corrupt: int = 0
    unwritten: int = 0  # entries that could not be written (a full disk, a read-only folder)


@dataclass
class EffectCache:
    """The cache in ``directory`` for one model: ``model`` identifies its weights (the bundle's
    weights checksum), backbone settings and output mode, so no two models share an entry."""

    directory: Path
    model: str
    counts: CacheCounts = field(default_factory=CacheCounts)
    write_failed: bool = False

    @classmethod
    def for_bundle(cls, directory: str | Path, bundle: Any) -> EffectCache:
        """The cache of ``bundle`` in ``directory`` (a bundle recording no weights checksum cannot be
        told apart from another, so it is refused)."""
        import json

        from varscore.io.outputguard import model_provenance

        if not str(directory).strip():
            raise InputError("--cache names no folder; expected a directory.")
        folder = Path(directory)
        try:  # before any scoring: a folder that cannot be made fails now, not after the first window
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"--cache {folder}: cannot use it as a folder: {exc.strerror or exc}.") from exc
        checksum = model_provenance(bundle)["SHA256"]
        if checksum == ".":
            raise InputError(
                f"--cache: model '{bundle.name}' records no weights checksum, so its results cannot be cached."
            )
        manifest = bundle.manifest if isinstance(bundle.manifest, dict) else {}
        # the backbone's settings too: one weights file under other settings (pooling, crop, heads)
        # computes other outputs, so it must not read the entries of the first
        settings = {key: manifest.get(key) for key in ("backbone", "output_mode")}
        return cls(folder, f"{checksum}|{json.dumps(settings, sort_keys=True, default=str)}")

    def key(self, reference: np.ndarray, reduction: str) -> str:
        """The entry of one window: ``reference`` ``(L, 4)`` one-hot, ``reduction`` naming what the
        outputs are (e.g. ``reduce`` or ``features``)."""
        digest = hashlib.sha256()
        for part in (FORMAT, self.model, reduction, str(reference.shape)):
            digest.update(part.encode())
            digest.update(b"\0")
        digest.update(np.ascontiguousarray(reference, dtype=np.float32).tobytes())
        return digest.hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npz"

    def ism(
        self,
        compute: Callable[[np.ndarray, Sequence[tuple[int, str]]], Any],
        reference: np.ndarray,
        substitutions: Sequence[tuple[int, str]],
        reduction: str,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(reference outputs (K,), alternate outputs (M, K))`` of ``substitutions`` (``(offset,
        base)`` in the window ``reference``), from the cache where it has them and otherwise from
        ``compute(reference, missing)`` (an ``ISMResult``), which is then merged into the entry."""
        if any(str(b).upper() not in BASES for _, b in substitutions):  # only A, C, G, T are kept
            return _as_arrays(compute(reference, list(substitutions)))
        key = self.key(reference, reduction)
        stored = self._read(key, reference.shape[0])
        rows: dict[tuple[int, str], np.ndarray] = stored[1] if stored is not None else {}
        ref_out = stored[0] if stored is not None else None
        wanted = list(dict.fromkeys((int(o), str(b).upper()) for o, b in substitutions))
        missing = [s for s in wanted if s not in rows]
        if missing or ref_out is None:
            result = compute(reference, missing)
            ref_out = np.asarray(result.reference)
            for sub, values in zip(missing, np.asarray(result.alternates), strict=True):
                rows[sub] = values
            self._write(key, ref_out, rows)
        self.counts.hits += len(wanted) - len(missing)
        self.counts.scored += len(missing)
        width = ref_out.shape[0]
        alternates = (
            np.stack([rows[(int(o), str(b).upper())] for o, b in substitutions])
            if len(substitutions)
            else np.empty((0, width), dtype=ref_out.dtype)
        )
        return ref_out, alternates

    def _read(self, key: str, length: int) -> tuple[np.ndarray, dict[tuple[int, str], np.ndarray]] | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as entry:
                stored_key = str(entry["key"])
                reference = np.asarray(entry["reference"])
                offsets = np.asarray(entry["offsets"])
                bases = np.asarray(entry["bases"])
                alternates = np.asarray(entry["alternates"])
            if (
                stored_key != key
                or reference.ndim != 1
                or offsets.ndim != 1
                or bases.shape != offsets.shape
                or alternates.shape != (len(offsets), reference.shape[0])
                or not np.isin(bases, np.arange(4)).all()
            ):
                raise ValueError("its contents do not match its key")
            if not (
                reference.dtype.kind == "f"
                and alternates.dtype.kind == "f"
                and offsets.dtype.kind in "iu"
                and bases.dtype.kind in "iu"
            ):
                raise ValueError("its arrays are not numbers of the right kind")
            if not (np.isfinite(reference).all() and np.isfinite(alternates).all()):
                raise ValueError("it holds NaN or infinite outputs")
            if len(offsets) and (
                offsets.min() < 0
                or offsets.max() >= length
                or len(set(zip(offsets.tolist(), bases.tolist(), strict=True))) < len(offsets)
            ):
                raise ValueError("its substitutions lie outside the window or repeat")
        except Exception as exc:  # a truncated, corrupt or foreign file: recompute it
            self.counts.corrupt += 1
            logger.warning("effect cache entry %s is unreadable (%s): recomputing it", path, exc)
            return None
        rows = {(int(o), BASES[int(b)]): alternates[i] for i, (o, b) in enumerate(zip(offsets, bases, strict=True))}
        return reference, rows

    def _write(self, key: str, reference: np.ndarray, rows: dict[tuple[int, str], np.ndarray]) -> None:
        from varscore.io.outputguard import atomic_file

        subs = sorted(rows)
        alternates = np.stack([rows[s] for s in subs]) if subs else np.empty((0, reference.shape[0]), reference.dtype)
        path = self.path(key)
        try:
            with atomic_file(path) as tmp, open(tmp, "wb") as handle:
                np.savez(
                    handle,
                    key=np.array(key),
                    reference=reference,
                    offsets=np.array([o for o, _ in subs], dtype=np.int64),
                    bases=np.array([BASES.index(b) for _, b in subs], dtype=np.int8),
                    alternates=alternates,
                )
        except OSError as exc:  # a full disk or a folder shared read-only: the run goes on without it
            if not self.write_failed:
                logger.warning(
                    "effect cache: cannot write %s (%s); results are not kept this run", path, exc.strerror or exc
                )
            self.write_failed = True
            self.counts.unwritten += 1


def _as_arrays(result: Any) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(result.reference), np.asarray(result.alternates)
