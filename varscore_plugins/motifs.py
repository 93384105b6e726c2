"""Motif-disruption annotator (``--annotate motifs``): PWM log-odds scans of the REF and ALT
allele sequences on both strands with exact p-values, reported the way motifbreakR reports them.

Scores and p-values (FIMO-like). Each motif's count matrix gets a pseudocount spread by the
background (``pseudocount`` × background, MEME's convention) and becomes a log2-odds matrix against
the background base frequencies, rounded to integers on a grid of 1/``SCORE_SCALE`` bits. The exact
null distribution of the integer score of a random sequence (bases drawn independently from the
background) follows by dynamic programming over the motif's positions; a score's p-value is the
probability of a score at least as large. The p-value of an allele is that of its best match
(either strand) among the placements that overlap the allele.

Effects (motifbreakR). A (variant allele, motif) pair is reported when the best REF or the best
ALT match has ``p < p_threshold`` and the change is not neutral. For an SNV, the change is
motifbreakR's classic one: in the stronger of the two best matches, the difference of the
position probability matrix entries (no pseudocount) of the ALT and the REF base at the variant's
position in the motif, on the match's strand: ``|Δp| >= 0.7`` is ``strong``, ``0.4 < |Δp| < 0.7``
``weak``, smaller changes are neutral and not reported. For an indel, ``Δ`` is the change of
motifbreakR's default weighted-sum score (the sum over motif positions of the base's probability
times the column's max minus min probability) from the best REF match to the best ALT match,
with the same cut-offs. ``REF_P > ALT_P`` means the ALT allele strengthens the site.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from varscore.errors import InputError
from varscore.genome.pwm import BACKGROUNDS, Motif, score_tail
from varscore.plugin import BASES
from varscore.plugin.contracts import AnnotationContext, Annotator, InfoField
from varscore.plugin.hookspecs import hookimpl
from varscore.plugin.options import PluginOptions, option

if TYPE_CHECKING:
    import pandas as pd

    from varscore.types import Variant

logger = logging.getLogger(__name__)

MOTIF_KEY = "VARSCORE_MOTIF"
MOTIF_FORMAT = "ALLELE|MOTIF|TF|STRAND|REF_P|ALT_P|EFFECT|Q"
CORRECTIONS = ("bh", "bonferroni", "none")
STRONG_DELTA = 0.7  # motifbreakR's cut-offs on the allele change
WEAK_DELTA = 0.4
DEFAULT_Q_THRESHOLD = 0.03  # per-variant BH q; keeps random SNVs flagged near 5% (DEFAULT_Q_NOTE)
DEFAULT_Q_NOTE = (
    "With the default (BH q < 0.03 over the motifs scanned, p < 5e-5 per match) 4.5% (95% CI 3.5-5.7%) of 1,500 "
    "random SNVs of the bundled hg19 chr20 slice are flagged against the 879 JASPAR2024 CORE vertebrate motifs, "
    "against 50.7% with p < 5e-5 alone (benchmarks/motif_random_snv_share.py)."
)
DEFAULT_NSITES = 20  # sites assumed for probability matrices that do not state them (motifbreakR's default)
_N_PENALTY = -(10**5)  # integer score of an N: a window holding one never matches
_CODES = np.full(256, 4, dtype=np.int64)
for _i, _b in enumerate(BASES):
    _CODES[ord(_b)] = _i
    _CODES[ord(_b.lower())] = _i


# --------------------------------------------------------------------------------------------
# Motif databases


def _sanitize(text: str) -> str:
    from varscore.plugin import info_atom

    return info_atom(text)


def _checked_counts(rows: list[list[float]], where: str) -> np.ndarray:
    counts = np.asarray(rows, dtype=float)
    if counts.ndim != 2 or counts.shape[1] != 4 or counts.shape[0] == 0:
        raise InputError(
            f"{where}: a motif needs at least one position of 4 values (A, C, G, T); got shape {counts.shape}."
        )
    if not np.all(np.isfinite(counts)) or (counts < 0).any():
        raise InputError(f"{where}: motif values must be finite and non-negative.")
    if (counts.sum(axis=1) <= 0).any():
        raise InputError(f"{where}: a motif position has all-zero counts.")
    return counts


def _numbers(line: str, where: str) -> list[float]:
    try:
        return [float(x) for x in line.replace("[", " ").replace("]", " ").split()]
    except ValueError as exc:
        raise InputError(f"{where}: expected numbers, got '{line.strip()[:60]}'.") from exc


def read_motif_file(path: str | Path) -> list[Motif]:
    """Motifs from a MEME, JASPAR (``A [ ... ]`` rows) or ``.pfm`` file (HOCOMOCO: one row of
    A, C, G, T counts per position; JASPAR pfm: one row per base). The format is detected."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Motif file not found: {path}.")
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not a text motif file (MEME, JASPAR or .pfm).") from exc
    first = next((ln for ln in lines if ln.strip() and not ln.startswith("#")), "")
    motifs = _read_meme(lines, path) if first.startswith("MEME version") else _read_fasta_like(lines, path)
    if not motifs:
        raise InputError(
            f"{path} holds no motifs: expected MEME ('MEME version', 'MOTIF' blocks) or "
            "JASPAR/HOCOMOCO ('>name' lines followed by count rows)."
        )
    seen: set[str] = set()
    for motif in motifs:
        if motif.motif_id in seen:
            raise InputError(f"{path}: motif '{motif.motif_id}' appears twice.")
        seen.add(motif.motif_id)
    return motifs


