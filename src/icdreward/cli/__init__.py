"""The ``icdreward`` command line.

Commands (``icdreward COMMAND --help`` describes each)::

    icdreward score INPUT [--preset NAME | --config FILE] [--output OUT.jsonl]
    icdreward plugins [--json]
    icdreward code CODE [--json]
    icdreward --version

Every command lives in its own private module of this package that defines a
``COMMAND`` (:class:`icdreward.cli._app.Command`); modules are discovered, so adding a
command is adding one module. Errors in configuration or input files print one line
on stderr and exit with status 2.
"""

from __future__ import annotations

from icdreward.cli._app import Command, build_parser, main

__all__ = ["Command", "build_parser", "main"]
