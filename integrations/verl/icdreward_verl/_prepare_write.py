"""Writing one split of ``icdreward prepare``: verl's parquet schema, streamed, then renamed.

Rows go out in record batches, so memory does not grow with the input. The file is
written under a temporary name in the output directory and renamed over the final
name only when the whole input has been read: a run stopped by a bad row leaves the
previous output as it was.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["SCHEMA", "SplitWriter"]

SCHEMA = pa.schema(
    [
        pa.field("data_source", pa.string()),
        pa.field(
            "prompt",
            pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])),
        ),
        pa.field("ability", pa.string()),
        pa.field(
            "reward_model",
            pa.struct(
                [pa.field("style", pa.string()), pa.field("ground_truth", pa.list_(pa.string()))]
            ),
        ),
        pa.field(
            "extra_info",
            pa.struct(
                [
                    pa.field("split", pa.string()),
                    pa.field("index", pa.int64()),
                    pa.field("note", pa.string()),
                    pa.field("id", pa.string()),
                    pa.field("row", pa.int64()),
                    pa.field("prompt_version", pa.string()),
                ]
            ),
        ),
    ]
)
"""The columns verl's ``RLHFDataset`` and reward function read, and what icdreward adds."""

_BATCH_ROWS = 1024


class SplitWriter:
    """Streams the rows of one split to ``path`` (see the module docstring)."""

    def __init__(self, path: Path, split: str) -> None:
        self.path = path
        self.split = split
        self.rows = 0
        self._temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[dict[str, Any]] = []

    def add(
        self,
        *,
        data_source: str,
        ability: str,
        messages: list[dict[str, str]],
        codes: tuple[str, ...],
        note: str,
        ident: str,
        row: int,
        prompt_version: str,
    ) -> None:
        """Append one row; its ``extra_info.index`` is its position in this split."""
        self._pending.append(
            {
                "data_source": data_source,
                "prompt": messages,
                "ability": ability,
                "reward_model": {"style": "rule", "ground_truth": list(codes)},
                "extra_info": {
                    "split": self.split,
                    "index": self.rows,
                    "note": note,
                    "id": ident,
                    "row": row,
                    "prompt_version": prompt_version,
                },
            }
        )
        self.rows += 1
        if len(self._pending) >= _BATCH_ROWS:
            self._flush()

    def commit(self) -> None:
        """Write what is pending and move the file to its final name."""
        self._flush(final=True)
        assert self._writer is not None
        self._writer.close()
        self._writer = None
        os.replace(self._temporary, self.path)

    def abort(self) -> None:
        """Drop the temporary file; the final name is left untouched."""
        # Called while another error propagates: that one is the error to report.
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.close()
        self._writer = None
        with contextlib.suppress(OSError):
            self._temporary.unlink(missing_ok=True)

    def _flush(self, *, final: bool = False) -> None:
        if not self._pending and not final:
            return
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._temporary, SCHEMA)
        if self._pending or self.rows == 0:
            # An empty split still gets a file with the schema (one empty table).
            self._writer.write_table(pa.Table.from_pylist(self._pending, schema=SCHEMA))
        self._pending = []