def _hocomoco_tf(name: str) -> str:
    """``AHR_HUMAN.H11MO.0.B`` -> ``AHR``; other names are kept."""
    match = re.match(r"^([^_.]+)_(HUMAN|MOUSE)\.", name)
    return match.group(1) if match else name


def _read_fasta_like(lines: list[str], path: Path) -> list[Motif]:
    motifs: list[Motif] = []
    header: tuple[str, str, int] | None = None
    rows: list[tuple[str | None, list[float]]] = []

    def finish() -> None:
        if header is None:
            return
        motif_id, tf, line_no = header
        where = f"{path}:{line_no} (motif {motif_id})"
        if not rows:
            raise InputError(f"{where}: no count rows after the '>' line.")
        letters = [letter for letter, _ in rows]
        values = [v for _, v in rows]
        if all(letter is not None for letter in letters):  # JASPAR: "A [ 1 2 3 ]"
            if sorted(letters) != list(BASES):  # type: ignore[type-var]
                raise InputError(
                    f"{where}: JASPAR rows must be A, C, G and T once each; got {', '.join(map(str, letters))}."
                )
            by_base = dict(zip(letters, values, strict=True))
            lengths = {len(v) for v in values}
            if len(lengths) != 1:
                raise InputError(f"{where}: the A, C, G, T rows have different lengths {sorted(lengths)}.")
            counts = _checked_counts(np.array([by_base[b] for b in BASES]).T.tolist(), where)
        elif any(letter is not None for letter in letters):
            raise InputError(f"{where}: mixes rows with and without base letters.")
        elif all(len(v) == 4 for v in values):  # HOCOMOCO: one row per position
            counts = _checked_counts(values, where)
        elif len(values) == 4 and len({len(v) for v in values}) == 1:  # JASPAR pfm: one row per base
            counts = _checked_counts(np.array(values).T.tolist(), where)
        else:
            widths = sorted({len(v) for v in values})
            raise InputError(
                f"{where}: cannot read the count rows ({len(values)} rows of {widths} values); "
                "expected rows of 4 values (A C G T) or 4 rows (A, C, G, T)."
            )
        motifs.append(Motif(motif_id, tf, counts))

    for line_no, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith(">"):
            finish()
            parts = text[1:].split()
            if not parts:
                raise InputError(f"{path}:{line_no}: a '>' line without a motif name.")
            motif_id = parts[0]
            tf = parts[1] if len(parts) > 1 else _hocomoco_tf(motif_id)
            header, rows = (motif_id, tf, line_no), []
            continue
        if header is None:
            raise InputError(
                f"{path}:{line_no}: expected a '>' motif name line before count rows, got "
                f"'{text[:60]}'. Motif files must be MEME, JASPAR or .pfm."
            )
        letter = None
        match = re.match(r"^([ACGTacgt])\s*[\[\s:]", text)
        if match and not text[0].isdigit():
            letter, text = match.group(1).upper(), text[match.end() - 1 :]
        rows.append((letter, _numbers(text, f"{path}:{line_no}")))
    finish()
    return motifs


