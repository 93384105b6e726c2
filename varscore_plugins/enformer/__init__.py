"""The Enformer plugin (enformer-pytorch): the ``enformer`` backbone (:mod:`.backbone`), the
``enformer`` checkpoint format (:mod:`.checkpoint`) and ``varscore models from-enformer``
(:mod:`.commands`). torch and enformer-pytorch are imported only when a model is built or loaded,
so importing this plugin stays cheap."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from varscore.plugin import hookimpl
from varscore_plugins.enformer.backbone import (
    EnformerBackbone,
    _conv_tower_channels,
    _use_window_norm,
    pooled_tracks,
    tiny_params,
)
from varscore_plugins.enformer.checkpoint import EnformerCheckpoint
from varscore_plugins.fast_ism import TowerGeometry

if TYPE_CHECKING:
    import click

    from varscore.plugin import Backbone, CheckpointFormat

__all__ = [
    "EnformerBackbone",
    "EnformerCheckpoint",
    "TowerGeometry",
    "_conv_tower_channels",
    "_use_window_norm",
    "pooled_tracks",
    "tiny_params",
]


@hookimpl
def register_backbones(register: Callable[[type[Backbone]], None]) -> None:
    register(EnformerBackbone)


@hookimpl
def register_checkpoint_formats(register: Callable[[type[CheckpointFormat]], None]) -> None:
    register(EnformerCheckpoint)


@hookimpl
def register_commands(cli: click.Group) -> None:
    """``varscore models from-enformer``: a single-track scorer from a local pre-trained Enformer."""
    from varscore_plugins.enformer.commands import add_commands

    add_commands(cli)
