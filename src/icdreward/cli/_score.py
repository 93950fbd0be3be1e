"""``icdreward score``: score a file of completions and summarise the rewards."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import torch

from icdreward.cli import _render
from icdreward.cli._app import EXIT_OK, EXIT_USAGE, Command, error
from icdreward.cli._arguments import positive_int
from icdreward.cli._progress import StageLog
from icdreward.cli._signals import terminating_cleanly
from icdreward.engine import RewardEngine
from icdreward.groups import group_statistics
from icdreward.inputs import FORMATS, ScoringReader, ScoringRows
from icdreward.presets import available_presets
from icdreward.result import ScoreResult

__all__ = ["COMMAND", "DEFAULT_CHUNK_SIZE", "ScoreSummary"]

DEFAULT_CHUNK_SIZE = 1024
_LOG_EVERY = 10.0
"""Seconds between progress lines when stderr is not a terminal."""

_DESCRIPTION = f"""\
Score every row of INPUT with a reward engine and print a summary.

INPUT is a JSONL, CSV/TSV or parquet file ({", ".join(FORMATS)})
whose rows hold "completion" and "gold" (one code, a list, "M5116;E119" or
'["M5116","E119"]'), and optionally "note", "group" (the GRPO prompt group), "id"
and "sample" (as 'icdreward generate' writes them).

Where the output goes:
  * the summary table (mean, spread, min and max of the total and of every component,
    parse failures, invalid codes, failed components, when rows have groups the number
    of groups and the share of groups whose rewards are all equal, and the reward-hacking
    monitors of icdreward.monitors, averaged over the rows) is printed
    on stdout;
  * with --output FILE, one JSON object per row (the row's "id", "group" and "sample"
    where it has them, so that 'icdreward eval --rewards FILE' joins by id; then the keys
    of ScoreResult.to_records(): score, one per component, code, parse_failure,
    invalid_code, gold_missing, failed) is written to
    FILE, in input order; FILE only appears once every row is scored (rows are
    written to .FILE.PID.partial beside it, which is renamed at the end, and deleted
    on an error, SIGINT, SIGTERM or SIGHUP);
  * with --output -, those records go to stdout and the summary to stderr.

Rows are scored in chunks of --chunk-size rows (consecutive rows of one group stay in
one chunk, up to four times that size). When the file holds more than one chunk,
progress goes to stderr: a live bar when stderr is a terminal (--progress auto or
always); with --progress always and stderr not a terminal (a SLURM log), a plain
timestamped line at most every 10 s and one at the end. --json prints the summary as JSON
(where the table would go).