def _read_meme(lines: list[str], path: Path) -> list[Motif]:
    motifs: list[Motif] = []
    i = 0
    while i < len(lines):
        text = lines[i].strip()
        if text.startswith("ALPHABET") and "ACGT" not in text.replace(" ", ""):
            raise InputError(f"{path}:{i + 1}: only DNA (ACGT) MEME motifs are supported; got '{text}'.")
        if not text.startswith("MOTIF"):
            i += 1
            continue
        parts = text.split()
        if len(parts) < 2:
            raise InputError(f"{path}:{i + 1}: a MOTIF line without an identifier.")
        motif_id = parts[1]
        tf = parts[2] if len(parts) > 2 else motif_id
        where = f"{path}:{i + 1} (motif {motif_id})"
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith("letter-probability matrix"):
            if lines[j].strip().startswith("MOTIF"):
                raise InputError(f"{where}: no 'letter-probability matrix' line.")
            j += 1
        if j == len(lines):
            raise InputError(f"{where}: no 'letter-probability matrix' line.")
        fields = dict(re.findall(r"(\w+)\s*=\s*([0-9.eE+-]+)", lines[j]))
        width = int(float(fields["w"])) if "w" in fields else None
        nsites = float(fields.get("nsites", DEFAULT_NSITES)) or DEFAULT_NSITES
        rows: list[list[float]] = []
        j += 1
        while j < len(lines) and (width is None or len(rows) < width):
            row_text = lines[j].strip()
            if not row_text:
                if width is None and rows:
                    break
                j += 1
                continue
            if row_text.startswith(("MOTIF", "URL")):
                break
            row = _numbers(row_text, f"{path}:{j + 1}")
            if len(row) != 4:
                raise InputError(f"{path}:{j + 1}: a letter-probability row needs 4 values; got {len(row)}.")
            rows.append(row)
            j += 1
        if width is not None and len(rows) != width:
            raise InputError(f"{where}: 'w= {width}' but {len(rows)} rows follow.")
        probs = _checked_counts(rows, where)
        motifs.append(Motif(motif_id, tf, probs / probs.sum(axis=1, keepdims=True) * nsites))
        i = j
    return motifs


def jaspar_motifs(
    release: str = "JASPAR2024", collection: str = "CORE", tax_group: str = "vertebrates", motif_ids: Sequence[str] = ()
) -> list[Motif]:
    """Motifs from pyjaspar's bundled SQLite (offline): the latest version of every matrix of
    ``collection`` and ``tax_group``, or exactly ``motif_ids`` (versioned, e.g. ``MA0079.5``)."""
    from pyjaspar import jaspardb

    releases = jaspardb().get_releases()
    if release not in releases:  # pyjaspar only prints a warning for an unknown release
        raise InputError(
            f"JASPAR release '{release}' is not bundled with pyjaspar (it has {', '.join(releases)}); "
            "or pass a motif file."
        )
    database = jaspardb(release=release)
    if motif_ids:
        records = []
        for matrix_id in motif_ids:
            record = database.fetch_motif_by_id(matrix_id)
            if record is None:
                raise InputError(f"Motif {matrix_id} is not in {release}. Use an ID with its version, e.g. MA0079.5.")
            records.append(record)
    else:
        records = database.fetch_motifs(collection=collection, tax_group=[tax_group])
        if not records:
            raise InputError(f"{release} has no motifs for collection '{collection}' and tax group '{tax_group}'.")
    return [Motif(r.matrix_id, r.name, np.array([r.counts[b] for b in BASES], dtype=float).T) for r in records]


# --------------------------------------------------------------------------------------------
# Exact score distributions (the matrices and their null tails: varscore.genome.pwm)


