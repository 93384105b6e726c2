"""DNA one-hot encoding: ``(L, 4)`` float32 in A, C, G, T order; N and IUPAC codes are all-zero."""

from __future__ import annotations

import numpy as np

BASES = "ACGT"
BASE_INDEX = {b: i for i, b in enumerate(BASES)}

_LOOKUP = np.full(256, 4, dtype=np.int64)
for _i, _b in enumerate(BASES):
    _LOOKUP[ord(_b)] = _i
    _LOOKUP[ord(_b.lower())] = _i
_EYE = np.vstack([np.eye(4, dtype=np.float32), np.zeros((1, 4), dtype=np.float32)])


def one_hot(sequence: str) -> np.ndarray:
    """One-hot encode ``sequence`` (any case) to ``(L, 4)`` float32."""
    codes = np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)
    return _EYE[_LOOKUP[codes]]


def decode(one_hot_seq: np.ndarray) -> str:
    """Inverse of :func:`one_hot` for ``(L, 4)``; rows that are not one base become ``N``."""
    out = np.array(list(BASES + "N"))
    idx = np.where(one_hot_seq.max(axis=1) == 1.0, one_hot_seq.argmax(axis=1), 4)
    return "".join(out[idx])