Exit status: 0 on success; 2 when INPUT, the configuration or the arguments are bad
(one line on stderr names the file, row, field and value); 1 when a component with the
failure policy "raise" failed; 130 on SIGINT; 143 on SIGTERM while writing --output FILE.
"""


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="JSONL, CSV, TSV or parquet file to score")
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
        "-o",
        "--output",
        metavar="OUT",
        help="write one JSON record per row to OUT (.jsonl); '-' writes them to stdout",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the summary as one JSON object instead of a table",
    )
    parser.add_argument(
        "--chunk-size",
        type=positive_int,
        default=DEFAULT_CHUNK_SIZE,
        metavar="N",
        help=f"rows scored per batch (default: {DEFAULT_CHUNK_SIZE})",
    )
    parser.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress on stderr: auto (a bar when stderr is a terminal), always (plain "
        "lines when it is not) or never",
    )


def _run(args: argparse.Namespace) -> int:
    records_to_stdout = args.output == "-"
    if args.output not in (None, "-") and _same_file(args.output, args.input):
        error(f"{args.output}: --output would overwrite INPUT")
        return EXIT_USAGE
    reader = ScoringReader(args.input, chunk_size=args.chunk_size)  # checks path and type
    if args.config is not None:
        engine = RewardEngine.from_config(args.config)
        source = str(args.config)
    else:
        preset = args.preset or "default"
        engine = RewardEngine.from_preset(preset)
        source = f"preset {preset}"
    summary = ScoreSummary(engine.names, engine.weights)
    try:
        with engine, _records_sink(args.output) as sink:
            _score_file(reader, engine, summary, sink, progress=args.progress)
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        error(f"{exc.filename or args.output}: cannot write: {exc.strerror or exc}")
        return EXIT_USAGE
    report = summary.to_dict(path=reader.path, source=source, output=args.output)
    stream = sys.stderr if records_to_stdout else sys.stdout
    if args.json:
        _render.print_json(report, stream)
    else:
        _print_summary(report, stderr=records_to_stdout)
    return EXIT_OK


def _score_file(
    reader: ScoringReader,
    engine: RewardEngine,
    summary: ScoreSummary,
    sink: TextIO | None,
    *,
    progress: str,
) -> None:
    chunks = iter(reader)
    pending = next(chunks, None)
    bar: _Progress | _ProgressLines | None = None
    try:
        while pending is not None:
            chunk = pending
            pending = next(chunks, None)  # read ahead: is there more than one chunk?
            if bar is None and pending is not None and _show_progress(progress):
                # A live bar needs a terminal; a log file (SLURM) gets plain lines.
                bar = _Progress(reader) if sys.stderr.isatty() else _ProgressLines(reader)
            group_ids = summary.group_ids(chunk)
            result = engine.score(chunk.completions, chunk.golds, chunk.notes, group_ids)
            summary.add(result)
            if sink is not None:
                sink.writelines(_record_lines(chunk, result))
            if bar is not None:
                bar.advance(summary.rows)
    finally:
        if bar is not None:
            bar.stop()


def _record_lines(chunk: ScoringRows, result: ScoreResult) -> Iterator[str]:
    """The JSON lines of a chunk's records, each led by its row's id, group and sample."""
    for identity, record in zip(chunk.identities(), result.to_records(), strict=True):
        yield json.dumps({**identity, **record}, ensure_ascii=False) + "\n"


def _show_progress(mode: str) -> bool:
    if mode == "auto":
        return sys.stderr.isatty()
    return mode == "always"


class _Progress:
    """A rich progress bar on stderr over the reader's progress units."""

    def __init__(self, reader: ScoringReader) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._reader = reader
        self._progress = Progress(
            TextColumn("scoring"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rows]} rows"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=_render.console(stderr=True),
            transient=True,
        )
        self._task = self._progress.add_task("scoring", total=max(reader.total, 1), rows=0)
        self._progress.start()

    def advance(self, rows: int) -> None:
        self._progress.update(self._task, completed=self._reader.position, rows=rows)

    def stop(self) -> None:
        self._progress.stop()


class _ProgressLines:
    """Progress as plain timestamped lines on stderr, at most one per ``_LOG_EVERY``
    seconds and one at the end (for stderr that is a file, not a terminal)."""

    def __init__(self, reader: ScoringReader) -> None:
        self._reader = reader
        self._log = StageLog("score", "always")
        self._rows = 0

    def _line(self) -> str:
        share = self._reader.position / max(self._reader.total, 1)
        return f"scored {self._rows} rows ({share:.0%} of {self._reader.path})"

    def advance(self, rows: int) -> None:
        self._rows = rows
        self._log.every(_LOG_EVERY, self._line())

    def stop(self) -> None:
        self._log(self._line())


@contextmanager
def _records_sink(output: str | None) -> Iterator[TextIO | None]:
    """Where records go: nowhere, stdout, or a file written only on success."""
    if output is None:
        yield None
        return
    if output == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    target = Path(output)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    # Registered before it exists: SIGTERM at any point deletes it and exits with 143.
    with terminating_cleanly(partial):
        try:
            handle = open(partial, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as exc:
            exc.filename = output
            raise
        try:
            with handle:
                yield handle
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)


