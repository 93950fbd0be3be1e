"""Argument parsing, command discovery and error handling of the ``icdreward`` CLI.

Commands come from two places, collected by :func:`commands`:

* the core's own: a private module of :mod:`icdreward.cli` that defines ``COMMAND``
  (a :class:`~icdreward.cli.command.Command`)::

      # src/icdreward/cli/_hello.py
      from icdreward.cli.command import Command

      def _configure(parser: argparse.ArgumentParser) -> None:
          parser.add_argument("name")

      def _run(args: argparse.Namespace) -> int:
          print(f"hello {args.name}")
          return 0

      COMMAND = Command("hello", "say hello", _configure, _run)

  Nothing else has to change: :func:`commands` finds it;
* installed packages: the ``icdreward_register_commands`` hook of any entry point of
  the ``icdreward`` group (``docs/plugins.md``), loaded with the same guard as reward
  plugins: a plugin that fails to load or whose hook raises loses its commands, with
  one warning line naming it, and every other command still works.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn, TextIO

import attrs

from icdreward.cli._signals import Terminated
from icdreward.errors import (
    ConfigError,
    DuplicateComponentError,
    IcdRewardError,
    InputFileError,
    PluginLoadError,
    PluginWarning,
)
from icdreward.plugin import PluginManager

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "Command",
    "build_parser",
    "commands",
    "main",
    "run",
]

EXIT_OK = 0
EXIT_FAILURE = 1
"""The command ran but found a problem (an unknown code, a plugin that failed ...)."""
EXIT_USAGE = 2
"""Bad arguments, configuration or input file: nothing was done."""

PROG = "icdreward"

_USAGE_ERRORS: tuple[type[Exception], ...] = (
    ConfigError,
    InputFileError,
    PluginLoadError,
    DuplicateComponentError,
)


@attrs.frozen
class Command:
    """One subcommand of the CLI.

    Attributes:
        name: the subcommand (``icdreward NAME ...``).
        help: one line shown in ``icdreward --help``.
        configure: adds the command's arguments to its sub-parser.
        run: runs the command with the parsed arguments; returns the exit status.
        description: the text of ``icdreward NAME --help`` (default: ``help``).
        order: position in ``icdreward --help`` (lower first, then by name).
        report_plugin_warnings: print plugins that failed to load as warnings on
            stderr (a command that lists them itself turns this off).
    """

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None
    order: int = 100
    report_plugin_warnings: bool = True


def commands(manager: PluginManager | None = None) -> list[Command]:
    """Every command, in help order: the core's modules', then the plugins' (``manager``).

    Args:
        manager: the plugins whose ``icdreward_register_commands`` hooks are asked
            (default: a :class:`~icdreward.plugin.PluginManager` of the installed ones).

    A plugin's command named like one of the core's is skipped with a
    :class:`~icdreward.errors.PluginWarning` naming the plugin.
    """
    found = _core_commands()
    manager = manager if manager is not None else PluginManager()
    for name, entry in manager.commands.items():
        if name in found:
            warnings.warn(
                f"icdreward plugin {entry.plugin!r}: its command {name!r} was skipped: "
                "icdreward itself has a command of that name",
                PluginWarning,
                stacklevel=2,
            )
            continue
        found[name] = entry.command
    return sorted(found.values(), key=lambda c: (c.order, c.name))


def _core_commands() -> dict[str, Command]:
    package = importlib.import_module("icdreward.cli")
    found: dict[str, Command] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("__") or info.name == "_app":
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        command = getattr(module, "COMMAND", None)
        if isinstance(command, Command):
            if command.name in found:
                raise RuntimeError(f"two CLI modules define the command {command.name!r}")
            found[command.name] = command
    return found


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def build_parser(manager: PluginManager | None = None) -> argparse.ArgumentParser:
    """The argument parser with every discovered command (see :func:`commands`)."""
    from icdreward import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Rewards for ICD-10-CM clinical reasoning models.",
        epilog="Run 'icdreward COMMAND --help' for the options of a command.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for command in commands(manager):
        child = sub.add_parser(
            command.name,
            help=command.help,
            description=command.description or command.help,
            formatter_class=_Formatter,
        )
        command.configure(child)
        child.set_defaults(_command=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    # Plugin problems met while collecting commands are held back until the command is
    # known: ``icdreward plugins`` lists them instead of warning.
    with warnings.catch_warnings(record=True) as early:
        warnings.simplefilter("always", PluginWarning)
        parser = build_parser()
    held = [w for w in early if issubclass(w.category, PluginWarning)]
    for other in early:
        if not issubclass(other.category, PluginWarning):
            warnings.showwarning(
                other.message, other.category, other.filename, other.lineno, other.file
            )
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:  # --help, --version and usage errors
        for w in dict.fromkeys(str(w.message) for w in held):
            warn(w)
        return _status(exc.code)
    command: Command | None = getattr(args, "_command", None)
    if command is None:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: a command is required", file=sys.stderr)
        return EXIT_USAGE
    try:
        with _plugin_warnings(report=command.report_plugin_warnings, held=held):
            return command.run(args)
    except _USAGE_ERRORS as exc:
        error(exc)
        return EXIT_USAGE
    except IcdRewardError as exc:
        error(exc)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Terminated as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE


_SIGNALLED = frozenset({130, 129, 143})
"""Statuses of a run ended by SIGINT, SIGHUP or SIGTERM."""


def run(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``icdreward`` console script: :func:`main`, then exit with its status.

    A run ended by a signal has unwound by then (files closed, partial files gone), but
    a reward worker thread may still be in a call that outlived its batch, inside
    torch: finalising the interpreter under it can abort in C++ ("terminate called
    without an active exception"), so such a run ends with ``os._exit``.
    """
    status = main(argv)
    if status in _SIGNALLED:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def error(message: object) -> None:
    """Print ``message`` as one line on stderr, prefixed with ``icdreward: error:``."""
    print(f"{PROG}: error: {one_line(message)}", file=sys.stderr)


def warn(message: object) -> None:
    """Print ``message`` as one line on stderr, prefixed with ``icdreward: warning:``."""
    print(f"{PROG}: warning: {one_line(message)}", file=sys.stderr)


def one_line(message: object) -> str:
    """``str(message)`` with every run of whitespace (newlines too) made one space."""
    return " ".join(str(message).split())


@contextmanager
def _plugin_warnings(*, report: bool, held: Sequence[warnings.WarningMessage]) -> Iterator[None]:
    """Show each :class:`PluginWarning` as one clean line on stderr (or not at all).

    ``held`` are those already raised while the commands were collected: shown first.
    A message is shown once, however many plugin managers the command makes. Other
    warnings are shown as Python would show them.
    """
    seen: set[str] = set()

    def once(message: Warning | str) -> None:
        text = str(message)
        if report and text not in seen:
            seen.add(text)
            warn(text)

    for w in held:
        once(w.message)
    with warnings.catch_warnings():
        warnings.simplefilter("always", PluginWarning)
        shown = warnings.showwarning

        def show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: TextIO | None = None,
            line: str | None = None,
        ) -> None:
            if issubclass(category, PluginWarning):
                once(message)
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def _status(code: object) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return EXIT_FAILURE


def _silence_stdout() -> None:
    # The reader of our stdout went away (``icdreward score ... --output - | head``):
    # point stdout at devnull so that the interpreter's final flush does not fail too.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
