"""``icdreward audit``: does a reward pay any degenerate strategy as much as honesty?"""

from __future__ import annotations

import argparse

from icdreward.audit import DEFAULT_TOLERANCE, AuditReport, audit, bundled_rows, read_rows
from icdreward.cli import _render
from icdreward.cli._app import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Command, error
from icdreward.engine import RewardEngine
from icdreward.presets import available_presets

__all__ = ["COMMAND"]

_DESCRIPTION = """\
Score a battery of degenerate strategies against honest completions with one reward.

Each strategy keeps the honest completion's predicted code and games one part of the
reward: the note copied into the trace, code descriptions or keywords stuffed,
repetition, padding, no reasoning, words addressed to the grader, several or hedged
codes in the answer. Strategies come from plugins (the built-in "strategies" plugin,
and any installed plugin that implements icdreward_register_strategies).

INPUT (default: the honest completions shipped with icdreward) is a JSONL, CSV/TSV or
parquet file whose rows hold "completion" (an honest completion), "gold" and "note".
Rows whose completion holds no valid code are skipped (there is no "same code" to keep).

Printed per strategy: the rows it applies to, its mean score, its mean margin to the
honest score (negative is good), the share of rows where it reaches the honest score,
its worst margin and the components that pay it more than honesty.

Exit status: 0 when honest completions beat every strategy on every row; 1 when some
strategy reaches the honest score on some row (use it to gate a reward configuration in
CI); 2 when INPUT, the configuration or the arguments are bad.
"""


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input",
        metavar="INPUT",
        nargs="?",
        help="file of honest rows (default: the bundled examples)",
    )
    engine = parser.add_mutually_exclusive_group()
    engine.add_argument(
        "--preset",
        metavar="NAME",
        default=None,
        help=f"reward preset ({', '.join(available_presets())}; default: default)",
    )
    engine.add_argument(
        "--config", metavar="FILE", help="reward configuration file (.toml, .yaml or .json)"
    )
    parser.add_argument(
        "--strategy",
        metavar="NAME",
        action="append",
        help="run only this strategy (repeat for several; default: every registered one)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="a strategy within this much of the honest score reaches it "
        f"(default: {DEFAULT_TOLERANCE:g})",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _run(args: argparse.Namespace) -> int:
    if args.config:
        engine = RewardEngine.from_config(args.config)
    else:
        engine = RewardEngine.from_preset(args.preset or "default")
    with engine:
        rows = read_rows(args.input) if args.input else bundled_rows()
        report = audit(engine, rows, only=args.strategy, tolerance=args.tolerance)
    if not report.rows:
        where = args.input or "the bundled examples"
        error(f"{where}: no row holds an honest completion with a valid code")
        return EXIT_USAGE
    if args.json:
        _render.print_json(report.to_dict())
    else:
        _print(report, engine.config.preset or args.config or "default")
    return EXIT_OK if report.passed else EXIT_FAILURE


def _print(report: AuditReport, label: str) -> None:
    out = _render.console()
    title = f"audit of {label}: {report.rows} honest rows (mean {report.honest_mean:.4g})" + (
        f", {report.skipped} skipped" if report.skipped else ""
    )
    columns = ["strategy", "rows", "mean", "margin", "reaches", "worst", "paid by"]
    table = _render.table(title, columns, right=("rows", "mean", "margin", "reaches", "worst"))
    for s in report.strategies:
        paid = ", ".join(f"{name} {margin:+.3g}" for name, margin in s.paid_by.items())
        table.add_row(
            s.name + (" !" if s.exploits else ""),
            str(s.rows),
            _render.fmt_number(s.mean_score),
            _render.fmt_number(s.mean_margin),
            f"{s.reach_share:.0%}",
            _render.fmt_number(s.worst_margin),
            paid or "-",
        )
    _render.print_table(out, table)
    for s in report.strategies:
        if s.errors:
            out.print(f"strategy {s.name} failed on {s.errors} rows; first: {s.first_error}")
        if s.changed_code:
            out.print(f"strategy {s.name} changed the code on {s.changed_code} rows (left out)")
    if report.passed:
        out.print("honest completions beat every strategy on every row")
    else:
        names = ", ".join(s.name for s in report.exploited)
        out.print(f"{len(report.exploited)} strategies reach the honest score: {names}")


COMMAND = Command(
    name="audit",
    help="check that no degenerate strategy scores as much as an honest completion",
    description=_DESCRIPTION,
    configure=_configure,
    run=_run,
    order=25,
)
