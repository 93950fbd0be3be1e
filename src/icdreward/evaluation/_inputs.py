"""Reading evaluation input files: rows with a completion or a prediction, and a gold.

The same formats, checks and error messages as :mod:`icdreward.inputs` (every problem
raises :class:`~icdreward.errors.InputFileError` naming the file, row and field); a row
may hold an already extracted code in ``prediction`` (or ``code``) instead of a
``completion``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from icdreward.errors import InputFileError
from icdreward.inputs import input_format, parse_gold

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
    kind = input_format(path)
    file = Path(path)
    if file.is_dir():
        raise InputFileError(name, "is a directory, not a file")
    try:
        size = file.stat().st_size
    except OSError as exc:
        raise InputFileError(name, f"cannot read file: {exc.strerror}") from None
    if size == 0:
        raise InputFileError(name, "the file is empty")
    if kind == "jsonl":
        records = _jsonl(name)
    elif kind == "parquet":
        records = _parquet(name)
    else:
        records = _csv(name, "\t" if kind == "tsv" else ",")
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


def _lines(path: str) -> Iterator[tuple[int, str]]:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise InputFileError(path, f"cannot read file: {exc.strerror}") from None
    with handle:
        for number, raw in enumerate(handle, 1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise InputFileError(
                    path,
                    f"not valid UTF-8 text ({exc.reason} at byte {exc.start})",
                    row=number,
                    value=raw[max(0, exc.start - 20) : exc.start + 20],
                ) from None
            yield number, text


def _jsonl(path: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for number, text in _lines(path):
        if not text.strip():
            continue
        try:
            record = json.loads(text.strip())
        except json.JSONDecodeError as exc:
            raise InputFileError(
                path,
                f"invalid JSON: {exc.msg} at column {exc.colno}",
                row=number,
                value=text.strip(),
            ) from None
        if not isinstance(record, dict):
            raise InputFileError(
                path,
                f"expected a JSON object, not {type(record).__name__}",
                row=number,
                value=record,
            )
        yield number, record


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


def _csv(path: str, delimiter: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    reader = csv.reader((text for _, text in _lines(path)), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            raise InputFileError(path, "the file holds no rows")
        columns = [name.strip() for name in header]
        _check_columns(path, columns, 1)
        wanted = {name: columns.index(name) for name in (*_SOURCES, GOLD) if name in columns}
        start = reader.line_num + 1
        for values in reader:
            number, start = start, reader.line_num + 1
            if not values:
                continue
            if len(values) != len(columns):
                raise InputFileError(
                    path,
                    f"the row has {len(values)} fields but the header has {len(columns)}",
                    row=number,
                    value=delimiter.join(values),
                )
            yield number, {name: values[k] for name, k in wanted.items()}
    except csv.Error as exc:
        raise InputFileError(path, f"malformed CSV: {exc}", row=reader.line_num) from None


def _parquet(path: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
        raise InputFileError(path, f"cannot read parquet file: {exc}") from None
    names = list(handle.schema_arrow.names)
    _check_columns(path, names, None)
    columns = [name for name in (*_SOURCES, GOLD) if name in names]
    number = 0
    batches = handle.iter_batches(batch_size=65536, columns=columns)
    while True:
        try:
            batch = next(batches, None)
        except Exception as exc:  # a corrupt page or column chunk
            raise InputFileError(path, f"cannot read parquet file: {exc}", row=number + 1) from None
        if batch is None:
            return
        data = batch.to_pydict()
        for i in range(batch.num_rows):
            number += 1
            yield number, {name: data[name][i] for name in columns}
