"""The ``borzoi`` checkpoint format: the layout borzoi-pytorch publishes (``config.json`` with
``model_type: borzoi`` + weights), read into the Borzoi backbone with its human head. transformers
prefixes the base model's keys with ``borzoi.`` when a model with a head saved them; the mouse head
is not imported (recorded as not imported)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from varscore.errors import InputError
from varscore.plugin.checkpoint_format import CanonicalState, CheckpointFormat, ImportRequest, check_config_numbers
from varscore_plugins.borzoi.backbone import BORZOI_HPARAMS

#: config.json fields that are backbone hyper-parameters of the same name: all of them.
CONFIG_KEYS = BORZOI_HPARAMS
#: config.json fields read as whole numbers of at least 1, and as rates.
CONFIG_INTS = ("dim", "depth", "heads", "attn_dim_key", "attn_dim_value")
CONFIG_RATES = ("dropout_rate", "attn_dropout", "pos_dropout")
#: The length borzoi-pytorch's attention positions were trained at (its relative-position features).
TRAINED_POSITIONS = 4096


class BorzoiCheckpoint(CheckpointFormat):
    """borzoi-pytorch's published replicates, imported with Borzoi's human head
    (``head="pretrained"``). Scored by default: the whole-blood RNA-seq track 7531 ("RNA:blood",
    GTEx via recount3) summed over the window."""

    name: ClassVar[str] = "borzoi"
    backbone: ClassVar[str] = "borzoi"
    model_types: ClassVar[tuple[str, ...]] = ("borzoi",)
    key_prefixes: ClassVar[tuple[str, ...]] = ("borzoi.",)
    default_window: ClassVar[int] = 524_288
    default_output: ClassVar[dict[str, Any]] = {"track": 7531, "center_bins": 1, "stat": "SUM"}
    writes_pretrained_dir: ClassVar[bool] = True

    def check_config(self, config: Mapping[str, Any], path: Path) -> None:
        """Whole-number sizes and rates in [0, 1]."""
        check_config_numbers(config, path, CONFIG_INTS, CONFIG_RATES)

    def canonical_state(self, state: dict[str, Any], config: Mapping[str, Any], directory: Path) -> CanonicalState:
        """The tensors without the mouse head; batch norms' ``num_batches_tracked``, which older
        files lack (unused when predicting), filled with zeros. Flashzoi (flash-attn's rotary
        attention) is refused."""
        import torch

        if config.get("flashed"):
            raise InputError(
                f"{directory} is a Flashzoi checkpoint (config.json: flashed=true): its attention is flash-attn's "
                "rotary multi-head attention, which varscore's Borzoi backbone does not build. Import the "
                "borzoi-replicate-N checkpoints instead."
            )
        dropped = sorted(k for k in state if k.startswith("mouse_head."))
        kept = {k: v for k, v in state.items() if k not in set(dropped)}
        for key in [k for k in kept if k.endswith(".running_mean")]:
            kept.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0, dtype=torch.long))
        return CanonicalState(kept, dropped)

    def backbone_params(self, config: Mapping[str, Any], window_size: int, request: ImportRequest) -> dict[str, Any]:
        params = {key: config[key] for key in CONFIG_KEYS if key in config}
        return {
            **params,
            "window_size": window_size,
            "head": "pretrained",
            "trained_positions": TRAINED_POSITIONS,
            "seed": 0,
        }

    def tracks_file(self) -> Path | None:
        """borzoi-pytorch's ``precomputed/targets.txt``, when the package is installed."""
        try:
            import borzoi_pytorch
        except ImportError:
            return None
        path = Path(borzoi_pytorch.__file__).parent / "precomputed" / "targets.txt"
        return path if path.is_file() else None

    def write_pretrained_config(self, params: Mapping[str, Any], path: Path) -> None:
        """borzoi-pytorch's ``BorzoiConfig`` of ``params`` as JSON."""
        from borzoi_pytorch.config_borzoi import BorzoiConfig

        BorzoiConfig(**{k: params[k] for k in CONFIG_KEYS if k in params}).to_json_file(str(path))
