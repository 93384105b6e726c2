"""The Borzoi backbone (borzoi-pytorch): a U-net over 32-bp bins with a scalar head (one value per
person, like Variformer), a coverage-track head (softplus, the paper's track fine-tuning) or Borzoi's
own pre-trained human head. torch, transformers and borzoi-pytorch are imported only when a model is
built or loaded, so importing this plugin stays cheap. Install with ``pip install varscore[borzoi]``.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np

from varscore.errors import InputError
from varscore.plugin.checkpoint_format import read_config
from varscore.plugin.contracts import ISMResult, Reducer
from varscore.plugin.options import PluginOptions, option
from varscore.plugin.torch_backbone import (
    TorchSequenceBackbone,
    check_positive_ints,
    check_window_multiple,
    load_state_checked,
    read_weights,
)

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

HEADS = ("scalar", "track", "pretrained")
BIN_SIZE = 32  # output resolution (bp per bin)
TRANSFORMER_BIN = 128  # resolution the transformer works at: the window must be a multiple of it
#: Borzoi's own conv widths: stem, the 5 conv-tower blocks; then the width of the final joined convs.
BORZOI_CHANNELS = (512, 608, 736, 896, 1056, 1280)
BORZOI_FINAL_CHANNELS = 1920
PRETRAINED_TRACKS = 7611  # human head of the published models
# Hyper-parameters passed to borzoi-pytorch's BorzoiConfig.
BORZOI_HPARAMS = (
    "dim",
    "depth",
    "heads",
    "attn_dim_key",
    "attn_dim_value",
    "dropout_rate",
    "attn_dropout",
    "pos_dropout",
)


def tiny_params(window_size: int = 2048, **overrides: Any) -> dict[str, Any]:
    """Hyper-parameters of a tiny Borzoi (about 25 k weights in the parts that run) that builds and
    runs in milliseconds on a CPU: conv widths 16, one transformer layer of dim 32 with 2 heads,
    64 bins of 32 bp at 2,048 bp.

    For tests, docs and examples; ``overrides`` replace any entry (e.g. ``head="track"``).
    """
    return {**copy.deepcopy(SIZE_PRESETS["tiny"]), "window_size": window_size, **overrides}


#: ``finetune --size``: ``tiny`` (about 25 k weights in the parts that run; seconds on a CPU),
#: ``small`` (about 0.7 M) and ``published`` (Borzoi's architecture, about 190 M weights, 524,288-bp
#: windows; to start from published weights give --pretrained). Each satisfies
#: :func:`_check_params` (six conv widths, the window a multiple of the transformer's 128 bp).
SIZE_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "window_size": 16_384,
        "dim": 32,
        "depth": 1,
        "heads": 2,
        "attn_dim_key": 8,
        "attn_dim_value": 16,
        "channels": [16, 16, 16, 16, 16, 16],
        "final_channels": 16,
    },
    "small": {
        "window_size": 32_768,
        "dim": 128,
        "depth": 2,
        "heads": 4,
        "attn_dim_key": 32,
        "attn_dim_value": 32,
        "channels": [64, 64, 80, 96, 112, 128],
        "final_channels": 64,
    },
    "published": {
        "window_size": 524_288,
        "dim": 1536,
        "depth": 8,
        "heads": 8,
        "attn_dim_key": 64,
        "attn_dim_value": 192,
        "channels": None,
        "final_channels": None,
    },
}


def _check_params(params: dict[str, Any]) -> None:
    """Raise InputError when borzoi-pytorch would fail (or silently misbehave) with ``params``."""
    ints = ("window_size", "dim", "depth", "heads", "attn_dim_key", "attn_dim_value", "n_tracks")
    check_positive_ints("Backbone 'borzoi'", params, ints)
    if params["head"] not in HEADS:
        raise InputError(f"Backbone 'borzoi': unknown head {params['head']!r}. Choose one of: {', '.join(HEADS)}.")
    check_window_multiple(
        "Backbone 'borzoi'", params["window_size"], TRANSFORMER_BIN, f"{TRANSFORMER_BIN} (the transformer's resolution)"
    )
    channels = params["channels"]
    if channels is not None and (
        not isinstance(channels, (list, tuple))
        or len(channels) != len(BORZOI_CHANNELS)
        or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels)
    ):
        raise InputError(
            f"Backbone 'borzoi': channels must be {len(BORZOI_CHANNELS)} positive integers (stem and conv tower "
            f"widths; Borzoi's are {list(BORZOI_CHANNELS)}) or null; got {channels!r}."
        )
    trained = params["trained_positions"]
    if trained is not None and (isinstance(trained, bool) or not isinstance(trained, int) or trained < 1):
        raise InputError(f"Backbone 'borzoi': trained_positions must be a positive integer or null; got {trained!r}.")
    final = params["final_channels"]
    if final is not None and (isinstance(final, bool) or not isinstance(final, int) or final < 1):
        raise InputError(f"Backbone 'borzoi': final_channels must be a positive integer or null; got {final!r}.")
    if params["head"] == "scalar" and params["n_tracks"] != 1:
        raise InputError("Backbone 'borzoi': the scalar head predicts one value (n_tracks=1); use head='track'.")
    if params["pretrained_dir"] is not None and (channels is not None or final is not None):
        raise InputError(
            "Backbone 'borzoi': pretrained_dir fixes the conv widths to Borzoi's; leave channels and final_channels "
            "unset."
        )


class BorzoiBackbone(TorchSequenceBackbone):
    """Borzoi (borzoi-pytorch) on ``(N, window_size, 4)`` one-hot sequences -> ``(N, window_size / 32,
    tracks)``.

    Heads (``head``): ``"scalar"`` — a new linear 1x1 convolution to one track (the paper's scalar
    Borzoi: a linear output layer on the embeddings); ``"track"`` — a new 1x1 convolution to
    ``n_tracks`` coverage tracks with softplus (the paper's track fine-tuning); ``"pretrained"`` —
    Borzoi's own human head (7,611 tracks, softplus). No cropping: every 32-bp bin of the window is
    predicted, so ``bins × 32 == window_size`` (Borzoi itself keeps the central 6,144 of 16,384 bins
    at 524,288 bp; edge bins see less context).

    borzoi-pytorch takes channels-first input; this backbone takes the package's ``(N, L, 4)`` and
    transposes. Its attention's relative-position table is rebuilt for the window's length (the
    package fixes it at 4,096 positions, right only at 524,288 bp).

    ``channels`` / ``final_channels`` shrink the conv widths (tests and demos); ``None`` keeps
    Borzoi's. ``pretrained_dir``: a local directory with ``config.json`` and ``model.safetensors``
    (read with safetensors and ``load_state_dict``; nothing is downloaded, no pickle is read); its
    config replaces the architecture hyper-parameters. ``seed`` fixes the random initialisation.
    """

    name: ClassVar[str] = "borzoi"
    has_head_module: ClassVar[bool] = True
    fast_ism: ClassVar[bool] = True  # ism: exact single-base alternates from a cached reference pass
    label: ClassVar[str] = "Borzoi"
    summary_params: ClassVar[tuple[str, ...]] = ("head", "dim", "depth")
    output_modes: ClassVar[tuple[str, ...]] = ("scalar", "track")
    fine_tunes_from_pretrained: ClassVar[bool] = True
    size_presets: ClassVar[dict[str, dict[str, Any]]] = SIZE_PRESETS

    @dataclass
    class Options(PluginOptions):
        window_size: int = option(524_288, "Input window in bp, a multiple of 128 (the transformer's resolution).")
        head: str = option("scalar", "Output head: 'scalar' (one track), 'track' (n_tracks, softplus) or 'pretrained'.")
        n_tracks: int = option(1, "Tracks of the 'track' head (1 for 'scalar').")
        pretrained_dir: str | None = option(None, "Local directory with config.json + model.safetensors to start from.")
        seed: int | None = option(0, "Seed of the random initialisation (None: torch's global generator).")
        dim: int = option(1536, "Transformer width.")
        depth: int = option(8, "Transformer layers.")
        heads: int = option(8, "Attention heads.")
        attn_dim_key: int = option(64, "Width of each attention head's keys and queries.")
        attn_dim_value: int = option(192, "Width of each attention head's values.")
        dropout_rate: float = option(0.2, "Dropout in the transformer blocks.")
        attn_dropout: float = option(0.05, "Dropout of the attention weights.")
        pos_dropout: float = option(0.01, "Dropout of the relative positional logits.")
        channels: list[int] | None = option(None, "Stem and 5 conv-tower widths (None: Borzoi's); for small models.")
        final_channels: int | None = option(None, "Width of the final joined convolutions (None: Borzoi's 1920).")
        trained_positions: int | None = option(
            None, "Length the positional features were trained at (None: the window's; 4096 for published weights)."
        )

    # twice the published architecture (dim 1536, 8 layers, 524,288 bp, 7,611 tracks) or more
    param_limits: ClassVar[dict[str, int]] = {
        "window_size": 1 << 21,
        "dim": 4096,
        "depth": 48,
        "heads": 64,
        "attn_dim_key": 1024,
        "attn_dim_value": 4096,
        "n_tracks": 50_000,
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        #: ``"fast"`` or ``"naive"`` ISM; None follows ``$VARSCORE_ISM`` (default fast).
        self.ism_method: str | None = None
        if isinstance(self.params["channels"], tuple):
            self.params["channels"] = list(self.params["channels"])
        _check_params(self.params)

    @property
    def bin_size(self) -> int:
        return BIN_SIZE

    @property
    def n_tracks(self) -> int:
        return PRETRAINED_TRACKS if self.params["head"] == "pretrained" else int(self.params["n_tracks"])

    # -- building and persistence -------------------------------------------------------------

    def build(self) -> BorzoiBackbone:
        """Create the model (pre-trained trunk from ``pretrained_dir`` when set, else random) with
        the head ``head`` asks for. Returns self."""
        with self._seeded():
            if self.params["pretrained_dir"] is not None:
                model = self._pretrained_borzoi(Path(self.params["pretrained_dir"]))
                self._attach_head(model)
            else:
                model = self._new_model()
        self._place(model)
        return self

    def _config(self) -> Any:
        from borzoi_pytorch.config_borzoi import BorzoiConfig

        hparams = {key: self.params[key] for key in BORZOI_HPARAMS}
        # No crop: every bin of the window (TargetLengthCrop leaves a full-length target alone).
        return BorzoiConfig(
            **hparams, return_center_bins_only=True, bins_to_return=self.n_bins, enable_mouse_head=False
        )

    def _new_borzoi(self) -> torch.nn.Module:
        from borzoi_pytorch import Borzoi

        model = Borzoi(self._config())
        if self.params["channels"] is not None or self.params["final_channels"] is not None:
            _resize_convs(
                model,
                self.params["channels"] or list(BORZOI_CHANNELS),
                self.params["final_channels"] or BORZOI_FINAL_CHANNELS,
                int(self.params["dim"]),
            )
        _fit_positions(model, self.window_size // TRANSFORMER_BIN, self.params["trained_positions"])
        return model

    def _new_model(self) -> torch.nn.Module:
        model = self._new_borzoi()
        self._attach_head(model)
        return model

    def _attach_head(self, model: torch.nn.Module) -> None:
        """Replace Borzoi's human head by the scalar or track head (a fresh 1x1 convolution)."""
        import torch

        if self.params["head"] == "pretrained":
            return
        width = cast("torch.nn.Conv1d", model.human_head).in_channels
        model.human_head = torch.nn.Conv1d(width, int(self.params["n_tracks"]), kernel_size=1)

    def _pretrained_borzoi(self, directory: Path) -> torch.nn.Module:
        """Borzoi from a local ``save_pretrained``-style directory: its config, then the weights
        with ``load_state_dict`` (``from_pretrained`` leaves the attention's position buffer on the
        meta device)."""
        from borzoi_pytorch.config_borzoi import BorzoiConfig

        config_path, weights_path = directory / "config.json", directory / "model.safetensors"
        missing = [p.name for p in (config_path, weights_path) if not p.is_file()]
        if missing:
            pickles = (
                sorted(p.name for p in directory.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".h5"))
                if directory.is_dir()
                else []
            )
            hint = (
                f" It holds {', '.join(pickles)}, which varscore does not read: convert to model.safetensors."
                if pickles
                else ""
            )
            raise InputError(
                f"Borzoi pretrained_dir {str(directory)!r} lacks {', '.join(missing)}: it must be a local directory "
                f"holding config.json and model.safetensors (varscore never downloads weights).{hint}"
            )
        from varscore.plugin.torch_backbone import check_tensor_dtypes
        from varscore_plugins.borzoi.checkpoint import BorzoiCheckpoint

        BorzoiCheckpoint().check_config(read_config(directory), config_path)  # one-line errors, not a parser's
        try:
            config = BorzoiConfig.from_json_file(str(config_path))
        except (OSError, ValueError, TypeError) as err:
            raise InputError(f"Cannot read the Borzoi config {config_path}: {err}") from err
        for key in BORZOI_HPARAMS:
            if hasattr(config, key):
                self.params[key] = copy.deepcopy(getattr(config, key))
        _check_params(self.params)
        model = self._new_borzoi()
        state = read_weights(weights_path, self.label, InputError)
        check_tensor_dtypes(state, weights_path)
        state = {k: v for k, v in state.items() if not k.startswith("mouse_head.")}
        problem = load_state_checked(model, state)
        if problem:
            raise InputError(f"The weights in {directory} do not fit the Borzoi its config.json describes: {problem}")
        logger.info("Loaded pre-trained Borzoi from %s (dim=%s, depth=%s)", directory, config.dim, config.depth)
        return model

    # -- inference ----------------------------------------------------------------------------

    def _forward(self, x: torch.Tensor, model: torch.nn.Module | None = None) -> torch.Tensor:
        return _forward(self.model_ if model is None else model, x, self.params["head"])

    def ism(
        self,
        reference: np.ndarray,
        substitutions: Sequence[tuple[int, str]],
        reduce: Reducer,
        batch_size: int = 8,
    ) -> ISMResult:
        """In-silico mutagenesis with the reference's convolutional activations computed once
        (:class:`varscore_plugins.fast_ism.BorzoiISM`: exact, equal to full forward passes up to float
        round-off). Other substitutions than single bases, and ``ism_method="naive"`` (or
        ``$VARSCORE_ISM=naive``), take full forward passes."""
        from varscore_plugins.fast_ism import BorzoiISM, split_ism

        method = self.ism_method or os.environ.get("VARSCORE_ISM", "").strip().lower() or "fast"
        if method not in ("fast", "naive"):
            raise InputError(f"Unknown ISM method {method!r} (from ism_method or $VARSCORE_ISM); choose fast or naive.")
        if method == "naive":
            return super().ism(reference, substitutions, reduce, batch_size)
        reference = self._checked_ism_input(reference, batch_size)

        def fast(subs: list[tuple[int, str]]) -> tuple[np.ndarray, np.ndarray]:
            window = BorzoiISM(self, reference, reduce)
            rows = [window.alternates(subs[i : i + batch_size]) for i in range(0, len(subs), batch_size)]
            return window.reference_output, np.concatenate(rows)

        return split_ism(
            fast,
            lambda subs: super(BorzoiBackbone, self).ism(reference, subs, reduce, batch_size),
            substitutions,
            self.window_size,
        )

    def head_module(self) -> torch.nn.Module:
        """The output layer (trained alone while the trunk is frozen)."""
        self._require_built()
        return cast("torch.nn.Module", self.model_.human_head)


