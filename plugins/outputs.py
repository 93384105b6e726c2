"""Built-in output modes: ``scalar`` (the TSS bin(s) of one track) and ``track`` (every bin)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from varscore.base import OutputMode
from varscore.errors import InputError
from varscore.hookspecs import hookimpl


def _check_prediction(prediction: np.ndarray, track: int) -> None:
    if prediction.ndim != 3:
        raise InputError(f"Output modes take (N, bins, tracks) predictions; got shape {prediction.shape}.")
    if not 0 <= track < prediction.shape[2]:
        raise InputError(f"Track {track} is out of range: the model predicts {prediction.shape[2]} track(s).")


class ScalarOutput(OutputMode):
    """One number per sequence: the sum of ``center_bins`` bins around the centre of one track.

    Variformer uses the centre bin (``center_bins=1``, bin 192 of 384); pre-trained Enformer
    uses the 3 centre bins (191-193) of a CAGE track (e.g. 4950, whole blood).
    """

    name: ClassVar[str] = "scalar"
    default_params: ClassVar[dict[str, Any]] = {"track": 0, "center_bins": 1}

    def bins(self, n_bins: int) -> slice:
        width = int(self.params["center_bins"])
        if width < 1 or width > n_bins:
            raise InputError(f"center_bins must be between 1 and {n_bins}; got {width}.")
        start = n_bins // 2 - (width - 1) // 2
        return slice(start, start + width)

    def reduce(self, prediction: np.ndarray) -> np.ndarray:
        track = int(self.params["track"])
        _check_prediction(prediction, track)
        return prediction[:, self.bins(prediction.shape[1]), track].sum(axis=1, keepdims=True)

    def output_names(self, n_bins: int, n_tracks: int) -> list[str]:
        return ["expression"]


class TrackOutput(OutputMode):
    """Every bin of one track: ``(N, bins)``."""

    name: ClassVar[str] = "track"
    default_params: ClassVar[dict[str, Any]] = {"track": 0}

    def reduce(self, prediction: np.ndarray) -> np.ndarray:
        track = int(self.params["track"])
        _check_prediction(prediction, track)
        return prediction[:, :, track]

    def output_names(self, n_bins: int, n_tracks: int) -> list[str]:
        return [f"bin{i}" for i in range(n_bins)]


@hookimpl
def register_output_modes(register):  # type: ignore[no-untyped-def]
    register(ScalarOutput)
    register(TrackOutput)
