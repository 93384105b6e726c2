"""The plugin manager: loads built-in and third-party plugins from the ``varscore`` entry-point
group and keeps the registry of backbones, output modes, annotators and checkpoint formats they
provide."""

from __future__ import annotations

import importlib.metadata
import logging
import os
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

import varscore.plugin.hookspecs as hookspecs
from varscore.errors import PluginError

if TYPE_CHECKING:
    import click

    from varscore.plugin.checkpoint_format import CheckpointFormat
    from varscore.plugin.contracts import Annotator, Backbone, OutputMode

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "varscore"
LOAD_ENV = "VARSCORE_LOAD_PLUGINS"
KINDS = ("backbones", "output_modes", "annotators", "checkpoint_formats")


@dataclass
class Registry:
    """What the loaded plugins provide: ``{kind: {name: (class, plugin name)}}``."""

    entries: dict[str, dict[str, tuple[type, str]]] = field(default_factory=lambda: {kind: {} for kind in KINDS})

    def add(self, kind: str, cls: type, plugin: str) -> None:
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"Plugin '{plugin}' registered {cls.__name__} without a 'name' class attribute.")
        table = self.entries[kind]
        if name in table:
            other = table[name][1]
            raise PluginError(
                f"Duplicate {kind[:-1].replace('_', ' ')} name '{name}': registered by plugin "
                f"'{other}' and by plugin '{plugin}'. Uninstall one, or restrict loading with "
                f"{LOAD_ENV}."
            )
        table[name] = (cls, plugin)

    def get(self, kind: str, name: str) -> type:
        table = self.entries[kind]
        if name not in table:
            installed = ", ".join(sorted(table)) or "none"
            label = kind[:-1].replace("_", " ")
            raise PluginError(
                f"Unknown {label} '{name}'. Installed: {installed}. "
                f"Run 'varscore plugins' to see what each plugin provides."
            )
        return table[name][0]

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])


class PluginManager:
    """Loads plugins once and answers registry look-ups."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._registry: Registry | None = None
        self._loaded = False
        self._distributions: dict[str, tuple[str, str]] = {}  # plugin -> (distribution, version)

    def load(self) -> None:
        """Load entry-point plugins (restricted by ``VARSCORE_LOAD_PLUGINS``) exactly once."""
        if self._loaded:
            return
        self._loaded = True
        wanted = os.environ.get(LOAD_ENV)
        allowed = {n.strip() for n in wanted.split(",") if n.strip()} if wanted else None
        found: set[str] = set()
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if allowed is not None and ep.name not in allowed:
                continue
            if self.pm.get_plugin(ep.name) is not None:
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken third-party plugin must not hide the others
                raise PluginError(f"Plugin '{ep.name}' ({ep.value}) failed to import: {exc}") from exc
            self._register_checked(module, ep.name)
            found.add(ep.name)
            if ep.dist is not None:
                self._distributions[ep.name] = (ep.dist.name, ep.dist.version)
        if allowed is not None and allowed - found:
            missing = ", ".join(sorted(allowed - found))
            logger.warning("%s names plugins that are not installed: %s", LOAD_ENV, missing)

    def register(self, plugin: ModuleType | object, name: str) -> None:
        """Register a plugin object (a module or class with hook implementations) by hand.

        Tests and notebooks use this; installed packages use the entry-point group.
        """
        self.load()
        self._register_checked(plugin, name)
        self._registry = None

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._registry = None

    def _register_checked(self, plugin: Any, name: str) -> None:
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except (pluggy.PluginValidationError, ValueError) as exc:
            if self.pm.get_plugin(name) is not None:
                self.pm.unregister(name=name)
            raise PluginError(f"Plugin '{name}' is invalid: {exc}") from exc

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self.load()
            registry = Registry()
            for kind in KINDS:
                hook = getattr(self.pm.hook, f"register_{kind}")
                for impl in hook.get_hookimpls():
                    plugin = impl.plugin_name
                    impl.function(register=lambda cls, k=kind, p=plugin: registry.add(k, cls, p))
            self._registry = registry
        return self._registry

    def add_commands(self, cli: click.Group) -> None:
        self.load()
        self.pm.hook.register_commands(cli=cli)

    def plugin_names(self) -> list[str]:
        self.load()
        return sorted(name for name, _ in self.pm.list_name_plugin())

    def distribution_of(self, kind: str, name: str) -> tuple[str, str] | None:
        """The installed package (``(name, version)``) whose plugin registered ``name``; None for
        plugins registered by hand."""
        entry = self.registry.entries[kind].get(name)
        return self._distributions.get(entry[1]) if entry else None

    def provided_by(self, plugin: str) -> dict[str, list[str]]:
        """What one plugin registers: ``{kind: [names]}``."""
        out: dict[str, list[str]] = {}
        for kind, table in self.registry.entries.items():
            names = sorted(n for n, (_, p) in table.items() if p == plugin)
            if names:
                out[kind] = names
        plugin_obj = self.pm.get_plugin(plugin)
        if plugin_obj is not None and hasattr(plugin_obj, "register_commands"):
            out["commands"] = ["(adds commands)"]
        return out


manager = PluginManager()


def get_backbone(name: str, distribution: str | None = None) -> type[Backbone]:
    """The backbone class registered as ``name``. ``distribution``: the package that provided it
    when a bundle was saved, named in the error when it is not installed now."""
    if distribution and name not in manager.registry.entries["backbones"]:
        installed = ", ".join(manager.registry.names("backbones")) or "none"
        restricted = os.environ.get(LOAD_ENV)
        hint = f" ({LOAD_ENV}={restricted} may be excluding it)" if restricted else ""
        raise PluginError(
            f"backbone '{name}' is not installed; pip install {distribution} (the package that provided it when "
            f"this model was saved){hint}. Installed backbones: {installed}."
        )
    return manager.registry.get("backbones", name)


def get_output_mode(name: str) -> type[OutputMode]:
    return manager.registry.get("output_modes", name)


def check_output_mode(backbone: type[Backbone] | Backbone, mode: str) -> None:
    """Raise :class:`PluginError` unless ``backbone`` declares output mode ``mode`` in its
    ``output_modes``."""
    supported = tuple(getattr(backbone, "output_modes", ()))
    if mode not in supported:
        raise PluginError(
            f"Backbone '{backbone.name}' does not support output mode '{mode}'; it supports: "
            f"{', '.join(supported) or 'none'}."
        )


def get_annotator(name: str) -> type[Annotator]:
    return manager.registry.get("annotators", name)


def get_checkpoint_format(name: str) -> type[CheckpointFormat]:
    """The checkpoint format registered as ``name`` (``varscore models import --format NAME``)."""
    return manager.registry.get("checkpoint_formats", name)


def checkpoint_formats() -> list[str]:
    """Names of the installed checkpoint formats, sorted."""
    return manager.registry.names("checkpoint_formats")
