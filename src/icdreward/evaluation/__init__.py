"""Evaluation: macro/micro F1, accuracy, precision and recall at every ICD-10-CM level.

Predictions are taken from completions with the reward engine's parser and code set, so
evaluation and reward agree; unparseable and invalid predictions count as wrong. The
levels are ``chapter``, ``block``, ``category`` (the first three characters) and
``full_code``; see ``docs/evaluation.md`` for the definitions.

>>> report = evaluate_codes(["M5116", "M5116", "E119"], ["M51.16", "M51.17", "nonsense"])
>>> round(report.levels["category"].accuracy, 4), report.invalid, report.unparseable
(0.6667, 1, 0)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from icdreward.codeset import CodeSet
from icdreward.components import Parser
from icdreward.errors import InputFileError
from icdreward.evaluation._bootstrap import INTERVAL_METHODS
from icdreward.evaluation._evaluate import (
    LEVEL_NAMES,
    UNKNOWN,
    ChapterScores,
    EvalReport,
    Predictions,
    evaluate,
    evaluate_codes,
    extract_codes,
    parse_completions,
)
from icdreward.evaluation._groups import PER_NOTE_MODES, PassAtK
from icdreward.evaluation._inputs import PREDICTION_FIELDS, EvalRows, read_eval_rows, read_rewards
from icdreward.evaluation._metrics import (
    METRICS,
    MULTILABEL_METRICS,
    LevelScores,
    confusion_counts,
    scores,
)
from icdreward.evaluation._plot import PLOT_FORMATS, plot_report

__all__ = [
    "INTERVAL_METHODS",
    "LEVEL_NAMES",
    "METRICS",
    "MULTILABEL_METRICS",
    "PER_NOTE_MODES",
    "PLOT_FORMATS",
    "PREDICTION_FIELDS",
    "UNKNOWN",
    "ChapterScores",
    "EvalReport",
    "EvalRows",
    "LevelScores",
    "PassAtK",
    "Predictions",
    "confusion_counts",
    "evaluate",
    "evaluate_codes",
    "evaluate_file",
    "evaluate_rows",
    "extract_codes",
    "parse_completions",
    "plot_report",
    "predictions_of",
    "read_eval_rows",
    "read_rewards",
    "scores",
]


def predictions_of(rows: EvalRows, parser: Parser, codeset: CodeSet) -> Predictions:
    """The predictions of evaluation rows: completions parsed, extracted codes checked."""
    if all(rows.extracted):
        return extract_codes(rows.values, codeset)
    if not any(rows.extracted):
        return parse_completions(rows.values, parser)
    parsed_at = [i for i, e in enumerate(rows.extracted) if not e]
    given_at = [i for i, e in enumerate(rows.extracted) if e]
    parsed = parse_completions([rows.values[i] for i in parsed_at], parser)
    given = extract_codes([rows.values[i] for i in given_at], codeset)
    codes = [""] * len(rows)
    unparseable = torch.zeros(len(rows), dtype=torch.bool)
    invalid = torch.zeros(len(rows), dtype=torch.bool)
    for part, where in ((parsed, parsed_at), (given, given_at)):
        for code, i in zip(part.codes, where, strict=True):
            codes[i] = code
        index = torch.tensor(where, dtype=torch.int64)
        unparseable[index] = part.unparseable
        invalid[index] = part.invalid
    return Predictions(codes=tuple(codes), unparseable=unparseable, invalid=invalid)


def evaluate_file(
    path: str | os.PathLike[str],
    parser: Parser,
    codeset: CodeSet,
    *,
    per_note: str = "first",
    rewards: dict[str, float] | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    confidence: float = 0.95,
    interval: str = "bca",
    by_chapter: bool = False,
    multilabel: bool = False,
) -> EvalReport:
    """Evaluate a JSONL/CSV/parquet file (see :func:`read_eval_rows`).

    Pass the parser and code set of a reward engine
    (``engine.parser, engine.codeset``) so that evaluation and reward agree. Rows with
    the same ``group`` are the samples of one note. ``rewards`` (from
    :func:`read_rewards`) gives each row's reward by its ``id``, for ``best-reward``;
    without it, a ``score`` field of the rows is used.

    Raises:
        InputFileError: the file is missing, empty or malformed, or a row's id has no
            reward in ``rewards``.
    """
    return evaluate_rows(
        read_eval_rows(path),
        parser,
        codeset,
        per_note=per_note,
        rewards=rewards,
        bootstrap=bootstrap,
        seed=seed,
        confidence=confidence,
        interval=interval,
        by_chapter=by_chapter,
        multilabel=multilabel,
    )


def evaluate_rows(
    rows: EvalRows,
    parser: Parser,
    codeset: CodeSet,
    *,
    per_note: str = "first",
    rewards: dict[str, float] | Sequence[float] | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    confidence: float = 0.95,
    interval: str = "bca",
    by_chapter: bool = False,
    multilabel: bool = False,
) -> EvalReport:
    """:func:`evaluate_file` for rows already read (``rewards``: by id, or one per row)."""
    if isinstance(rewards, dict):
        rewards = _joined_rewards(rows, rewards)
    return evaluate(
        rows.golds,
        predictions_of(rows, parser, codeset),
        note_ids=rows.notes,
        samples=rows.samples,
        rewards=rewards if rewards is not None else rows.rewards,
        per_note=per_note,
        codeset=codeset,
        bootstrap=bootstrap,
        seed=seed,
        confidence=confidence,
        interval=interval,
        by_chapter=by_chapter,
        multilabel=multilabel,
    )


def _joined_rewards(rows: EvalRows, rewards: dict[str, float]) -> list[float]:
    joined = []
    for number, ident in enumerate(rows.ids, 1):
        value = rewards.get(str(ident)) if ident is not None else None
        if value is None:
            raise InputFileError(
                rows.path,
                f"row {number}: id {ident!r} has no reward in the rewards file",
                field="id",
            )
        joined.append(value)
    return joined
