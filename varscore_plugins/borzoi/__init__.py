"""The Borzoi plugin (borzoi-pytorch): the ``borzoi`` backbone (:mod:`.backbone`) and the ``borzoi``
checkpoint format (:mod:`.checkpoint`). torch and borzoi-pytorch are imported only when a model is
built or loaded, so importing this plugin stays cheap. Install with ``pip install varscore[borzoi]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from varscore.plugin import hookimpl
from varscore_plugins.borzoi.backbone import (
    BORZOI_CHANNELS,
    BORZOI_FINAL_CHANNELS,
    PRETRAINED_TRACKS,
    BorzoiBackbone,
    _fit_positions,
    tiny_params,
)
from varscore_plugins.borzoi.checkpoint import BorzoiCheckpoint

if TYPE_CHECKING:
    from varscore.plugin import Backbone, CheckpointFormat

__all__ = [
    "BORZOI_CHANNELS",
    "BORZOI_FINAL_CHANNELS",
    "PRETRAINED_TRACKS",
    "BorzoiBackbone",
    "BorzoiCheckpoint",
    "_fit_positions",
    "tiny_params",
]


@hookimpl
def register_backbones(register: Callable[[type[Backbone]], None]) -> None:
    register(BorzoiBackbone)


@hookimpl
def register_checkpoint_formats(register: Callable[[type[CheckpointFormat]], None]) -> None:
    register(BorzoiCheckpoint)
