"""Position weight matrices, shared by the motif annotator and ``varscore simulate``.

A motif's count matrix gets a pseudocount spread by the background (``pseudocount`` × background,
MEME's convention) and becomes a log2-odds matrix against the background base frequencies, rounded
to integers on a grid of 1/:data:`SCORE_SCALE` bits (as FIMO and MOODS do). The exact null
distribution of the integer score of a random sequence (bases drawn independently from the
background) follows by dynamic programming over the motif's positions (:func:`score_tail`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BACKGROUNDS", "GENOME_BACKGROUND", "PSEUDOCOUNT", "SCORE_SCALE", "Motif", "score_tail"]

SCORE_SCALE = 100  # integer score units per bit: a 0.01-bit grid
PSEUDOCOUNT = 0.8  # MEME's default, spread by the background
BACKGROUNDS = {
    "genome": (0.295, 0.205, 0.205, 0.295),  # human genome, 41% GC
    "uniform": (0.25, 0.25, 0.25, 0.25),
}
GENOME_BACKGROUND = np.array(BACKGROUNDS["genome"])  # A, C, G, T


@dataclass(frozen=True)
class Motif:
    """One motif: ``counts`` is ``(L, 4)`` site counts in A, C, G, T order (rows = positions)."""

    motif_id: str
    tf: str
    counts: np.ndarray

    @property
    def length(self) -> int:
        return int(self.counts.shape[0])

    def scores(self, background: Sequence[float] | np.ndarray, pseudocount: float = PSEUDOCOUNT) -> np.ndarray:
        """``(L, 4)`` int64 log2-odds × :data:`SCORE_SCALE` against ``background``."""
        bg = np.asarray(background, dtype=float)
        counts = np.asarray(self.counts, dtype=float)
        probs = (counts + pseudocount * bg) / (counts.sum(axis=1, keepdims=True) + pseudocount)
        return np.round(np.log2(probs / bg) * SCORE_SCALE).astype(np.int64)

    def threshold(
        self, p_value: float, background: Sequence[float] | np.ndarray, pseudocount: float = PSEUDOCOUNT
    ) -> float:
        """The smallest score (bits) with P(score >= it) <= ``p_value`` under ``background``
        (``inf`` when no score is that rare)."""
        minimum, tail = score_tail(self.scores(background, pseudocount), np.asarray(background, dtype=float))
        passing = np.flatnonzero(tail <= p_value)
        return math.inf if len(passing) == 0 else (minimum + int(passing[0])) / SCORE_SCALE


def score_tail(matrix: np.ndarray, background: np.ndarray) -> tuple[int, np.ndarray]:
    """Exact upper tail of the score of a random sequence under ``background`` ``(4,)``.

    ``matrix``: ``(L, 4)`` integer scores. Returns ``(minimum, tail)`` with
    ``tail[k] = P(score >= minimum + k)`` for every reachable integer score.
    """
    distribution = np.array([1.0])
    minimum = 0
    for row in np.asarray(matrix, dtype=np.int64):
        low = int(row.min())
        new = np.zeros(len(distribution) + int(row.max()) - low)
        for base in range(4):
            shift = int(row[base]) - low
            new[shift : shift + len(distribution)] += background[base] * distribution
        distribution, minimum = new, minimum + low
    tail = np.cumsum(distribution[::-1])[::-1]
    return minimum, np.minimum(tail, 1.0)
