"""Exact, fast predictions of many people's personal genomes in one window: people with the same
dosage pattern are predicted once, and backbones that offer ``predict_edits`` (Enformer) recompute
only what each pattern's variants reach instead of whole windows."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from varscore.errors import InputError
from varscore.genome.personal import WindowGenotypes, personal_one_hot

if TYPE_CHECKING:
    from varscore.plugin.contracts import SequenceBackbone

logger = logging.getLogger(__name__)

# One window given by its differences from a reference window: 0-based offsets ``(k,)`` int64
# and the one-hot rows written there ``(k, 4)`` float32.
WindowEdit = tuple[np.ndarray, np.ndarray]
METHODS = ("fast", "naive")
# Patterns whose windows are built at once (memory: group × L × 4 float32).
_GROUP = 64


class PeoplePredictions(NamedTuple):
    """``predictions``: ``(B, bins, tracks)``, one row per requested person; ``pattern``: ``(B,)``
    int64, each person's distinct dosage pattern; ``n_patterns``: how many forward passes
    (transformer and head, for Enformer) were needed."""

    predictions: np.ndarray
    pattern: np.ndarray
    n_patterns: int


def dosage_patterns(genotypes: WindowGenotypes, people: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct dosage windows among ``people`` (row indices of ``genotypes``).

    Returns ``representatives`` ``(U,)`` (one person per pattern, as a row of ``genotypes``) and
    ``inverse`` ``(B,)`` (each person's pattern). With SNVs only, people with equal ALT counts at
    every column have equal dosage windows; with indel or MNP columns the window depends on which
    variants share a haplotype, so people are equal when they carry the same two haplotypes (in
    either order). Missing calls count as reference, as in :func:`varscore.genome.personal.personal_one_hot`.
    """
    carried = genotypes.haplotypes[people] == 1  # (B, 2, V)
    if carried.shape[2] == 0:
        return people[:1], np.zeros(len(people), dtype=np.int64)
    if genotypes.context is None and bool(genotypes.is_snv.all()):
        keys = carried.sum(axis=1, dtype=np.int8)  # (B, V) ALT counts
    else:
        _, haplotype_ids = np.unique(carried.reshape(2 * len(people), -1), axis=0, return_inverse=True)
        keys = np.sort(haplotype_ids.reshape(len(people), 2), axis=1)  # (B, 2), order-free
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return people[first], inverse.reshape(-1).astype(np.int64)


def window_edits(reference: np.ndarray, windows: np.ndarray) -> list[WindowEdit]:
    """``windows`` ``(N, L, 4)`` as differences from ``reference`` ``(L, 4)``."""
    changed = (windows != reference[None]).any(axis=2)  # (N, L)
    edits = []
    for row in range(len(windows)):
        offsets = np.flatnonzero(changed[row])
        edits.append((offsets, windows[row, offsets].astype(np.float32)))
    return edits


def predict_people(
    backbone: SequenceBackbone,
    reference: np.ndarray,
    genotypes: WindowGenotypes,
    people: Sequence[int] | np.ndarray | None = None,
    batch_size: int = 8,
    method: str = "fast",
    progress: bool = False,
) -> PeoplePredictions:
    """Predictions of the dosage personal genomes of ``people`` (rows of ``genotypes``; all by
    default) for one window, equal to ``backbone.predict(personal_one_hot(...))``.

    ``reference``: the window's ``(L, 4)`` one-hot. ``method="fast"`` predicts each distinct
    dosage pattern once, through ``backbone.predict_edits`` when the backbone's ``fast_edits``
    and ``edits_are_local()`` say it pays;
    ``"naive"`` builds and predicts every person's window (for checking).
    """
    from tqdm.auto import tqdm

    if method not in METHODS:
        raise InputError(f"Unknown prediction method '{method}'. Choose one of: {', '.join(METHODS)}.")
    if batch_size < 1:
        raise InputError(f"batch size must be >= 1; got {batch_size}.")
    rows = np.arange(genotypes.n_people) if people is None else np.asarray(people, dtype=np.int64).reshape(-1)
    reference = np.asarray(reference, dtype=np.float32)
    if len(rows) == 0:
        raise InputError("predict_people needs at least one person; got none.")
    if method == "naive":
        representatives, inverse = rows, np.arange(len(rows))
    else:
        representatives, inverse = dosage_patterns(genotypes, rows)
        logger.info("%d people, %d distinct dosage patterns", len(rows), len(representatives))

    parts = []
    # Edits pay only where a change stays local (not so for Enformer with window statistics).
    edits_path = method == "fast" and backbone.fast_edits and backbone.edits_are_local()
    edits: list[WindowEdit] = []
    for start in tqdm(range(0, len(representatives), _GROUP), desc="patterns", disable=not progress, leave=False):
        windows = personal_one_hot(reference, genotypes, "dosage", people=representatives[start : start + _GROUP])
        if edits_path:
            edits.extend(window_edits(reference, windows))
            continue
        for begin in range(0, len(windows), batch_size):
            parts.append(np.asarray(backbone.predict(windows[begin : begin + batch_size])))
    # All patterns at once, so that a patch shared by people in different groups is computed once.
    predicted = backbone.predict_edits(reference, edits, batch_size=batch_size) if edits_path else np.concatenate(parts)
    return PeoplePredictions(predicted[inverse], inverse, len(representatives))


__all__ = ["PeoplePredictions", "WindowEdit", "dosage_patterns", "predict_people", "window_edits"]
