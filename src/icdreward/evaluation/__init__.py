"""Evaluation: macro/micro F1, accuracy, precision and recall at every ICD-10-CM level.

Predictions are taken from completions with the reward engine's parser and code set, so
evaluation and reward agree; unparseable and invalid predictions count as wrong. The
levels are ``chapter``, ``block``, ``category`` (the first three characters) and
``full_code``; see ``docs/evaluation.md`` for the definitions.

>>> report = evaluate_codes(["M51.16", "M51.17", "nonsense"], ["M5116", "M5116", "E119"])
>>> round(report.levels["category"].accuracy, 4), report.invalid, report.unparseable
(0.6667, 1, 0)
"""

from __future__ import annotations

import os

import torch

from icdreward.codeset import CodeSet
from icdreward.components import Parser
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
from icdreward.evaluation._inputs import PREDICTION_FIELDS, EvalRows, read_eval_rows
from icdreward.evaluation._metrics import LevelScores, confusion_counts, scores
from icdreward.evaluation._plot import plot_report

__all__ = [
    "LEVEL_NAMES",
    "PREDICTION_FIELDS",
    "UNKNOWN",
    "ChapterScores",
    "EvalReport",
    "EvalRows",
    "LevelScores",
    "Predictions",
    "confusion_counts",
    "evaluate",
    "evaluate_codes",
    "evaluate_file",
    "extract_codes",
    "parse_completions",
    "plot_report",
    "predictions_of",
    "read_eval_rows",
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
    bootstrap: int = 0,
    seed: int = 0,
    confidence: float = 0.95,
    by_chapter: bool = False,
) -> EvalReport:
    """Evaluate a JSONL/CSV/parquet file (see :func:`read_eval_rows`).

    Pass the parser and code set of a reward engine
    (``engine.parser, engine.codeset``) so that evaluation and reward agree.

    Raises:
        InputFileError: the file is missing, empty or malformed.
    """
    rows = read_eval_rows(path)
    return evaluate(
        predictions_of(rows, parser, codeset),
        rows.golds,
        codeset=codeset,
        bootstrap=bootstrap,
        seed=seed,
        confidence=confidence,
        by_chapter=by_chapter,
    )
