"""The output file: one JSON line per sample, written a whole row at a time, resumable.

A row's samples are written with one ``write`` and flushed, so a run that is
interrupted leaves at most one torn row at the end of the file. When a run starts on
an existing file, :func:`prepare_output` reads it: the rows whose samples are all
there are done and skipped; the file is cut back to those rows (a torn or partial
row is dropped and generated again), and new rows are appended.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from icdreward.errors import InputFileError

from ._params import SamplingParams
from ._rows import NoteRow, row_key

__all__ = ["RowWriter", "prepare_output", "sample_records"]


def sample_records(
    row: NoteRow, completions: Sequence[str], params: SamplingParams
) -> list[dict[str, Any]]:
    """The output records of one row: one per sample, grouped by the row id."""
    sampling = params.to_record()
    records = []
    for k, text in enumerate(completions):
        ident = row.id if params.n == 1 else f"{row.id}#{k}"
        records.append(
            {
                "id": ident,
                "completion": text,
                "gold": list(row.gold),
                "note": row.note,
                "group": row.id,
                "sample": k,
                "sampling": sampling,
            }
        )
    return records


def prepare_output(path: str, n: int) -> set[str]:
    """The keys (:func:`row_key`) of the rows already complete in ``path``.

    A missing file gives none. Lines that are torn, not JSON, or belong to a row with
    fewer than ``n`` distinct samples are removed from the file (rewritten atomically),
    so that appending to it afterwards gives well-formed JSONL.
    """
    file = Path(path)
    if not file.exists():
        return set()
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise InputFileError(path, f"cannot read output file: {exc.strerror}") from None
    lines = raw.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with a newline
    samples: dict[str, set[int]] = {}
    kept: list[tuple[str, bytes]] = []
    dropped = bool(torn.strip())
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            key = row_key(record["group"])
            sample = int(record.get("sample", 0))
        except (ValueError, TypeError, KeyError):
            dropped = True
            continue
        samples.setdefault(key, set()).add(sample)
        kept.append((key, line))
    done = {key for key, found in samples.items() if len(found) >= n}
    keep = [line for key, line in kept if key in done]
    if dropped or len(keep) != len(kept):
        temp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        try:
            temp.write_bytes(b"".join(line + b"\n" for line in keep))
            os.replace(temp, file)
        except BaseException:
            # Also on KeyboardInterrupt and the CLI's SystemExit on SIGTERM: the file
            # itself is untouched until the replace, so only the copy has to go.
            temp.unlink(missing_ok=True)
            raise
    return done


class RowWriter:
    """Appends whole rows to ``path`` (``-``: stdout), flushing after each row."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._handle: IO[str]
        if path == "-":
            self._handle = sys.stdout
        else:
            self._handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        """Write one row's records as one block and flush it."""
        block = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        self._handle.write(block)
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not sys.stdout:
            self._handle.close()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
