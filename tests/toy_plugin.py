"""A toy backbone and a toy annotator defined only in the tests: a fixed random linear model on
one-hot sequence (pure numpy, so the engine can be tested without torch) and the GC content
around each variant."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from varscore.errors import InputError
from varscore.plugin.contracts import AnnotationContext, Annotator, InfoField, SequenceBackbone
from varscore.plugin.hookspecs import hookimpl


class ToyBackbone(SequenceBackbone):
    """prediction[n, b, t] = sum over the bin's bases of weights[t, position, base] · x.

    ``delay``: seconds to sleep in every :meth:`predict` call (to make runs long enough to kill).
    """

    name: ClassVar[str] = "toy"
    output_modes: ClassVar[tuple[str, ...]] = ("scalar", "track")
    default_params: ClassVar[dict[str, Any]] = {"window_size": 64, "bin_size": 8, "tracks": 2, "seed": 0, "delay": 0.0}

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
        if self.params["delay"]:
            time.sleep(float(self.params["delay"]))
        per_base = np.einsum("nlc,tlc->nlt", batch, self.model_)
        n_bins = self.window_size // self.bin_size
        return per_base.reshape(len(batch), n_bins, self.bin_size, -1).sum(axis=2)


class GCAnnotator(Annotator):
    """INFO ``TOY_GC``: the GC fraction of the ``2 * flank + 1`` reference bases centred on POS."""

    name: ClassVar[str] = "toy-gc"
    info_fields: ClassVar[tuple[InfoField, ...]] = (
        InfoField("TOY_GC", "1", "Float", "GC fraction of the reference bases around POS"),
    )
    default_params: ClassVar[dict[str, Any]] = {"flank": 5}

    def annotate(self, variants: Sequence[Any], context: AnnotationContext) -> pd.DataFrame:
        if context.fasta is None:
            raise InputError("The toy-gc annotator needs a reference: pass --fasta.")
        from varscore.types import Window

        flank = int(self.params["flank"])
        values = {}
        for variant in variants:
            if context.fasta.resolve(variant.chrom) is None:
                continue
            bases = context.fasta.fetch(Window(variant.chrom, variant.pos - 1 - flank, variant.pos + flank))
            values[variant.key] = f"{sum(b in 'GC' for b in bases) / len(bases):.4f}"
        return pd.DataFrame({"TOY_GC": pd.Series(values, dtype=object)})


@hookimpl
def register_backbones(register):  # type: ignore[no-untyped-def]
    register(ToyBackbone)


class AnnotatorPlugin:
    """Registers :class:`GCAnnotator`; a separate plugin object, so that tests opt in to it."""

    @staticmethod
    @hookimpl
    def register_annotators(register):  # type: ignore[no-untyped-def]
        register(GCAnnotator)
