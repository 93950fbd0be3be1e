"""The one reader of row files: JSONL, CSV, TSV and parquet, as ``(row number, record)``.

Every reader of rows (scoring input, evaluation input, notes for generation, verl data
preparation) goes through :class:`RecordReader` (or :func:`iter_records`), so they
accept the same formats and fail the same way: an
:class:`~icdreward.errors.InputFileError` naming the file, the row, the field and the
value, with one name for a value's type (:func:`json_type`: "a number", "a list").

Row numbers are what an editor shows: the line number in JSONL and CSV/TSV files (the
header is line 1) and the 1-based row index in parquet files. Reading is one pass,
linear in the file size; parquet is read in record batches, never whole.

>>> from pathlib import Path
>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "rows.csv"
>>> _ = path.write_text("note,codes\\nChest pain.,I214\\n")
>>> reader = RecordReader(path)
>>> list(reader), reader.position == reader.total
([(2, {'note': 'Chest pain.', 'codes': 'I214'})], True)
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from icdreward.errors import InputFileError

__all__ = ["FORMATS", "ColumnCheck", "RecordReader", "input_format", "iter_records", "json_type"]

FORMATS: dict[str, str] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
"""File suffix -> input format."""

ColumnCheck = Callable[[list[str], int | None], None]
"""Called with the columns of a CSV/TSV header or parquet schema and the header's row
number (None for parquet) before any record is read; raises
:class:`~icdreward.errors.InputFileError` when a column is missing."""

_PARQUET_BATCH = 65536


def input_format(path: str | os.PathLike[str]) -> str:
    """The format of a row file from its suffix: ``jsonl``, ``csv``, ``tsv``, ``parquet``.

    Raises:
        InputFileError: the suffix is not one of :data:`FORMATS`.
    """
    suffix = Path(path).suffix.lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        known = ", ".join(FORMATS)
        raise InputFileError(
            str(path), f"unknown file type {suffix or '(no suffix)'!r}; use one of {known}"
        ) from None


def json_type(value: object) -> str:
    """How an error message names the type of a value read from a row ("a number")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


