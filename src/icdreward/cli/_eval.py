"""``icdreward eval``: F1, accuracy, precision and recall per ICD-10-CM level."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from icdreward.cli import _render
from icdreward.cli._app import EXIT_OK, EXIT_USAGE, Command, error
from icdreward.cli._arguments import count, positive_int
from icdreward.cli._progress import StageLog
from icdreward.engine import RewardEngine
from icdreward.evaluation import (
    INTERVAL_METHODS,
    LEVEL_NAMES,
    PER_NOTE_MODES,
    PLOT_FORMATS,
    EvalRows,
    evaluate_rows,
    plot_report,
    read_eval_rows,
    read_rewards,
)
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

Rows with the same "group" (as 'icdreward generate' writes it) are the samples of one
note, ordered by "sample". --per-note picks the row evaluated per note: first (the
lowest sample index; the default), majority (the most frequent valid code),
best-reward (the highest reward: the "score" of the records of --rewards FILE,
joined by "id"; else a "score" field; else the preset's reward),
or all (every sample). pass@k and any-of-k are reported when notes have several
samples. Intervals resample notes, never samples: BCa by default (--interval).
--multilabel adds the literature's micro/macro F1 over each note's gold set.

--json prints one JSON object ({{"full_code": {{...}}, "category": {{...}}, "block": {{...}},
"chapter": {{...}}, "n": ..., ...}}); -o FILE writes that object to FILE; --plot writes
a figure of every metric with its interval (and per chapter with --by-chapter), as
PNG, SVG or PDF by the file's extension. See docs/evaluation.md.

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
    parser.add_argument("-o", "--output", metavar="OUT.json", help="write the JSON object to OUT")
    parser.add_argument(
        "--plot", metavar="OUT.png", help="write the figure (.png, .svg or .pdf by extension)"
    )
    parser.add_argument(
        "--dpi", type=positive_int, default=200, metavar="N", help="PNG resolution (default: 200)"
    )
    parser.add_argument(
        "--per-note",
        choices=PER_NOTE_MODES,
        default="first",
        help="the row evaluated per note (default: first)",
    )
    parser.add_argument(
        "--rewards", metavar="FILE", help="records with 'id' and 'score' (for best-reward)"
    )
    parser.add_argument(
        "--interval",
        choices=INTERVAL_METHODS,
        default="bca",
        help="bootstrap interval method (default: bca)",
    )
    parser.add_argument(
        "--multilabel",
        action="store_true",
        help="also micro/macro F1 over each note's gold set (the MIMIC coding literature)",
    )
    parser.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="stage lines on stderr: auto (when stderr is a terminal), always or never",
    )
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
        suffix = Path(args.plot).suffix.lower().lstrip(".")
        if suffix not in PLOT_FORMATS:
            error(f"--plot {args.plot}: the extension must be one of .{', .'.join(PLOT_FORMATS)}")
            return EXIT_USAGE
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            error('--plot needs matplotlib: pip install "icdreward[plot]"')
            return EXIT_USAGE
    stage = StageLog("eval", args.progress)
    if args.config is not None:
        engine = RewardEngine.from_config(args.config)
        source = str(args.config)
    else:
        preset = args.preset or "default"
        engine = RewardEngine.from_preset(preset)
        source = f"preset {preset}"
    rewards: dict[str, float] | list[float] | None = None
    if args.rewards is not None:
        rewards = read_rewards(args.rewards)
    stage(f"evaluating {args.input} (per note: {args.per_note}, bootstrap {args.bootstrap})")
    with engine:
        rows = read_eval_rows(args.input)
        stage(f"read {len(rows)} rows")
        if args.per_note == "best-reward" and rewards is None and rows.rewards is None:
            rewards = _engine_rewards(engine, rows)
            stage(f"scored {len(rows)} rows with {source} for best-reward")
        report = evaluate_rows(
            rows,
            engine.parser,
            engine.codeset,
            per_note=args.per_note,
            rewards=rewards,
            bootstrap=args.bootstrap,
            seed=args.seed,
            interval=args.interval,
            by_chapter=args.by_chapter,
            multilabel=args.multilabel,
        )
    stage(f"evaluated {report.n} rows ({report.notes} notes, {report.samples} samples)")
    result = {**report.to_dict(), "input": args.input, "config": source}
    if args.plot is not None:
        try:
            plot_report(result, args.plot, dpi=args.dpi)
        except OSError as exc:
            error(f"{args.plot}: cannot write: {exc.strerror or exc}")
            return EXIT_USAGE
        stage(f"figure written to {args.plot}")
    if args.output is not None:
        try:
            with open(args.output, "w", encoding="utf-8") as handle:
                _render.print_json(result, handle)
        except OSError as exc:
            error(f"{args.output}: cannot write: {exc.strerror or exc}")
            return EXIT_USAGE
    if args.json:
        _render.print_json(result)
    else:
        _print(result, args.input, source, args.plot)
    return EXIT_OK


def _print(report: dict[str, Any], path: str, source: str, plot: str | None) -> None:
    out = _render.console()
    n = int(report["n"])
    out.print(
        f"{path}: {n} rows evaluated ({report['notes']} notes, {report['samples']} samples, "
        f"per note: {report['per_note']}) with the parser of {source}",
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
                f"{boot['confidence']:.0%} {boot['method']} bootstrap over notes, "
                f"{boot['resamples']} resamples, seed {boot['seed']}",
            )
        )
    for entry in report.get("pass_at_k", []):
        k = entry["k"]
        lines.append(
            (
                f"pass@{k} / any-of-{k}",
                ", ".join(
                    f"{name.replace('_', ' ')} {entry['pass_at_k'][name]:.4f}"
                    f"/{entry['any_of_k'][name]:.4f}"
                    for name in reversed(LEVEL_NAMES)
                )
                + f" ({entry['notes']} notes)",
            )
        )
    multi = report.get("multilabel")
    if multi:
        lines.append(
            (
                "multi-label micro/macro F1",
                ", ".join(
                    f"{name.replace('_', ' ')} {multi[name]['micro_f1']:.4f}"
                    f"/{multi[name]['macro_f1']:.4f}"
                    for name in reversed(LEVEL_NAMES)
                ),
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


def _engine_rewards(engine: RewardEngine, rows: EvalRows, chunk: int = 1024) -> list[float]:
    """Each row's total reward from ``engine`` (rows holding an extracted code: NaN)."""
    rewards: list[float] = []
    for start in range(0, len(rows), chunk):
        values = rows.values[start : start + chunk]
        golds = rows.golds[start : start + chunk]
        extracted = rows.extracted[start : start + chunk]
        texts = ["" if e else v for v, e in zip(values, extracted, strict=True)]
        total = engine.score(texts, list(golds)).total.tolist()
        rewards.extend(math.nan if e else t for t, e in zip(total, extracted, strict=True))
    return rewards


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
