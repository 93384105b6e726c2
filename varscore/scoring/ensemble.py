"""Scoring with replicate ensembles, and test-time augmentation.

**Ensembles.** A bundle may hold several weight files of one architecture (Borzoi's four
replicates; a Variformer's fold replicates from ``finetune --replicates``), listed in the manifest
under ``replicates`` (``weights.safetensors`` first). Each member scores the plan on its own, one
member in memory at a time; an allele's REF_PRED and ALT_PRED are the members' means (so its DELTA
is the mean of the members' deltas) and the spread of the members' deltas (sample standard
deviation) is reported beside it (INFO ``VARSCORE_SD``).

**Test-time augmentation** (:class:`AugmentedBackbone`): every window is also scored
reverse-complemented (``rc``: the prediction's bins mirrored back, and stranded tracks swapped with
their pair when a permutation is given) and/or shifted by a few bases (``shifts``: the window's
content moved by ``s`` bases, the bases moved in being N; the output bins are not moved, so shifts
are meant to be much smaller than a bin). The reference and every alternate go through the same
augmentations, and what the output mode keeps of each prediction (:meth:`OutputMode.features`) is
averaged over them. An allele that a shift moves out of the window is scored by that augmentation
as the shifted reference (its window no longer holds it), exactly as an explicitly shifted
alternate window would be.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from varscore.errors import InputError
from varscore.models.ensemble import SD_KEY, load_member, replicate_files
from varscore.plugin.contracts import ISMResult, Reducer

logger = logging.getLogger(__name__)
COMPLEMENT = {"A": "T", "C": "G", "G": "C", "T": "A"}


@dataclass
class EnsembleScores:
    """Per record, the standard deviation over replicates of each score's DELTA (in the order of
    the result's scores); empty for a single model."""

    sd: dict[int, list[float]]
    members: int


def combine(results: Sequence[Any]) -> tuple[Any, EnsembleScores]:
    """The members' :class:`ScoringResult`\\ s (one plan) -> one result with mean REF_PRED and
    ALT_PRED, and the replicates' DELTA standard deviations."""
    from varscore.scoring.engine import AlleleScore, ScoringResult

    base = results[0]
    if len(results) == 1:
        return base, EnsembleScores({}, 1)
    scores: dict[int, list[Any]] = {}
    sd: dict[int, list[float]] = {}
    for record, first in base.scores.items():
        rows = [r.scores[record] for r in results]
        if any(len(r) != len(first) for r in rows):
            raise InputError(f"Replicates scored record {record} differently; they must share one plan.")
        combined, spread = [], []
        for j, score in enumerate(first):
            ref = np.array([r[j].ref_pred for r in rows], dtype=np.float64)
            alt = np.array([r[j].alt_pred for r in rows], dtype=np.float64)
            combined.append(AlleleScore(score.allele, score.gene, float(ref.mean()), float(alt.mean())))
            spread.append(float(np.std(alt - ref, ddof=1)))
        scores[record], sd[record] = combined, spread
    return ScoringResult(scores, base.summary, dict(base.alts)), EnsembleScores(sd, len(results))


@dataclass(frozen=True)
class PlanRun:
    """How a plan is scored: on ``device`` (``bf16`` autocast on GPU), ``batch_size`` sequences per
    forward pass, a ``progress`` bar, the test-time augmentations ``rc`` / ``shifts``, and the
    ``cache`` folder keeping SNV effects between runs (:mod:`varscore.scoring.effect_cache`)."""

    device: str = "auto"
    bf16: bool = False
    batch_size: int = 8
    progress: bool = False
    rc: bool = False
    shifts: Sequence[int] = (0,)
    cache: str | Path | None = None


