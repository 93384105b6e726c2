"""varscore plugin: the Basenji2 dilated CNN (``basenji2-pytorch``) as the ``basenji2`` backbone.

Importing this module is cheap: torch and basenji2-pytorch are imported only when a model is built
or loaded (in :mod:`varscore_basenji2.network`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import click
from varscore.errors import InputError
from varscore.plugin import (
    PluginOptions,
    TorchSequenceBackbone,
    check_positive_ints,
    check_window_multiple,
    hookimpl,
    option,
    writes,
)

if TYPE_CHECKING:
    import torch
    from varscore.plugin import Backbone, CheckpointFormat

__version__ = "0.1.0"
__all__ = ["ARCHITECTURE", "Basenji2Backbone", "tiny_params"]

logger = logging.getLogger(__name__)

HEADS = ("variformer", "pretrained")

# Architecture hyper-parameters (names as in the backbone's params) and the Basenji2 paper's values
# (basenji2_pytorch.basenji2_params["model"], Kelley 2020).
ARCHITECTURE: dict[str, Any] = {
    "activation": "gelu",
    "bn_momentum": 0.9,
    "stem_filters": 288,
    "stem_kernel_size": 15,
    "tower_filters_init": 339,
    "tower_filters_mult": 1.1776,
    "tower_kernel_size": 5,
    "tower_repeat": 6,
    "dilated_filters": 384,
    "dilated_rate_mult": 1.5,
    "dilated_repeat": 11,
    "dilated_dropout": 0.3,
    "final_filters": 1536,
    "final_dropout": 0.05,
    "n_tracks": 5313,
}


def tiny_params(window_size: int = 1024, **overrides: Any) -> dict[str, Any]:
    """Hyper-parameters of a tiny Basenji2 (about 5,000 weights, 32-bp bins: 32 bins at 1,024 bp)
    that builds and runs in milliseconds on a CPU. For tests, docs and examples."""
    params: dict[str, Any] = {
        "window_size": window_size,
        "stem_filters": 8,
        "stem_kernel_size": 5,
        "tower_filters_init": 8,
        "tower_filters_mult": 1.25,
        "tower_kernel_size": 5,
        "tower_repeat": 4,
        "dilated_filters": 8,
        "dilated_repeat": 3,
        "final_filters": 32,
        "n_tracks": 5,
    }
    params.update(overrides)
    return params


def _check_params(params: dict[str, Any]) -> None:
    """Raise InputError for hyper-parameters basenji2-pytorch would reject or mis-handle."""
    ints = (
        "window_size",
        "stem_filters",
        "stem_kernel_size",
        "tower_filters_init",
        "tower_kernel_size",
        "tower_repeat",
        "dilated_filters",
        "dilated_repeat",
        "final_filters",
        "n_tracks",
    )
    check_positive_ints("Backbone 'basenji2'", params, ints)
    if params["head"] not in HEADS:
        raise InputError(f"Backbone 'basenji2': unknown head {params['head']!r}. Choose one of: {', '.join(HEADS)}.")
    if params["activation"] not in ("gelu", "relu"):
        raise InputError(f"Backbone 'basenji2': activation must be 'gelu' or 'relu'; got {params['activation']!r}.")
    if params["tower_repeat"] < 2:
        raise InputError(f"Backbone 'basenji2': tower_repeat must be at least 2; got {params['tower_repeat']}.")
    bin_size = 2 ** (params["tower_repeat"] + 1)
    check_window_multiple(
        "Backbone 'basenji2'", params["window_size"], bin_size, f"the bin size {bin_size} (2**(tower_repeat + 1))"
    )


class Basenji2Backbone(TorchSequenceBackbone):
    """Basenji2 (Kelley 2020; ``basenji2-pytorch``) on ``(N, window_size, 4)`` one-hot sequences.

    A stem convolution and ``tower_repeat`` pooling convolutions (bins of ``2**(tower_repeat + 1)``
    bp: 128 in the paper), dilated residual blocks, a pointwise convolution to ``final_filters``.
    The published model crops 64 bins from each end; here nothing is cropped, so
    ``bins = window_size / bin_size`` (1,024 at 131,072 bp) and the TSS is in bin ``bins // 2``.

    Heads: ``"variformer"`` maps the trunk's embeddings through one linear layer to one unbounded
    track, ``(N, bins, 1)`` (fine-tuning on personal genomes); ``"pretrained"`` is Basenji2's
    softplus head, ``(N, bins, n_tracks)`` (5,313 human tracks, the same targets as Enformer's
    human head).

    ``pretrained_dir``: a local directory with ``model.safetensors`` (``basenji2_pytorch.Basenji2``
    keys) and optionally ``config.json`` (architecture hyper-parameters, which then replace those in
    params); ``varscore basenji2 convert basenji2.pth -o DIR`` makes one from the published
    checkpoint. Nothing is downloaded and no pickle is executed.
    """

    name: ClassVar[str] = "basenji2"
    label: ClassVar[str] = "Basenji2"
    output_modes: ClassVar[tuple[str, ...]] = ("scalar", "track")
    fine_tunes_from_pretrained: ClassVar[bool] = True

    @dataclass
    class Options(PluginOptions):
        window_size: int = option(131_072, "Input window in bp, a multiple of the bin size 2**(tower_repeat + 1).")
        head: str = option("variformer", "Output head: 'variformer' (one fine-tuned track) or 'pretrained'.")
        pretrained_dir: str | None = option(None, "Directory made by 'varscore basenji2 convert' to start from.")
        seed: int | None = option(0, "Seed of the random initialisation (None: torch's global generator).")
        activation: str = option(ARCHITECTURE["activation"], "Activation: 'gelu' or 'relu'.")
        bn_momentum: float = option(ARCHITECTURE["bn_momentum"], "Batch-norm momentum (Keras convention).")
        stem_filters: int = option(ARCHITECTURE["stem_filters"], "Channels of the stem convolution.")
        stem_kernel_size: int = option(ARCHITECTURE["stem_kernel_size"], "Width of the stem convolution.")
        tower_filters_init: int = option(ARCHITECTURE["tower_filters_init"], "Channels of the first tower block.")
        tower_filters_mult: float = option(ARCHITECTURE["tower_filters_mult"], "Channel growth per tower block.")
        tower_kernel_size: int = option(ARCHITECTURE["tower_kernel_size"], "Width of the tower convolutions.")
        tower_repeat: int = option(ARCHITECTURE["tower_repeat"], "Pooling tower blocks (bins of 2**(n + 1) bp).")
        dilated_filters: int = option(ARCHITECTURE["dilated_filters"], "Channels of the dilated residual blocks.")
        dilated_rate_mult: float = option(ARCHITECTURE["dilated_rate_mult"], "Dilation growth per residual block.")
        dilated_repeat: int = option(ARCHITECTURE["dilated_repeat"], "Dilated residual blocks.")
        dilated_dropout: float = option(ARCHITECTURE["dilated_dropout"], "Dropout in the dilated blocks.")
        final_filters: int = option(ARCHITECTURE["final_filters"], "Channels of the final pointwise convolution.")
        final_dropout: float = option(ARCHITECTURE["final_dropout"], "Dropout of the final convolution.")
        n_tracks: int = option(ARCHITECTURE["n_tracks"], "Tracks of the pre-trained head (5,313 human).")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        _check_params(self.params)

    @property
    def bin_size(self) -> int:
        return int(2 ** (self.params["tower_repeat"] + 1))

    @property
    def n_tracks(self) -> int:
        return 1 if self.params["head"] == "variformer" else int(self.params["n_tracks"])

    # -- building and persistence -------------------------------------------------------------

    def build(self) -> Basenji2Backbone:
        """Create the network: random (seeded), with the pre-trained trunk (and head, for
        ``head="pretrained"``) from ``pretrained_dir`` when set. Returns self."""
        from varscore_basenji2 import network

        directory = None
        if self.params["pretrained_dir"] is not None:
            directory = Path(self.params["pretrained_dir"])
            if not (directory / network.PRETRAINED_WEIGHTS).is_file():
                raise InputError(
                    f"Basenji2 pretrained_dir {str(directory)!r} lacks {network.PRETRAINED_WEIGHTS}. Make it from "
                    "the published checkpoint with 'varscore basenji2 convert basenji2.pth -o DIR'."
                )
            self._adopt_config(network.read_config(directory))
        with self._seeded():
            model = self._new_model()
        if directory is not None:
            network.load_pretrained_trunk(model, directory)
            logger.info("Loaded pre-trained Basenji2 weights from %s", directory)
        self._place(model)
        return self

    def _adopt_config(self, config: dict[str, Any]) -> None:
        for key, value in config.items():
            current = self.params[key]
            if current != value and current != self.default_params[key]:
                logger.warning("Basenji2 %s=%r from pretrained_dir replaces the requested %r", key, value, current)
            self.params[key] = value
        _check_params(self.params)

    def _new_model(self) -> torch.nn.Module:
        from varscore_basenji2 import network

        return network.build_network(self.params)

    def _load_state(self, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> str | None:
        from varscore_basenji2 import network

        return network.copy_weights(model, state)

    # -- fine-tuning (configure and predict come from TorchSequenceBackbone) -------------------

    def torch_module(self) -> torch.nn.Module:
        """The network itself, ``(B, L, 4)`` -> ``(B, bins, tracks)``; training it trains the backbone."""
        self._require_built()
        return self.model_


@hookimpl
def register_backbones(register: Callable[[type[Backbone]], None]) -> None:
    register(Basenji2Backbone)


@hookimpl
def register_checkpoint_formats(register: Callable[[type[CheckpointFormat]], None]) -> None:
    from varscore_basenji2.checkpoint import Basenji2Checkpoint  # it reads ARCHITECTURE from this module

    register(Basenji2Checkpoint)


@hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.group("basenji2")
    def basenji2_group() -> None:
        """Basenji2 backbone tools (plugin varscore-basenji2)."""

    @basenji2_group.command("convert")
    @click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option(
        "-o",
        "--output",
        required=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Directory to write model.safetensors and config.json into (use as pretrained_dir).",
    )
    @writes(("output", "-o", "folder"))
    def convert(checkpoint: Path, output: Path) -> None:
        """Convert a basenji2-pytorch checkpoint (e.g. basenji2.pth) to safetensors, reading tensors only."""
        from varscore_basenji2.network import convert_checkpoint

        convert_checkpoint(checkpoint, output)
        click.echo(f"wrote {output} (use it with --param pretrained_dir={output} or --pretrained {output})")
