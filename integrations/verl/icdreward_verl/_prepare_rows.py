"""Reading the rows of ``icdreward prepare``: a checked note row, or the reason to drop it.

Two kinds of problem, kept apart on purpose:

- *structure* (a missing column, a note that is a number, a code list that is an
  object or broken JSON, an id that is a list): the file is not what the options say,
  so :class:`~icdreward.errors.InputFileError` names the file, row, field and value;
- *data* (an empty note, a row without codes, a primary code that is not ICD-10-CM, an
  id seen before): real clinical extracts have such rows, so they are dropped and
  counted under their reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from icdreward.codeset import CodeSet
from icdreward.errors import InputFileError
from icdreward.golds import gold_items
from icdreward.inputs import json_type

__all__ = [
    "DUPLICATE_ID",
    "EMPTY_NOTE",
    "NOT_ICD10",
    "NO_CODE",
    "NoteRecord",
    "RowReader",
]

EMPTY_NOTE = "empty note"
NO_CODE = "no gold code"
NOT_ICD10 = "primary code is not ICD-10-CM"
DUPLICATE_ID = "duplicate id"

NOTE_FIELDS = ("note", "text")
"""The note column when none is named: ``note``, else ``text`` (MIMIC-IV-Note's name)."""
CODE_FIELDS = ("codes", "gold")
"""The codes column when none is named: ``codes``, else ``gold`` (as generate reads)."""
ID_FIELD = "id"

# The shape the format parser accepts (letter, digit, then 1-5 letters or digits, so
# C4A, M1A and Z3A pass); ICD-9 codes such as "4019" fail it. Codes missing from the
# shipped FY2026 table still pass: MIMIC labels come from older code-set years.
_ICD10_SHAPE = re.compile(r"[A-Z][0-9][0-9A-Z][0-9A-Z]{0,4}")


@attrs.frozen
class NoteRecord:
    """One row that will be written, before the split and the token-length check.

    Attributes:
        row: its row number in INPUT (line for JSONL/CSV, 1-based row for parquet).
        id: its id as text, ``""`` when the row has none.
        note: the note, verbatim.
        codes: normalized gold codes, primary first, without repeats (never empty).
    """

    row: int
    id: str
    note: str
    codes: tuple[str, ...]

    @property
    def split_key(self) -> str:
        """What the split is drawn from: the id, or the note of a row without one."""
        return self.id or self.note


class RowReader:
    """Checks the records of one file; remembers the ids seen (for ``duplicate id``).

    ``None`` for a column means the default names: the note in ``note`` or ``text``,
    the codes in ``codes`` or ``gold``, the id in ``id`` when the file has one. A named
    column must be there; the id column is optional only when not named.
    """

    def __init__(
        self,
        path: str,
        *,
        note_column: str | None = None,
        codes_column: str | None = None,
        id_column: str | None = None,
    ) -> None:
        self.path = path
        self._note_options = (note_column,) if note_column else NOTE_FIELDS
        self._code_options = (codes_column,) if codes_column else CODE_FIELDS
        self._id_column = id_column
        self._id_required = id_column is not None
        # Resolved from the header of CSV/parquet files; per record for JSONL.
        self._note: str | None = None
        self._codes: str | None = None
        self._id: str | None = id_column
        self._seen: set[str] = set()

    @property
    def wanted_columns(self) -> tuple[str, ...]:
        """Every column this reader may read (the others are not loaded)."""
        return (*self._note_options, *self._code_options, self._id_column or ID_FIELD)

    def check_columns(self, columns: Sequence[str], row: int | None) -> None:
        """Resolve the columns from a CSV header or parquet schema (``iter_records``)."""
        self._note = self._pick(self._note_options, columns, row, "column")
        self._codes = self._pick(self._code_options, columns, row, "column")
        if self._id_required:
            self._pick((str(self._id_column),), columns, row, "column")
        else:
            self._id = ID_FIELD if ID_FIELD in columns else None

    def read(self, row: int, record: Mapping[str, Any]) -> NoteRecord | str:
        """The checked row, or the reason it is dropped.

        Raises:
            InputFileError: a required field is missing or holds the wrong type.
        """
        note_field = self._note or self._pick(self._note_options, list(record), row, "field")
        codes_field = self._codes or self._pick(self._code_options, list(record), row, "field")
        ident = self._read_id(row, record)
        note = self._read_note(row, note_field, record[note_field])
        codes = self._read_codes(row, codes_field, record[codes_field])
        if note is None:
            return EMPTY_NOTE
        if not codes:
            return NO_CODE
        if not _ICD10_SHAPE.fullmatch(codes[0]):
            return NOT_ICD10
        # Only a row that is kept claims its id: a later, valid row with the id of a
        # dropped one is not a duplicate of anything written.
        if ident:
            if ident in self._seen:
                return DUPLICATE_ID
            self._seen.add(ident)
        return NoteRecord(row=row, id=ident, note=note, codes=codes)

    # -- fields ------------------------------------------------------------------------

    def _pick(
        self, options: Sequence[str], present: Sequence[str], row: int | None, kind: str
    ) -> str:
        for name in options:
            if name in present:
                return name
        wanted = repr(options[0]) + "".join(f" (or {name!r})" for name in options[1:])
        shown = ", ".join(present) or "none"
        raise InputFileError(
            self.path, f"missing {kind} {wanted} ({kind}s: {shown})", row=row, field=options[0]
        )

    def _read_note(self, row: int, field: str, value: object) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise InputFileError(
                self.path,
                f"the note must be text, not {json_type(value)}",
                row=row,
                field=field,
                value=value,
            )
        return value if value.strip() else None

    def _read_codes(self, row: int, field: str, value: object) -> tuple[str, ...]:
        if value is None:
            return ()
        try:
            items = gold_items(value, json_type)
        except ValueError as exc:
            raise InputFileError(self.path, str(exc), row=row, field=field, value=value) from None
        codes: dict[str, None] = {}  # ordered and without repeats: the primary stays first
        for item in items:
            code = CodeSet.normalize(item)
            if code:
                codes.setdefault(code)
        return tuple(codes)

    def _read_id(self, row: int, record: Mapping[str, Any]) -> str:
        field = self._id or ID_FIELD
        if field not in record:
            if self._id_required:
                self._pick((field,), list(record), row, "field")
            return ""
        value = record.get(field)
        if value is None:
            return ""
        if isinstance(value, str):
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        # pandas writes an integer column with gaps as floats (12345.0, NaN)
        if isinstance(value, float) and (math.isnan(value) or value.is_integer()):
            return "" if math.isnan(value) else str(int(value))
        raise InputFileError(
            self.path,
            f"the id must be text or a whole number, not {json_type(value)}",
            row=row,
            field=field,
            value=value,
        )
