"""Admission notes with codes to verl's training parquet (``icdreward prepare``).

INPUT is a JSONL, CSV/TSV or parquet file, read through :func:`icdreward.records.iter_records`.
Each row holds an admission note and its gold ICD-10-CM codes, primary first (one code,
a list, ``"M5116;E119"``, a JSON list written as a string, a parquet list), and
optionally an id. The columns are ``note`` (or ``text``, as in MIMIC-IV-Note), ``codes``
(or ``gold``) and ``id`` unless :class:`PrepareOptions` names others.

Each written row is what verl's ``RLHFDataset`` and reward function read::

    data_source   "icdreward/icd10cm"
    prompt        build_messages(note, prefill_think=False): system + user messages
    ability       "clinical_coding"
    reward_model  {"style": "rule", "ground_truth": ["M5116", "E119"]}
    extra_info    {"split", "index", "note", "id", "row", "prompt_version"}

The prompt is :func:`icdreward.prompts.build_messages` (the template of generation and
the TRL example) *without* the prefilled ``<think>``: verl renders prompts with
``add_generation_prompt=True``, which opens a new assistant turn and cannot continue a
prefilled one, so the policy opens ``<think>`` itself. The ``tags`` parser with
``prefilled_think = true`` reads a completion that starts with ``<think>`` as that tag,
so rewards are the same either way. ``extra_info.prompt_version`` records
:data:`icdreward.prompts.PROMPT_VERSION`; ``extra_info.note`` is the note the judge and
the grounding reward read; ``index`` is the row's position in its split and ``row`` its
row number in INPUT.

Gold codes are normalized (case, dots, whitespace), repeats removed, the primary kept
first. Codes missing from the shipped FY2026 code set are kept (MIMIC labels come from
older years); the primary code must still have the ICD-10-CM shape.

What happens to a bad row:

- a *structural* problem raises :class:`~icdreward.errors.InputFileError` naming the
  file, row, field and value, and nothing is written: a missing column (a missing field
  in a JSONL row), a note that is not text, codes that are not a code or a list of
  codes (a number, an object, broken JSON), an id that is not text or a whole number;
- a *data* problem drops the row, counted in :attr:`PrepareReport.dropped` under the
  first reason that applies, in this order: ``empty note`` (null or blank), ``no gold
  code`` (null, blank or an empty list), ``primary code is not ICD-10-CM`` (an ICD-9
  code such as ``4019``), ``duplicate id`` (an earlier row with that id passed these
  checks), ``prompt longer than N tokens`` (with ``max_prompt_tokens``).

The split is drawn per row from a hash of the seed and the row's id (its note when it
has none), see :func:`assign_split`: it does not depend on row order or on the other
rows, and a row keeps its split when the file grows. Everything runs in one pass in
memory linear in the number of ids (for ``duplicate id``), not in the file size.

>>> import tempfile
>>> out = Path(tempfile.mkdtemp())
>>> notes = out / "notes.jsonl"
>>> _ = notes.write_text('{"id": "a", "note": "Chest pain.", "codes": "i21.4"}\\n'
...                      '{"id": "b", "note": "", "codes": "I10"}\\n')
>>> report = prepare_dataset(notes, out, PrepareOptions(val_fraction=0))
>>> report.written, report.dropped, sorted(p.name for p in out.glob("*.parquet"))
({'train': 1}, {'empty note': 1}, ['train.parquet'])
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from icdreward.errors import ConfigError, InputFileError
from icdreward.records import iter_records
from icdreward_verl._prepare_rows import RowReader
from icdreward_verl._prepare_run import (
    DEFAULT_VAL_FRACTION,
    SPLITS,
    Pass,
    assign_split,
    prompt_too_long,
)
from icdreward_verl._prepare_tokens import OPTIONS, ChatTokenizer, load_tokenizer

__all__ = [
    "DEFAULT_ABILITY",
    "DEFAULT_DATA_SOURCE",
    "DEFAULT_VAL_FRACTION",
    "SPLITS",
    "ChatTokenizer",
    "PrepareOptions",
    "PrepareReport",
    "assign_split",
    "prepare_dataset",
    "prompt_too_long",
]

DEFAULT_DATA_SOURCE = "icdreward/icd10cm"
DEFAULT_ABILITY = "clinical_coding"


def _check_fraction(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(OPTIONS, attribute.name, value, "must be at least 0 and below 1")


def _check_positive(_: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or value < 1):
        raise ConfigError(OPTIONS, attribute.name, value, "must be a whole number of at least 1")


def _check_name(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not value.strip():
        raise ConfigError(OPTIONS, attribute.name, value, "must not be empty")


def _optional_path(value: str | os.PathLike[str] | None) -> str | None:
    return None if value is None else os.fspath(value)


@attrs.frozen(kw_only=True)
class PrepareOptions:
    """How :func:`prepare_dataset` reads INPUT and writes the splits.

    Attributes:
        note_column: the note column (default: ``note``, else ``text``).
        codes_column: the gold codes column (default: ``codes``, else ``gold``).
        id_column: the id column (default: ``id`` where the file has one; a named
            column must exist). A null or empty id means the row has none.
        val_fraction: the share of rows drawn into ``val``, ``0 <= f < 1``; 0 writes
            no validation file (and removes a stale one).
        seed: seeds the split; another seed draws another validation set.
        data_source: the ``data_source`` of every row.
        ability: the ``ability`` of every row.
        tokenizer: a local tokenizer directory (never downloaded); with it the
            report gives the longest prompt in tokens.
        max_prompt_tokens: drop rows whose prompt is longer, measured as verl does
            (``apply_chat_template(messages, add_generation_prompt=True)``); needs a
            tokenizer. Match verl's ``data.max_prompt_length``.
        limit: read only the first ``limit`` rows of INPUT.

    Raises:
        ConfigError: a value is out of range (the field and value are named).
    """

    note_column: str | None = attrs.field(default=None, validator=_check_name)
    codes_column: str | None = attrs.field(default=None, validator=_check_name)
    id_column: str | None = attrs.field(default=None, validator=_check_name)
    val_fraction: float = attrs.field(
        default=DEFAULT_VAL_FRACTION, converter=float, validator=_check_fraction
    )
    seed: int = 0
    data_source: str = attrs.field(default=DEFAULT_DATA_SOURCE, validator=_check_name)
    ability: str = attrs.field(default=DEFAULT_ABILITY, validator=_check_name)
    tokenizer: str | None = attrs.field(default=None, converter=_optional_path)
    max_prompt_tokens: int | None = attrs.field(default=None, validator=_check_positive)
    limit: int | None = attrs.field(default=None, validator=_check_positive)


@attrs.frozen
class PrepareReport:
    """What :func:`prepare_dataset` read, wrote and dropped.

    Attributes:
        input: the input file.
        output_dir: the output directory.
        rows_read: rows read from INPUT (``total_written + total_dropped``).
        written: rows written per split (``train``, and ``val`` unless the fraction is 0).
        files: the file of each split.
        dropped: rows dropped per reason (only reasons that occurred).
        dropped_rows: per reason, the row numbers of its first few rows.
        longest_prompt: the longest written prompt in tokens (None without a tokenizer).
    """

    input: str
    output_dir: str
    rows_read: int
    written: Mapping[str, int]
    files: Mapping[str, str]
    dropped: Mapping[str, int]
    dropped_rows: Mapping[str, tuple[int, ...]]
    longest_prompt: int | None = None

    @property
    def total_written(self) -> int:
        """Rows written, all splits together."""
        return sum(self.written.values())

    @property
    def total_dropped(self) -> int:
        """Rows dropped, all reasons together."""
        return sum(self.dropped.values())

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data."""
        return {
            "input": self.input,
            "output_dir": self.output_dir,
            "rows_read": self.rows_read,
            "written": dict(self.written),
            "files": dict(self.files),
            "dropped": dict(self.dropped),
            "dropped_rows": {k: list(v) for k, v in self.dropped_rows.items()},
            "longest_prompt": self.longest_prompt,
        }


