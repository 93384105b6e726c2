"""Base classes for what plugins provide: backbones (models), output modes and annotators.

Hooks only register these classes; everything they do is defined here. Sequences are
``(N, L, 4)`` float32 one-hot arrays in A, C, G, T order (channels last); N is all-zero.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from varscore.errors import InputError, NotFittedError, PluginError
from varscore.genome.personal import imputed_dosage, variant_keys
from varscore.genome.sequence import BASE_INDEX
from varscore.plugin.fastpredict import predict_people
from varscore.plugin.options import Configurable

if TYPE_CHECKING:
    import pandas as pd

    from varscore.types import Gene, Variant, Window

Reducer = Callable[[np.ndarray], np.ndarray]


ALLOW_LARGE_ENV = "VARSCORE_ALLOW_LARGE_MODELS"
_limits_lifted = [False]  # this process's setting (the CLI's --allow-large-models)


def allow_large_models(allowed: bool = True) -> bool:
    """Lift (or, with ``False``, restore) the size limits in this process: the CLI's ``--allow-large-models``.
    Returns the previous setting."""
    previous, _limits_lifted[0] = _limits_lifted[0], allowed
    return previous


def large_models_allowed() -> bool:
    """Whether the size limits are lifted: :func:`allow_large_models`, or ``$VARSCORE_ALLOW_LARGE_MODELS=1``."""
    return _limits_lifted[0] or os.environ.get(ALLOW_LARGE_ENV, "") not in ("", "0")


def _check_limits(owner: str, limits: dict[str, int], params: dict[str, Any]) -> None:
    """Refuse a hyper-parameter above its limit before anything is allocated (a manifest asking for
    ``depth=100000`` would exhaust memory); numbers inside an object (track counts per head) count too.
    :func:`large_models_allowed` lifts the limits."""
    if large_models_allowed():
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


class Backbone(Configurable, ABC):
    """A model architecture.

    Subclass :class:`SequenceBackbone` (one-hot windows in) or :class:`GenotypeBackbone`
    (per-gene variant dosages in), never this class directly. Subclasses set ``name``,
    ``output_modes`` (names of the output modes they support) and ``Options`` (a
    :class:`~varscore.plugin.options.PluginOptions` dataclass: every accepted hyper-parameter
    with its default and description; unknown keys are rejected; ``default_params`` follows from
    it). ``__init__`` only stores parameters (``params``); :meth:`build` creates a fresh model,
    :meth:`load` restores a saved one. State created by either ends in ``_``. ``input_kind`` is
    set by the two bases and says which one a class derives from (``"sequence"`` or
    ``"genotypes"``), for messages and listings.

    Capabilities are class attributes, declared here with their defaults, so that callers never
    probe for methods: ``trainable`` — :meth:`finetune` fits the model (for sequence backbones: the
    training workflow can train :meth:`~SequenceBackbone.torch_module`);
    ``fine_tunes_from_pretrained`` — a ``pretrained_dir`` parameter starts the model from
    published weights, so training the full architecture from random weights is a choice the
    user must state; ``warm_starts`` — ``load_state(state, source)`` copies a state dict of tensors
    in (a checkpoint's, or another bundle's for ``--init-from``).
    """

    name: ClassVar[str]
    input_kind: ClassVar[str] = "sequence"
    output_modes: ClassVar[tuple[str, ...]] = ("scalar",)
    trainable: ClassVar[bool] = False
    fine_tunes_from_pretrained: ClassVar[bool] = False
    warm_starts: ClassVar[bool] = False
    #: Upper bounds of size hyper-parameters, checked before building (see :func:`_check_limits`).
    param_limits: ClassVar[dict[str, int]] = {}
    #: Named sizes (``finetune --size``): hyper-parameters of a valid model of each size; parameters
    #: given explicitly override them. Empty: the backbone offers none.
    size_presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, **params: Any) -> None:
        self.params = self.parse_params(f"Backbone '{self.name}'", params)
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
            raise NotFittedError(f"Backbone '{self.name}' has no model yet: call build() or load(directory) first.")

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
        raise PluginError(f"Backbone '{self.name}' does not implement ISM.")

    def finetune(self, data: Any, config: Any) -> Any:
        """Fit the model on personal genomes and expression; return the training result. Backbones
        that set ``trainable`` implement it."""
        raise InputError(f"Backbone '{self.name}' cannot be fine-tuned (it is not trainable).")

    def has_gene(self, gene_id: str) -> bool:
        """Whether the model predicts ``gene_id`` (sequence models predict any window)."""
        return True

    @abstractmethod
    def predict_people(
        self,
        gene_data: Any,
        people: np.ndarray,
        train: np.ndarray,
        output_mode: OutputMode | None = None,
        batch_size: int = 8,
    ) -> np.ndarray:
        """``(n,)`` scalar predictions of one gene for ``people`` (row indices) of a
        :class:`~varscore.training.cohort.GeneData`; ``train`` are the training people's rows (a genotype
        model imputes their mean dosage for missing calls) and ``output_mode`` reduces a sequence
        model's ``(n, bins, tracks)`` to one number per person."""


