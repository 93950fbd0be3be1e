"""Reading evaluation input files: rows with a completion or a prediction, and a gold.

The same formats, checks and error messages as :mod:`icdreward.inputs` (every problem
raises :class:`~icdreward.errors.InputFileError` naming the file, row and field); a row
may hold an already extracted code in ``prediction`` (or ``code``) instead of a
``completion``. The optional fields ``id``, ``group`` (the note a sample belongs to, as
``icdreward generate`` writes it), ``sample`` (its index) and ``score`` (a reward, as
``icdreward score`` writes it) are carried along.
"""

from __future__ import annotations

import math
import os

import attrs

from icdreward.errors import InputFileError
from icdreward.inputs import parse_gold
from icdreward.records import iter_records

__all__ = ["PREDICTION_FIELDS", "EvalRows", "read_eval_rows", "read_rewards"]

COMPLETION, GOLD = "completion", "gold"
ID, GROUP, SAMPLE, SCORE = "id", "group", "sample", "score"
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
        ids: per row, its ``id`` (None where absent).
        notes: per row, the note it is a sample of: its ``group``, else its own row
            number (every row its own note).
        samples: per row, its ``sample`` index (0 where absent).
        rewards: per row, its ``score`` (NaN where absent), or None when no row has one.
    """

    path: str
    values: tuple[object, ...]
    extracted: tuple[bool, ...]
    golds: tuple[tuple[str, ...], ...]
    ids: tuple[object, ...] = ()
    notes: tuple[object, ...] = ()
    samples: tuple[int, ...] = ()
    rewards: tuple[float, ...] | None = None

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
        columns=(*_SOURCES, GOLD, ID, GROUP, SAMPLE, SCORE),
    )
    values: list[object] = []
    extracted: list[bool] = []
    golds: list[tuple[str, ...]] = []
    ids: list[object] = []
    notes: list[object] = []
    samples: list[int] = []
    rewards: list[float] = []
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
        ids.append(record.get(ID))
        group = record.get(GROUP)
        notes.append(("row", number) if group is None or group == "" else ("group", _key(group)))
        samples.append(_integer(name, number, SAMPLE, record.get(SAMPLE)))
        rewards.append(_number(name, number, SCORE, record.get(SCORE)))
    if not values:
        raise InputFileError(name, "the file holds no rows")
    return EvalRows(
        path=name,
        values=tuple(values),
        extracted=tuple(extracted),
        golds=tuple(golds),
        ids=tuple(ids),
        notes=tuple(notes),
        samples=tuple(samples),
        rewards=tuple(rewards) if any(not math.isnan(r) for r in rewards) else None,
    )


def read_rewards(path: str | os.PathLike[str]) -> dict[str, float]:
    """The ``score`` of every record of a file written by ``icdreward score -o``, by the
    :func:`key` of its ``id``.

    Raises:
        InputFileError: the file is malformed, a record lacks ``id`` or ``score``, or two
            records share an id.
    """
    name = str(path)
    found: dict[str, float] = {}
    for number, record in iter_records(name, columns=(ID, SCORE)):
        if record.get(ID) is None:
            raise InputFileError(
                name, "missing field 'id' (written by icdreward score)", row=number, field=ID
            )
        value = _number(name, number, SCORE, record.get(SCORE))
        if math.isnan(value):
            raise InputFileError(name, "missing field 'score'", row=number, field=SCORE)
        key = _key(record[ID])
        if key in found:
            raise InputFileError(name, f"id {record[ID]!r} appears twice", row=number, field=ID)
        found[key] = value
    return found


def _key(value: object) -> str:
    """The identity of an id or group, equal for ``7`` read from JSON and ``"7"`` from CSV."""
    return str(value)


def _integer(path: str, row: int, field: str, value: object) -> int:
    if value is None or value == "":
        return 0
    try:
        number = int(str(value))
    except ValueError:
        raise InputFileError(
            path, "not a whole number", row=row, field=field, value=value
        ) from None
    if number < 0:
        raise InputFileError(path, "must be at least 0", row=row, field=field, value=value)
    return number


def _number(path: str, row: int, field: str, value: object) -> float:
    if value is None or value == "":
        return math.nan
    if isinstance(value, bool):
        raise InputFileError(path, "not a number", row=row, field=field, value=value)
    try:
        return float(str(value))
    except ValueError:
        raise InputFileError(path, "not a number", row=row, field=field, value=value) from None


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
