"""``icdreward prepare``: admission notes with codes to verl's training parquet.

The verl integration adds this command to the ``icdreward`` CLI through the
``icdreward_register_commands`` hook (entry point ``verl`` of the ``icdreward`` group),
so the core CLI never imports the integration.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from icdreward.cli import command as cli
from icdreward.cli.command import EXIT_OK, EXIT_USAGE, Command, count, error, positive_int, warn
from icdreward.inputs import FORMATS
from icdreward.plugin import hookimpl

# Light to import (no verl, no pyarrow, no transformers until a run needs them), so
# every CLI start, which loads every entry point of the group, can afford it.
from icdreward_verl.data import (
    DEFAULT_ABILITY,
    DEFAULT_DATA_SOURCE,
    DEFAULT_VAL_FRACTION,
    PrepareOptions,
    PrepareReport,
    prepare_dataset,
)

__all__ = ["COMMAND", "icdreward_register_commands"]

_DESCRIPTION = f"""\
Turn the admission notes with gold codes in INPUT into verl's training data:
OUTDIR/train.parquet and OUTDIR/val.parquet, one row per note with data_source,
prompt (the system and user messages of icdreward.prompts.build_messages, without
the prefilled <think>: verl opens the assistant turn itself), ability,
reward_model {{style: "rule", ground_truth: [codes, primary first]}} and extra_info
{{split, index, note, id, row, prompt_version}}.

INPUT is a JSONL, CSV/TSV or parquet file ({", ".join(FORMATS)}).
Its columns are "note" (else "text", as in MIMIC-IV-Note), "codes" (else "gold":
one code, a list, "M5116;E119" or a JSON list as text) and an optional "id"; name
others with --note-column, --codes-column and --id-column. Codes are normalized
(case, dots, spaces); codes of older code-set years are kept.

A row goes to val by a hash of --seed and its id (its note when it has none): the
split does not depend on row order. Rows are dropped, and counted, for a duplicate
id, an empty note, no gold code, a primary code that is not ICD-10-CM, or (with
--tokenizer and --max-prompt-tokens) a prompt longer than the limit, measured as
verl measures it. See docs/verl.md.

Exit status: 0 when the files are written (the summary counts dropped rows); 2 when
INPUT (missing, malformed: the file, row, field and value are named), the tokenizer,
OUTDIR or the arguments are bad (one line on stderr; nothing is written).
"""


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {value}")
    return value


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="JSONL, CSV, TSV or parquet file of notes")
    parser.add_argument(
        "-o",
        "--output-dir",
        metavar="OUTDIR",
        required=True,
        help="directory of train.parquet and val.parquet (created if missing)",
    )
    columns = parser.add_argument_group("columns of INPUT")
    columns.add_argument("--note-column", metavar="NAME", help="default: note, else text")
    columns.add_argument("--codes-column", metavar="NAME", help="default: codes, else gold")
    columns.add_argument("--id-column", metavar="NAME", help="default: id, if there is one")
    split = parser.add_argument_group("split")
    split.add_argument(
        "--val-fraction",
        type=_fraction,
        default=DEFAULT_VAL_FRACTION,
        metavar="F",
        help=f"share of rows in val.parquet, 0 for none (default: {DEFAULT_VAL_FRACTION})",
    )
    split.add_argument(
        "--seed", type=count, default=0, metavar="S", help="seed of the split (default: 0)"
    )
    rows = parser.add_argument_group("rows")
    rows.add_argument(
        "--data-source",
        default=DEFAULT_DATA_SOURCE,
        metavar="NAME",
        help=f"data_source of every row (default: {DEFAULT_DATA_SOURCE})",
    )
    rows.add_argument(
        "--ability",
        default=DEFAULT_ABILITY,
        metavar="NAME",
        help=f"ability of every row (default: {DEFAULT_ABILITY})",
    )
    rows.add_argument(
        "--tokenizer",
        metavar="DIR",
        help="local tokenizer directory (with a chat template) to measure prompts",
    )
    rows.add_argument(
        "--max-prompt-tokens",
        type=positive_int,
        metavar="N",
        help="drop rows whose prompt is longer (needs --tokenizer; match data.max_prompt_length)",
    )
    rows.add_argument(
        "--limit", type=positive_int, metavar="N", help="read only the first N rows of INPUT"
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def _run(args: argparse.Namespace) -> int:
    if args.max_prompt_tokens is not None and args.tokenizer is None:
        error("--max-prompt-tokens needs --tokenizer")
        return EXIT_USAGE
    options = PrepareOptions(
        note_column=args.note_column,
        codes_column=args.codes_column,
        id_column=args.id_column,
        val_fraction=args.val_fraction,
        seed=args.seed,
        data_source=args.data_source,
        ability=args.ability,
        tokenizer=args.tokenizer,
        max_prompt_tokens=args.max_prompt_tokens,
        limit=args.limit,
    )
    report = prepare_dataset(args.input, args.output_dir, options)
    if args.json:
        cli.print_json(report.to_dict())
    else:
        _print(report)
    for split, rows in report.written.items():
        if rows == 0:
            warn(f"the {split} split is empty: {report.files[split]} holds no rows")
    return EXIT_OK


def _print(report: PrepareReport) -> None:
    out = cli.console()
    out.print(
        f"{report.input}: {_rows(report.rows_read)} read, {report.total_written} written, "
        f"{report.total_dropped} dropped",
        style="bold",
        markup=False,
        soft_wrap=True,
    )
    table = cli.table(None, ["split", "rows", "file"], right=["rows"])
    for split, rows in report.written.items():
        table.add_row(split, str(rows), report.files[split])
    cli.print_table(out, table)
    if report.dropped:
        table = cli.table(None, ["dropped", "rows", "first rows"], right=["rows"])
        for reason, rows in report.dropped.items():
            first = ", ".join(map(str, report.dropped_rows.get(reason, ())))
            more = ", ..." if rows > len(report.dropped_rows.get(reason, ())) else ""
            table.add_row(reason, cli.fmt_count(rows, report.rows_read), first + more)
        cli.print_table(out, table)
    if report.longest_prompt is not None:
        out.print(
            cli.key_value_lines([("longest prompt", f"{report.longest_prompt} tokens")], indent=1),
            markup=False,
        )


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


COMMAND = Command(
    name="prepare",
    help="admission notes with codes to verl's training parquet",
    description=_DESCRIPTION,
    configure=_configure,
    run=_run,
    order=40,
)


@hookimpl
def icdreward_register_commands(register: Callable[[Command], None]) -> None:
    """Register ``icdreward prepare``."""
    register(COMMAND)
