"""The torch side of the plugin: Basenji2 networks from ``basenji2-pytorch`` and reading weights.

Imported only when a model is built or loaded (it imports torch and basenji2-pytorch).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from basenji2_pytorch import Basenji2
from basenji2_pytorch.blocks import Cropping1d
from safetensors.torch import save_file
from torch import nn
from varscore.errors import InputError
from varscore.plugin import atomic_file, load_state_checked, read_weights, write_text

from varscore_basenji2 import ARCHITECTURE

CONFIG_FILE = "config.json"
PRETRAINED_WEIGHTS = "model.safetensors"


def basenji2_model_params(params: dict[str, Any], with_head: bool) -> dict[str, Any]:
    """The ``params["model"]`` dictionary ``basenji2_pytorch.Basenji2`` takes, from backbone params.

    The cropping layer is kept (as 1 bin) so that module indices, hence state-dict keys, match the
    published checkpoint; :func:`build_network` replaces it by an identity.
    """
    model: dict[str, Any] = {
        "seq_length": int(params["window_size"]),
        "activation": params["activation"],
        "norm_type": "batch",
        "bn_momentum": params["bn_momentum"],
        "trunk": [
            {
                "name": "conv_block",
                "filters": params["stem_filters"],
                "kernel_size": params["stem_kernel_size"],
                "pool_size": 2,
            },
            {
                "name": "conv_tower",
                "filters_init": params["tower_filters_init"],
                "filters_mult": params["tower_filters_mult"],
                "kernel_size": params["tower_kernel_size"],
                "pool_size": 2,
                "repeat": params["tower_repeat"],
            },
            {
                "name": "dilated_residual",
                "filters": params["dilated_filters"],
                "rate_mult": params["dilated_rate_mult"],
                "repeat": params["dilated_repeat"],
                "dropout": params["dilated_dropout"],
                "round": True,
            },
            {"name": "Cropping1D", "cropping": 1},
            {"name": "conv_block", "filters": params["final_filters"], "dropout": params["final_dropout"]},
        ],
    }
    if with_head:
        model["head_human"] = {"name": "final", "units": params["n_tracks"], "activation": "softplus"}
    return model


class Basenji2Network(nn.Module):
    """``(B, L, 4)`` one-hot -> ``(B, L / bin_size, tracks)``.

    ``head="pretrained"``: Basenji2's own softplus head (``n_tracks`` coverage tracks).
    ``head="variformer"``: the trunk's ``(B, final_filters, bins)`` embeddings through one linear
    layer to a single unbounded track, the fine-tuning head of the Variformer method.
    """

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__()
        self.head = params["head"]
        self.basenji2 = Basenji2(copy.deepcopy(basenji2_model_params(params, with_head=self.head == "pretrained")))
        # No cropping: bins cover the whole window (bins × bin_size == window_size), as the core expects.
        trunk = self.basenji2.model.trunk
        for index, layer in enumerate(trunk):
            if isinstance(layer, Cropping1d):
                trunk[index] = nn.Identity()
        self.to_tracks = nn.Linear(params["final_filters"], 1) if self.head == "variformer" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.basenji2(x.transpose(1, 2))
        if self.to_tracks is None:
            return out  # the Basenji2 head already returns (B, bins, tracks)
        return self.to_tracks(out.transpose(1, 2))


def build_network(params: dict[str, Any]) -> Basenji2Network:
    """A randomly initialised network (torch's global generator; seed it first)."""
    return Basenji2Network(params)


def load_pretrained_trunk(network: Basenji2Network, directory: Path) -> None:
    """Copy ``directory/model.safetensors`` (``basenji2_pytorch.Basenji2`` state-dict keys) into
    ``network``; the output head too when ``network`` uses the pre-trained head."""
    path = directory / PRETRAINED_WEIGHTS
    state = read_weights(path, "Basenji2", InputError)
    if network.head != "pretrained":
        state = {k: v for k, v in state.items() if not k.startswith("model.head.")}
    problem = copy_weights(network.basenji2, state, optional_head=network.head != "pretrained")
    if problem:
        raise InputError(f"The weights in {path} do not fit the Basenji2 its {CONFIG_FILE} describes: {problem}")


def copy_weights(module: nn.Module, state: dict[str, torch.Tensor], optional_head: bool = False) -> str | None:
    """Load ``state`` into ``module``; return what did not fit, or None.

    Batch-norm ``num_batches_tracked`` counters may be absent (checkpoints converted from Keras lack
    them); every other tensor must be present with the right shape.
    """

    def optional(name: str) -> bool:
        return name.endswith("num_batches_tracked") or (optional_head and name.startswith("model.head."))

    return load_state_checked(module, state, optional=optional)


def read_config(directory: Path) -> dict[str, Any]:
    """The architecture hyper-parameters in ``directory/config.json`` (missing keys: the paper's)."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        return dict(ARCHITECTURE)
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"Cannot read the Basenji2 config {path}: {err}") from err
    if not isinstance(config, dict):
        raise InputError(f"{path} must hold a JSON object of Basenji2 hyper-parameters; got {type(config).__name__}.")
    unknown = sorted(set(config) - set(ARCHITECTURE))
    if unknown:
        raise InputError(
            f"{path} has unknown Basenji2 hyper-parameter(s) {', '.join(unknown)}. Allowed: {', '.join(ARCHITECTURE)}."
        )
    return {**ARCHITECTURE, **config}


def convert_checkpoint(checkpoint: Path, out_dir: Path, architecture: dict[str, Any] | None = None) -> Path:
    """Turn a torch checkpoint of ``basenji2_pytorch.Basenji2`` (e.g. the published ``basenji2.pth``)
    into ``out_dir/model.safetensors`` + ``out_dir/config.json``.

    The checkpoint is read with ``torch.load(weights_only=True)``: tensors only, no code is run.
    A ``basenji2.`` prefix (``PLBasenji2`` checkpoints) and a Lightning ``state_dict`` wrapper are
    removed. The tensors are checked against the architecture before anything is written.
    """
    try:
        state = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, OSError ...
        raise InputError(
            f"Cannot read {checkpoint} as a tensors-only torch checkpoint ({err}). Only plain state dicts are read."
        ) from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{checkpoint} does not hold a state dict (a mapping of names to tensors).")
    state = {k.removeprefix("basenji2."): v.contiguous() for k, v in state.items()}
    config = {**ARCHITECTURE, **(architecture or {})}
    network = build_network({**config, "window_size": 2 ** (config["tower_repeat"] + 1) * 8, "head": "pretrained"})
    problem = copy_weights(network.basenji2, state)
    if problem:
        raise InputError(f"{checkpoint} does not fit the Basenji2 architecture {config}: {problem}")
    with atomic_file(out_dir / PRETRAINED_WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    write_text(out_dir / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    return out_dir
