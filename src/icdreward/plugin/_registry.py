"""The table of named components that plugins registered."""

from __future__ import annotations

from typing import Any, Literal, Protocol

import attrs

from icdreward.audit import Strategy
from icdreward.components import Parser, Reward
from icdreward.errors import DuplicateComponentError

__all__ = ["ComponentKind", "ComponentRegistry", "Register", "RegisteredComponent"]

ComponentKind = Literal["reward", "parser", "strategy"]
_BASES: dict[str, tuple[type[Any], str]] = {
    "reward": (Reward, "icdreward.Reward"),
    "parser": (Parser, "icdreward.Parser"),
    "strategy": (Strategy, "icdreward.audit.Strategy"),
}


class Register(Protocol):
    """The callable a registration hook receives."""

    def __call__(self, component: type[Any], *, name: str | None = None) -> None:
        """Register ``component`` under ``name`` (default: its ``name`` attribute)."""


@attrs.frozen
class RegisteredComponent:
    """A component class and the plugin that registered it."""

    kind: ComponentKind
    name: str
    cls: type[Any]
    plugin: str


@attrs.define
class ComponentRegistry:
    """Components by kind and name; a second registration of a name is an error."""

    rewards: dict[str, RegisteredComponent] = attrs.field(factory=dict)
    parsers: dict[str, RegisteredComponent] = attrs.field(factory=dict)
    strategies: dict[str, RegisteredComponent] = attrs.field(factory=dict)

    def table(self, kind: ComponentKind) -> dict[str, RegisteredComponent]:
        """The components of one kind, by name."""
        if kind == "reward":
            return self.rewards
        return self.parsers if kind == "parser" else self.strategies

    def add(
        self, kind: ComponentKind, cls: type[Any], plugin: str, name: str | None = None
    ) -> None:
        """Add ``cls`` registered by ``plugin``.

        Raises:
            TypeError: ``cls`` is not a subclass of the kind's base class or has no name.
            DuplicateComponentError: the name is taken, naming both plugins.
        """
        base, public = _BASES[kind]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(f"a {kind} must be a subclass of {public}, got {cls!r}")
        key = name or getattr(cls, "name", None)
        if not isinstance(key, str) or not key:
            raise TypeError(f"{cls.__name__} has no name: set the class attribute 'name'")
        table = self.table(kind)
        if key in table:
            raise DuplicateComponentError(kind, key, table[key].plugin, plugin)
        table[key] = RegisteredComponent(kind, key, cls, plugin)
