"""Rows of JSONL, CSV, TSV and parquet files, as ``(row number, record)`` pairs.

Every reader of row files (evaluation input, notes for generation) goes through
:func:`iter_records`, so they accept the same formats and fail the same way: an
:class:`~icdreward.errors.InputFileError` naming the file, the row (line number for text
files, 1-based row for parquet), the field and the value.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from icdreward.errors import InputFileError
from icdreward.inputs import input_format

__all__ = ["iter_records"]

_Check = Callable[[list[str], int | None], None]


def iter_records(
    path: str | os.PathLike[str],
    *,
    check_columns: _Check | None = None,
    columns: Sequence[str] | None = None,
) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """The records of ``path``, lazily, with their row numbers.

    Args:
        check_columns: called with the header of a CSV/TSV file or the schema of a parquet
            file (and the row number of the header, or None) before any record is read;
            it raises :class:`~icdreward.errors.InputFileError` when a column is missing.
        columns: the columns to keep from CSV/TSV and parquet files (all when None).

    Raises:
        InputFileError: the file is missing, a directory, empty, of an unknown type or
            malformed.
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
        return _jsonl(name)
    if kind == "parquet":
        return _parquet(name, check_columns, columns)
    return _csv(name, "\t" if kind == "tsv" else ",", check_columns, columns)


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


def _csv(
    path: str, delimiter: str, check: _Check | None, keep: Sequence[str] | None
) -> Iterator[tuple[int, Mapping[str, Any]]]:
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    reader = csv.reader((text for _, text in _lines(path)), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            raise InputFileError(path, "the file holds no rows")
        columns = [name.strip() for name in header]
        if check is not None:
            check(columns, 1)
        names = columns if keep is None else [name for name in keep if name in columns]
        wanted = {name: columns.index(name) for name in names}
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


def _parquet(
    path: str, check: _Check | None, keep: Sequence[str] | None
) -> Iterator[tuple[int, Mapping[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
        raise InputFileError(path, f"cannot read parquet file: {exc}") from None
    names = list(handle.schema_arrow.names)
    if check is not None:
        check(names, None)
    columns = names if keep is None else [name for name in keep if name in names]
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