def _forward(model: torch.nn.Module, x: torch.Tensor, head: str) -> torch.Tensor:
    """``(B, L, 4)`` -> ``(B, bins, tracks)``: Borzoi's forward on channels-first input, with the
    head's activation (identity for the scalar head, softplus otherwise) in float32."""
    import torch

    borzoi: Any = model  # borzoi-pytorch's submodules, untyped
    embeddings = borzoi.final_joined_convs(borzoi.get_embs_after_crop(x.transpose(1, 2)))
    with torch.autocast(x.device.type, enabled=False):
        out = borzoi.human_head(embeddings.float())
        if head != "scalar":
            out = torch.nn.functional.softplus(out)
    return out.transpose(1, 2)


def _resize_convs(model: torch.nn.Module, channels: list[int], final: int, dim: int) -> None:
    """Give Borzoi's convolutions the widths ``channels`` (stem, 5 tower blocks) and ``final``,
    keeping every module name (so state dicts keep Borzoi's keys)."""
    import torch
    from borzoi_pytorch.pytorch_borzoi_model import ConvBlock

    pool = cast("torch.nn.Module", model._max_pool)
    cast(Any, model.conv_dna).conv_layer = torch.nn.Conv1d(4, channels[0], kernel_size=15, padding="same")
    tower: list[torch.nn.Module] = []
    for i in range(5):
        if i:
            tower.append(pool)
        tower.append(ConvBlock(in_channels=channels[i], out_channels=channels[i + 1], kernel_size=5))
    model.res_tower = torch.nn.Sequential(*tower)
    model.unet1 = torch.nn.Sequential(pool, ConvBlock(in_channels=channels[5], out_channels=dim, kernel_size=5))
    model.horizontal_conv0 = ConvBlock(in_channels=channels[5], out_channels=dim, kernel_size=1)
    model.final_joined_convs = torch.nn.Sequential(
        ConvBlock(in_channels=dim, out_channels=final, kernel_size=1),
        torch.nn.Dropout(0.1),
        torch.nn.GELU(approximate="tanh"),
    )
    model.human_head = torch.nn.Conv1d(final, PRETRAINED_TRACKS, kernel_size=1)


def _fit_positions(model: torch.nn.Module, n_positions: int, trained: int | None = None) -> None:
    """Rebuild every attention layer's relative-position table for ``n_positions`` transformer
    positions (borzoi-pytorch builds it for 4,096, and its relative shift assumes the table matches
    the sequence). ``trained``: the length the positional feature widths were trained at (4,096
    for the published Borzoi weights, so that a shorter window sees the features they expect;
    None: ``n_positions``)."""
    import inspect

    from borzoi_pytorch.pytorch_borzoi_transformer import Attention, get_positional_embed

    # borzoi-pytorch < 0.5 takes (seq_len, features, device); 0.5 adds the training length the
    # feature widths scale with. Passing the window's own length as both keeps one table for all.
    takes_train_length = "seq_len_train" in inspect.signature(get_positional_embed).parameters
    for module in model.modules():
        if isinstance(module, Attention):
            device = module.to_v.weight.device
            if takes_train_length:
                module.positions = get_positional_embed(
                    n_positions, trained or n_positions, module.num_rel_pos_features, device
                )
            else:
                module.positions = get_positional_embed(n_positions, module.num_rel_pos_features, device)
