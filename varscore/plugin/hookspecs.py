"""Plugin hooks. Hooks only register classes; behaviour lives on the base classes in
:mod:`varscore.plugin.contracts`. Every hook is called once per plugin when the plugin manager starts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

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
def register_commands(cli: click.Group) -> None:
    """Add click commands to the ``varscore`` command group.

    Called once when the CLI is built; use ``@cli.command()`` to add commands. Plugins must
    import heavy libraries inside the command body, never at module level.
    """


HOOK_NAMES: tuple[str, ...] = (
    "register_backbones",
    "register_output_modes",
    "register_annotators",
    "register_commands",
)

__all__: list[Any] = ["hookimpl", "hookspec", *HOOK_NAMES]
