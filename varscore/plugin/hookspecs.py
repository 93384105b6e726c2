"""Plugin hooks. Hooks only register classes; behaviour lives on the base classes in
:mod:`varscore.plugin.contracts`. Every hook is called once per plugin when the plugin manager starts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from varscore.plugin.checkpoint_format import CheckpointFormat
    from varscore.plugin.contracts import Annotator, Backbone, OutputMode

PROJECT = "varscore"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_backbones(register: Callable[[type[Backbone]], None]) -> None:
    """Register model architectures.

    Called once at start-up. Call ``register(cls)`` for each :class:`~varscore.plugin.contracts.Backbone`
    subclass the plugin provides; ``cls.name`` is the name users type (``--backbone NAME`` and the
    ``backbone`` field of a bundle manifest). A name registered by two plugins is an error.
    """


@hookspec
def register_output_modes(register: Callable[[type[OutputMode]], None]) -> None:
    """Register output modes (how a prediction is reduced to a score).

    Called once at start-up. Call ``register(cls)`` for each :class:`~varscore.plugin.contracts.OutputMode`
    subclass; ``cls.name`` is the key used in manifests (``scalar``, ``track``).
    """


@hookspec
def register_annotators(register: Callable[[type[Annotator]], None]) -> None:
    """Register variant annotators (``varscore annotate --annotate NAME``).

    Called once at start-up. Call ``register(cls)`` for each :class:`~varscore.plugin.contracts.Annotator`
    subclass; ``cls.name`` is the name users type.
    """


@hookspec
def register_checkpoint_formats(register: Callable[[type[CheckpointFormat]], None]) -> None:
    """Register readers of published checkpoint layouts (``varscore models import DIR --format NAME``).

    Called once at start-up, when the registry is first used. Call ``register(cls)`` for each
    :class:`~varscore.plugin.checkpoint_format.CheckpointFormat` subclass the plugin provides;
    ``cls.name`` is the name ``--format`` takes and ``cls.backbone`` the registered backbone the
    imported bundle uses. Without ``--format``, the first installed format (by name) whose
    :meth:`~varscore.plugin.checkpoint_format.CheckpointFormat.detect` accepts the directory's
    ``config.json`` reads it. A name registered by two plugins is an error naming both.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands to the ``varscore`` command group.

    Called once when the CLI is built; use ``@cli.command()`` to add commands. Plugins must
    import heavy libraries inside the command body, never at module level.
    """


HOOK_NAMES: tuple[str, ...] = (
    "register_backbones",
    "register_output_modes",
    "register_annotators",
    "register_checkpoint_formats",
    "register_commands",
)

__all__: list[Any] = ["hookimpl", "hookspec", *HOOK_NAMES]