def score_plan(
    bundle: Any, plan: Any, genome: Any, run: PlanRun | None = None, checkpoint: Any = None
) -> tuple[Any, EnsembleScores]:
    """Score ``plan`` with every replicate of ``bundle`` (each with the test-time augmentations of
    ``run``) and combine them (:func:`combine`). A ``checkpoint`` keeps each member's finished genes
    in its own sub-directory."""
    run = run or PlanRun()
    from varscore.scoring.engine import GeneCheckpoint, run_plan

    names = replicate_files(bundle.manifest)
    mode = bundle.output_mode()
    results = []
    for index in range(len(names)):
        backbone = load_member(bundle, index, run.device, run.bf16)
        if run.rc or tuple(run.shifts) != (0,):
            backbone = AugmentedBackbone(backbone, rc=run.rc, shifts=run.shifts, track_pairs=track_pairs(bundle))
        member_plan = plan
        member_checkpoint = checkpoint
        if len(names) > 1:
            member_plan = copy.copy(plan)
            member_plan.summary = copy.deepcopy(plan.summary)
            if checkpoint is not None:
                member_checkpoint = GeneCheckpoint(
                    Path(checkpoint.directory) / f"replicate{index}", checkpoint.fingerprint, resume=True
                )
        logger.info("scoring with %s (%d of %d)", names[index], index + 1, len(names))
        cache = None
        if run.cache is not None:  # each member, augmentation and precision has its own entries
            from varscore.scoring.effect_cache import EffectCache

            cache = EffectCache.for_bundle(run.cache, bundle)
            cache.model += f"|{names[index]}|rc={run.rc}|shifts={tuple(run.shifts)}|bf16={run.bf16}"
        results.append(
            run_plan(
                member_plan,
                backbone,
                mode,
                genome,
                batch_size=run.batch_size,
                progress=run.progress,
                checkpoint=member_checkpoint,
                cache=cache,
            )
        )
        del backbone
    if len(names) > 1:  # the counts of one pass over the plan
        plan.summary.__dict__.update(results[0].summary.__dict__)
        results[0].summary = plan.summary
    return combine(results)


def sd_info(sd: dict[int, list[float]]) -> dict[int, str]:
    """``VARSCORE_SD`` INFO values (one per VARSCORE entry) by record."""
    from varscore.io.vcf import format_float

    return {record: ",".join(format_float(v) for v in values) for record, values in sd.items()}


def sd_header() -> Any:
    from varscore.io.vcf import InfoHeader

    return InfoHeader(
        SD_KEY, ".", "Float", "Standard deviation of DELTA over the model's replicates, one value per VARSCORE entry"
    )


# -- test-time augmentation ------------------------------------------------------------------


@dataclass(frozen=True)
class Augmentation:
    """Shift the window's content by ``shift`` bases (positive: towards the end), then reverse-
    complement it when ``reverse``."""

    reverse: bool = False
    shift: int = 0

    def sequence(self, batch: np.ndarray) -> np.ndarray:
        """``(N, L, 4)`` one-hot -> the augmented windows (vacated positions N, all-zero)."""
        out = np.zeros_like(batch)
        s, length = self.shift, batch.shape[1]
        if abs(s) >= length:
            pass
        elif s >= 0:
            out[:, s:] = batch[:, : length - s]
        else:
            out[:, : length + s] = batch[:, -s:]
        return out[:, ::-1, ::-1].copy() if self.reverse else out  # A,C,G,T reversed is the complement

    def offset(self, offset: int, length: int) -> int | None:
        """Where base ``offset`` of the window lands (None: moved out)."""
        moved = offset + self.shift
        if not 0 <= moved < length:
            return None
        return length - 1 - moved if self.reverse else moved

    def base(self, base: str) -> str:
        return "".join(COMPLEMENT.get(b, b) for b in reversed(base.upper())) if self.reverse else base

    def prediction(self, prediction: Any, track_pairs: np.ndarray | None = None) -> Any:
        """An augmented window's ``(N, bins, tracks)`` prediction back in the window's orientation."""
        if not self.reverse:
            return prediction
        out = prediction[:, ::-1]
        return out[:, :, track_pairs] if track_pairs is not None else out


