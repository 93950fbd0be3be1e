"""Reading evaluation input files: rows with a completion or a prediction, and a gold.

The same formats, checks and error messages as :mod:`icdreward.inputs` (every problem
raises :class:`~icdreward.errors.InputFileError` naming the file, row and field); a row
may hold an already extracted code in ``prediction`` (or ``code``) instead of a
``completion``.
"""

from __future__ import annotations

import os

import attrs

from icdreward.errors import InputFileError
from icdreward.inputs import parse_gold
from icdreward.records import iter_records

__all__ = ["PREDICTION_FIELDS", "EvalRows", "read_eval_rows"]

COMPLETION, GOLD = "completion", "gold"
PREDICTION_FIELDS = ("prediction", "code")
"""Fields holding an already extracted code, looked for in this order."""
_SOURCES = (*PREDICTION_FIELDS, COMPLETION)


@attrs.frozen(eq=False)
class EvalRows:
    """The rows of an evaluation file.

    Attributes:
        path: the file.
        values: per row, the prediction (when ``extracted``) or the completion.
        extracted: per row, whether ``values`` holds an already extracted code.
        golds: per row, the gold codes as written, primary first (never empty).
    """

    path: str
    values: tuple[object, ...]
    extracted: tuple[bool, ...]
    golds: tuple[tuple[str, ...], ...]

    def __len__(self) -> int:
        return len(self.values)


def read_eval_rows(path: str | os.PathLike[str]) -> EvalRows:
    """Read and check a whole evaluation file (JSONL, CSV, TSV or parquet).

    Raises:
        InputFileError: the file is missing, empty, of an unknown type or malformed.
    """
    name = str(path)
    records = iter_records(
        name,
        check_columns=lambda columns, row: _check_columns(name, columns, row),
        columns=(*_SOURCES, GOLD),
    )
    values: list[object] = []
    extracted: list[bool] = []
    golds: list[tuple[str, ...]] = []
    for number, record in records:
        source = next((f for f in _SOURCES if f in record), None)
        if source is None:
            raise InputFileError(
                name,
                "missing field 'completion' (or an extracted 'prediction' or 'code')",
                row=number,
                field=COMPLETION,
            )
        if GOLD not in record:
            raise InputFileError(name, "missing field 'gold'", row=number, field=GOLD)
        values.append(record[source])
        extracted.append(source != COMPLETION)
        golds.append(parse_gold(record[GOLD], path=name, row=number))
    if not values:
        raise InputFileError(name, "the file holds no rows")
    return EvalRows(path=name, values=tuple(values), extracted=tuple(extracted), golds=tuple(golds))


def _check_columns(path: str, columns: list[str], row: int | None) -> None:
    if not any(f in columns for f in _SOURCES):
        raise InputFileError(
            path,
            f"missing column 'completion' (or 'prediction'/'code'; columns: {', '.join(columns)})",
            row=row,
            field=COMPLETION,
        )
    if GOLD not in columns:
        raise InputFileError(
            path, f"missing column 'gold' (columns: {', '.join(columns)})", row=row, field=GOLD
        )
