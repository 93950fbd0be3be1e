"""``icdreward eval``: F1, accuracy, precision and recall per ICD-10-CM level."""

from __future__ import annotations

import argparse
from typing import Any

from icdreward.cli import _render
from icdreward.cli._app import EXIT_OK, EXIT_USAGE, Command, error
from icdreward.cli._arguments import count
from icdreward.engine import RewardEngine
from icdreward.evaluation import LEVEL_NAMES, evaluate_file, plot_report
from icdreward.inputs import FORMATS
from icdreward.presets import available_presets

__all__ = ["COMMAND", "DEFAULT_BOOTSTRAP"]

DEFAULT_BOOTSTRAP = 1000

_DESCRIPTION = f"""\
Evaluate the predictions in INPUT against their gold codes: macro F1, micro F1,
accuracy, macro precision and recall and the number of classes at the chapter,
block, category (first three characters) and full-code level, with seeded bootstrap
confidence intervals of macro F1 and accuracy.

INPUT is a JSONL, CSV/TSV or parquet file ({", ".join(FORMATS)}) whose rows hold
"gold" (as for 'icdreward score'; the first code is the one evaluated) and either a
"completion", parsed with the parser and code set of --preset/--config (so eval and
reward agree), or an already extracted code in "prediction" (or "code").
Unparseable and invalid predictions count as wrong, never dropped.

--json prints one JSON object ({{"full_code": {{...}}, "category": {{...}}, "block": {{...}},
"chapter": {{...}}, "n": ..., ...}}); --plot writes a PNG of F1 per level (and per chapter
with --by-chapter). See docs/evaluation.md.

Exit status: 0 on success; 2 when INPUT (missing, empty, malformed), the configuration
or the arguments are bad (one line on stderr).
"""


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="JSONL, CSV, TSV or parquet file")
    engine = parser.add_mutually_exclusive_group()
    engine.add_argument(
        "--preset",
        metavar="NAME",
        default=None,
        help=f"parser of this reward preset ({', '.join(available_presets())}; default: default)",
    )
    engine.add_argument("--config", metavar="FILE", help="parser of this reward configuration file")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", metavar="OUT.png", help="write a PNG of F1 per level")
    parser.add_argument(
        "--by-chapter", action="store_true", help="also report every chapter of the gold codes"
    )
    parser.add_argument(
        "--bootstrap",
        type=count,
        default=DEFAULT_BOOTSTRAP,
        metavar="N",
        help=f"bootstrap resamples for the intervals, 0 for none (default: {DEFAULT_BOOTSTRAP})",
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed of the bootstrap (default: 0)"
    )


def _run(args: argparse.Namespace) -> int:
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            error("--plot needs matplotlib: pip install matplotlib")
            return EXIT_USAGE
    if args.config is not None:
        engine = RewardEngine.from_config(args.config)
        source = str(args.config)
    else:
        preset = args.preset or "default"
        engine = RewardEngine.from_preset(preset)
        source = f"preset {preset}"
    with engine:
        report = evaluate_file(
            args.input,
            engine.parser,
            engine.codeset,
            bootstrap=args.bootstrap,
            seed=args.seed,
            by_chapter=args.by_chapter,
        )
    result = report.to_dict()
    if args.plot is not None:
        try:
            plot_report(result, args.plot)
        except OSError as exc:
            error(f"{args.plot}: cannot write: {exc.strerror or exc}")
            return EXIT_USAGE
    if args.json:
        _render.print_json({**result, "input": args.input, "config": source})
    else:
        _print(result, args.input, source, args.plot)
    return EXIT_OK


def _print(report: dict[str, Any], path: str, source: str, plot: str | None) -> None:
    out = _render.console()
    n = int(report["n"])
    out.print(
        f"{path}: {n} rows evaluated with the parser of {source}",
        style="bold",
        markup=False,
        soft_wrap=True,
    )
    intervals = report["bootstrap"] is not None
    columns = ["level", "macro F1", "micro F1", "accuracy", "macro P", "macro R", "classes"]
    if intervals:
        columns[2:2] = ["macro F1 CI"]
        columns.append("accuracy CI")
    table = _render.table(None, columns, right=columns[1:])
    for name in reversed(LEVEL_NAMES):
        entry = report[name]
        cells = [
            name.replace("_", " "),
            _render.fmt_number(entry["macro_f1"]),
            _render.fmt_number(entry["micro_f1"]),
            _render.fmt_number(entry["accuracy"]),
            _render.fmt_number(entry["macro_precision"]),
            _render.fmt_number(entry["macro_recall"]),
            str(entry["n_classes"]),
        ]
        if intervals:
            cells.insert(2, _interval(entry["macro_f1_ci"]))
            cells.append(_interval(entry["accuracy_ci"]))
        table.add_row(*cells)
    _render.print_table(out, table)
    lines = [
        ("unparseable", _render.fmt_count(report["unparseable"], n)),
        ("invalid codes", _render.fmt_count(report["invalid"], n)),
    ]
    if intervals:
        boot = report["bootstrap"]
        lines.append(
            (
                "intervals",
                f"{boot['confidence']:.0%} percentile bootstrap, "
                f"{boot['resamples']} resamples, seed {boot['seed']}",
            )
        )
    if plot is not None:
        lines.append(("plot", plot))
    out.print(_render.key_value_lines(lines, indent=1), markup=False)
    chapters = report.get("by_chapter")
    if chapters:
        right = ["n", "predicted", "precision", "recall", "F1", "category acc", "full code acc"]
        table = _render.table("per chapter", ["chapter", "title", *right], right=right)
        for c in chapters:
            table.add_row(
                c["chapter"],
                _short(c["title"]),
                str(c["n"]),
                str(c["predicted"]),
                _render.fmt_number(c["precision"]),
                _render.fmt_number(c["recall"]),
                _render.fmt_number(c["f1"]),
                _render.fmt_number(c["category_accuracy"]),
                _render.fmt_number(c["full_code_accuracy"]),
            )
        _render.print_table(out, table)


def _interval(bounds: list[float]) -> str:
    return f"{bounds[0]:.4f}-{bounds[1]:.4f}"


def _short(title: str, width: int = 48) -> str:
    return title if len(title) <= width else title[: width - 3] + "..."


COMMAND = Command(
    name="eval",
    help="macro/micro F1, accuracy, precision and recall per ICD-10-CM level",
    description=_DESCRIPTION,
    configure=_configure,
    run=_run,
    order=15,
)
