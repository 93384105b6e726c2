"""Built-in output modes: ``scalar`` (one number per sequence: the TSS bin(s) of one track, or a
baskerville-style statistic over all its bins) and ``track`` (every bin)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from varscore.errors import InputError
from varscore.plugin.contracts import ISMResult, OutputMode
from varscore.plugin.hookspecs import hookimpl
from varscore.plugin.options import PluginOptions, option

#: ``stat`` values of the scalar mode. ``center`` suits models trained on one value per person
#: (Variformer); the others suit coverage-track models (baskerville's SNP statistics).
SCALAR_STATS = ("center", "SUM", "logSUM", "D1", "D2")
#: Statistics that compare an alternate's track with the reference's instead of reducing each one.
DISTANCE_STATS = ("D1", "D2")
TRACK_STATS = ("SUM", "logSUM", "D1", "D2")


def _check_prediction(prediction: np.ndarray, track: int) -> None:
    if prediction.ndim != 3:
        raise InputError(f"Output modes take (N, bins, tracks) predictions; got shape {prediction.shape}.")
    if not 0 <= track < prediction.shape[2]:
        raise InputError(f"Track {track} is out of range: the model predicts {prediction.shape[2]} track(s).")


def track_scores(stat: str, reference: np.ndarray, alternates: np.ndarray) -> ISMResult:
    """Variant scores of whole tracks by a baskerville statistic (``SUM``, ``logSUM``, ``D1``,
    ``D2``): ``reference`` ``(bins,)`` and ``alternates`` ``(M, bins)`` -> ``(1,)`` and ``(M, 1)``,
    whose difference is the statistic (REF_PRED 0 for the distances)."""
    reference = np.asarray(reference, dtype=np.float64)
    alternates = np.asarray(alternates, dtype=np.float64).reshape(-1, reference.shape[0])
    if stat in DISTANCE_STATS:
        distance = track_distance(reference, alternates, 1 if stat == "D1" else 2)
        return ISMResult(reference=np.zeros(1), alternates=distance[:, None])
    if stat == "logSUM":
        reference, alternates = np.log2(reference + 1), np.log2(alternates + 1)
    elif stat != "SUM":
        raise InputError(f"Unknown track statistic {stat!r}. Choose one of: {', '.join(TRACK_STATS)}.")
    return ISMResult(reference=reference.sum(keepdims=True), alternates=alternates.sum(axis=1, keepdims=True))


def track_distance(reference: np.ndarray, alternates: np.ndarray, order: int) -> np.ndarray:
    """L1 (``order=1``, baskerville's D1) or L2 (``order=2``, D2) norm of ``alternates - reference``
    over bins. ``reference``: ``(bins,)``; ``alternates``: ``(M, bins)``; returns ``(M,)``."""
    diff = np.asarray(alternates, dtype=np.float64) - np.asarray(reference, dtype=np.float64)[None, :]
    if order == 1:
        return np.abs(diff).sum(axis=1)
    return np.sqrt((diff**2).sum(axis=1))


class ScalarOutput(OutputMode):
    """One number per sequence from one track (``track``), by ``stat``:

    - ``center`` (default): the sum of ``center_bins`` bins around the centre. Variformer uses the
      centre bin (``center_bins=1``, bin 192 of 384); pre-trained Enformer the 3 centre bins
      (191-193) of a CAGE track (e.g. 4950, whole blood).
    - ``SUM``: the sum over all bins; a variant's delta is baskerville's SUM (``Σ alt − Σ ref``).
    - ``logSUM``: ``Σ log2(x + 1)`` over all bins; the delta is baskerville's logSUM.
    - ``D1`` / ``D2``: the L1 / L2 distance between the alternate's and the reference's track over
      all bins (baskerville's D1 / D2, never negative). A distance belongs to a pair of
      sequences, so these have no per-sequence :meth:`reduce`: ISM passes whole tracks through
      :meth:`features` and :meth:`score` reports REF_PRED = 0 and ALT_PRED = DELTA = the distance.

    The whole-track statistics are meant for models trained on coverage tracks (``finetune
    --output-mode track``), scored in scalar mode.
    """

    name: ClassVar[str] = "scalar"

    @dataclass
    class Options(PluginOptions):
        track: int = option(0, "Output track scored (0-based).")
        center_bins: int = option(1, "Centre bins summed by stat 'center'.")
        stat: str = option("center", "Statistic: center, SUM, logSUM, D1 or D2.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["stat"] not in SCALAR_STATS:
            raise InputError(
                f"Output mode 'scalar': unknown stat {self.params['stat']!r}. Choose one of: {', '.join(SCALAR_STATS)}."
            )

    @property
    def stat(self) -> str:
        return str(self.params["stat"])

    def bins(self, n_bins: int) -> slice:
        width = int(self.params["center_bins"])
        if width < 1 or width > n_bins:
            raise InputError(f"center_bins must be between 1 and {n_bins}; got {width}.")
        start = n_bins // 2 - (width - 1) // 2
        return slice(start, start + width)

    def reads_bins(self, n_bins: int) -> slice | None:
        """The bins :meth:`reduce` and :meth:`features` read (the centre bins for ``stat="center"``;
        None: all), so that ISM may compute only those."""
        return self.bins(n_bins) if self.stat == "center" else None

    def reduce(self, prediction: Any) -> Any:
        """``(N, bins, tracks)`` -> ``(N, 1)``; numpy arrays or torch tensors (for attribution)."""
        if self.stat in DISTANCE_STATS:
            raise InputError(
                f"Output mode 'scalar' with stat {self.stat} compares an alternate with the reference; it gives "
                "no value for a single sequence. Use stat SUM or logSUM (or center) for per-sequence predictions."
            )
        track = int(self.params["track"])
        _check_prediction(prediction, track)
        values = prediction[:, :, track]
        if self.stat == "center":
            return values[:, self.bins(values.shape[1])].sum(axis=1, keepdims=True)
        if self.stat == "logSUM":
            log2 = np.log2 if isinstance(values, np.ndarray) else _torch_log2
            return log2(values + 1).sum(axis=1, keepdims=True)
        return values.sum(axis=1, keepdims=True)

    def features(self, prediction: np.ndarray) -> np.ndarray:
        if self.stat not in DISTANCE_STATS:
            return self.reduce(prediction)
        track = int(self.params["track"])
        _check_prediction(prediction, track)
        return prediction[:, :, track]

    def score(self, result: ISMResult) -> ISMResult:
        if self.stat not in DISTANCE_STATS:
            return result
        return track_scores(self.stat, result.reference, result.alternates)

    def output_names(self, n_bins: int, n_tracks: int) -> list[str]:
        return ["expression" if self.stat == "center" else self.stat]


def _torch_log2(values: Any) -> Any:
    import torch

    return torch.log2(values)


class TrackOutput(OutputMode):
    """Every bin of one track: :meth:`reduce` gives ``(N, bins)`` (predicted coverage).

    Variant scores (what ``annotate`` writes) reduce the reference and alternate tracks by the
    baskerville statistic ``stat`` (``SUM`` by default; ``logSUM``, ``D1``, ``D2``; see
    :class:`ScalarOutput`).
    """

    name: ClassVar[str] = "track"

    @dataclass
    class Options(PluginOptions):
        track: int = option(0, "Output track (0-based).")
        stat: str = option("SUM", "Statistic the scores are read as: SUM, logSUM, D1 or D2.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["stat"] not in TRACK_STATS:
            raise InputError(
                f"Output mode 'track': unknown stat {self.params['stat']!r}. Choose one of: {', '.join(TRACK_STATS)}."
            )

    def score(self, result: ISMResult) -> ISMResult:
        return track_scores(str(self.params["stat"]), result.reference, result.alternates)

    def reduce(self, prediction: np.ndarray) -> np.ndarray:
        track = int(self.params["track"])
        _check_prediction(prediction, track)
        return prediction[:, :, track]

    def output_names(self, n_bins: int, n_tracks: int) -> list[str]:
        return [f"bin{i}" for i in range(n_bins)]


@hookimpl
def register_output_modes(register: Callable[[type[OutputMode]], None]) -> None:
    register(ScalarOutput)
    register(TrackOutput)
