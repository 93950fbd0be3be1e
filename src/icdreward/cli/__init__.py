"""The ``icdreward`` command line.

Commands (``icdreward COMMAND --help`` describes each)::

    icdreward score INPUT [--preset NAME | --config FILE] [--output OUT.jsonl]
    icdreward plugins [--json]
    icdreward code CODE [--json]
    icdreward --version

Every core command lives in its own private module of this package that defines a
``COMMAND`` (:class:`icdreward.cli.command.Command`); modules are discovered, so adding
a command is adding one module. Installed packages add commands through the
``icdreward_register_commands`` hook (``icdreward prepare`` comes from the verl
integration that way). Errors in configuration or input files print one line
on stderr and exit with status 2.
"""

from __future__ import annotations

from icdreward.cli._app import Command, build_parser, main, run

__all__ = ["Command", "build_parser", "main", "run"]
