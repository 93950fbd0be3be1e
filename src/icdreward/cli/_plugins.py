"""``icdreward plugins``: the installed plugins, what they register, and those that failed."""

from __future__ import annotations

import argparse
from typing import Any

from icdreward.cli import _render
from icdreward.cli._app import EXIT_FAILURE, EXIT_OK, Command
from icdreward.plugin import PluginManager

__all__ = ["COMMAND", "plugin_report"]

_DESCRIPTION = """\
List every plugin of the "icdreward" entry-point group: its distribution and version,
the module it comes from, the components it registers (rewards and parsers), the
CLI commands it adds and the audit strategies it ships, then every plugin that failed
to load, with the reason. A plugin may register only commands (the verl integration
adds "prepare").

Exit status: 0 when every plugin loaded, 1 when one failed to load.
"""


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def plugin_report(manager: PluginManager | None = None) -> dict[str, Any]:
    """Loaded and failed plugins as a JSON-ready dict."""
    manager = manager if manager is not None else PluginManager()
    loaded = manager.plugins
    failed = manager.failed
    return {
        "plugins": [
            {
                "name": p.name,
                "distribution": p.distribution,
                "version": p.version,
                "module": p.module,
                "rewards": list(p.rewards),
                "parsers": list(p.parsers),
                "commands": list(p.commands),
                "strategies": list(p.strategies),
            }
            for p in loaded
        ],
        "failed": [
            {
                "name": f.name,
                "distribution": f.distribution,
                "version": f.version,
                "reason": f.reason,
            }
            for f in failed
        ],
    }


def _run(args: argparse.Namespace) -> int:
    report = plugin_report()
    if args.json:
        _render.print_json(report)
    else:
        _print(report)
    return EXIT_FAILURE if report["failed"] else EXIT_OK


def _print(report: dict[str, Any]) -> None:
    out = _render.console()
    loaded = _render.table(
        _plural(len(report["plugins"]), "plugin") + " loaded",
        [
            "plugin",
            "distribution",
            "version",
            "module",
            "rewards",
            "parsers",
            "commands",
            "strategies",
        ],
    )
    for p in report["plugins"]:
        loaded.add_row(
            p["name"],
            p["distribution"] or "-",
            p["version"] or "-",
            p["module"],
            ", ".join(p["rewards"]) or "-",
            ", ".join(p["parsers"]) or "-",
            ", ".join(p["commands"]) or "-",
            f"{len(p['strategies'])} audit strategies" if p["strategies"] else "-",
        )
    _render.print_table(out, loaded)
    if report["failed"]:
        failed = _render.table(
            _plural(len(report["failed"]), "plugin") + " failed to load",
            ["plugin", "distribution", "version", "reason"],
        )
        for f in report["failed"]:
            failed.add_row(f["name"], f["distribution"] or "-", f["version"] or "-", f["reason"])
        _render.print_table(out, failed)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


COMMAND = Command(
    name="plugins",
    help="list the loaded plugins and their components, and the plugins that failed",
    description=_DESCRIPTION,
    configure=_configure,
    run=_run,
    order=20,
    report_plugin_warnings=False,
)
