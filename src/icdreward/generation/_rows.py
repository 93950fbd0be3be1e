"""Reading the notes to generate for: JSONL, CSV/TSV or parquet rows with ``note`` and gold codes.

Every row holds the admission ``note`` and its gold code(s) in ``codes`` or ``gold``
(one code, a list, ``"M5116;E119"`` or a JSON list written as a string, as for
``icdreward score``), and optionally an ``id``; without one the row number is its id.
Ids must be unique: they are how an interrupted run knows which rows are done.
"""

from __future__ import annotations

import json
import os
from typing import Any

import attrs

from icdreward.errors import InputFileError
from icdreward.inputs import parse_gold
from icdreward.records import iter_records

__all__ = ["NoteRow", "read_note_rows", "row_key"]

_GOLD_FIELDS = ("codes", "gold")


@attrs.frozen
class NoteRow:
    """One note to generate for: its ``id`` (as written, or the row number), note and golds."""

    id: Any
    note: str
    gold: tuple[str, ...]
    row: int


def row_key(value: Any) -> str:
    """The identity of a row id, equal for an id read from INPUT and from OUT."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def read_note_rows(path: str | os.PathLike[str], *, limit: int | None = None) -> list[NoteRow]:
    """The rows of ``path`` (the first ``limit`` ones when given).

    Raises:
        InputFileError: the file is missing, empty, of an unknown type or malformed, a
            row has no note or no gold code, or two rows share an id.
    """
    name = str(path)
    records = iter_records(name)
    rows: list[NoteRow] = []
    seen: dict[str, int] = {}
    for number, record in records:
        if limit is not None and len(rows) >= limit:
            break
        note = record.get("note")
        if not isinstance(note, str) or not note.strip():
            raise InputFileError(name, "missing or empty field 'note'", row=number, field="note")
        field = next((f for f in _GOLD_FIELDS if record.get(f) is not None), None)
        if field is None:
            raise InputFileError(
                name, "missing field 'codes' (or 'gold')", row=number, field="codes"
            )
        gold = parse_gold(record[field], path=name, row=number)
        ident = record.get("id")
        if ident is None or ident == "":
            ident = number
        key = row_key(ident)
        if key in seen:
            raise InputFileError(
                name, f"id {ident!r} is also the id of row {seen[key]}", row=number, field="id"
            )
        seen[key] = number
        rows.append(NoteRow(id=ident, note=note, gold=gold, row=number))
    if not rows:
        raise InputFileError(name, "the file holds no rows")
    return rows
