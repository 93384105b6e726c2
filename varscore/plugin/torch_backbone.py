"""What every PyTorch sequence backbone shares: seeded construction, device and bf16 set-up,
``predict``, and ``weights.safetensors`` written and read back with a checked state-dict copy.
torch and safetensors are imported inside functions only, so importing this module stays cheap."""

from __future__ import annotations

import contextlib
import copy
import logging
from abc import abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from varscore.errors import BundleError, InputError, VarscoreError
from varscore.io.outputguard import atomic_file
from varscore.plugin.contracts import SequenceBackbone

if TYPE_CHECKING:
    from typing import Self  # Python 3.11; only read by type checkers

    import torch

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.safetensors"


class TorchSequenceBackbone(SequenceBackbone):
    """A :class:`SequenceBackbone` whose ``model_`` is a ``torch.nn.Module``.

    Subclasses set ``label`` (the model's name in messages, e.g. ``"Basenji2"``), give ``params`` a
    ``window_size`` and usually a ``seed`` (absent or ``None``: torch's global generator; checked
    here), and implement ``bin_size``, ``n_tracks``, :meth:`build` and :meth:`_new_model` (their own
    parameter checks may use :func:`check_positive_ints` and :func:`check_window_multiple`).
    :meth:`_forward` maps ``(B, L, 4)`` to ``(B, bins, tracks)``; the default calls the module,
    override it when the module takes another layout. :meth:`_load_state` decides which saved
    tensors must be present. This class provides ``configure``, ``predict``, ``torch_module``,
    ``save`` and ``load``.
    """

    label: ClassVar[str]
    trainable: ClassVar[bool] = True  # the training workflow trains torch_module()
    has_torch_module: ClassVar[bool] = True
    holds_replicates: ClassVar[bool] = True  # load(directory, weights=FILE)
    warm_starts: ClassVar[bool] = True  # load_state(state, source)
    #: params quoted when saved weights do not fit the manifest, e.g. ``("head", "dim")``.
    summary_params: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.params = copy.deepcopy(self.params)  # defaults may hold dicts and lists
        if self.params.get("pretrained_dir") is not None:
            self.params["pretrained_dir"] = str(self.params["pretrained_dir"])
        seed = self.params.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InputError(f"Backbone '{self.name}': seed must be an integer or None; got {seed!r}.")
        self._device = "cpu"
        self._bf16 = False

    @property
    def device(self) -> str:
        return self._device

    @property
    def window_size(self) -> int:
        return int(self.params["window_size"])

    @property
    def n_bins(self) -> int:
        return self.window_size // self.bin_size

    @property
    @abstractmethod
    def n_tracks(self) -> int:
        """Tracks per bin of :meth:`predict`'s output."""

    # -- building and persistence -------------------------------------------------------------

    @abstractmethod
    def _new_model(self) -> torch.nn.Module:
        """The architecture ``params`` describe, randomly initialised (never from a pre-trained
        directory); :meth:`load` fills it with saved weights. Called inside :meth:`_seeded`."""

    def _load_state(self, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> str | None:
        """Copy ``state`` into ``model``; return what did not fit, or None
        (:func:`load_state_checked` by default)."""
        return load_state_checked(model, state)

    def save(self, directory: Path) -> None:
        """Write ``directory/weights.safetensors`` (tensors shared by several names stored once);
        never pickle."""
        self._require_built()
        metadata = {"format": "pt", "backbone": self.name}
        if "head" in self.params:
            metadata["head"] = str(self.params["head"])
        save_weights(self.model_, Path(directory) / WEIGHTS_FILE, metadata)

    def load(self, directory: Path, weights: str = WEIGHTS_FILE) -> Self:
        """Build the architecture ``params`` describe (``pretrained_dir`` is not read: the weights
        come from the bundle) and load ``directory/weights.safetensors`` (or the file ``weights``
        of the bundle, e.g. one replicate of an ensemble). Returns self."""
        path = Path(directory) / weights
        if not path.is_file():
            raise BundleError(f"{self.label} weights not found: {path} does not exist (save() writes it).")
        state = read_weights(path, self.label, BundleError)
        check_tensor_dtypes(state, path)
        return self._build_with(
            state, BundleError, f"{path} does not fit the {self.label} hyper-parameters in the manifest"
        )

    def load_state(
        self, state: Mapping[str, torch.Tensor], source: str, error: type[VarscoreError] = InputError
    ) -> Self:
        """Build the architecture ``params`` describe and copy ``state`` into it (every tensor must
        be present with the right shape, see :meth:`_load_state`); ``source`` names where the
        tensors came from in the ``error`` raised otherwise. Returns self."""
        return self._build_with(dict(state), error, f"The weights in {source} do not fit the {self.label} architecture")

    def _build_with(self, state: dict[str, torch.Tensor], error: type[VarscoreError], lead: str) -> Self:
        """A new model of this architecture holding ``state``, placed as this backbone's ``model_``;
        ``error`` (its message starting with ``lead``) names what did not fit."""
        with self._seeded():
            model = self._new_model()
        problem = self._load_state(model, state)
        if problem:
            summary = ", ".join(f"{key}={self.params[key]!r}" for key in self.summary_params)
            raise error(f"{lead}{f' ({summary})' if summary else ''}: {problem}")
        self._place(model)
        return self

    def _seeded(self) -> contextlib.AbstractContextManager[Any]:
        """A context in which torch's CPU generator starts from ``params["seed"]`` and is restored
        afterwards (nothing happens without a seed)."""
        import torch

        seed = self.params.get("seed")
        if seed is None:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(torch.random.fork_rng(devices=[]))
        torch.manual_seed(int(seed))
        return stack

    def _place(self, model: torch.nn.Module) -> None:
        """Make ``model`` this backbone's ``model_``, in eval mode on the configured device."""
        model.eval()
        self.model_ = model.to(self._device)

    # -- inference ----------------------------------------------------------------------------

    def configure(self, device: str = "cpu", bf16: bool = False) -> None:
        """Run on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``: CUDA when
        available); ``bf16`` turns on bfloat16 autocast on CUDA (ignored with a warning on CPU)."""
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            resolved = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise InputError(f"Unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'.") from err
        if resolved.type not in ("cpu", "cuda"):
            raise InputError(f"Unsupported device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'.")
        if resolved.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"Device {device!r} requested but CUDA is not available; use 'cpu' or 'auto'.")
        if bf16 and resolved.type != "cuda":
            logger.warning("bf16 autocast is only used on CUDA; running %s in float32.", resolved)
            bf16 = False
        self._device, self._bf16 = str(resolved), bool(bf16)
        if self.is_built:
            self.model_.to(resolved)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        return torch.autocast("cuda", dtype=torch.bfloat16) if self._bf16 else contextlib.nullcontext()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """``batch``: ``(N, window_size, 4)`` one-hot (A, C, G, T) -> ``(N, bins, tracks)`` float32."""
        import torch

        self._require_built()
        array = np.asarray(batch)
        if array.ndim != 3 or array.shape[1:] != (self.window_size, 4):
            raise InputError(
                f"{self.label} predict() needs one-hot sequences of shape (N, {self.window_size}, 4); "
                f"got shape {array.shape}."
            )
        if array.shape[0] == 0:
            return np.zeros((0, self.n_bins, self.n_tracks), dtype=np.float32)
        x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(self._device)
        self.model_.eval()
        with torch.inference_mode(), self._autocast():
            out = self._forward(x)
        return out.float().cpu().numpy()

    def _forward(self, x: torch.Tensor, model: torch.nn.Module | None = None) -> torch.Tensor:
        """``(B, L, 4)`` -> ``(B, bins, tracks)`` through ``model`` (default ``model_``)."""
        return (self.model_ if model is None else model)(x)

    def torch_module(self) -> torch.nn.Module:
        """The trainable model as one ``nn.Module``, ``(B, L, 4)`` -> ``(B, bins, tracks)``, holding
        ``model_`` as its ``model``: training it trains this backbone."""
        import torch

        self._require_built()
        backbone = self

        class BackboneForward(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = backbone.model_

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return backbone._forward(x, self.model)

        return BackboneForward()


def read_weights(path: Path, label: str, error: type[VarscoreError] = BundleError) -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file ``path`` (on the CPU); a file safetensors cannot read
    raises ``error`` naming ``label``'s weights and the file."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise error(f"Cannot read {label} weights {path}: {err}") from err


#: tensors stored as integers by design (batch norms' update counters); every other weight is a float
INTEGER_TENSOR_SUFFIXES = (".num_batches_tracked",)


def check_tensor_dtypes(
    state: Mapping[str, torch.Tensor], source: Path | str, error: type[VarscoreError] = BundleError
) -> None:
    """Refuse weights stored with an integer, boolean or complex dtype: they would be cast to
    float silently (and mean nothing as weights). Only batch norms' ``num_batches_tracked``
    counters are integers."""
    for key, tensor in state.items():
        if key.endswith(INTEGER_TENSOR_SUFFIXES):
            continue
        if not tensor.is_floating_point():
            raise error(
                f"{source}: tensor {key} is stored as {str(tensor.dtype).removeprefix('torch.')}, not as floating "
                "point; weights must be float32, float16 or bfloat16. The file is corrupt or not this model's "
                "weights: re-download or re-export it."
            )


def save_weights(model: torch.nn.Module, path: Path, metadata: Mapping[str, str]) -> None:
    """Write ``model``'s state dict to the safetensors file ``path`` (parent created), replacing it
    only once complete. Tensors registered under several names are stored once."""
    from safetensors.torch import save_model

    with atomic_file(path) as partial:
        save_model(model, str(partial), metadata=dict(metadata))


def _name_groups(expected: Mapping[str, torch.Tensor], aliases: bool) -> list[list[str]]:
    """The names of ``expected`` (a state dict) grouped by tensor: with ``aliases``, names registered
    for the same storage (as enformer-pytorch's modules are) form one group; otherwise, and for empty
    tensors (no storage to share), each name is its own."""
    groups: dict[Any, list[str]] = {}
    for key, tensor in expected.items():
        groups.setdefault(tensor.untyped_storage().data_ptr() if aliases and tensor.numel() else key, []).append(key)
    return list(groups.values())


def tensors_missing_from(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``model``'s own tensors (detached copies) that ``state`` lacks: one name per tensor, and none
    for a tensor registered under several names when ``state`` holds any one of them.
    ``{**state, **missing}`` then loads without a missing tensor."""
    own = model.state_dict()
    return {
        names[0]: own[names[0]].detach().clone()
        for names in _name_groups(own, aliases=True)
        if not any(name in state for name in names)
    }


def load_state_checked(
    model: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    aliases: bool = False,
    optional: Callable[[str], bool] | None = None,
) -> str | None:
    """Copy ``state`` into ``model`` if it fits; otherwise leave ``model`` alone and return what did
    not fit (counts and examples of missing, unexpected and wrongly shaped tensors).

    ``aliases``: tensors registered under several names (the same storage, as enformer-pytorch's
    modules are) count as present when ``state`` holds any one of their names — ``save_weights``
    keeps one. ``optional(name)`` is true for tensors that may be absent (they keep their current
    values). The check is done here rather than by ``load_state_dict(strict=True)`` because a batch
    norm fills in a missing ``num_batches_tracked`` silently.
    """
    expected = model.state_dict()
    missing = sorted(
        names[0]
        for names in _name_groups(expected, aliases)
        if not any(name in state for name in names) and not (optional is not None and optional(names[0]))
    )
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or mismatched:
        parts = [
            f"{len(names)} {label} (e.g. {', '.join(names[:3])})"
            for label, names in (("missing", missing), ("unexpected", unexpected), ("of another shape", mismatched))
            if names
        ]
        return "; ".join(parts) + " tensor(s)."
    model.load_state_dict(state, strict=False)
    return None


def check_positive_ints(
    owner: str, params: Mapping[str, Any], keys: Sequence[str], allow_zero: Collection[str] = ()
) -> None:
    """Raise InputError naming ``owner`` (e.g. ``"Backbone 'borzoi'"``) unless every ``params[key]``
    is an integer >= 1 (>= 0 for the keys in ``allow_zero``); booleans are not integers here."""
    for key in keys:
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key in allow_zero else 1):
            raise InputError(f"{owner}: {key} must be a positive integer; got {value!r}.")


def check_window_multiple(owner: str, window: int, multiple: int, what: str) -> None:
    """Raise InputError naming ``owner`` when ``window`` (bp) is not a multiple of ``multiple``;
    ``what`` says what ``multiple`` is, e.g. ``"the bin size 128 (2**num_downsamples)"``. The
    message suggests the two nearest valid sizes."""
    if window % multiple:
        lower = max(multiple, window // multiple * multiple)
        raise InputError(
            f"{owner}: window_size {window} is not a multiple of {what}; use e.g. {lower} or {lower + multiple}."
        )
