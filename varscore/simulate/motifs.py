"""Motif changes: which SNVs create or disrupt a JASPAR motif match (scored as :mod:`varscore.genome.pwm` does)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from varscore.errors import InputError
from varscore.genome.pwm import GENOME_BACKGROUND, SCORE_SCALE, Motif
from varscore.genome.sequence import BASES
from varscore.simulate.config import DEFAULT_MOTIFS, MIN_MOTIF_DELTA, MOTIF_P_VALUE
from varscore.simulate.genotypes import _Variants
from varscore.simulate.reference import _Chunk
from varscore.types import Gene, Window


def load_motifs(release: str = "JASPAR2024", matrix_ids: Sequence[str] = DEFAULT_MOTIFS) -> list[Motif]:
    """JASPAR matrices from pyjaspar's bundled SQLite (offline), scored as :mod:`varscore.genome.pwm` does
    (pseudocount 0.8 spread by the background, as MEME's default)."""
    from pyjaspar import jaspardb

    try:
        database = jaspardb(release=release)
    except Exception as exc:  # pyjaspar raises plain Exceptions for unknown releases
        raise InputError(f"JASPAR release '{release}' is not bundled with pyjaspar: {exc}") from exc
    motifs = []
    for matrix_id in matrix_ids:
        record = database.fetch_motif_by_id(matrix_id)
        if record is None:
            raise InputError(f"Motif {matrix_id} is not in {release}. Use an ID with its version, e.g. MA0079.5.")
        counts = np.array([record.counts[b] for b in BASES], dtype=float).T  # (L, 4)
        motifs.append(Motif(record.matrix_id, record.name, counts))
    return motifs


@dataclass(frozen=True)
class MotifChange:
    """The strongest motif match an SNV creates or disrupts."""

    effect: str  # "creates" or "disrupts"
    matrix_id: str
    name: str
    strand: str
    start: int  # 1-based position of the first motif base (forward strand) of the matching allele
    ref_score: float  # best log2-odds score over matches covering the variant, REF allele
    alt_score: float


def motif_changes(
    sequence: str, seq_start: int, pos: np.ndarray, alt: Sequence[str], motifs: Sequence[Motif]
) -> list[MotifChange | None]:
    """For each SNV (1-based ``pos`` inside ``sequence``, which starts at 0-based ``seq_start``)
    the motif whose match it creates or disrupts with the largest score change, or None.

    A match is a log2-odds score at p < 1e-4 (either strand) against a GC-41% background;
    "creates": ALT matches and REF does not, "disrupts": the reverse; either way the best score
    must change by at least 2.
    """
    if len(pos) == 0 or not motifs:
        return [None] * len(pos)
    longest = max(m.length for m in motifs)
    lookup = np.full(256, 4, dtype=np.int64)
    for code, base in enumerate(BASES):
        lookup[ord(base)] = code
    padded = np.concatenate(
        [np.full(longest - 1, 4), lookup[np.frombuffer(sequence.encode(), np.uint8)], np.full(longest - 1, 4)]
    )
    centre = pos - 1 - seq_start + longest - 1
    context = padded[centre[:, None] + np.arange(-(longest - 1), longest)[None, :]]  # (n, 2*longest-1)
    alleles = {"ref": context, "alt": context.copy()}
    alleles["alt"][:, longest - 1] = lookup[np.frombuffer("".join(alt).encode(), np.uint8)]
    best: list[MotifChange | None] = [None] * len(pos)
    best_delta = np.zeros(len(pos))
    for motif in motifs:
        length = motif.length
        log_odds = motif.scores(GENOME_BACKGROUND) / SCORE_SCALE  # bits on the 0.01 grid
        threshold = motif.threshold(MOTIF_P_VALUE, GENOME_BACKGROUND)
        forward = np.hstack([log_odds, np.full((length, 1), -1e6)])  # (L, 5): N never matches
        reverse = forward[::-1][:, [3, 2, 1, 0, 4]]
        starts = (longest - 1) - np.arange(length)  # every placement that covers the variant
        index = starts[:, None] + np.arange(length)[None, :]  # (L placements, L)
        scores = {}
        for allele, codes in alleles.items():
            windows = codes[:, index]  # (n, placements, L)
            per_strand = np.stack(
                [
                    forward[np.arange(length), windows].sum(axis=-1),
                    reverse[np.arange(length), windows].sum(axis=-1),
                ],
                axis=1,
            )  # (n, 2, placements)
            scores[allele] = per_strand.reshape(len(pos), -1)
        ref_best, alt_best = scores["ref"].max(axis=1), scores["alt"].max(axis=1)
        delta = np.abs(alt_best - ref_best)
        changed = ((ref_best >= threshold) != (alt_best >= threshold)) & (delta >= MIN_MOTIF_DELTA)
        for i in np.flatnonzero(changed & (delta > best_delta)):
            creates = alt_best[i] >= threshold
            flat = int(np.argmax(scores["alt" if creates else "ref"][i]))
            strand, placement = divmod(flat, length)
            best_delta[i] = delta[i]
            best[i] = MotifChange(
                effect="creates" if creates else "disrupts",
                matrix_id=motif.motif_id,
                name=motif.tf,
                strand="+-"[strand],
                start=int(pos[i]) - placement,
                ref_score=round(float(ref_best[i]), 2),
                alt_score=round(float(alt_best[i]), 2),
            )
    return best


def _gene_motif_changes(
    gene: Gene, variants: _Variants, chunks: dict[Window, _Chunk], motifs: Sequence[Motif], flank: int
) -> dict[int, MotifChange]:
    """Motif changes of the SNVs within ``flank`` bp of the gene's TSS, by variant row."""
    rows = np.flatnonzero((np.asarray(variants.chrom) == gene.chrom) & (np.abs(variants.pos - gene.tss) <= flank))
    rows = np.array([r for r in rows if len(variants.ref[r]) == 1 and len(variants.alt[r]) == 1], dtype=np.int64)
    if len(rows) == 0:
        return {}
    chunk = next(c for w, c in chunks.items() if w.chrom == gene.chrom and w.start < variants.pos[rows[0]] <= w.end)
    found = motif_changes(
        chunk.sequence, chunk.window.start, variants.pos[rows], [variants.alt[r] for r in rows], motifs
    )
    return {int(r): change for r, change in zip(rows, found, strict=True) if change is not None}
