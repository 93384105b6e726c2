"""Base classes for what plugins provide: backbones (models), output modes and annotators.

Hooks only register these classes; everything they do is defined here. Sequences are
``(N, L, 4)`` float32 one-hot arrays in A, C, G, T order (channels last); N is all-zero.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from varscore.errors import InputError, NotFittedError
from varscore.sequence import BASE_INDEX

if TYPE_CHECKING:
    import pandas as pd

    from varscore.types import Gene, Variant, Window

Reducer = Callable[[np.ndarray], np.ndarray]


def _checked_params(owner: str, defaults: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        allowed = ", ".join(sorted(defaults)) or "none"
        raise InputError(f"{owner}: unknown option(s) {', '.join(unknown)}. Allowed: {allowed}.")
    return {**defaults, **params}


ALLOW_LARGE_ENV = "VARSCORE_ALLOW_LARGE_MODELS"


def _check_limits(owner: str, limits: dict[str, int], params: dict[str, Any]) -> None:
    """Refuse a hyper-parameter above its limit before anything is allocated (a manifest asking for
    ``depth=100000`` would exhaust memory); numbers inside an object (track counts per head) count too.
    ``$VARSCORE_ALLOW_LARGE_MODELS=1`` (the CLI's ``--allow-large-models``) lifts the limits."""
    if os.environ.get(ALLOW_LARGE_ENV, "") not in ("", "0"):
        return
    for key, limit in limits.items():
        value = params.get(key)
        values = value.items() if isinstance(value, dict) else [(None, value)]
        for inner, number in values:
            if isinstance(number, (int, float)) and not isinstance(number, bool) and number > limit:
                field = f"{key}[{inner!r}]" if inner is not None else key
                raise InputError(
                    f"{owner}: {field}={number:,} is above the limit of {limit:,} for this architecture, "
                    f"so the model would not fit in memory. Check the manifest, or pass --allow-large-models."
                )


class ISMResult(NamedTuple):
    """Reduced predictions of one reference window and its alternates.

    ``reference``: ``(K,)``; ``alternates``: ``(M, K)`` — one row per substitution, K outputs of
    the output mode. ``delta`` is ``alternates - reference``.
    """

    reference: np.ndarray
    alternates: np.ndarray

    @property
    def delta(self) -> np.ndarray:
        return self.alternates - self.reference[None, :]


class Backbone(ABC):
    """A model architecture.

    Subclasses set ``name``, ``input_kind`` (``"sequence"`` or ``"genotypes"``),
    ``output_modes`` (names of the output modes they support) and ``default_params`` (every
    accepted hyper-parameter with its default; unknown keys are rejected). ``__init__`` only
    stores parameters; :meth:`build` creates a fresh model, :meth:`load` restores a saved one.
    State created by either ends in ``_``.
    """

    name: ClassVar[str]
    input_kind: ClassVar[str] = "sequence"
    output_modes: ClassVar[tuple[str, ...]] = ("scalar",)
    default_params: ClassVar[dict[str, Any]] = {}
    #: Upper bounds of size hyper-parameters, checked before building (see :func:`_check_limits`).
    param_limits: ClassVar[dict[str, int]] = {}

    def __init__(self, **params: Any) -> None:
        self.params = _checked_params(f"Backbone '{self.name}'", self.default_params, params)
        _check_limits(f"Backbone '{self.name}'", self.param_limits, self.params)

    @property
    @abstractmethod
    def window_size(self) -> int:
        """Input length in bp."""

    @property
    @abstractmethod
    def bin_size(self) -> int:
        """bp per output bin (1 for genotype models)."""

    @abstractmethod
    def build(self) -> Backbone:
        """Create the model (random or pre-trained weights as the params say); return self."""

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the weights into ``directory`` (``weights.safetensors``); never pickle."""

    @abstractmethod
    def load(self, directory: Path) -> Backbone:
        """Build the model and load the weights saved by :meth:`save`; return self."""

    @abstractmethod
    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Predict a batch.

        Sequence backbones: ``batch`` is ``(N, L, 4)`` float32, returns ``(N, bins, tracks)``.
        Genotype backbones: ``batch`` is ``(N, variants)`` dosages, returns ``(N, tracks)``.
        """

    def configure(self, device: str = "cpu", bf16: bool = False) -> None:  # noqa: B027
        """Move the model to ``device``; ``bf16`` asks for bfloat16 autocast where supported."""

    @property
    def is_built(self) -> bool:
        return getattr(self, "model_", None) is not None

    def _require_built(self) -> None:
        if not self.is_built:
            raise NotFittedError(
                f"Backbone '{self.name}' has no model yet: call build() or load(directory) first."
            )

    def ism(
        self,
        reference: np.ndarray,
        substitutions: Sequence[tuple[int, str]],
        reduce: Reducer,
        batch_size: int = 8,
    ) -> ISMResult:
        """In-silico mutagenesis of one window.

        ``reference``: ``(L, 4)`` one-hot. ``substitutions``: ``(offset, base)`` pairs, offset
        0-based in the window. One reference forward pass, alternates in batches of
        ``batch_size``. ``reduce`` maps ``(N, bins, tracks)`` to ``(N, K)``.
        """
        raise NotImplementedError(f"Backbone '{self.name}' does not implement ISM.")

    def finetune(self, data: Any, config: Any) -> Any:
        """Fit the model on personal genomes and expression; return the training result."""
        raise NotImplementedError(f"Backbone '{self.name}' cannot be fine-tuned yet.")


class SequenceBackbone(Backbone):
    """Shared ISM and fine-tuning for sequence models: everything follows from :meth:`predict`
    and :meth:`torch_module`."""

    input_kind: ClassVar[str] = "sequence"

    def torch_module(self) -> Any:
        """The model as a ``torch.nn.Module`` mapping ``(B, L, 4)`` to ``(B, bins, tracks)``,
        sharing parameters with the backbone. Needed for fine-tuning."""
        raise NotImplementedError(f"Backbone '{self.name}' exposes no torch module, so it cannot be fine-tuned.")

    def finetune(self, data: Any, config: Any) -> Any:
        """Variformer fine-tuning (see :func:`varscore.training.finetune_sequence_backbone`)."""
        from varscore.training import finetune_sequence_backbone

        return finetune_sequence_backbone(self, data, config)

    def ism(
        self,
        reference: np.ndarray,
        substitutions: Sequence[tuple[int, str]],
        reduce: Reducer,
        batch_size: int = 8,
    ) -> ISMResult:
        reference = self._checked_ism_input(reference, batch_size)
        ref_out = np.asarray(reduce(self.predict(reference[None].astype(np.float32))))[0]
        alt_rows: list[np.ndarray] = []
        for start in range(0, len(substitutions), batch_size):
            chunk = substitutions[start : start + batch_size]
            batch = np.repeat(reference[None].astype(np.float32), len(chunk), axis=0)
            for row, (offset, base) in enumerate(chunk):
                batch[row, offset] = 0.0
                if base in BASE_INDEX:
                    batch[row, offset, BASE_INDEX[base]] = 1.0
            alt_rows.append(np.asarray(reduce(self.predict(batch))))
        n_out = ref_out.shape[0]
        alternates = np.concatenate(alt_rows) if alt_rows else np.empty((0, n_out), np.float32)
        return ISMResult(reference=ref_out, alternates=alternates)

    def _checked_ism_input(self, reference: np.ndarray, batch_size: int) -> np.ndarray:
        """``reference`` as an array after checking what every ISM needs: a built model, an
        ``(L, 4)`` window and ``batch_size >= 1``."""
        self._require_built()
        reference = np.asarray(reference)
        if reference.shape != (self.window_size, 4):
            raise InputError(
                f"ISM needs a ({self.window_size}, 4) one-hot window; got shape {reference.shape}."
            )
        if batch_size < 1:
            raise InputError(f"batch size must be >= 1; got {batch_size}.")
        return reference


class OutputMode(ABC):
    """Reduces a backbone's ``(N, bins, tracks)`` prediction to the scores a user sees."""

    name: ClassVar[str]
    default_params: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        self.params = _checked_params(f"Output mode '{self.name}'", self.default_params, params)

    @abstractmethod
    def reduce(self, prediction: np.ndarray) -> np.ndarray:
        """``(N, bins, tracks)`` -> ``(N, K)``."""

    @abstractmethod
    def output_names(self, n_bins: int, n_tracks: int) -> list[str]:
        """Names of the K outputs of :meth:`reduce`."""

    def features(self, prediction: np.ndarray) -> np.ndarray:
        """What ISM keeps of each prediction, ``(N, bins, tracks)`` -> ``(N, F)``; :meth:`score`
        turns them into the scores. Default: :meth:`reduce`."""
        return self.reduce(prediction)

    def score(self, result: ISMResult) -> ISMResult:
        """Scores of an ISM run over :meth:`features` (``(F,)`` and ``(M, F)``) as ``(K,)`` and
        ``(M, K)``. Default: unchanged. Modes whose score compares an alternate with the reference
        (e.g. a distance between tracks) override both."""
        return result


@dataclass(frozen=True)
class InfoField:
    """One VCF INFO header line an annotator adds."""

    key: str
    number: str
    type: str
    description: str


@dataclass
class AnnotationContext:
    """What annotators may use besides the variants: the genome, genes and windows."""

    genes: Sequence[Gene]
    windows: dict[str, Window]
    fasta: Any = None
    scores: pd.DataFrame | None = None


class Annotator(ABC):
    """Adds per-variant annotations (motifs, chromatin states, fine-mapping) as INFO fields."""

    name: ClassVar[str]
    info_fields: ClassVar[tuple[InfoField, ...]] = ()
    default_params: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        self.params = _checked_params(f"Annotator '{self.name}'", self.default_params, params)

    @abstractmethod
    def annotate(self, variants: Sequence[Variant], context: AnnotationContext) -> pd.DataFrame:
        """A frame indexed by ``Variant.key`` with one column per INFO key in ``info_fields``
        (values already formatted as VCF strings; missing = no entry)."""