def augmentations(rc: bool = False, shifts: Sequence[int] = (0,)) -> list[Augmentation]:
    shifts = list(dict.fromkeys(int(s) for s in shifts)) or [0]
    return [Augmentation(reverse, s) for s in shifts for reverse in ((False, True) if rc else (False,))]


def parse_shifts(text: str | None) -> tuple[int, ...]:
    """``"-1,0,1"`` -> ``(-1, 0, 1)``; None or empty -> ``(0,)``."""
    if not text:
        return (0,)
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as err:
        raise InputError(f"--shifts takes comma-separated integers (bases), e.g. -1,0,1; got {text!r}.") from err


def track_pairs(bundle: Any) -> np.ndarray | None:
    """The strand pair of every track, from the bundle's track file (a ``strand_pair`` column, as
    Borzoi's targets.txt has), when it has one and its length matches the model's tracks."""
    import pandas as pd

    name = (bundle.manifest.get("tracks") or {}).get("file")
    path = Path(bundle.path) / name if name else None
    if path is None or not path.is_file():
        return None
    table = pd.read_csv(path, sep="\t")
    if "strand_pair" not in table.columns:
        return None
    pairs = table["strand_pair"].to_numpy(dtype=np.int64)
    count = (bundle.manifest.get("tracks") or {}).get("count")
    if count is not None and len(pairs) != int(count):
        return None
    return pairs


class AugmentedBackbone:
    """A sequence backbone scoring every window under several augmentations and averaging (see the
    module docstring). Everything else is delegated to the wrapped backbone ``inner``."""

    def __init__(
        self, inner: Any, rc: bool = False, shifts: Sequence[int] = (0,), track_pairs: np.ndarray | None = None
    ) -> None:
        window = int(inner.window_size)
        bad = [s for s in shifts if abs(int(s)) >= window]
        if bad:
            raise InputError(f"--shifts must be smaller than the {window}-bp window; got {bad}.")
        self.inner = inner
        self.augmentations = augmentations(rc, shifts)
        self.track_pairs = track_pairs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["inner"], name)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        total = None
        for aug in self.augmentations:
            out = np.asarray(aug.prediction(self.inner.predict(aug.sequence(batch)), self.track_pairs))
            total = out.astype(np.float64) if total is None else total + out
        assert total is not None
        return (total / len(self.augmentations)).astype(np.float32)

    def ism(
        self, reference: np.ndarray, substitutions: Sequence[tuple[int, str]], reduce: Reducer, batch_size: int = 8
    ) -> ISMResult:
        reference = np.asarray(reference, dtype=np.float32)
        length = reference.shape[0]
        ref_total: np.ndarray | None = None
        alt_total: np.ndarray | None = None
        for aug in self.augmentations:
            moved = [
                (row, aug.offset(int(offset), length), aug.base(base))
                for row, (offset, base) in enumerate(substitutions)
            ]
            kept = [(row, offset, base) for row, offset, base in moved if offset is not None]

            def reduce_back(prediction: Any, aug: Augmentation = aug) -> Any:
                return reduce(aug.prediction(prediction, self.track_pairs))

            result = self.inner.ism(
                aug.sequence(reference[None])[0], [(o, b) for _, o, b in kept], reduce_back, batch_size=batch_size
            )
            ref_out = np.asarray(result.reference, dtype=np.float64)
            alts = np.repeat(ref_out[None], len(substitutions), axis=0)
            if kept:
                alts[[row for row, _, _ in kept]] = np.asarray(result.alternates, dtype=np.float64)
            ref_total = ref_out if ref_total is None else ref_total + ref_out
            alt_total = alts if alt_total is None else alt_total + alts
        assert ref_total is not None and alt_total is not None
        n = len(self.augmentations)
        return ISMResult(reference=(ref_total / n).astype(np.float32), alternates=(alt_total / n).astype(np.float32))