@dataclass
class CompiledMotifs:
    """Motifs as integer log-odds matrices with exact p-value tables.

    ``scores[i]``: ``(L_i, 4)`` int64 log2-odds × ``SCORE_SCALE``; ``ppm[i]``: ``(L_i, 4)``
    position probabilities without pseudocount; ``tails``: every motif's upper-tail table
    concatenated, motif ``i`` starting at ``tail_offset[i]`` with scores from ``tail_min[i]``.
    """

    motifs: list[Motif]
    background: np.ndarray
    scores: list[np.ndarray]
    ppm: list[np.ndarray]
    tails: np.ndarray
    tail_offset: np.ndarray
    tail_min: np.ndarray
    tail_len: np.ndarray

    @classmethod
    def build(cls, motifs: Sequence[Motif], background: Sequence[float], pseudocount: float = 0.8) -> CompiledMotifs:
        bg = np.asarray(background, dtype=float)
        scores, ppms, tails, mins = [], [], [], []
        for motif in motifs:
            counts = motif.counts
            totals = counts.sum(axis=1, keepdims=True)
            matrix = motif.scores(bg, pseudocount)
            minimum, tail = score_tail(matrix, bg)
            scores.append(matrix)
            ppms.append(counts / totals)
            tails.append(tail)
            mins.append(minimum)
        lengths = np.array([len(t) for t in tails], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        flat = np.concatenate(tails) if tails else np.zeros(0)
        return cls(list(motifs), bg, scores, ppms, flat, offsets, np.array(mins, dtype=np.int64), lengths)

    def p_values(self, motif_index: np.ndarray, score: np.ndarray) -> np.ndarray:
        """P(score >= ``score``) for integer scores of motifs ``motif_index`` (same shapes)."""
        k = np.clip(np.asarray(score, dtype=np.int64) - self.tail_min[motif_index], 0, self.tail_len[motif_index] - 1)
        return self.tails[self.tail_offset[motif_index] + k]


# --------------------------------------------------------------------------------------------
# Scanning


def encode(sequences: Sequence[str]) -> np.ndarray:
    """Equal-length sequences as ``(N, W)`` int codes 0-3 (A, C, G, T), 4 for anything else."""
    if not sequences:
        return np.zeros((0, 0), dtype=np.int64)
    raw = np.frombuffer("".join(sequences).encode("ascii"), dtype=np.uint8)
    return _CODES[raw].reshape(len(sequences), -1)


_ONE_HOT = np.vstack([np.eye(4, dtype=np.float32), np.zeros((1, 4), dtype=np.float32)])  # code 4 (N) -> zeros


def _strand_weights(matrices: list[np.ndarray]) -> np.ndarray:
    """``(L, 4, 2, m)`` float32: ``[..., 0, j]`` motif j, ``[..., 1, j]`` its reverse complement."""
    weights = np.zeros((matrices[0].shape[0], 4, 2, len(matrices)), dtype=np.float32)
    for j, matrix in enumerate(matrices):
        weights[:, :, 0, j] = matrix
        weights[:, :, 1, j] = matrix[::-1, ::-1]  # reverse complement: A<->T, C<->G, positions reversed
    return weights


def _check_contexts(codes: np.ndarray, flank: int, motifs: CompiledMotifs) -> int:
    allele = codes.shape[1] - 2 * flank
    longest = max((s.shape[0] for s in motifs.scores), default=1)
    if allele < 1 or flank < longest - 1:
        raise ValueError(
            f"contexts of width {codes.shape[1]} with flank {flank} cannot hold motifs of length {longest}"
        )
    return allele


def best_scores(codes: np.ndarray, flank: int, motifs: CompiledMotifs, chunk: int = 2048) -> np.ndarray:
    """Best integer score of every motif, either strand, over the placements that overlap the
    allele at positions ``flank .. W - flank - 1`` of each context; a window holding N never wins.

    ``codes``: ``(N, W)`` from :func:`encode`, ``W = 2 * flank + A`` for an allele of length
    ``A >= 1``; ``flank`` must be at least the longest motif minus one. Returns ``(N, M)``.
    Motifs of one length are scored together: one matrix product of the sliding one-hot windows
    ``(N * P, L * 4)`` with both strands' matrices ``(L * 4, 2 * m)``.
    """
    n = codes.shape[0]
    allele = _check_contexts(codes, flank, motifs)
    best = np.zeros((n, len(motifs.scores)), np.int64)
    by_length: dict[int, list[int]] = {}
    for index, matrix in enumerate(motifs.scores):
        by_length.setdefault(matrix.shape[0], []).append(index)
    weights_of = {
        length: _strand_weights([motifs.scores[i] for i in members]).reshape(length * 4, -1)
        for length, members in by_length.items()
    }
    n_before = np.concatenate([np.zeros((n, 1), np.int32), np.cumsum(codes == 4, axis=1, dtype=np.int32)], axis=1)
    for lo in range(0, n, chunk):
        part = codes[lo : lo + chunk]
        c = part.shape[0]
        one_hot = _ONE_HOT[part].reshape(c, -1)  # (c, W * 4)
        for length, members in sorted(by_length.items()):
            weights = weights_of[length]
            first = flank - length + 1
            placements = allele + length - 1
            span = one_hot[:, first * 4 : (first + placements + length - 1) * 4]
            windows = np.lib.stride_tricks.sliding_window_view(span, length * 4, axis=1)[:, ::4]  # (c, P, L*4)
            scores = (windows.reshape(c * placements, length * 4) @ weights).reshape(c, placements, -1)
            n_count = (
                n_before[lo : lo + c, first + length : first + length + placements]
                - n_before[lo : lo + c, first : first + placements]
            )
            if n_count.any():
                scores -= np.float32(1e7) * (n_count > 0)[:, :, None]
            best[lo : lo + c, members] = np.rint(scores.max(axis=1).reshape(c, 2, -1).max(axis=1))
    return best


def locate(
    codes: np.ndarray, flank: int, motifs: CompiledMotifs, motif_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best placement of motif ``motif_index[i]`` in context ``codes[i]`` (``(K, W)``; see
    :func:`best_scores`). Returns ``(K,)`` score, strand (0 = +, 1 = -) and 0-based start."""
    k = codes.shape[0]
    allele = _check_contexts(codes, flank, motifs) if k else 1
    score = np.zeros(k, np.int64)
    strand = np.zeros(k, np.int64)
    start = np.zeros(k, np.int64)
    for motif in np.unique(motif_index):
        rows = np.flatnonzero(motif_index == motif)
        matrix = motifs.scores[motif]
        length = matrix.shape[0]
        both = np.stack([matrix, matrix[::-1, ::-1]])  # (2, L, 4)
        padded = np.concatenate([both, np.full((2, length, 1), _N_PENALTY)], axis=2)  # code 4 (N) never matches
        starts = flank - length + 1 + np.arange(allele + length - 1)
        windows = codes[rows][:, starts[:, None] + np.arange(length)]  # (r, P, L)
        per = padded[:, np.arange(length), windows].sum(axis=-1)  # (2, r, P)
        flat = per.transpose(1, 0, 2).reshape(len(rows), -1)
        best = flat.argmax(axis=1)
        score[rows] = flat[np.arange(len(rows)), best]
        strand[rows] = best // len(starts)
        start[rows] = starts[best % len(starts)]
    return score, strand, start


# --------------------------------------------------------------------------------------------
# Variant effects


@dataclass
class MotifHit:
    """One reported (variant allele, motif) pair. ``ref_p``/``alt_p``: p-values of the best REF
    and ALT matches; ``delta``: the allele change behind ``effect`` (see the module docstring)."""

    variant: int
    allele: str
    motif: int
    strand: str
    ref_p: float
    alt_p: float
    delta: float
    effect: str
    q: float = math.nan


def window_p_values(p: np.ndarray, placements: np.ndarray) -> np.ndarray:
    """The p-value of the best match among ``2 × placements`` (both strands) given the best
    placement's p-value ``p`` (Šidák: ``1 − (1 − p)^(2·placements)``, independent placements);
    ``placements`` broadcasts against ``p``."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    return -np.expm1(2 * np.asarray(placements, dtype=np.float64) * np.log1p(-np.minimum(p, 1 - 1e-16)))


def per_variant_q(p: np.ndarray, correction: str = "bh") -> np.ndarray:
    """Multiple-testing-aware figure of each row of ``p`` ``(N, M)`` (one allele × the M motifs
    scanned): Benjamini-Hochberg q-values over the row (``bh``), Bonferroni ``min(1, M·p)``, or ``p``
    itself (``none``)."""
    p = np.asarray(p, dtype=np.float64)
    m = p.shape[1] if p.ndim == 2 else 0
    if correction == "none" or m == 0:
        return p.copy()
    if correction == "bonferroni":
        return np.minimum(1.0, p * m)
    order = np.argsort(p, axis=1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=1) * m / np.arange(1, m + 1)
    ranked = np.minimum(1.0, np.minimum.accumulate(ranked[:, ::-1], axis=1)[:, ::-1])
    q = np.empty_like(p)
    np.put_along_axis(q, order, ranked, axis=1)
    return q


def _weighted_sum(ppm: np.ndarray, codes: np.ndarray, start: int, strand: int) -> float:
    """motifbreakR's default (weighted-sum) score of the window of ``codes`` ``(W,)`` at ``start``:
    the sum over positions of the base's probability times the column's max minus min."""
    oriented = ppm if strand == 0 else ppm[::-1, ::-1]
    window = codes[start : start + len(oriented)]
    weight = oriented.max(axis=1) - oriented.min(axis=1)
    picked = np.where(window < 4, oriented[np.arange(len(oriented)), np.minimum(window, 3)], 0.0)
    return float((picked * weight).sum())


def _effect(delta: np.ndarray) -> np.ndarray:
    mag = np.abs(delta)
    return np.where(mag >= STRONG_DELTA, "strong", np.where(mag > WEAK_DELTA, "weak", "neutral"))


def allele_hits(
    ref_contexts: Sequence[str],
    alt_contexts: Sequence[str],
    alt_allele: Sequence[str],
    flank: int,
    motifs: CompiledMotifs,
    p_threshold: float,
    correction: str = "none",
    q_threshold: float = 1.0,
) -> list[MotifHit]:
    """Motif hits of a batch of alleles that all have the same REF and ALT lengths.

    ``ref_contexts[i]`` is ``flank`` bases + REF + ``flank`` bases; ``alt_contexts[i]`` the same
    flanks around the ALT allele. ``MotifHit.variant`` is the index into the batch. ``MotifHit.q``:
    the per-variant figure of :func:`per_variant_q` over all motifs scanned, of the window p-value
    (:func:`window_p_values`) of the better of the REF and ALT best matches; a hit also needs
    ``q < q_threshold`` unless ``correction`` is ``none``.
    """
    ref_codes, alt_codes = encode(ref_contexts), encode(alt_contexts)
    snv = ref_codes.shape[1] == alt_codes.shape[1] == 2 * flank + 1
    ref_score, alt_score = best_scores(ref_codes, flank, motifs), best_scores(alt_codes, flank, motifs)
    n, m = ref_score.shape
    motif_index = np.broadcast_to(np.arange(m), (n, m))
    ref_p = motifs.p_values(motif_index, ref_score)
    alt_p = motifs.p_values(motif_index, alt_score)
    allele = max(ref_codes.shape[1], alt_codes.shape[1]) - 2 * flank
    lengths = np.array([s.shape[0] for s in motifs.scores], dtype=np.int64)
    q = per_variant_q(window_p_values(np.minimum(ref_p, alt_p), lengths[None, :] + allele - 1), correction)
    passes = np.minimum(ref_p, alt_p) < p_threshold
    if correction != "none":
        passes &= q < q_threshold
    rows, cols = np.nonzero(passes & (ref_score != alt_score))
    if len(rows) == 0:
        return []
    use_ref = ref_score[rows, cols] >= alt_score[rows, cols]
    if snv:
        winner = np.where(use_ref[:, None], ref_codes[rows], alt_codes[rows])
        _, strand, start = locate(winner, flank, motifs, cols)
        column = flank - start  # the variant's index in the placed matrix
        ref_base, alt_base = ref_codes[rows, flank], alt_codes[rows, flank]
        delta = np.empty(len(rows))
        for k, (motif, col, rb, ab, s) in enumerate(zip(cols, column, ref_base, alt_base, strand, strict=True)):
            ppm = motifs.ppm[motif] if s == 0 else motifs.ppm[motif][::-1, ::-1]
            delta[k] = ppm[col, ab] - ppm[col, rb]
    else:
        _, ref_strand, ref_start = locate(ref_codes[rows], flank, motifs, cols)
        _, alt_strand, alt_start = locate(alt_codes[rows], flank, motifs, cols)
        strand = np.where(use_ref, ref_strand, alt_strand)
        delta = np.array(
            [
                _weighted_sum(motifs.ppm[c], alt_codes[r], a_start, a_strand)
                - _weighted_sum(motifs.ppm[c], ref_codes[r], r_start, r_strand)
                for r, c, r_start, r_strand, a_start, a_strand in zip(
                    rows, cols, ref_start, ref_strand, alt_start, alt_strand, strict=True
                )
            ]
        )
    effects = _effect(delta)
    return [
        MotifHit(
            int(r),
            alt_allele[int(r)],
            int(c),
            "+-"[int(s)],
            float(ref_p[r, c]),
            float(alt_p[r, c]),
            float(d),
            str(e),
            float(q[r, c]),
        )
        for r, c, s, d, e in zip(rows, cols, strand, delta, effects, strict=True)
        if e != "neutral"
    ]


def _fetch_blocks(genome: Any, chrom: str, positions: list[tuple[int, int]], flank: int) -> dict[tuple[int, int], str]:
    """Context strings for (0-based start, end) spans on one contig, fetched in blocks of at most
    1 Mb so that nearby variants share one FASTA read."""
    from varscore.types import Window

    out: dict[tuple[int, int], str] = {}
    spans = sorted(set(positions))
    i = 0
    while i < len(spans):
        block_start = spans[i][0] - flank
        j = i
        block_end = spans[i][1] + flank
        while j + 1 < len(spans) and spans[j + 1][1] + flank - block_start <= 1_000_000:
            j += 1
            block_end = max(block_end, spans[j][1] + flank)
        text = genome.fetch(Window(chrom, block_start, block_end))
        for span in spans[i : j + 1]:
            out[span] = text[span[0] - flank - block_start : span[1] + flank - block_start]
        i = j + 1
    return out


def variant_motif_hits(
    variants: Sequence[Variant],
    genome: Any,
    motifs: CompiledMotifs,
    p_threshold: float = 5e-5,
    max_indel: int = 10,
    progress: bool = False,
    correction: str = "none",
    q_threshold: float = 1.0,
) -> dict[str, list[tuple[MotifHit, Motif]]]:
    """Motif hits of every ALT allele of ``variants``, by ``Variant.key``.

    SNVs and indels whose REF and ALT are at most ``max_indel`` bases are scanned; symbolic or
    ambiguous alleles, and records whose REF differs from the FASTA, are skipped.
    """
    from tqdm import tqdm

    flank = max(motif.length for motif in motifs.motifs) - 1
    jobs: dict[tuple[int, int], list[tuple[Variant, str, str, str]]] = {}
    spans: dict[str, list[tuple[int, int]]] = {}
    skipped = {"allele": 0, "ref_mismatch": 0, "contig": 0}
    for variant in variants:
        chrom = genome.resolve(variant.chrom)
        if chrom is None:
            skipped["contig"] += 1
            continue
        spans.setdefault(chrom, []).append((variant.pos - 1, variant.pos - 1 + len(variant.ref)))
    contexts = {chrom: _fetch_blocks(genome, chrom, s, flank) for chrom, s in spans.items()}
    for variant in variants:
        chrom = genome.resolve(variant.chrom)
        if chrom is None:
            continue
        ref = variant.ref.upper()
        context = contexts[chrom][(variant.pos - 1, variant.pos - 1 + len(ref))]
        if context[flank : flank + len(ref)] != ref:
            skipped["ref_mismatch"] += 1
            continue
        for alt in variant.alts:
            alt = (alt or "").upper()
            if not alt or set(alt) - set(BASES) or set(ref) - set(BASES) or alt == ref:
                skipped["allele"] += 1
                continue
            if max(len(ref), len(alt)) > max_indel:
                skipped["allele"] += 1
                continue
            alt_context = context[:flank] + alt + context[flank + len(ref) :]
            jobs.setdefault((len(ref), len(alt)), []).append((variant, alt, context, alt_context))
    if any(skipped.values()):
        logger.info("motif scan skipped: %s", ", ".join(f"{k} {v}" for k, v in skipped.items() if v))
    out: dict[str, list[tuple[MotifHit, Motif]]] = {}
    for _, batch in tqdm(
        sorted(jobs.items()), desc="motif scan", unit="allele shape", disable=not progress, leave=False
    ):
        hits = allele_hits(
            [b[2] for b in batch],
            [b[3] for b in batch],
            [b[1] for b in batch],
            flank,
            motifs,
            p_threshold,
            correction,
            q_threshold,
        )
        for hit in hits:
            out.setdefault(batch[hit.variant][0].key, []).append((hit, motifs.motifs[hit.motif]))
    return out


def format_hits(hits: Sequence[tuple[MotifHit, Motif]]) -> str:
    """``VARSCORE_MOTIF`` value: comma-separated ``ALLELE|MOTIF|TF|STRAND|REF_P|ALT_P|EFFECT|Q``."""
    return ",".join(
        "|".join(
            (
                hit.allele,
                _sanitize(motif.motif_id),
                _sanitize(motif.tf),
                hit.strand,
                f"{hit.ref_p:.3g}",
                f"{hit.alt_p:.3g}",
                hit.effect,
                f"{hit.q:.3g}",
            )
        )
        for hit, motif in sorted(hits, key=lambda h: (h[0].allele, min(h[0].ref_p, h[0].alt_p)))
    )


# --------------------------------------------------------------------------------------------
# The annotator


def _background(value: Any) -> tuple[float, ...]:
    if isinstance(value, str) and value in BACKGROUNDS:
        return BACKGROUNDS[value]
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        freqs = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        freqs = ()
    if len(freqs) != 4 or min(freqs) <= 0 or not math.isclose(sum(freqs), 1.0, abs_tol=1e-3):
        raise InputError(
            f"motifs.background must be 'genome', 'uniform' or four A,C,G,T frequencies summing "
            f"to 1 (e.g. 0.3,0.2,0.2,0.3); got '{value}'."
        )
    return tuple(f / sum(freqs) for f in freqs)


def _positive_float(name: str, value: Any, upper: float | None = None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not number > 0 or (upper is not None and number > upper):
        bound = f" and at most {upper}" if upper is not None else ""
        raise InputError(f"motifs.{name} must be a number above 0{bound}; got '{value}'.")
    return number


class MotifAnnotator(Annotator):
    """Motif matches each ALT allele creates, strengthens, weakens or destroys (motifbreakR-style).

    Options: ``motifs`` (a JASPAR release bundled with pyjaspar, e.g. ``JASPAR2024``, or a MEME,
    JASPAR or HOCOMOCO ``.pfm`` file), ``collection``/``tax_group`` (JASPAR subset), ``motif_ids``
    (comma-separated JASPAR IDs instead of a whole subset), ``p_threshold`` (per best match),
    ``correction`` (``bh``, ``bonferroni`` or ``none``: the per-variant multiple-testing figure ``Q``
    over the motifs scanned) and ``q_threshold`` (a hit needs ``Q`` below it), ``background``
    (``genome`` = 41% GC, ``uniform``, or ``a,c,g,t``), ``pseudocount``, ``max_indel``.
    """

    name: ClassVar[str] = "motifs"
    info_fields: ClassVar[tuple[InfoField, ...]] = (
        InfoField(
            MOTIF_KEY,
            ".",
            "String",
            "TF motif matches the ALT allele changes (PWM log-odds scan of both strands; reported when the best "
            "REF or ALT match has p below the threshold, its per-variant q (Benjamini-Hochberg over the motifs "
            "scanned, of the window p-value of the best match) is below q_threshold, and motifbreakR's effect is "
            "strong or weak). Format: " + MOTIF_FORMAT,
        ),
    )

    @dataclass
    class Options(PluginOptions):
        motifs: str = option("JASPAR2024", "A JASPAR release bundled with pyjaspar, or a MEME/JASPAR/HOCOMOCO file.")
        collection: str = option("CORE", "JASPAR collection.")
        tax_group: str = option("vertebrates", "JASPAR taxonomic group.")
        motif_ids: str = option("", "Comma-separated JASPAR IDs instead of a whole subset.")
        p_threshold: float = option(5e-5, "p-value a best REF or ALT match must be below.")
        correction: str = option("bh", "Per-variant multiple testing over the motifs: bh, bonferroni or none.")
        q_threshold: float = option(DEFAULT_Q_THRESHOLD, "A hit needs its per-variant Q below this.")
        background: str = option("genome", "Base background: genome (41% GC), uniform, or a,c,g,t.")
        pseudocount: float = option(0.8, "Pseudocount added to the motif counts.")
        max_indel: int = option(10, "Longest indel scanned (bp).")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.p_threshold = _positive_float("p_threshold", self.params["p_threshold"], upper=1.0)
        self.q_threshold = _positive_float("q_threshold", self.params["q_threshold"], upper=1.0)
        self.correction = str(self.params["correction"]).lower()
        if self.correction not in CORRECTIONS:
            raise InputError(
                f"motifs.correction must be one of {', '.join(CORRECTIONS)}; got '{self.params['correction']}'."
            )
        self.pseudocount = _positive_float("pseudocount", self.params["pseudocount"])
        self.background = _background(self.params["background"])
        try:
            self.max_indel = int(self.params["max_indel"])
        except (TypeError, ValueError):
            self.max_indel = -1
        if self.max_indel < 1:
            raise InputError(f"motifs.max_indel must be a whole number >= 1; got '{self.params['max_indel']}'.")
        self._compiled: CompiledMotifs | None = None

    def load_motifs(self) -> list[Motif]:
        source = str(self.params["motifs"])
        ids = [i.strip() for i in str(self.params["motif_ids"] or "").split(",") if i.strip()]
        if source.upper().startswith("JASPAR") and not Path(source).exists():
            return jaspar_motifs(source, str(self.params["collection"]), str(self.params["tax_group"]), ids)
        motifs = read_motif_file(source)
        if ids:
            wanted = set(ids)
            motifs = [m for m in motifs if m.motif_id in wanted]
            missing = wanted - {m.motif_id for m in motifs}
            if missing:
                raise InputError(f"motifs.motif_ids names motifs not in {source}: {', '.join(sorted(missing))}.")
        return motifs

    @property
    def compiled(self) -> CompiledMotifs:
        if self._compiled is None:
            self._compiled = CompiledMotifs.build(self.load_motifs(), self.background, self.pseudocount)
        return self._compiled

    def annotate(self, variants: Sequence[Variant], context: AnnotationContext) -> pd.DataFrame:
        import pandas as pd

        if context.fasta is None:
            raise InputError("The motifs annotator needs the reference sequence: pass --fasta.")
        hits = variant_motif_hits(
            variants,
            context.fasta,
            self.compiled,
            self.p_threshold,
            self.max_indel,
            correction=self.correction,
            q_threshold=self.q_threshold,
        )
        values = {key: format_hits(found) for key, found in hits.items()}
        return pd.DataFrame({MOTIF_KEY: pd.Series(values, dtype=object)})


@hookimpl
def register_annotators(register: Callable[[type[Annotator]], None]) -> None:
    register(MotifAnnotator)
