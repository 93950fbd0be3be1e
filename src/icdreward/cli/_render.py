"""Shared output helpers of the CLI: consoles, number formatting, tables and JSON."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.table import Table

__all__ = [
    "console",
    "dotted",
    "fmt_count",
    "fmt_number",
    "key_value_lines",
    "print_json",
    "print_table",
    "table",
]

_PIPE_WIDTH = 160


def console(*, stderr: bool = False) -> Console:
    """A rich console on the current ``sys.stdout`` (or ``sys.stderr``).

    Made per call, so that it writes to whatever the streams are now (tests capture
    them). Rich drops colours and animations when the stream is not a terminal.
    """
    stream: TextIO = sys.stderr if stderr else sys.stdout
    out = Console(file=stream, highlight=False, soft_wrap=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        # Rich assumes 80 columns for files and pipes; tables only take the width they
        # need, so a wider limit keeps long names and reasons whole in logs.
        out.width = _PIPE_WIDTH
    return out


def print_json(value: Any, stream: TextIO | None = None) -> None:
    """Print ``value`` as indented JSON (plain text, no colours, no wrapping)."""
    out = stream if stream is not None else sys.stdout
    out.write(json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def print_table(out: Console, value: Table) -> None:
    """Print a table; to a file or pipe without the padding rich puts at line ends."""
    if out.is_terminal:
        out.print(value)
        return
    with out.capture() as captured:
        out.print(value)
    lines = [line.rstrip() for line in captured.get().splitlines()]
    out.file.write("\n".join(lines) + "\n")


def table(title: str | None, columns: Sequence[str], *, right: Sequence[str] = ()) -> Table:
    """A table with ``columns``; those named in ``right`` are right-aligned."""
    result = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        title_justify="left",
        title_style="bold",
    )
    for name in columns:
        result.add_column(name, justify="right" if name in right else "left")
    return result


def key_value_lines(rows: Sequence[tuple[str, str]], indent: int = 0) -> str:
    """Aligned ``key  value`` lines as plain text (no padding after the value)."""
    width = max((len(key) for key, _ in rows), default=0)
    pad = " " * indent
    return "\n".join(f"{pad}{key.ljust(width)}  {value}".rstrip() for key, value in rows)


def fmt_number(value: float | None, digits: int = 4) -> str:
    """A float with ``digits`` decimals; ``-`` for None or NaN."""
    if value is None or math.isnan(value):
        return "-"
    text = f"{value:.{digits}f}"
    return "0." + "0" * digits if text == "-0." + "0" * digits else text


def fmt_count(count: int, total: int) -> str:
    """``count`` and its share of ``total``: ``"3 (15.0%)"``."""
    share = 100.0 * count / total if total else 0.0
    return f"{count} ({share:.1f}%)"


def dotted(code: str) -> str:
    """A normalized code with its dot: ``"M5116"`` -> ``"M51.16"``."""
    return code if len(code) <= 3 else f"{code[:3]}.{code[3:]}"