class SequenceBackbone(Backbone):
    """Shared ISM and fine-tuning for sequence models: everything follows from :meth:`predict`
    and :meth:`torch_module`.

    Capabilities (class attributes, so that callers never probe for methods), besides
    :class:`Backbone`'s: ``has_torch_module`` — :meth:`torch_module` returns the model as a
    ``torch.nn.Module`` (gradients, attributions, fine-tuning); ``fast_edits`` —
    :meth:`predict_edits` is faster than predicting whole edited windows (when
    :meth:`edits_are_local` also holds); ``fast_ism`` — :meth:`ism` scores single-base
    alternates from the cached reference pass faster than full forward passes (exactly, to float
    round-off), so variant-centred scoring sends a window's SNVs through it; ``has_head_module`` —
    :meth:`head_module` names the output layer, so the trunk can be frozen (``finetune
    --freeze-backbone``, ``--freeze-trunk-epochs``); ``holds_replicates`` — :meth:`load` accepts
    ``weights=FILE``, so one bundle can hold an ensemble's replicates.
    """

    input_kind: ClassVar[str] = "sequence"
    has_torch_module: ClassVar[bool] = False
    fast_edits: ClassVar[bool] = False
    fast_ism: ClassVar[bool] = False
    has_head_module: ClassVar[bool] = False
    holds_replicates: ClassVar[bool] = False

    @property
    def device(self) -> str:
        """Where the model runs (set by :meth:`configure`)."""
        return "cpu"

    def edits_are_local(self) -> bool:
        """Whether a base changes only the outputs near it (false for models whose normalisation
        sees the whole window); :meth:`predict_edits` pays only then."""
        return True

    def predict_edits(
        self, reference: np.ndarray, edits: Sequence[tuple[np.ndarray, np.ndarray]], batch_size: int = 8
    ) -> np.ndarray:
        """Predictions ``(N, bins, tracks)`` of windows that differ from ``reference`` ``(L, 4)``
        at a few positions: each edit sets the bases at ``offsets`` ``(k,)`` to ``values``
        ``(k, 4)``. Default: build each edited window and :meth:`predict` it."""
        self._require_built()
        reference = np.asarray(reference, dtype=np.float32)
        parts = []
        for start in range(0, len(edits), batch_size):
            chunk = edits[start : start + batch_size]
            batch = np.repeat(reference[None], len(chunk), axis=0)
            for row, (offsets, values) in enumerate(chunk):
                offsets = np.asarray(offsets, dtype=np.int64)
                batch[row, offsets] = np.asarray(values, dtype=np.float32).reshape(len(offsets), 4)
            parts.append(np.asarray(self.predict(batch)))
        if not parts:
            raise InputError("predict_edits needs at least one edit; got none.")
        return np.concatenate(parts)

    def head_module(self) -> Any:
        """The output layer as a ``torch.nn.Module`` (trained alone while the trunk is frozen);
        backbones that set ``has_head_module`` override this."""
        raise InputError(
            f"Backbone '{self.name}' does not name its output layer, so its trunk cannot be frozen "
            "(freeze_trunk_epochs); train all layers instead."
        )

    def predict_people(
        self,
        gene_data: Any,
        people: np.ndarray,
        train: np.ndarray,
        output_mode: OutputMode | None = None,
        batch_size: int = 8,
    ) -> np.ndarray:
        """Dosage genomes go through :func:`varscore.plugin.fastpredict.predict_people` (each distinct
        dosage pattern predicted once, through :meth:`predict_edits` where it pays); haplotype
        windows are predicted person by person."""
        if output_mode is None:
            raise InputError(f"Backbone '{self.name}' needs an output mode to predict one number per person.")
        windows = gene_data.windows
        people = np.asarray(people, dtype=np.int64)
        if len(people) and windows.mode == "dosage":
            predicted = predict_people(self, windows.reference, windows.genotypes, people, batch_size).predictions
            return np.asarray(output_mode.reduce(predicted)[:, 0])
        out = []
        for start in range(0, len(people), batch_size):
            batch = windows.batch(people[start : start + batch_size]).astype(np.float32, copy=False)
            out.append(output_mode.reduce(self.predict(batch))[:, 0])
        return np.concatenate(out) if out else np.empty(0, np.float32)

    def torch_module(self) -> Any:
        """The model as a ``torch.nn.Module`` mapping ``(B, L, 4)`` to ``(B, bins, tracks)``,
        sharing parameters with the backbone. Needed for fine-tuning; backbones that set
        ``has_torch_module`` implement it."""
        raise InputError(f"Backbone '{self.name}' exposes no torch module, so it cannot be fine-tuned.")

    def check_finetune(self, config: Any) -> None:
        """Refuse training settings (a :class:`~varscore.training.lightning.TrainingConfig`) that do
        not suit this model, with an :class:`InputError` naming the option, before any training.
        Fine-tuning itself is the training workflow's
        (:func:`varscore.training.trainer.finetune_sequence_backbone`)."""

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
            raise InputError(f"ISM needs a ({self.window_size}, 4) one-hot window; got shape {reference.shape}.")
        if batch_size < 1:
            raise InputError(f"batch size must be >= 1; got {batch_size}.")
        return reference


