"""The ``enformer`` checkpoint format: the layout enformer-pytorch publishes (and ``save_pretrained``
writes), read into the Enformer backbone.

Key aliasing: enformer-pytorch registers its stem, conv tower, transformer and final pointwise both
under their own names and inside ``_trunk`` (``stem.*`` is ``_trunk.1.*``, ...), so a file written
by ``torch.save`` holds both names (checked equal here) and one written by safetensors keeps one of
them; transformers prefixes the base model's keys with ``enformer.`` when a model with a head saved
them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from varscore.errors import InputError
from varscore.plugin.checkpoint_format import (
    CanonicalState,
    CheckpointFormat,
    ImportRequest,
    bad_config_field,
    check_config_numbers,
)
from varscore_plugins.enformer.backbone import ENFORMER_HPARAMS

#: enformer-pytorch's ``_trunk`` children that are also attributes of the model.
TRUNK_ALIASES = {
    "_trunk.1.": "stem.",
    "_trunk.2.": "conv_tower.",
    "_trunk.4.": "transformer.",
    "_trunk.6.": "final_pointwise.",
}
#: config.json fields that are backbone hyper-parameters of the same name.
CONFIG_KEYS = tuple(k for k in ENFORMER_HPARAMS if k not in ("use_tf_gamma", "use_checkpointing"))
#: config.json fields read as whole numbers (``depth``: at least 0, the others at least 1) and as rates.
CONFIG_INTS = ("dim", "depth", "heads", "attn_dim_key", "num_downsamples", "dim_divisible_by")
CONFIG_RATES = ("dropout_rate", "attn_dropout", "pos_dropout")


class EnformerCheckpoint(CheckpointFormat):
    """enformer-pytorch's ``config.json`` (``model_type: enformer``) + weights, imported with
    Enformer's own output heads (``head="pretrained"``). Scored by default: the human CAGE
    whole-blood track 4950 summed over the 3 centre bins."""

    name: ClassVar[str] = "enformer"
    backbone: ClassVar[str] = "enformer"
    model_types: ClassVar[tuple[str, ...]] = ("enformer",)
    key_prefixes: ClassVar[tuple[str, ...]] = ("enformer.",)
    default_window: ClassVar[int] = 196_608
    default_output: ClassVar[dict[str, Any]] = {"track": 4950, "center_bins": 3, "stat": "center"}
    writes_pretrained_dir: ClassVar[bool] = True

    def check_config(self, config: Mapping[str, Any], path: Path) -> None:
        """Whole-number sizes, rates in [0, 1], and ``output_heads`` mapping head names to track counts."""
        check_config_numbers(config, path, CONFIG_INTS, CONFIG_RATES, least={"depth": 0})
        if "output_heads" in config:
            heads = config["output_heads"]
            if (
                not isinstance(heads, dict)
                or not heads
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in heads.values())
            ):
                raise bad_config_field(
                    config,
                    path,
                    "output_heads",
                    'an object of head names and track counts, e.g. {"human": 5313, "mouse": 1643}',
                )

    def canonical_state(self, state: dict[str, Any], config: Mapping[str, Any], directory: Path) -> CanonicalState:
        """One name per aliased enformer-pytorch tensor (its attribute name); where a file holds
        both names they must hold the same values."""
        import torch

        out: dict[str, Any] = {}
        for key, tensor in state.items():
            alias = next(
                (attr + key[len(trunk) :] for trunk, attr in TRUNK_ALIASES.items() if key.startswith(trunk)), None
            )
            if alias is None:
                out.setdefault(key, tensor)
                continue
            if alias in state:
                other = state[alias]
                if tuple(other.shape) != tuple(tensor.shape) or not torch.equal(other, tensor):
                    raise InputError(
                        f"{directory}: {key} and its alias {alias} hold different values; the file is corrupt."
                    )
                continue
            out[alias] = tensor
        return CanonicalState(out)

    def backbone_params(self, config: Mapping[str, Any], window_size: int, request: ImportRequest) -> dict[str, Any]:
        params = {key: config[key] for key in CONFIG_KEYS if key in config}
        if isinstance(params.get("output_heads"), dict):
            params["output_heads"] = {str(k): int(v) for k, v in params["output_heads"].items()}
        return {
            **params,
            "window_size": window_size,
            "head": "pretrained",
            "output_head": request.output_head,
            "use_tf_gamma": bool(request.use_tf_gamma),
            "seed": 0,
        }

    def output_head(self, request: ImportRequest) -> str:
        return request.output_head

    def write_pretrained_config(self, params: Mapping[str, Any], path: Path) -> None:
        """enformer-pytorch's ``EnformerConfig`` of ``params`` as JSON."""
        from enformer_pytorch import EnformerConfig

        config = EnformerConfig(
            **{k: params[k] for k in CONFIG_KEYS if k in params},
            target_length=-1,
            use_tf_gamma=bool(params.get("use_tf_gamma")),
        )
        config.to_json_file(str(path))