def _same_file(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


class ScoreSummary:
    """Accumulates the results of every chunk of a file into one summary.

    Keeps only a few numbers per row (the total, each component, the flags and the
    group), so files of millions of rows summarise in little memory.
    """

    def __init__(self, names: tuple[str, ...], weights: dict[str, float]) -> None:
        self.names = names
        self.weights = weights
        self.rows = 0
        self._totals: list[torch.Tensor] = []
        self._values: dict[str, list[torch.Tensor]] = {n: [] for n in names}
        self._counted: dict[str, list[torch.Tensor]] = {n: [] for n in names}
        self._failed: dict[str, int] = dict.fromkeys(names, 0)
        self.parse_failures = 0
        self.invalid_codes = 0
        self.failed_samples = 0
        self._group_index: dict[Any, int] = {}
        self._group_of_row: list[torch.Tensor] = []
        self._grouped: list[torch.Tensor] = []
        self._next_group = 0
        self._monitor_sums: dict[str, float] = {}
        self._monitor_rows: dict[str, int] = {}

    def group_ids(self, chunk: ScoringRows) -> torch.Tensor | None:
        """Dense group ids of a chunk, consistent across the chunks of one file.

        Rows without a group get a group of their own (and are left out of the group
        statistics).
        """
        if chunk.groups is None:
            self._grouped.append(torch.zeros(len(chunk), dtype=torch.bool))
            self._group_of_row.append(torch.full((len(chunk),), -1, dtype=torch.int64))
            return None
        ids: list[int] = []
        for group in chunk.groups:
            if group is None:
                ids.append(self._fresh_group())
            else:
                key = _hashable(group)
                if key not in self._group_index:
                    self._group_index[key] = self._fresh_group()
                ids.append(self._group_index[key])
        tensor = torch.tensor(ids, dtype=torch.int64)
        self._grouped.append(torch.tensor([g is not None for g in chunk.groups]))
        self._group_of_row.append(tensor)
        return tensor

    def _fresh_group(self) -> int:
        self._next_group += 1
        return self._next_group - 1

    def add(self, result: ScoreResult) -> None:
        """Add the result of one chunk."""
        self.rows += len(result)
        self._totals.append(result.total.detach().to(torch.float64))
        included = result.included
        any_failed = torch.zeros(len(result), dtype=torch.bool)
        for k, name in enumerate(self.names):
            self._values[name].append(result.components[name].detach().to(torch.float64))
            self._counted[name].append(included[:, k].clone())
            failed = result.failed[name]
            self._failed[name] += int(failed.sum())
            any_failed |= failed
        self.parse_failures += int(result.parse_failure.sum())
        self.invalid_codes += int(result.invalid_code.sum())
        self.failed_samples += int(any_failed.sum())
        # Monitors are per-chunk shares and means: weighted by the chunk's rows.
        for name, value in result.monitors.items():
            self._monitor_sums[name] = self._monitor_sums.get(name, 0.0) + value * len(result)
            self._monitor_rows[name] = self._monitor_rows.get(name, 0) + len(result)

    def to_dict(
        self, *, path: str | None = None, source: str | None = None, output: str | None = None
    ) -> dict[str, Any]:
        """The summary as a JSON-ready dict."""
        total = _cat(self._totals)
        components = [_stats("score", None, total, 0)]
        for name in self.names:
            counted = _cat(self._counted[name], torch.bool)
            values = _cat(self._values[name])[counted]
            components.append(_stats(name, self.weights[name], values, self._failed[name]))
        return {
            "input": path,
            "config": source,
            "output": output,
            "rows": self.rows,
            "components": components,
            "parse_failures": self.parse_failures,
            "invalid_codes": self.invalid_codes,
            "samples_with_failed_components": self.failed_samples,
            "groups": self._group_summary(total),
            "monitors": {
                name: self._monitor_sums[name] / rows
                for name, rows in self._monitor_rows.items()
                if rows
            },
        }

    def _group_summary(self, total: torch.Tensor) -> dict[str, Any] | None:
        if not self._grouped:
            return None
        grouped = _cat(self._grouped, torch.bool)
        if not bool(grouped.any()):
            return None
        ids = _cat(self._group_of_row, torch.int64)[grouped]
        stats = group_statistics(total[grouped], ids)
        all_equal = int(stats.all_equal.sum())
        return {
            "count": stats.n_groups,
            "rows": int(grouped.sum()),
            "mean_size": float(stats.size.double().mean()),
            "mean_std": float(stats.std.double().mean()),
            "all_equal": all_equal,
            "all_equal_share": all_equal / stats.n_groups,
        }


def _cat(parts: list[torch.Tensor], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.cat(parts) if parts else torch.zeros(0, dtype=dtype)


def _stats(name: str, weight: float | None, values: torch.Tensor, failed: int) -> dict[str, Any]:
    count = int(values.numel())
    if count == 0:
        mean = std = low = high = None
    else:
        mean = round(float(values.mean()), 6)
        std = round(float(values.std(correction=0)), 6) if count > 1 else 0.0
        low, high = round(float(values.min()), 6), round(float(values.max()), 6)
    return {
        "name": name,
        "weight": weight,
        "mean": mean,
        "std": std,
        "min": low,
        "max": high,
        "counted": count,
        "failed": failed,
    }


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return ("unhashable", repr(value))
    return value


def _print_summary(report: dict[str, Any], *, stderr: bool) -> None:
    out = _render.console(stderr=stderr)
    rows = int(report["rows"])
    out.print(
        f"{report['input']}: {rows} rows scored with {report['config']}",
        style="bold",
        markup=False,
        soft_wrap=True,
    )
    components = _render.table(
        None,
        ["component", "weight", "mean", "std", "min", "max", "failed"],
        right=["weight", "mean", "std", "min", "max", "failed"],
    )
    for entry in report["components"]:
        is_total = entry["weight"] is None
        components.add_row(
            "score (total)" if is_total else entry["name"],
            "" if is_total else _render.fmt_number(entry["weight"], 2),
            _render.fmt_number(entry["mean"]),
            _render.fmt_number(entry["std"]),
            _render.fmt_number(entry["min"]),
            _render.fmt_number(entry["max"]),
            "" if is_total else str(entry["failed"]),
            style="bold" if is_total else None,
        )
    _render.print_table(out, components)
    counts: list[tuple[str, str]] = [
        ("parse failures", _render.fmt_count(report["parse_failures"], rows)),
        ("invalid codes", _render.fmt_count(report["invalid_codes"], rows)),
        (
            "samples with a failed component",
            _render.fmt_count(report["samples_with_failed_components"], rows),
        ),
    ]
    groups = report["groups"]
    if groups is not None:
        counts.append(
            (
                "groups",
                f"{groups['count']} (mean size {groups['mean_size']:.1f}, "
                f"mean std {groups['mean_std']:.4f})",
            )
        )
        counts.append(
            (
                "all-equal groups",
                _render.fmt_count(groups["all_equal"], groups["count"]) + " (zero advantage)",
            )
        )
    if report["output"] not in (None, "-"):
        counts.append(("records", str(report["output"])))
    out.print(_render.key_value_lines(counts, indent=1), markup=False)
    monitors = report.get("monitors") or {}
    if monitors:
        lines = [(f"monitor {name}", _render.fmt_number(value)) for name, value in monitors.items()]
        out.print(_render.key_value_lines(lines, indent=1), markup=False)


COMMAND = Command(
    name="score",
    help="score a JSONL/CSV/parquet file of completions and summarise the rewards",
    description=_DESCRIPTION,
    configure=_configure,
    run=_run,
    order=10,
)