def prepare_dataset(
    path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    options: PrepareOptions | None = None,
    *,
    tokenizer: ChatTokenizer | None = None,
) -> PrepareReport:
    """Write ``output_dir/train.parquet`` (and ``val.parquet``) from the notes in ``path``.

    See the module docstring for the columns, the rows written and the rows dropped.

    Args:
        path: the input file (JSONL, CSV, TSV or parquet).
        output_dir: created if missing; the split files in it are replaced.
        options: see :class:`PrepareOptions` (default: all defaults).
        tokenizer: an already loaded tokenizer, used instead of ``options.tokenizer``.

    Raises:
        InputFileError: INPUT is missing, empty, of an unknown type or malformed
            (nothing is written).
        ConfigError: a bad option: ``max_prompt_tokens`` without a tokenizer, a
            tokenizer that cannot be loaded or has no chat template, an output
            directory that cannot be written.
    """
    opts = options if options is not None else PrepareOptions()
    if tokenizer is None and opts.tokenizer is not None:
        tokenizer = load_tokenizer(opts.tokenizer)
    if tokenizer is not None and getattr(tokenizer, "chat_template", None) is None:
        raise ConfigError(
            OPTIONS, "tokenizer", opts.tokenizer, "the tokenizer has no chat template"
        )
    if opts.max_prompt_tokens is not None and tokenizer is None:
        raise ConfigError(OPTIONS, "max_prompt_tokens", opts.max_prompt_tokens, "needs a tokenizer")
    name = str(path)
    out = Path(output_dir)
    reader = RowReader(
        name,
        note_column=opts.note_column,
        codes_column=opts.codes_column,
        id_column=opts.id_column,
    )
    records = iter_records(name, check_columns=reader.check_columns, columns=reader.wanted_columns)
    run = Pass(
        out,
        seed=opts.seed,
        val_fraction=opts.val_fraction,
        data_source=opts.data_source,
        ability=opts.ability,
        tokenizer=tokenizer,
        tokenizer_name=opts.tokenizer,
        max_prompt_tokens=opts.max_prompt_tokens,
    )
    try:
        for number, record in records:
            if opts.limit is not None and run.rows_read >= opts.limit:
                break
            run.add(number, reader.read(number, record))
        run.flush()
        if run.rows_read == 0:
            raise InputFileError(name, "the file holds no rows")
        run.commit()
    except BaseException:
        run.abort()
        raise
    return PrepareReport(
        input=name,
        output_dir=str(out),
        rows_read=run.rows_read,
        written={split: w.rows for split, w in run.writers.items()},
        files={split: str(w.path) for split, w in run.writers.items()},
        dropped=run.dropped_counts(),
        dropped_rows={reason: tuple(rows) for reason, rows in run.examples.items()},
        longest_prompt=run.longest,
    )
