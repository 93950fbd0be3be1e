"""Plugin discovery with one guard per plugin.

Every entry point of the ``icdreward`` group is imported under its own guard: a
plugin that fails to import, or whose registration hook raises, is named in a
:class:`~icdreward.errors.PluginWarning` and skipped, so one broken third-party
distribution never takes the engine down. ``strict=True`` raises instead.

Entry points may also register CLI subcommands (``icdreward_register_commands``);
those are collected only when asked for (:attr:`PluginManager.commands`, by the CLI),
so building an engine never runs a command hook. A plugin may register only commands.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from importlib import metadata
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from icdreward.errors import PluginLoadError, PluginWarning
from icdreward.plugin import _spec
from icdreward.plugin._registry import ComponentKind, ComponentRegistry

if TYPE_CHECKING:
    from icdreward.cli.command import Command

__all__ = ["FailedPlugin", "LoadedPlugin", "PluginCommand", "PluginManager"]

_COMMAND_HOOK = "icdreward_register_commands"

_HOOKS: dict[ComponentKind, str] = {
    "reward": "icdreward_register_rewards",
    "parser": "icdreward_register_parsers",
    "strategy": "icdreward_register_strategies",
}


@attrs.frozen
class LoadedPlugin:
    """A plugin that loaded, with what it registered (components and CLI commands)."""

    name: str
    distribution: str | None
    version: str | None
    module: str
    rewards: tuple[str, ...] = ()
    parsers: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    strategies: tuple[str, ...] = ()


@attrs.frozen
class PluginCommand:
    """A CLI subcommand and the plugin that registered it."""

    plugin: str
    command: Command


@attrs.frozen
class FailedPlugin:
    """A plugin that could not be loaded, and why."""

    name: str
    distribution: str | None
    version: str | None
    reason: str


@attrs.frozen
class _Source:
    name: str
    distribution: str | None
    version: str | None
    module: str


class PluginManager:
    """Loads plugins and collects the components they register.

    Args:
        disable: plugin (entry point) names not to load.
        strict: raise :class:`~icdreward.errors.PluginLoadError` on the first broken
            plugin instead of warning and skipping it.
        entrypoints: discover installed plugins of the ``icdreward`` entry-point group.
    """

    def __init__(
        self, *, disable: Iterable[str] = (), strict: bool = False, entrypoints: bool = True
    ) -> None:
        self.disabled = frozenset(disable)
        self.strict = strict
        self._pm = pluggy.PluginManager(_spec.PROJECT_NAME)
        self._pm.add_hookspecs(_spec)
        self._sources: dict[str, _Source] = {}
        self._failed: list[FailedPlugin] = []
        self._registry: ComponentRegistry | None = None
        self._provided: dict[str, dict[ComponentKind, list[str]]] = {}
        self._commands: dict[str, PluginCommand] | None = None
        if entrypoints:
            self.load_entrypoints()

    # -- loading -----------------------------------------------------------------

    def load_entrypoints(self, group: str = _spec.PROJECT_NAME) -> None:
        """Import and register every entry point of ``group``, each under its own guard."""
        for ep in sorted(metadata.entry_points(group=group), key=lambda e: e.name):
            if ep.name in self.disabled:
                continue
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            taken = self._sources.get(ep.name)
            if taken is not None:
                # The same distribution seen twice (two paths) is harmless; another one
                # publishing the same name must not silently replace a plugin.
                if taken.distribution != dist:
                    reason = (
                        f"the plugin name {ep.name!r} is already taken by "
                        f"distribution {taken.distribution}"
                    )
                    self._fail(ep.name, dist, version, reason, ValueError(reason))
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                self._fail(ep.name, dist, version, f"import of {ep.value!r} failed: {exc!r}", exc)
                continue
            self._add(plugin, _Source(ep.name, dist, version, ep.value))

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register an in-process plugin object or module (tests, notebooks).

        ``plugin`` holds ``@hookimpl`` functions, like a module published through
        the entry-point group would.
        """
        key = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        if key in self.disabled:
            return
        module = getattr(plugin, "__name__", type(plugin).__qualname__)
        self._add(plugin, _Source(key, None, None, str(module)))

    def _add(self, plugin: object, source: _Source) -> None:
        try:
            self._pm.register(plugin, name=source.name)
        except Exception as exc:  # pluggy validates hook signatures here
            self._fail(source.name, source.distribution, source.version, repr(exc), exc)
            return
        try:
            # A misspelt hook (``icdreward_register_reward``) registers silently and is
            # never called; earlier plugins passed this check, so a failure is this one's.
            self._pm.check_pending()
        except Exception as exc:
            self._pm.unregister(name=source.name)
            self._fail(source.name, source.distribution, source.version, str(exc), exc)
            return
        self._sources[source.name] = source
        self._registry = None
        self._commands = None

    def _fail(
        self, name: str, dist: str | None, version: str | None, reason: str, exc: BaseException
    ) -> None:
        self._failed.append(FailedPlugin(name, dist, version, reason))
        origin = f" (distribution {dist} {version})" if dist else ""
        message = f"icdreward plugin {name!r}{origin} was skipped: {reason}"
        if self.strict:
            raise PluginLoadError(message) from exc
        warnings.warn(message, PluginWarning, stacklevel=3)

    # -- commands ----------------------------------------------------------------

    @property
    def commands(self) -> dict[str, PluginCommand]:
        """The CLI subcommands the loaded plugins register, by name (collected once).

        Each plugin's ``icdreward_register_commands`` runs under its own guard: one
        that raises, or registers something that is not a
        :class:`~icdreward.cli.command.Command`, has its commands skipped with a
        :class:`~icdreward.errors.PluginWarning` naming it (and is listed in
        :attr:`failed`); its reward components are not affected. A command name that
        an earlier plugin (in load order) registered is skipped with a warning naming
        both.
        """
        if self._commands is None:
            _ = self.registry  # a plugin whose reward or parser hook raised is gone first
            self._commands = self._collect_commands()
        return self._commands

    def _collect_commands(self) -> dict[str, PluginCommand]:
        # Imported here: the CLI's parts are only needed when commands are.
        from icdreward.cli.command import Command

        found: dict[str, PluginCommand] = {}
        for impl in getattr(self._pm.hook, _COMMAND_HOOK).get_hookimpls():
            plugin = impl.plugin_name
            staged: list[Command] = []

            def register(command: Command, _staged: list[Command] = staged) -> None:
                if not isinstance(command, Command):
                    raise TypeError(
                        f"a command must be an icdreward.cli.command.Command, got {command!r}"
                    )
                _staged.append(command)

            try:
                impl.function(register=register)
            except Exception as exc:
                source = self._sources[plugin]
                reason = f"{_COMMAND_HOOK} raised {exc!r}"
                self._fail(plugin, source.distribution, source.version, reason, exc)
                continue
            for command in staged:
                taken = found.get(command.name)
                if taken is not None:
                    message = (
                        f"icdreward plugin {plugin!r}: its command {command.name!r} was "
                        f"skipped: plugin {taken.plugin!r} registers a command of that name"
                    )
                    if self.strict:
                        raise PluginLoadError(message)
                    warnings.warn(message, PluginWarning, stacklevel=3)
                    continue
                found[command.name] = PluginCommand(plugin, command)
        return found

    # -- components --------------------------------------------------------------

    @property
    def registry(self) -> ComponentRegistry:
        """Every component the loaded plugins register (collected once, then cached)."""
        if self._registry is None:
            self._registry = self._collect()
        return self._registry

    def _collect(self) -> ComponentRegistry:
        registry = ComponentRegistry()
        self._provided = {}
        broken: set[str] = set()
        for kind, hook_name in _HOOKS.items():
            hook = getattr(self._pm.hook, hook_name)
            # Call each implementation on its own: the register callable must know which
            # plugin is registering (duplicates name both), and one plugin's exception
            # must not stop the others.
            # Load order, so a duplicate names the earlier plugin first.
            for impl in hook.get_hookimpls():
                plugin = impl.plugin_name
                if plugin in broken:
                    continue
                staged = ComponentRegistry()

                def register(
                    cls: type[Any],
                    *,
                    name: str | None = None,
                    _kind: ComponentKind = kind,
                    _plugin: str = plugin,
                    _staged: ComponentRegistry = staged,
                ) -> None:
                    _staged.add(_kind, cls, _plugin, name)

                try:
                    impl.function(register=register)
                except Exception as exc:
                    broken.add(plugin)
                    source = self._sources[plugin]
                    self._fail(
                        plugin,
                        source.distribution,
                        source.version,
                        f"{hook_name} raised {exc!r}",
                        exc,
                    )
                    continue
                for entry in staged.table(kind).values():
                    registry.add(kind, entry.cls, plugin, entry.name)
                    self._provided.setdefault(plugin, {}).setdefault(kind, []).append(entry.name)
        for plugin in broken:
            self._drop(registry, plugin)
        return registry

    def _drop(self, registry: ComponentRegistry, plugin: str) -> None:
        for kind in _HOOKS:
            table = registry.table(kind)
            for name in [n for n, e in table.items() if e.plugin == plugin]:
                del table[name]
        self._provided.pop(plugin, None)
        self._sources.pop(plugin, None)
        self._pm.unregister(name=plugin)

    # -- reporting ---------------------------------------------------------------

    @property
    def plugins(self) -> tuple[LoadedPlugin, ...]:
        """The loaded plugins with the components and commands each registered, by name."""
        _ = self.registry
        by_plugin: dict[str, list[str]] = {}
        for name, entry in self.commands.items():
            by_plugin.setdefault(entry.plugin, []).append(name)
        return tuple(
            LoadedPlugin(
                name=s.name,
                distribution=s.distribution,
                version=s.version,
                module=s.module,
                rewards=tuple(self._provided.get(s.name, {}).get("reward", ())),
                parsers=tuple(self._provided.get(s.name, {}).get("parser", ())),
                commands=tuple(by_plugin.get(s.name, ())),
                strategies=tuple(self._provided.get(s.name, {}).get("strategy", ())),
            )
            for s in sorted(self._sources.values(), key=lambda s: s.name)
        )

    @property
    def failed(self) -> tuple[FailedPlugin, ...]:
        """The plugins that failed to load (or to register their commands), with the reason."""
        _ = self.registry
        _ = self.commands
        return tuple(self._failed)
