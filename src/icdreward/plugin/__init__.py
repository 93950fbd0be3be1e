"""The plugin system: hook markers, the plugin manager and the component registry.

A plugin is a module with ``@hookimpl`` functions, published under the
``icdreward`` entry-point group::

    # my_plugin.py
    from icdreward.plugin import hookimpl

    @hookimpl
    def icdreward_register_rewards(register):
        register(MyReward)

    @hookimpl                      # optional: CLI subcommands (icdreward.cli.command)
    def icdreward_register_commands(register):
        register(MY_COMMAND)

    # pyproject.toml
    [project.entry-points.icdreward]
    my_plugin = "my_plugin"
"""

from __future__ import annotations

from icdreward.plugin._manager import FailedPlugin, LoadedPlugin, PluginCommand, PluginManager
from icdreward.plugin._registry import (
    ComponentKind,
    ComponentRegistry,
    Register,
    RegisteredComponent,
)
from icdreward.plugin._spec import PROJECT_NAME, hookimpl, hookspec

__all__ = [
    "PROJECT_NAME",
    "ComponentKind",
    "ComponentRegistry",
    "FailedPlugin",
    "LoadedPlugin",
    "PluginCommand",
    "PluginManager",
    "Register",
    "RegisteredComponent",
    "hookimpl",
    "hookspec",
]
