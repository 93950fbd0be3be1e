"""Reading scoring input files: JSONL, CSV/TSV and parquet, through :mod:`icdreward.records`.

The files are read by the one reader of row files (:class:`icdreward.records.RecordReader`:
formats, row numbers, malformed-file errors); this module adds what makes a row a
scoring row. :data:`FORMATS`, :func:`input_format` and :func:`json_type` are
re-exported from there.

Every row holds a ``completion`` and its ``gold`` code(s), optionally the admission
``note``, the ``group`` (GRPO prompt group) it belongs to, and the ``id`` and
``sample`` index that ``icdreward generate`` writes (carried through to the records
of ``icdreward score`` so that later steps join by id, not by line order)::

    {"completion": "...</think><diagnosis>M51.16</diagnosis>", "gold": "M5116", "group": 1}
    {"completion": "...", "gold": ["E1165", "I10"], "note": "62-year-old ...", "group": 2}

A gold is one code, a list of codes (primary first), a string of codes separated by
``;``, ``,`` or ``|`` (``"M5116;E119"``) or a JSON list written as a string
(``'["M5116", "E119"]'``, as CSV files hold them). Codes are kept as written; the
engine normalizes them.

A *completion* is never an input error, whatever it holds (``null``, a number, a chat
message): the engine scores it. Everything else that is wrong raises
:class:`~icdreward.errors.InputFileError` naming the file, the row, the field and the
value. Row numbers are what an editor shows: the line number in JSONL and CSV files
(the CSV header is line 1) and the 1-based row index in parquet files.

>>> from pathlib import Path
>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "rows.jsonl"
>>> _ = path.write_text('{"completion": "x</think><diagnosis>E11.9</diagnosis>", '
...                     '"gold": "E119;I10"}\\n')
>>> rows = read_scoring_rows(path)
>>> rows.golds, rows.rows
((('E119', 'I10'),), (1,))
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs

from icdreward.errors import InputFileError
from icdreward.golds import gold_items
from icdreward.records import FORMATS, RecordReader, input_format, json_type

__all__ = [
    "FORMATS",
    "ScoringReader",
    "ScoringRows",
    "input_format",
    "json_type",
    "parse_gold",
    "read_scoring_rows",
]

COMPLETION, GOLD, NOTE, GROUP = "completion", "gold", "note", "group"
ID, SAMPLE = "id", "sample"
_COLUMNS = (COMPLETION, GOLD, NOTE, GROUP, ID, SAMPLE)
_OPTIONAL = (NOTE, GROUP, ID, SAMPLE)
_MAX_GROUP_CHUNK = 4
_READ_CHUNK = 65536
"""A chunk grows to at most this many times ``chunk_size`` to keep a group whole."""


@attrs.frozen(eq=False)
class ScoringRows:
    """Rows of a scoring file, column by column, ready for ``RewardEngine.score``.

    Attributes:
        path: the file the rows come from.
        completions: per row, the completion as stored (any JSON value).
        golds: per row, the gold codes as written, primary first (never empty).
        notes: per row, the note (None where the row has none), or None when no row
            of this chunk has a note.
        groups: per row, the group id (None where the row has none), or None when no
            row of this chunk has a group.
        rows: per row, its row number in the file (see the module docstring).
        ids: per row, the ``id`` field as stored (None where the row has none), or
            None when no row of this chunk has an id.
        samples: per row, the ``sample`` field as stored (None where the row has
            none), or None when no row of this chunk has one.
    """

    path: str
    completions: tuple[object, ...]
    golds: tuple[tuple[str, ...], ...]
    notes: tuple[str | None, ...] | None = None
    groups: tuple[Any, ...] | None = None
    rows: tuple[int, ...] = ()
    ids: tuple[Any, ...] | None = None
    samples: tuple[Any, ...] | None = None

    def __len__(self) -> int:
        return len(self.completions)

    @classmethod
    def concat(cls, parts: Iterable[ScoringRows], path: str | None = None) -> ScoringRows:
        """Join chunks of one file back into one container."""
        chunks = list(parts)
        name = path if path is not None else (chunks[0].path if chunks else "")
        return cls(
            path=name,
            completions=tuple(x for c in chunks for x in c.completions),
            golds=tuple(x for c in chunks for x in c.golds),
            notes=_joined([(c.notes, len(c)) for c in chunks]),
            groups=_joined([(c.groups, len(c)) for c in chunks]),
            rows=tuple(x for c in chunks for x in c.rows),
            ids=_joined([(c.ids, len(c)) for c in chunks]),
            samples=_joined([(c.samples, len(c)) for c in chunks]),
        )

    def identities(self) -> list[dict[str, Any]]:
        """Per row, its ``id``, ``group`` and ``sample`` as a dict, in that order.

        A field is left out of a row's dict where the row does not have it, so a file
        without these fields gives empty dicts.

        >>> rows = ScoringRows("f", ("a", "b"), (("E119",), ("E119",)),
        ...                    groups=("n1", "n1"), ids=("n1#0", None))
        >>> rows.identities()
        [{'id': 'n1#0', 'group': 'n1'}, {'group': 'n1'}]
        """
        columns = [(ID, self.ids), (GROUP, self.groups), (SAMPLE, self.samples)]
        present = [(field, values) for field, values in columns if values is not None]
        return [
            {field: values[i] for field, values in present if values[i] is not None}
            for i in range(len(self))
        ]


@attrs.frozen
class _Row:
    number: int
    completion: object
    gold: tuple[str, ...]
    note: str | None
    group: Any
    id: Any
    sample: Any


def parse_gold(value: object, *, path: str = "<input>", row: int | None = None) -> tuple[str, ...]:
    """The gold codes of one row as a tuple of strings, primary first.

    >>> parse_gold("M5116"), parse_gold("M5116;E119"), parse_gold('["M5116", "E119"]')
    (('M5116',), ('M5116', 'E119'), ('M5116', 'E119'))
    >>> parse_gold(["m51.16", " E11.9 "])
    ('m51.16', 'E11.9')

    Raises:
        InputFileError: the value is not a code, a list of codes or a string of codes.
    """
    if value is None:
        raise InputFileError(path, "gold is missing (null)", row=row, field=GOLD)
    try:
        codes = gold_items(value, json_type)
    except ValueError as exc:
        raise InputFileError(path, str(exc), row=row, field=GOLD, value=value) from None
    if not codes:
        raise InputFileError(path, "gold holds no code", row=row, field=GOLD, value=value)
    return codes


class ScoringReader:
    """Streams a scoring file in chunks of validated rows.

    The path and suffix are checked when the reader is made; rows are read and
    checked as the chunks are iterated, so a malformed row raises
    :class:`~icdreward.errors.InputFileError` when its chunk is reached. A chunk that
    would split a run of rows of the same group is extended (up to four times
    ``chunk_size``) so that each group is scored in one batch.

    Attributes:
        path: the file.
        format: ``"jsonl"``, ``"csv"``, ``"tsv"`` or ``"parquet"``.
        total: progress units in the file: bytes for text formats, rows for parquet.
        position: progress units consumed so far.
        rows_read: rows yielded so far.

    >>> from pathlib import Path
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "rows.csv"
    >>> _ = path.write_text("completion,gold,group\\na,M5116,1\\nb,M5116,1\\nc,E119,2\\n")
    >>> [len(chunk) for chunk in ScoringReader(path, chunk_size=1)]
    [2, 1]
    """

    def __init__(self, path: str | os.PathLike[str], *, chunk_size: int = 1024) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.path = str(path)
        self.chunk_size = chunk_size
        self._records = RecordReader(
            path, check_columns=self._check_columns, columns=_COLUMNS, batch_size=chunk_size
        )
        self.format = self._records.format
        self.total = self._records.total
        self.rows_read = 0

    @property
    def position(self) -> int:
        """Progress units consumed so far (bytes for text formats, rows for parquet)."""
        return self._records.position

    def __iter__(self) -> Iterator[ScoringRows]:
        self.rows_read = 0
        chunk: list[_Row] = []
        limit = self.chunk_size * _MAX_GROUP_CHUNK
        for row in self._rows():
            if len(chunk) >= self.chunk_size:
                last = chunk[-1].group
                same_group = row.group is not None and _same(row.group, last)
                if not same_group or len(chunk) >= limit:
                    yield self._chunk(chunk)
                    chunk = []
            chunk.append(row)
        if chunk:
            yield self._chunk(chunk)
        if self.rows_read == 0:
            raise InputFileError(self.path, "the file holds no rows")

    def _chunk(self, rows: list[_Row]) -> ScoringRows:
        self.rows_read += len(rows)
        return ScoringRows(
            path=self.path,
            completions=tuple(r.completion for r in rows),
            golds=tuple(r.gold for r in rows),
            notes=_column(r.note for r in rows),
            groups=_column(r.group for r in rows),
            rows=tuple(r.number for r in rows),
            ids=_column(r.id for r in rows),
            samples=_column(r.sample for r in rows),
        )

    def _check_columns(self, columns: list[str], row: int | None) -> None:
        for required in (COMPLETION, GOLD):
            if required not in columns:
                raise InputFileError(
                    self.path,
                    f"missing column {required!r} (columns: {', '.join(columns)})",
                    row=row,
                    field=required,
                )

    def _rows(self) -> Iterator[_Row]:
        # An empty CSV/TSV cell means the row has no note / group / id / sample (a
        # JSON "" is a value).
        drop_empty = self.format in ("csv", "tsv")
        for number, record in self._records:
            if drop_empty and any(record.get(k) == "" for k in _OPTIONAL):
                record = {k: v for k, v in record.items() if not (k in _OPTIONAL and v == "")}
            yield self._row(number, record)

    # -- rows --------------------------------------------------------------------

    def _row(self, number: int, record: Mapping[str, Any]) -> _Row:
        if COMPLETION not in record:
            raise InputFileError(
                self.path, "missing field 'completion'", row=number, field=COMPLETION
            )
        if GOLD not in record:
            raise InputFileError(self.path, "missing field 'gold'", row=number, field=GOLD)
        note = record.get(NOTE)
        if note is not None and not isinstance(note, str):
            raise InputFileError(
                self.path,
                f"note must be text, not {json_type(note)}",
                row=number,
                field=NOTE,
                value=note,
            )
        return _Row(
            number=number,
            completion=record[COMPLETION],
            gold=parse_gold(record[GOLD], path=self.path, row=number),
            note=note,
            group=record.get(GROUP),
            id=record.get(ID),
            sample=record.get(SAMPLE),
        )


def read_scoring_rows(path: str | os.PathLike[str]) -> ScoringRows:
    """Read and check a whole scoring file (JSONL, CSV, TSV or parquet).

    Raises:
        InputFileError: the file is missing, empty, of an unknown type or malformed.
    """
    return ScoringRows.concat(ScoringReader(path, chunk_size=_READ_CHUNK), path=str(path))


def _column(values: Iterable[Any]) -> tuple[Any, ...] | None:
    """An optional column of a chunk: None when no row has a value."""
    column = tuple(values)
    return column if any(v is not None for v in column) else None


def _joined(parts: list[tuple[tuple[Any, ...] | None, int]]) -> tuple[Any, ...] | None:
    """Optional columns of several chunks as one (None when none of them has one)."""
    if all(column is None for column, _ in parts):
        return None
    return tuple(x for column, size in parts for x in (column or (None,) * size))


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # exotic values whose == raises or returns arrays
        return False
