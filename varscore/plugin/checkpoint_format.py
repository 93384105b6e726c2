"""Checkpoint formats: how a plugin reads a published checkpoint directory of its architecture
(``varscore models import DIR --format NAME``), and the format-agnostic reading they share.

A checkpoint directory holds ``config.json`` and the weights: ``model.safetensors`` (or shards listed
in ``model.safetensors.index.json``) or ``pytorch_model.bin`` (or ``pytorch_model.bin.index.json``
shards), a pickled state dict read with ``torch.load(weights_only=True)`` so that only tensors are
ever unpickled. A shard index may name only files inside the directory. torch is imported inside
functions only.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from varscore.errors import BundleError, InputError
from varscore.io.integrity import inside

if TYPE_CHECKING:
    import torch

CONFIG = "config.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE = "pytorch_model.bin"
PICKLE_INDEX = "pytorch_model.bin.index.json"


@dataclass(frozen=True)
class ImportRequest:
    """What the user asked of an import besides the directories: the input window in bp (None: the
    format's ``default_window``), and for formats with several output heads or positional variants,
    ``output_head`` and ``use_tf_gamma`` (others ignore them)."""

    window_size: int | None = None
    output_head: str = "human"
    use_tf_gamma: bool = False


@dataclass
class CanonicalState:
    """A checkpoint's tensors under the names the backbone's module uses, and the keys deliberately
    left out (e.g. a mouse head), recorded in the bundle's provenance."""

    state: dict[str, Any]
    dropped: list[str] = field(default_factory=list)


class CheckpointFormat(ABC):
    """A published checkpoint layout of one architecture, registered with
    ``register_checkpoint_formats``.

    Subclasses set ``name`` (what ``--format`` takes), ``backbone`` (the registered backbone the
    bundle uses; it must be a :class:`~varscore.plugin.torch_backbone.TorchSequenceBackbone`, whose
    ``load_state`` receives the tensors), ``default_window`` (the published input length in bp) and
    ``default_output`` (the scalar output mode's ``track``, ``center_bins`` and ``stat`` scored by
    default), and implement :meth:`backbone_params`. ``model_types``: the ``model_type`` values of
    ``config.json`` that :meth:`detect` recognises; ``key_prefixes``: prefixes a checkpoint's keys
    may share and that are removed (``module.`` from DistributedDataParallel always is). The other
    methods have defaults that fit the Hugging Face layout described in this module.
    """

    name: ClassVar[str]
    backbone: ClassVar[str]
    default_window: ClassVar[int]
    default_output: ClassVar[dict[str, Any]] = {"track": 0, "center_bins": 1, "stat": "center"}
    model_types: ClassVar[tuple[str, ...]] = ()
    key_prefixes: ClassVar[tuple[str, ...]] = ()
    #: whether :meth:`write_pretrained_config` writes a ``pretrained_dir`` config for fine-tuning
    writes_pretrained_dir: ClassVar[bool] = False

    def detect(self, config: Mapping[str, Any]) -> bool:
        """Whether ``config`` (a checkpoint's ``config.json``) describes this format."""
        return config.get("model_type") in self.model_types

    def check_config(self, config: Mapping[str, Any], path: Path) -> None:  # noqa: B027
        """Refuse a ``config.json`` (at ``path``) whose fields the format reads have the wrong type
        or range, naming the field (see :func:`check_config_numbers`). Default: no check."""

    def weight_files(self, directory: Path) -> list[Path]:
        """The weight file(s) of ``directory`` (default: :func:`weight_files`)."""
        return weight_files(directory)

    def canonical_state(self, state: dict[str, Any], config: Mapping[str, Any], directory: Path) -> CanonicalState:
        """The tensors of the checkpoint (prefixes already removed) under the backbone's names.
        Default: unchanged."""
        return CanonicalState(state)

    @abstractmethod
    def backbone_params(self, config: Mapping[str, Any], window_size: int, request: ImportRequest) -> dict[str, Any]:
        """The parameters of ``backbone`` that rebuild the checkpoint's architecture (its
        ``config.json``: ``config``) at ``window_size`` bp."""

    def output_head(self, request: ImportRequest) -> str:
        """The name of the output head the bundle scores (recorded in its manifest)."""
        return "human"

    def tracks_file(self) -> Path | None:
        """A list of the output tracks the model's package ships, copied into the bundle; None."""
        return None

    def write_pretrained_config(self, params: Mapping[str, Any], path: Path) -> None:
        """Write ``path`` (``config.json``) so that the backbone's ``pretrained_dir`` rebuilds the
        architecture of a bundle with ``params`` (formats that set ``writes_pretrained_dir``)."""
        raise InputError(f"Checkpoint format '{self.name}' cannot write a pre-trained directory.")


def read_json(path: Path, what: str) -> Any:
    """The JSON value in ``path``; a file that cannot be read or parsed (or is nested too deeply
    for the parser) is an :class:`InputError` naming ``what``."""
    try:
        return json.loads(path.read_text())
    except RecursionError as err:
        raise InputError(
            f"{path} is not a valid {what}: nested too deeply (a published {path.name} is a flat object)."
        ) from err
    except (OSError, ValueError) as err:
        raise InputError(f"{path} is not a valid {what}: {err}") from err


def read_config(directory: Path) -> dict[str, Any]:
    """``directory/config.json`` as a JSON object, with ``model_type`` (a string) and ``flashed``
    (true or false) checked when present."""
    path = Path(directory) / CONFIG
    if not path.is_file():
        raise InputError(
            f"{directory} holds no {CONFIG}: a published checkpoint directory has config.json and weights."
        )
    config = read_json(path, "checkpoint config")
    if not isinstance(config, dict):
        raise InputError(
            f"{path} is not a valid checkpoint config: it must be a JSON object, got a {type(config).__name__}."
        )
    for key, kind, expected in (("model_type", str, "a string"), ("flashed", bool, "true or false")):
        if key in config and not isinstance(config[key], kind):
            raise bad_config_field(config, path, key, expected)
    return config


def bad_config_field(config: Mapping[str, Any], path: Path, key: str, expected: str) -> InputError:
    """The one-line error for ``config[key]`` of ``path`` not being ``expected``."""
    return InputError(
        f"{path} is not a valid checkpoint config: {key} must be {expected}; got {config[key]!r}. "
        "Fix or replace config.json (it must be the one published with the weights)."
    )


def check_config_numbers(
    config: Mapping[str, Any],
    path: Path,
    whole: Sequence[str] = (),
    rates: Sequence[str] = (),
    least: Mapping[str, int] | None = None,
) -> None:
    """Refuse ``config`` fields of ``whole`` that are not whole numbers of at least 1 (or
    ``least[key]``), and of ``rates`` that are not numbers from 0 to 1; absent fields are skipped."""
    for key in (k for k in whole if k in config):
        value, minimum = config[key], (least or {}).get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise bad_config_field(config, path, key, f"a whole number of at least {minimum}")
    for key in (k for k in rates if k in config):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise bad_config_field(config, path, key, "a number from 0 to 1")


def weight_files(directory: Path) -> list[Path]:
    """The weight file(s) of a checkpoint directory: safetensors first, else the pickled state dict.
    A shard index may name only files inside ``directory`` (no absolute path, no ``..``, no
    symbolic link leading out)."""
    directory = Path(directory)
    for single, index in ((SAFETENSORS, SAFETENSORS_INDEX), (PICKLE, PICKLE_INDEX)):
        if (directory / single).is_file():
            return [directory / single]
        if (directory / index).is_file():
            loaded = read_json(directory / index, "shard index")
            weight_map = loaded.get("weight_map") if isinstance(loaded, dict) else None
            if not isinstance(weight_map, dict) or not weight_map:
                raise InputError(
                    f"{directory / index} is not a valid shard index: it must be an object whose weight_map maps "
                    "tensor names to shard files."
                )
            bad = next((v for v in weight_map.values() if not isinstance(v, str)), None)
            if bad is not None:
                raise InputError(f"{directory / index}: weight_map values must be shard file names; got {bad!r}.")
            shards = [shard_path(directory, index, name) for name in sorted(set(weight_map.values()))]
            missing = [p.name for p in shards if not p.is_file()]
            if missing:
                raise InputError(
                    f"{directory / index} lists shard(s) {', '.join(missing)} that are not in {directory}."
                )
            return shards
    raise InputError(
        f"{directory} holds no weights: expected {SAFETENSORS} (or {SAFETENSORS_INDEX} with its shards) or {PICKLE}."
    )


def shard_path(directory: Path, index: str, name: str) -> Path:
    """``directory / name`` for a shard the index ``index`` names, when it lies inside ``directory``."""
    try:
        return inside(directory, name, f"{index} shard")
    except BundleError as err:
        raise InputError(
            f"{directory / index} names the shard {name!r}, which lies outside {directory}: every file a shard "
            "index names must be inside the checkpoint directory (a relative path without '..', no absolute path, "
            "no symbolic link leading out). Put the shards in the directory and name them by file name."
        ) from err


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of one weight file: safetensors, or a pickled state dict loaded with
    ``weights_only=True`` (plain tensors and containers only; anything else is refused). A state
    dict wrapped as ``{"state_dict": ...}`` (Lightning) is unwrapped."""
    import torch

    if path.suffix == ".safetensors":
        from varscore.plugin.torch_backbone import read_weights

        return read_weights(path, "checkpoint", InputError)
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # pickle and zip errors of several types
        raise InputError(
            f"Cannot read {path} as a state dict of tensors (loaded with weights_only=True; varscore never "
            f"unpickles other objects): {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from err
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise InputError(f"{path} is not a state dict (a mapping of names to tensors).")
    return dict(loaded)


def strip_prefix(state: Mapping[str, Any], prefixes: Sequence[str]) -> dict[str, Any]:
    """``state`` with a prefix every key shares removed (e.g. ``base_model_prefix`` that transformers
    adds when a model with a head saved the base model; ``module.`` from DistributedDataParallel)."""
    out = dict(state)
    for prefix in prefixes:
        if out and all(k.startswith(prefix) for k in out):
            out = {k[len(prefix) :]: v for k, v in out.items()}
    return out


def check_output(
    params: Mapping[str, Any], n_tracks: int, n_bins: int, defaulted: Collection[str] = (), kind: str = ""
) -> None:
    """Refuse a scalar output's ``track`` outside the imported head (``0 <= track < n_tracks``), and
    its ``center_bins`` outside the window's ``n_bins`` output bins, naming the value and the valid
    range. ``defaulted``: the keys that hold ``kind``'s defaults rather than values asked for (a
    default is checked too: a small window or another head can leave it out of range); centre
    bins left at their default are checked only for ``stat="center"``, the one statistic that reads
    them."""
    track, center_bins = params["track"], params["center_bins"]
    default = f" (the {kind} default)" if kind else " (the default)"
    if isinstance(track, bool) or not isinstance(track, int) or not 0 <= track < n_tracks:
        raise InputError(
            f"Output track {track!r}{default if 'track' in defaulted else ''} is not in the imported head, which "
            f"has {n_tracks:,} tracks: pass --track from 0 to {n_tracks - 1:,}."
        )
    if "center_bins" in defaulted and params.get("stat", "center") != "center":
        return
    if isinstance(center_bins, bool) or not isinstance(center_bins, int) or not 1 <= center_bins <= n_bins:
        raise InputError(
            f"Centre bins {center_bins!r}{default if 'center_bins' in defaulted else ''} do not fit the window's "
            f"{n_bins:,} output bins: pass --center-bins from 1 to {n_bins:,}."
        )


__all__ = [
    "CONFIG",
    "CanonicalState",
    "CheckpointFormat",
    "ImportRequest",
    "bad_config_field",
    "check_config_numbers",
    "check_output",
    "read_config",
    "read_json",
    "read_tensors",
    "shard_path",
    "strip_prefix",
    "weight_files",
]
