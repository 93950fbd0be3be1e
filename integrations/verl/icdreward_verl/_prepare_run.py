"""One pass of ``icdreward prepare``: drop counts, the token-length batch, the split writers."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from icdreward.errors import ConfigError
from icdreward.prompts import PROMPT_VERSION, build_messages
from icdreward_verl._prepare_rows import DUPLICATE_ID, EMPTY_NOTE, NO_CODE, NOT_ICD10, NoteRecord
from icdreward_verl._prepare_tokens import OPTIONS, ChatTokenizer, prompt_lengths

if TYPE_CHECKING:
    from icdreward_verl._prepare_write import SplitWriter

__all__ = ["DEFAULT_VAL_FRACTION", "SPLITS", "Pass", "assign_split", "prompt_too_long"]

DEFAULT_VAL_FRACTION = 0.05
SPLITS = ("train", "val")
"""The splits, and the names of their files: ``OUTDIR/train.parquet``, ``OUTDIR/val.parquet``."""

_TOKEN_BATCH = 256
_EXAMPLE_ROWS = 5
_REASONS = (EMPTY_NOTE, NO_CODE, NOT_ICD10, DUPLICATE_ID)


def prompt_too_long(limit: int) -> str:
    """The drop reason of prompts over ``limit`` tokens."""
    return f"prompt longer than {limit} tokens"


def assign_split(key: str, *, seed: int = 0, val_fraction: float = DEFAULT_VAL_FRACTION) -> str:
    """``"val"`` or ``"train"`` for the row with split key ``key`` (its id, else its note).

    A hash (BLAKE2b) of ``seed`` and ``key`` read as a number in ``[0, 1)``: the
    row goes to ``val`` when that number is below ``val_fraction``. Stable across
    processes, machines and Python versions (unlike :func:`hash`), so the split
    depends on nothing but the seed and the row itself.

    >>> assign_split("note-001", seed=0, val_fraction=0.0)
    'train'
    >>> {assign_split(f"adm-{k}", val_fraction=0.5) for k in range(20)} == {"train", "val"}
    True
    """
    # The seed is digits only, so the first NUL ends it: no two (seed, key) pairs collide.
    message = f"{seed}\0{key}".encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(message, digest_size=8, person=b"icdreward-split").digest()
    return "val" if int.from_bytes(digest, "big") / 2**64 < val_fraction else "train"


class Pass:
    """Routes checked rows to the split writers; counts what it drops and why.

    Rows wait in batches of a few hundred so that a tokenizer measures them in one
    call; without a tokenizer the batch only delays the write.
    """

    def __init__(
        self,
        out: Path,
        *,
        seed: int,
        val_fraction: float,
        data_source: str,
        ability: str,
        tokenizer: ChatTokenizer | None = None,
        tokenizer_name: str | None = None,
        max_prompt_tokens: int | None = None,
    ) -> None:
        self.out = out
        self.seed = seed
        self.val_fraction = val_fraction
        self.data_source = data_source
        self.ability = ability
        self.tokenizer = tokenizer
        self.tokenizer_name = tokenizer_name
        self.max_prompt_tokens = max_prompt_tokens
        self.writers = _open_writers(out, val_fraction)
        self.rows_read = 0
        self.dropped: dict[str, int] = {}
        self.examples: dict[str, list[int]] = {}
        self.longest: int | None = None
        self._pending: list[tuple[NoteRecord, list[dict[str, str]]]] = []

    def add(self, row: int, outcome: NoteRecord | str) -> None:
        """Take one row read from INPUT: a checked row, or the reason to drop it."""
        self.rows_read += 1
        if isinstance(outcome, str):
            self._drop(outcome, row)
            return
        self._pending.append((outcome, build_messages(outcome.note, prefill_think=False)))
        if len(self._pending) >= _TOKEN_BATCH:
            self.flush()

    def flush(self) -> None:
        """Measure the waiting prompts (with a tokenizer) and write those that fit."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        lengths: Sequence[int | None] = [None] * len(pending)
        if self.tokenizer is not None:
            conversations = [messages for _, messages in pending]
            lengths = prompt_lengths(self.tokenizer, conversations, self.tokenizer_name)
        limit = self.max_prompt_tokens
        for (record, messages), length in zip(pending, lengths, strict=True):
            if limit is not None and length is not None and length > limit:
                self._drop(prompt_too_long(limit), record.row)
                continue
            if length is not None:
                self.longest = length if self.longest is None else max(self.longest, length)
            self._write(record, messages)

    def dropped_counts(self) -> dict[str, int]:
        """Rows dropped per reason, in the order the reasons are checked."""
        order = {reason: k for k, reason in enumerate(_REASONS)}
        ranked = sorted(self.dropped, key=lambda reason: order.get(reason, len(order)))
        return {reason: self.dropped[reason] for reason in ranked}

    def commit(self) -> None:
        """Move every split file to its final name."""
        try:
            for writer in self.writers.values():
                writer.commit()
            if "val" not in self.writers:
                # val.parquet of an earlier run would not match this train.parquet
                (self.out / "val.parquet").unlink(missing_ok=True)
        except OSError as exc:
            raise _unwritable(self.out, exc) from None

    def abort(self) -> None:
        """Drop the temporary files; earlier output stays as it was."""
        for writer in self.writers.values():
            writer.abort()

    def _write(self, record: NoteRecord, messages: list[dict[str, str]]) -> None:
        split = assign_split(record.split_key, seed=self.seed, val_fraction=self.val_fraction)
        self.writers[split].add(
            data_source=self.data_source,
            ability=self.ability,
            messages=messages,
            codes=record.codes,
            note=record.note,
            ident=record.id,
            row=record.row,
            prompt_version=PROMPT_VERSION,
        )

    def _drop(self, reason: str, row: int) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        rows = self.examples.setdefault(reason, [])
        if len(rows) < _EXAMPLE_ROWS:
            rows.append(row)


def _open_writers(out: Path, val_fraction: float) -> dict[str, SplitWriter]:
    # pyarrow is imported only here, when a pass starts, not with the CLI.
    from icdreward_verl._prepare_write import SplitWriter

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(out, exc) from None
    if not os.access(out, os.W_OK):
        raise ConfigError(OPTIONS, "output_dir", str(out), "the directory is not writable")
    splits = SPLITS if val_fraction > 0 else SPLITS[:1]
    return {split: SplitWriter(out / f"{split}.parquet", split) for split in splits}


def _unwritable(out: Path, exc: OSError) -> ConfigError:
    return ConfigError(OPTIONS, "output_dir", str(out), f"cannot write: {exc.strerror or exc}")
