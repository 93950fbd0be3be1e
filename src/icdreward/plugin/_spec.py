"""The hook specifications a plugin implements.

Hooks only *register* components; the engine runs them itself. pluggy hooks are
synchronous, catch nothing and have no time limits, so real work never happens
inside a hook call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

from icdreward.plugin._registry import Register

if TYPE_CHECKING:
    from icdreward.cli.command import Command

__all__ = [
    "PROJECT_NAME",
    "hookimpl",
    "hookspec",
    "icdreward_register_commands",
    "icdreward_register_parsers",
    "icdreward_register_rewards",
    "icdreward_register_strategies",
]

PROJECT_NAME = "icdreward"
"""The pluggy project name and the entry-point group plugins are published under."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def icdreward_register_rewards(register: Register) -> None:
    """Register reward components: call ``register(RewardClass)`` once per class."""


@hookspec
def icdreward_register_parsers(register: Register) -> None:
    """Register output parsers: call ``register(ParserClass)`` once per class."""


@hookspec
def icdreward_register_commands(register: Callable[[Command], None]) -> None:
    """Register CLI subcommands: call ``register(command)`` once per
    :class:`icdreward.cli.command.Command`.

    The command is then ``icdreward NAME``; its module is imported when any
    ``icdreward`` command starts, so keep it light (import heavy packages inside the
    command's ``run``). A command whose name is taken (by the core or an earlier
    plugin) is skipped with a warning naming both.
    """


@hookspec
def icdreward_register_strategies(register: Register) -> None:
    """Register audit strategies: call ``register(StrategyClass)`` once per class.

    A strategy (a subclass of :class:`icdreward.audit.Strategy`) builds a degenerate
    completion from an honest one; ``icdreward audit`` checks that no reward pays it as
    much as honesty. Ship strategies that attack your own reward components.
    """
