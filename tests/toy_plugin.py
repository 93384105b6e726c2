"""A toy backbone plugin defined only in the tests: a fixed random linear model on one-hot
sequence, pure numpy, so the engine can be tested without torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from varscore.base import SequenceBackbone
from varscore.errors import InputError
from varscore.hookspecs import hookimpl


class ToyBackbone(SequenceBackbone):
    """prediction[n, b, t] = sum over the bin's bases of weights[t, position, base] · x."""

    name: ClassVar[str] = "toy"
    output_modes: ClassVar[tuple[str, ...]] = ("scalar", "track")
    default_params: ClassVar[dict[str, Any]] = {"window_size": 64, "bin_size": 8, "tracks": 2, "seed": 0}

    @property
    def window_size(self) -> int:
        return int(self.params["window_size"])

    @property
    def bin_size(self) -> int:
        return int(self.params["bin_size"])

    def build(self) -> ToyBackbone:
        rng = np.random.default_rng(self.params["seed"])
        shape = (self.params["tracks"], self.window_size, 4)
        self.model_ = rng.normal(size=shape).astype(np.float32)
        return self

    def save(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        self._require_built()
        save_file({"weights": self.model_}, str(Path(directory) / "weights.safetensors"))

    def load(self, directory: Path) -> ToyBackbone:
        from safetensors.numpy import load_file

        self.model_ = load_file(str(Path(directory) / "weights.safetensors"))["weights"]
        return self

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self._require_built()
        if batch.ndim != 3 or batch.shape[1:] != (self.window_size, 4):
            raise InputError(f"expected (N, {self.window_size}, 4); got {batch.shape}")
        per_base = np.einsum("nlc,tlc->nlt", batch, self.model_)
        n_bins = self.window_size // self.bin_size
        return per_base.reshape(len(batch), n_bins, self.bin_size, -1).sum(axis=2)


@hookimpl
def register_backbones(register):  # type: ignore[no-untyped-def]
    register(ToyBackbone)