#: ALT dosage of a homozygous ALT genotype. A genotype model's variant effect is its prediction for
#: a person homozygous ALT at that variant (reference elsewhere) against its prediction for a person
#: homozygous reference everywhere: the genotype counterpart of a sequence model's ISM on a window
#: carrying the ALT on both haplotypes. For an additive model that is intercept + 2 × weight.
HOMOZYGOUS_ALT = 2.0


@dataclass(frozen=True)
class VariantEffect:
    """One variant's effect in a genotype model: ``key`` is ``chrom:pos:ref:alt``; ``ref_pred``
    the prediction with every variant homozygous REF, ``alt_pred`` with this one homozygous ALT."""

    key: str
    ref_pred: float
    alt_pred: float


@dataclass
class GenotypeFitResult:
    """What :meth:`GenotypeBackbone.finetune` returns: per-gene rows (at least ``gene`` and
    ``tune_r2``), their mean tune R² and how many missing calls were imputed."""

    rows: list[dict[str, Any]]
    mean_tune_r2: float
    imputed_calls: int = 0
    is_global_zero: bool = True


class GenotypeBackbone(Backbone):
    """A model of each gene's expression from the ALT dosages (0, 1, 2) of the variants in its
    window, e.g. the elastic net of PrediXcan. Subclasses implement :meth:`gene_ids`,
    :meth:`variant_keys`, :meth:`predict_dosages` and :meth:`finetune` (plus ``build``/``save``/
    ``load``); variant effects, person predictions and VCF scoring follow from them. Models with
    additive per-variant weights also return them from :meth:`allele_weights`.
    """

    input_kind: ClassVar[str] = "genotypes"
    #: What REF_PRED and ALT_PRED mean in the VCF header of a genotype model's output.
    effect_description: ClassVar[str] = (
        "genotype model: REF_PRED = prediction with every variant homozygous REF, ALT_PRED = with this ALT "
        "homozygous (dosage 2) instead"
    )

    @property
    def bin_size(self) -> int:
        return 1

    @abstractmethod
    def gene_ids(self) -> list[str]:
        """The genes the model predicts."""

    @abstractmethod
    def variant_keys(self, gene_id: str) -> list[str]:
        """``chrom:pos:ref:alt`` of the variants ``gene_id``'s model takes, in column order."""

    @abstractmethod
    def predict_dosages(self, gene_id: str, dosages: np.ndarray) -> np.ndarray:
        """``(N, V)`` ALT dosages in :meth:`variant_keys` order -> ``(N,)`` predictions."""

    def finetune(self, data: Any, config: Any = None) -> GenotypeFitResult:
        """Fit every gene of a :class:`~varscore.training.cohort.FinetuneData` on its train people
        (backbones that set ``trainable``)."""
        raise InputError(f"Backbone '{self.name}' cannot be fitted (it is not trainable).")

    def has_gene(self, gene_id: str) -> bool:
        return gene_id in self.gene_ids()

    def allele_weights(self, gene_id: str) -> dict[str, float] | None:
        """Additive weight per ALT dosage of each variant of ``gene_id`` (e.g. regression
        coefficients), or None for models without such weights."""
        return None

    def used_variants(self, gene_id: str) -> set[str]:
        """Keys of the variants that change ``gene_id``'s prediction (a sparse model's non-zero
        weights): the model's own choice of drivers."""
        weights = self.allele_weights(gene_id)
        if weights is not None:
            return {key for key, weight in weights.items() if weight != 0}
        return {e.key for e in self.variant_effects(gene_id) if e.alt_pred != e.ref_pred}

    def predict(self, batch: np.ndarray, gene: str | None = None) -> np.ndarray:
        """``(N, V)`` dosages -> ``(N, 1)``; ``gene`` may be left out when the model holds one gene."""
        self._require_built()
        genes = self.gene_ids()
        if gene is None:
            if len(genes) != 1:
                raise InputError(f"Model '{self.name}' holds {len(genes)} genes: say which gene to predict.")
            gene = genes[0]
        if gene not in genes:
            raise InputError(f"Model '{self.name}' has no gene '{gene}'.")
        return np.asarray(self.predict_dosages(gene, batch))[:, None].astype(np.float32)

    def predict_aligned(self, gene_id: str, keys: Sequence[str], dosages: np.ndarray) -> tuple[np.ndarray, int]:
        """Predict from ``dosages`` ``(N, K)`` whose columns are ``keys`` (any order, extra
        variants ignored); model variants absent from ``keys`` count as dosage 0. Returns
        ``(N,)`` and how many of the model's used variants were absent."""
        column = {k: i for i, k in enumerate(keys)}
        model_keys = self.variant_keys(gene_id)
        dosages = np.asarray(dosages, dtype=np.float64)
        matrix = np.zeros((len(dosages), len(model_keys)), dtype=np.float64)
        for j, key in enumerate(model_keys):
            if key in column:
                matrix[:, j] = dosages[:, column[key]]
        missing = {key for key in model_keys if key not in column}
        absent = len(self.used_variants(gene_id) & missing) if missing else 0  # effects only when needed
        return np.asarray(self.predict_dosages(gene_id, matrix), dtype=np.float64), absent

    def variant_effects(self, gene_id: str, chunk: int = 256) -> list[VariantEffect]:
        """Each variant's effect (see :data:`HOMOZYGOUS_ALT`), in :meth:`variant_keys` order."""
        keys = self.variant_keys(gene_id)
        ref_pred = float(np.asarray(self.predict_dosages(gene_id, np.zeros((1, len(keys)))))[0])
        effects: list[VariantEffect] = []
        for start in range(0, len(keys), chunk):
            rows = np.arange(start, min(start + chunk, len(keys)))
            dosages = np.zeros((len(rows), len(keys)))
            dosages[np.arange(len(rows)), rows] = HOMOZYGOUS_ALT
            alt = np.asarray(self.predict_dosages(gene_id, dosages), dtype=np.float64)
            effects.extend(VariantEffect(keys[j], ref_pred, float(a)) for j, a in zip(rows, alt, strict=True))
        return effects

    def predict_people(
        self,
        gene_data: Any,
        people: np.ndarray,
        train: np.ndarray,
        output_mode: OutputMode | None = None,
        batch_size: int = 8,
    ) -> np.ndarray:
        """From each VCF record's own dosages, missing calls set to the ``train`` people's mean
        (see :func:`varscore.genome.personal.imputed_dosage`); variants are matched by key."""
        genotypes = gene_data.windows.genotypes
        dosage, _ = imputed_dosage(genotypes, np.asarray(train))
        gene_id = gene_data.gene.gene_id
        pred, absent = self.predict_aligned(gene_id, variant_keys(genotypes), dosage[np.asarray(people)])
        if absent:  # another cohort (evaluate --all-people) may lack the model's variants: say so
            used = len(self.used_variants(gene_id))
            logging.getLogger(__name__).warning(
                "%s: %d of the %d variants the model uses are not in the VCF; they count as reference%s.",
                gene_data.gene.label,
                absent,
                used,
                " (its predictions are one constant)" if absent == used else "",
            )
        return pred


class OutputMode(Configurable, ABC):
    """Reduces a backbone's ``(N, bins, tracks)`` prediction to the scores a user sees."""

    name: ClassVar[str]

    def __init__(self, **params: Any) -> None:
        self.params = self.parse_params(f"Output mode '{self.name}'", params)

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

    def reads_bins(self, n_bins: int) -> slice | None:
        """The output bins of ``n_bins`` that :meth:`reduce` reads, so the only ones a model trained
        through this mode learned (e.g. the centre bin); None: all of them."""
        return None


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


class Annotator(Configurable, ABC):
    """Adds per-variant annotations (motifs, chromatin states, fine-mapping) as INFO fields."""

    name: ClassVar[str]
    info_fields: ClassVar[tuple[InfoField, ...]] = ()

    def __init__(self, **params: Any) -> None:
        self.params = self.parse_params(f"Annotator '{self.name}'", params)

    @abstractmethod
    def annotate(self, variants: Sequence[Variant], context: AnnotationContext) -> pd.DataFrame:
        """A frame indexed by ``Variant.key`` with one column per INFO key in ``info_fields``
        (values already formatted as VCF strings; missing = no entry)."""
