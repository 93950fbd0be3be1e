"""Predictions and gold codes -> class ids per level -> metrics, intervals, chapters."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from icdreward.codeset import CodeSet, load_codeset
from icdreward.evaluation._factorize import factorize
from icdreward.evaluation._metrics import bootstrap_scores, confusion_counts, scores
from icdreward.evaluation._predictions import (
    Predictions,
    extract_codes,
    extract_distinct,
    parse_completions,
)
from icdreward.evaluation._report import LEVEL_NAMES, ChapterScores, EvalReport
from icdreward.golds import gold_codes

__all__ = [
    "LEVEL_NAMES",
    "UNKNOWN",
    "ChapterScores",
    "EvalReport",
    "Predictions",
    "evaluate",
    "evaluate_codes",
    "extract_codes",
    "parse_completions",
]

UNKNOWN = "?"
"""Chapter and block label of a gold code whose category is not in the code set."""


def _primary(gold: object, codeset: CodeSet) -> str:
    """The primary code of a gold label, ``""`` when it holds none."""
    if isinstance(gold, str):
        code = codeset.normalize(gold)
        if code.isalnum():  # one code: the common case, without the label parser
            return code
    codes = gold_codes(gold, codeset.normalize)
    return codes[0] if codes else ""


def _primary_codes(golds: Sequence[object], codeset: CodeSet) -> tuple[list[str], torch.Tensor]:
    """Per distinct gold label its primary code, and per row the index of its label.

    Raises:
        ValueError: a gold label holds no code (the message names the first such row).
    """
    try:
        distinct, rows = factorize(golds)
    except TypeError:  # unhashable labels (lists, arrays): each row is its own label
        distinct, rows = list(golds), torch.arange(len(golds))
    primary = [_primary(g, codeset) for g in distinct]
    if not all(primary):
        missing = torch.tensor([not p for p in primary], dtype=torch.bool)[rows]
        row = int(missing.nonzero()[0])
        raise ValueError(f"row {row}: gold holds no code: {golds[row]!r}")
    return primary, rows


def _encode(
    pred_codes: list[str], pred_rows: torch.Tensor, golds: Sequence[object], codeset: CodeSet
) -> tuple[list[tuple[torch.Tensor, torch.Tensor, int]], list[list[str]]]:
    """Per level: (gold ids, predicted ids, number of classes) and the class labels.

    Predictions come as distinct codes (``""``: none or invalid) and the index of each
    row's code. Labels are computed for the distinct codes only; rows get their class
    ids by tensor gathers.

    Raises:
        ValueError: a gold label holds no code.
    """
    gold_codes_, gold_rows = _primary_codes(golds, codeset)
    # classes are numbered in order of first occurrence: in the golds, then predictions
    index = dict.fromkeys(gold_codes_)
    index.update(dict.fromkeys(c for c in pred_codes if c))
    codes = list(index)  # the full-code classes; never "" (every gold has a code)
    classes = dict(zip(codes, range(len(codes)), strict=True))
    # and so at every level, by factorizing the labels of the codes in that order:
    # their categories, then the chapter and block of each category
    categories, category_of = factorize([c[:3] for c in codes])
    paths = [_category_path(c, codeset) for c in categories]
    chapters, chapter_of = factorize([chapter for chapter, _ in paths])
    blocks, block_of = factorize([block for _, block in paths])
    per_level = [
        (chapters, chapter_of[category_of]),
        (blocks, block_of[category_of]),
        (categories, category_of),
        (codes, torch.arange(len(codes))),
    ]
    gold_class = torch.tensor([classes[c] for c in gold_codes_], dtype=torch.int64)[gold_rows]
    # -1: no valid prediction; it picks the last entry of every level's lookup below
    pred_class = torch.tensor([classes[c] if c else -1 for c in pred_codes], dtype=torch.int64)
    pred_class = pred_class[pred_rows]
    levels = []
    for labels, ids in per_level:
        size = len(labels)
        lookup = torch.cat([ids, torch.tensor([size])])  # size: the invalid prediction
        levels.append((lookup[gold_class], lookup[pred_class], size))
    return levels, [labels for labels, _ in per_level]


def _category_path(category: str, codeset: CodeSet) -> tuple[str, str]:
    """(chapter, block) of a category; ``("?", "?")`` when it is not in the code set."""
    found = codeset.hierarchy(category)
    return (found[0], found[1]) if len(found) >= 2 else (UNKNOWN, UNKNOWN)


def evaluate(
    predictions: Predictions,
    golds: Sequence[object],
    *,
    codeset: CodeSet | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    confidence: float = 0.95,
    by_chapter: bool = False,
) -> EvalReport:
    """Metrics of ``predictions`` against the primary code of each gold label.

    ``golds`` hold, per row, one code or a list of codes (primary first), as the
    ``gold`` field of :meth:`RewardEngine.score <icdreward.RewardEngine.score>`.

    Raises:
        ValueError: no rows, lengths differ, a gold label holds no code, or
            ``confidence`` is not in (0, 1).
    """
    codes, rows = factorize(predictions.codes)
    return _evaluate(
        codes,
        rows,
        predictions.unparseable,
        predictions.invalid,
        golds,
        codeset=codeset if codeset is not None else load_codeset(),
        bootstrap=bootstrap,
        seed=seed,
        confidence=confidence,
        by_chapter=by_chapter,
    )


def evaluate_codes(
    predictions: Sequence[object],
    golds: Sequence[object],
    *,
    codeset: CodeSet | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    confidence: float = 0.95,
    by_chapter: bool = False,
) -> EvalReport:
    """:func:`evaluate` for already extracted codes (see :func:`extract_codes`).

    >>> report = evaluate_codes(["M51.16", "E11.9", None], ["M5116", "E1165", "I10"])
    >>> report.levels["full_code"].accuracy, report.levels["category"].accuracy
    (0.3333333333333333, 0.6666666666666666)
    """
    cs = codeset if codeset is not None else load_codeset()
    # extract_codes, kept as distinct codes: the per-row tuple of codes is not needed
    codes, rows, unparseable, invalid = extract_distinct(predictions, cs)
    return _evaluate(
        codes,
        rows,
        unparseable,
        invalid,
        golds,
        codeset=cs,
        bootstrap=bootstrap,
        seed=seed,
        confidence=confidence,
        by_chapter=by_chapter,
    )


def _evaluate(
    pred_codes: list[str],
    pred_rows: torch.Tensor,
    unparseable: torch.Tensor,
    invalid: torch.Tensor,
    golds: Sequence[object],
    *,
    codeset: CodeSet,
    bootstrap: int,
    seed: int,
    confidence: float,
    by_chapter: bool,
) -> EvalReport:
    """:func:`evaluate`, with the predicted codes given as by :func:`extract_distinct`."""
    n = int(pred_rows.numel())
    if n == 0:
        raise ValueError("nothing to evaluate: no rows")
    if len(golds) != n:
        raise ValueError(f"{n} predictions but {len(golds)} gold labels")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    levels, labels = _encode(pred_codes, pred_rows, golds, codeset)
    results = {
        name: scores(gold, pred, size)
        for name, (gold, pred, size) in zip(LEVEL_NAMES, levels, strict=True)
    }
    intervals: dict[str, dict[str, tuple[float, float]]] = {}
    if bootstrap > 0:
        tail = (1.0 - confidence) / 2.0
        q = torch.tensor([tail, 1.0 - tail], dtype=torch.float64)
        samples = bootstrap_scores(levels, bootstrap, seed=seed)
        for name, (f1s, accs) in zip(LEVEL_NAMES, samples, strict=True):
            f1_low, f1_high = torch.quantile(f1s, q).tolist()
            acc_low, acc_high = torch.quantile(accs, q).tolist()
            intervals[name] = {"macro_f1": (f1_low, f1_high), "accuracy": (acc_low, acc_high)}
    chapters = _chapters(levels, labels[0], codeset) if by_chapter else ()
    return EvalReport(
        n=n,
        unparseable=int(unparseable.sum()),
        invalid=int(invalid.sum()),
        levels=results,
        intervals=intervals,
        bootstrap=max(bootstrap, 0),
        seed=seed,
        confidence=confidence,
        chapters=chapters,
    )


def _chapters(
    levels: list[tuple[torch.Tensor, torch.Tensor, int]], labels: list[str], cs: CodeSet
) -> tuple[ChapterScores, ...]:
    gold, pred, size = levels[0]
    counts = confusion_counts(gold, pred, size)
    hits: list[list[float]] = []
    for k in (2, 3):  # category, full code: accuracy among rows of each gold chapter
        level_gold, level_pred, _ = levels[k]
        correct = torch.bincount(gold[level_gold == level_pred], minlength=size)
        hits.append((correct.double() / counts.gold.double().clamp(min=1)).tolist())
    tp, n_gold, n_pred = counts.tp.tolist(), counts.gold.tolist(), counts.pred.tolist()
    result = []
    for c, chapter in enumerate(labels):
        try:
            title = cs.chapter_title(chapter)
        except KeyError:
            title = ""
        result.append(
            ChapterScores(
                chapter=chapter,
                title=title,
                n=n_gold[c],
                predicted=n_pred[c],
                precision=tp[c] / n_pred[c] if n_pred[c] else 0.0,
                recall=tp[c] / n_gold[c] if n_gold[c] else 0.0,
                f1=2 * tp[c] / (n_gold[c] + n_pred[c]) if n_gold[c] + n_pred[c] else 0.0,
                category_accuracy=hits[0][c],
                full_code_accuracy=hits[1][c],
            )
        )
    return tuple(sorted(result, key=lambda s: _chapter_key(s.chapter)))


def _chapter_key(chapter: str) -> tuple[int, str]:
    return (int(chapter), "") if chapter.isdigit() else (1 << 30, chapter)