class RecordReader:
    """The records of one row file, read lazily, with their row numbers and progress.

    The path, its type and (for parquet) the schema are checked when the reader is
    made; records are read and checked as they are iterated, so a malformed row
    raises when it is reached. Iterating again reads the file again.

    Args:
        path: a ``.jsonl``/``.ndjson``, ``.csv``, ``.tsv`` or ``.parquet``/``.pq`` file.
        check_columns: see :data:`ColumnCheck` (CSV/TSV and parquet only: JSONL
            records are checked one by one by the caller).
        columns: the columns to keep from CSV/TSV and parquet files (all when None);
            named columns the file lacks are left out of the records.
        batch_size: parquet rows decoded at once.

    Attributes:
        path: the file, as given.
        format: ``"jsonl"``, ``"csv"``, ``"tsv"`` or ``"parquet"``.
        total: progress units in the file: bytes for text formats, rows for parquet.
        position: progress units consumed so far.

    Raises:
        InputFileError: the file is missing, a directory, empty, of an unknown type,
            not a parquet file, or ``check_columns`` refused its schema.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        check_columns: ColumnCheck | None = None,
        columns: Sequence[str] | None = None,
        batch_size: int = _PARQUET_BATCH,
    ) -> None:
        self.path = str(path)
        self.format = input_format(path)
        self._check = check_columns
        self._keep = None if columns is None else tuple(columns)
        self._batch_size = max(int(batch_size), 1)
        file = Path(path)
        if file.is_dir():
            raise InputFileError(self.path, "is a directory, not a file")
        try:
            size = file.stat().st_size
        except OSError as exc:
            raise InputFileError(self.path, f"cannot read file: {exc.strerror}") from None
        if size == 0:
            raise InputFileError(self.path, "the file is empty")
        self.total = size
        self.position = 0
        self._parquet: Any = None
        if self.format == "parquet":
            self._parquet = self._open_parquet()
            self.total = int(self._parquet.metadata.num_rows)

    def __iter__(self) -> Iterator[tuple[int, Mapping[str, Any]]]:
        self.position = 0
        if self.format == "jsonl":
            return self._jsonl()
        if self.format == "parquet":
            return self._parquet_rows()
        return self._csv("\t" if self.format == "tsv" else ",")

    # -- text formats ------------------------------------------------------------

    def _lines(self) -> Iterator[tuple[int, str]]:
        """(line number, text) of every line, advancing :attr:`position` in bytes."""
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise InputFileError(self.path, f"cannot read file: {exc.strerror}") from None
        with handle:
            for number, raw in enumerate(handle, 1):
                self.position += len(raw)
                try:
                    text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise InputFileError(
                        self.path,
                        f"not valid UTF-8 text ({exc.reason} at byte {exc.start})",
                        row=number,
                        value=raw[max(0, exc.start - 20) : exc.start + 20],
                    ) from None
                yield number, text

    def _jsonl(self) -> Iterator[tuple[int, Mapping[str, Any]]]:
        for number, text in self._lines():
            if not text.strip():
                continue
            try:
                record = json.loads(text.strip())
            except json.JSONDecodeError as exc:
                raise InputFileError(
                    self.path,
                    f"invalid JSON: {exc.msg} at column {exc.colno}",
                    row=number,
                    value=text.strip(),
                ) from None
            if not isinstance(record, dict):
                raise InputFileError(
                    self.path,
                    f"expected a JSON object, not {json_type(record)}",
                    row=number,
                    value=record,
                )
            yield number, record

    def _csv(self, delimiter: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
        # Completions with long reasoning traces exceed the csv module's default field
        # limit of 128 KiB; the limit is process-wide, so it is only ever raised.
        csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
        reader = csv.reader((text for _, text in self._lines()), delimiter=delimiter)
        try:
            header = next(reader, None)
            if header is None:
                raise InputFileError(self.path, "the file holds no rows")
            columns = [name.strip() for name in header]
            if self._check is not None:
                self._check(columns, 1)
            names = columns if self._keep is None else [n for n in self._keep if n in columns]
            wanted = {name: columns.index(name) for name in names}
            start = reader.line_num + 1
            for values in reader:
                number, start = start, reader.line_num + 1
                if not values:
                    continue
                if len(values) != len(columns):
                    raise InputFileError(
                        self.path,
                        f"the row has {len(values)} fields but the header has {len(columns)}",
                        row=number,
                        value=delimiter.join(values),
                    )
                yield number, {name: values[k] for name, k in wanted.items()}
        except csv.Error as exc:
            raise InputFileError(self.path, f"malformed CSV: {exc}", row=reader.line_num) from None

    # -- parquet -----------------------------------------------------------------

    def _open_parquet(self) -> Any:
        import pyarrow.parquet as pq

        try:
            handle = pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
            raise InputFileError(self.path, f"cannot read parquet file: {exc}") from None
        if self._check is not None:
            self._check(list(handle.schema_arrow.names), None)
        return handle

    def _parquet_rows(self) -> Iterator[tuple[int, Mapping[str, Any]]]:
        handle = self._parquet
        names = list(handle.schema_arrow.names)
        columns = names if self._keep is None else [n for n in self._keep if n in names]
        number = 0
        batches = handle.iter_batches(batch_size=self._batch_size, columns=columns)
        while True:
            try:
                batch = next(batches, None)
            except Exception as exc:  # a corrupt page or column chunk
                raise InputFileError(
                    self.path, f"cannot read parquet file: {exc}", row=number + 1
                ) from None
            if batch is None:
                return
            data = batch.to_pydict()
            for i in range(batch.num_rows):
                number += 1
                self.position += 1
                yield number, {name: data[name][i] for name in columns}


def iter_records(
    path: str | os.PathLike[str],
    *,
    check_columns: ColumnCheck | None = None,
    columns: Sequence[str] | None = None,
) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """The records of ``path``, lazily, with their row numbers (see :class:`RecordReader`).

    Raises:
        InputFileError: the file is missing, a directory, empty, of an unknown type or
            malformed.
    """
    return iter(RecordReader(path, check_columns=check_columns, columns=columns))
