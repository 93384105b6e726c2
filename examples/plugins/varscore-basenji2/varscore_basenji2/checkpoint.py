"""The ``basenji2`` checkpoint format: ``varscore models import DIR --format basenji2`` reads a
directory holding ``config.json`` (Basenji2 hyper-parameters, as ``varscore basenji2 convert``
writes it; ``{}`` for the published architecture) and the state dict of ``basenji2_pytorch.Basenji2``:
the published ``basenji2.pth`` (read with ``torch.load(weights_only=True)``: tensors only) or the
``model.safetensors`` that ``convert`` writes. The bundle uses Basenji2's own head (5,313 human
tracks, the targets of Enformer's human head)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from varscore.errors import InputError
from varscore.plugin import CanonicalState, CheckpointFormat, ImportRequest, check_config_numbers

from varscore_basenji2 import ARCHITECTURE

#: the published checkpoint's file name; any single ``.pth`` / ``.pt`` file is read too
PUBLISHED_FILE = "basenji2.pth"
SAFETENSORS = "model.safetensors"
WHOLE = ("stem_filters", "stem_kernel_size", "tower_filters_init", "tower_kernel_size", "tower_repeat")
WHOLE_MORE = ("dilated_filters", "dilated_repeat", "final_filters", "n_tracks")
RATES = ("bn_momentum", "dilated_dropout", "final_dropout")


class Basenji2Checkpoint(CheckpointFormat):
    """A basenji2-pytorch state dict + ``config.json``, imported with ``head="pretrained"``. Scored
    by default: track 4950 (CAGE whole blood, as Enformer's) summed over the 3 centre bins."""

    name: ClassVar[str] = "basenji2"
    backbone: ClassVar[str] = "basenji2"
    model_types: ClassVar[tuple[str, ...]] = ("basenji2",)
    key_prefixes: ClassVar[tuple[str, ...]] = ("basenji2.",)  # PLBasenji2 checkpoints
    default_window: ClassVar[int] = 131_072
    default_output: ClassVar[dict[str, Any]] = {"track": 4950, "center_bins": 3, "stat": "center"}

    def check_config(self, config: Mapping[str, Any], path: Path) -> None:
        """Only Basenji2 hyper-parameters (and ``model_type``), sizes whole, rates in [0, 1]."""
        unknown = sorted(set(config) - set(ARCHITECTURE) - {"model_type"})
        if unknown:
            raise InputError(
                f"{path} has unknown Basenji2 hyper-parameter(s) {', '.join(unknown)}. "
                f"Allowed: {', '.join(ARCHITECTURE)}."
            )
        check_config_numbers(config, path, WHOLE + WHOLE_MORE, RATES)

    def weight_files(self, directory: Path) -> list[Path]:
        """``model.safetensors``, else ``basenji2.pth``, else the one ``.pth`` / ``.pt`` file."""
        for name in (SAFETENSORS, PUBLISHED_FILE):
            if (directory / name).is_file():
                return [directory / name]
        found = sorted(p for p in directory.iterdir() if p.suffix in (".pth", ".pt") and p.is_file())
        if len(found) != 1:
            listed = f" ({', '.join(p.name for p in found)})" if found else ""
            raise InputError(
                f"{directory} holds {len(found)} state-dict files{listed}: a basenji2 checkpoint directory holds "
                f"config.json and one state dict ({PUBLISHED_FILE} or {SAFETENSORS})."
            )
        return found

    def canonical_state(self, state: dict[str, Any], config: Mapping[str, Any], directory: Path) -> CanonicalState:
        """``basenji2_pytorch.Basenji2`` keys under the backbone network's ``basenji2.`` module."""
        return CanonicalState({f"basenji2.{key}": tensor for key, tensor in state.items()})

    def backbone_params(self, config: Mapping[str, Any], window_size: int, request: ImportRequest) -> dict[str, Any]:
        architecture = {k: v for k, v in config.items() if k != "model_type"}
        return {**ARCHITECTURE, **architecture, "window_size": window_size, "head": "pretrained", "seed": 0}
