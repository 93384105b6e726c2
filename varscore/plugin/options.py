"""Typed options of plugins: each backbone, output mode and annotator declares the keyword
parameters it accepts as a nested ``Options`` dataclass (llm's per-model ``Options`` style), with a
default and a one-line description per option; unknown keys are refused with one line naming the
known ones."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from varscore.errors import InputError, PluginError


def option(default: Any, doc: str) -> Any:
    """A field of a :class:`PluginOptions` dataclass: its ``default`` (dicts and lists are copied for
    each instance) and ``doc``, the one line ``varscore plugins`` and the docs show."""
    if isinstance(default, (dict, list, set)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata={"doc": doc})
    return dataclasses.field(default=default, metadata={"doc": doc})


@dataclasses.dataclass
class PluginOptions:
    """Base of a plugin class's ``Options``: subclass it as a ``@dataclass`` whose fields, each
    declared with :func:`option`, are the accepted keys. ``params`` of a manifest or of
    ``--param KEY=VALUE`` are parsed by :meth:`parse`."""

    @classmethod
    def parse(cls, owner: str, params: Mapping[str, Any]) -> PluginOptions:
        """``params`` as options (defaults filled in); ``owner`` (e.g. ``"Backbone 'enformer'"``)
        names the class in the one-line error for unknown keys."""
        known = cls.names()
        unknown = sorted(set(params) - set(known))
        if unknown:
            allowed = ", ".join(sorted(known)) or "none"
            raise InputError(f"{owner}: unknown option(s) {', '.join(unknown)}. Allowed: {allowed}.")
        return cls(**params)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every option with its default value."""
        return cls().as_params()

    @classmethod
    def docs(cls) -> dict[str, str]:
        """Every option with its one-line description."""
        return {f.name: str(f.metadata.get("doc", "")) for f in dataclasses.fields(cls)}

    def as_params(self) -> dict[str, Any]:
        """The options as a plain ``{key: value}`` dictionary (what ``params`` of a plugin holds)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def options_from_defaults(owner: str, defaults: Mapping[str, Any]) -> type[PluginOptions]:
    """A :class:`PluginOptions` dataclass for a class that still declares its options as a
    ``default_params`` dictionary (no descriptions)."""
    fields = [(key, Any, option(value, "")) for key, value in defaults.items()]
    return dataclasses.make_dataclass(f"{owner}Options", fields, bases=(PluginOptions,))


class Configurable:
    """What backbones, output modes and annotators share: ``Options`` declares the accepted keyword
    parameters; ``default_params`` (every option with its default) follows from it. A subclass
    that declares only ``default_params`` gets an ``Options`` made from it."""

    Options: ClassVar[type[PluginOptions]] = PluginOptions
    default_params: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Options" in cls.__dict__:
            if "__dataclass_fields__" not in cls.Options.__dict__:
                raise PluginError(f"{cls.__name__}.Options must be decorated with @dataclass.")
            cls.default_params = cls.Options.defaults()
        elif "default_params" in cls.__dict__:
            cls.Options = options_from_defaults(cls.__name__, cls.default_params)

    @classmethod
    def parse_params(cls, owner: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` checked against ``Options`` and completed with the defaults."""
        return cls.Options.parse(owner, params).as_params()


__all__ = ["Configurable", "PluginOptions", "option", "options_from_defaults"]
