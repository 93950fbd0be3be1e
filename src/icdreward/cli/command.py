"""What a CLI command is made of: the public API for adding ``icdreward`` subcommands.

The core's own commands and those of installed packages are built from the same
parts. A package adds one through the ``icdreward_register_commands`` hook, published
under the ``icdreward`` entry-point group (``docs/plugins.md``)::

    import argparse

    from icdreward.cli.command import EXIT_OK, Command
    from icdreward.plugin import hookimpl

    def _configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("name")

    def _run(args: argparse.Namespace) -> int:
        print(f"hello {args.name}")
        return EXIT_OK

    @hookimpl
    def icdreward_register_commands(register):
        register(Command("hello", "say hello", _configure, _run))

A command's ``run`` returns the exit status. An
:class:`~icdreward.errors.IcdRewardError` it raises is printed as one
``icdreward: error: ...`` line; a :class:`~icdreward.errors.ConfigError` or
:class:`~icdreward.errors.InputFileError` exits with :data:`EXIT_USAGE`, any other
with :data:`EXIT_FAILURE`.

Besides :class:`Command` and the exit statuses this module holds what commands share:
one-line messages on stderr (:func:`error`, :func:`warn`), argument types
(:func:`count`, :func:`positive_int`) and output helpers (:func:`console`,
:func:`table`, :func:`print_table`, :func:`print_json`, :func:`key_value_lines`,
:func:`fmt_count`), so that every command looks and fails the same way.
"""

from __future__ import annotations

from icdreward.cli._app import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Command, error, warn
from icdreward.cli._arguments import count, positive_int
from icdreward.cli._render import (
    console,
    fmt_count,
    key_value_lines,
    print_json,
    print_table,
    table,
)

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "Command",
    "console",
    "count",
    "error",
    "fmt_count",
    "key_value_lines",
    "positive_int",
    "print_json",
    "print_table",
    "table",
    "warn",
]
