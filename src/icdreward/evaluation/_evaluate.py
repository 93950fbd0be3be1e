"""Predictions and gold codes -> class ids per level -> metrics, intervals, chapters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import torch

from icdreward.codeset import CodeSet, load_codeset
from icdreward.components import Parser
from icdreward.evaluation._metrics import LevelScores, bootstrap_scores, confusion_counts, scores
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

LEVEL_NAMES: tuple[str, ...] = ("chapter", "block", "category", "full_code")
"""The levels evaluated, coarsest first."""

UNKNOWN = "?"
"""Chapter and block label of a gold code whose category is not in the code set."""

_PARSE_CHUNK = 4096


@attrs.frozen(eq=False)
class Predictions:
    """Extracted predictions, one per row.

    Attributes:
        codes: the normalized predicted code, ``""`` when none was found or it is not
            a code of the code set.
        unparseable: ``bool [N]``: no code could be extracted.
        invalid: ``bool [N]``: a code was extracted but it is not in the code set.
    """

    codes: tuple[str, ...]
    unparseable: torch.Tensor
    invalid: torch.Tensor

    def __len__(self) -> int:
        return len(self.codes)

    @classmethod
    def concat(cls, parts: Sequence[Predictions]) -> Predictions:
        return cls(
            codes=tuple(c for p in parts for c in p.codes),
            unparseable=torch.cat([p.unparseable for p in parts])
            if parts
            else torch.zeros(0, dtype=torch.bool),
            invalid=torch.cat([p.invalid for p in parts])
            if parts
            else torch.zeros(0, dtype=torch.bool),
        )


def extract_codes(values: Sequence[object], codeset: CodeSet) -> Predictions:
    """Predictions from already extracted codes (``"M51.16"``, ``"m5116"``, ``None``).

    A value that normalizes to ``""`` (``None``, ``""``, a number) is unparseable; a
    code missing from ``codeset`` is invalid.
    """
    normalized = [codeset.normalize(v) for v in values]
    valid = codeset.validate_many(normalized)
    codes = tuple(c if ok else "" for c, ok in zip(normalized, valid, strict=True))
    empty = torch.tensor([not c for c in normalized], dtype=torch.bool)
    return Predictions(
        codes=codes, unparseable=empty, invalid=~empty & ~torch.tensor(valid, dtype=torch.bool)
    )


def parse_completions(completions: Sequence[object], parser: Parser) -> Predictions:
    """Predictions from completions, with the reward engine's parser (so they agree)."""
    parts: list[Predictions] = []
    for start in range(0, len(completions), _PARSE_CHUNK):
        parsed = parser.parse(completions[start : start + _PARSE_CHUNK])
        parts.append(
            Predictions(
                codes=parsed.codes,
                unparseable=parsed.parse_failure.clone(),
                invalid=parsed.invalid_code.clone(),
            )
        )
    return Predictions.concat(parts)


@attrs.frozen
class ChapterScores:
    """One chapter: the chapter as a class, and the rows whose gold is in it.

    Attributes:
        chapter: chapter number (``"13"``), or ``"?"`` for gold codes of unknown category.
        title: chapter title (``""`` when unknown).
        n: rows whose gold code is in the chapter.
        predicted: rows predicted in the chapter.
        precision, recall, f1: of the chapter as one class at the chapter level.
        category_accuracy, full_code_accuracy: among the ``n`` rows (0 when ``n`` is 0).
    """

    chapter: str
    title: str
    n: int
    predicted: int
    precision: float
    recall: float
    f1: float
    category_accuracy: float
    full_code_accuracy: float

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class EvalReport:
    """Everything ``icdreward eval`` reports; :meth:`to_dict` gives the JSON object.

    Attributes:
        n: rows evaluated.
        unparseable: rows whose prediction has no code.
        invalid: rows whose predicted code is not in the code set.
        levels: metrics per level name (:data:`LEVEL_NAMES`).
        intervals: per level, ``{"macro_f1": (low, high), "accuracy": (low, high)}``
            (empty without bootstrap).
        bootstrap: number of resamples (0: no intervals).
        seed: seed of the resampling.
        confidence: level of the intervals.
        chapters: per chapter scores (empty unless asked for).
    """

    n: int
    unparseable: int
    invalid: int
    levels: dict[str, LevelScores]
    intervals: dict[str, dict[str, tuple[float, float]]] = attrs.field(factory=dict)
    bootstrap: int = 0
    seed: int = 0
    confidence: float = 0.95
    chapters: tuple[ChapterScores, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: ``{"full_code": {...}, ..., "chapter": {...}, "n": ...}``."""
        result: dict[str, Any] = {}
        for name in reversed(LEVEL_NAMES):
            entry: dict[str, Any] = dict(self.levels[name].to_dict())
            for metric, (low, high) in self.intervals.get(name, {}).items():
                entry[f"{metric}_ci"] = [low, high]
            result[name] = entry
        n = self.n
        result["n"] = n
        result["unparseable"] = self.unparseable
        result["unparseable_share"] = self.unparseable / n if n else 0.0
        result["invalid"] = self.invalid
        result["invalid_share"] = self.invalid / n if n else 0.0
        result["bootstrap"] = (
            {"resamples": self.bootstrap, "seed": self.seed, "confidence": self.confidence}
            if self.bootstrap
            else None
        )
        if self.chapters:
            result["by_chapter"] = [c.to_dict() for c in self.chapters]
        return result


def _primary(gold: object, codeset: CodeSet, row: int) -> str:
    if isinstance(gold, str):
        code = codeset.normalize(gold)
        if code.isalnum():  # one code: the common case, without the label parser
            return code
    codes = gold_codes(gold, codeset.normalize)
    if not codes:
        raise ValueError(f"row {row}: gold holds no code: {gold!r}")
    return codes[0]


def _encode(
    predictions: Sequence[str], golds: Sequence[str], codeset: CodeSet
) -> tuple[list[tuple[torch.Tensor, torch.Tensor, int]], list[list[str]]]:
    """Per level: (gold ids, predicted ids, number of classes) and the class labels.

    Class ids are given to the labels of the distinct codes only, so the per-row work
    is one dictionary lookup and tensor gathers.
    """
    index: dict[str, int] = {}
    add = index.setdefault
    gold_rows = [add(c, len(index)) for c in golds]
    pred_rows = [add(c, len(index)) if c else -1 for c in predictions]
    vocabs: list[dict[str, int]] = [{} for _ in LEVEL_NAMES]
    table: list[list[int]] = []
    paths: dict[str, tuple[str, str]] = {}
    for code in index:
        category = code[:3]
        path = paths.get(category)
        if path is None:
            found = codeset.hierarchy(category)
            path = (found[0], found[1]) if len(found) >= 2 else (UNKNOWN, UNKNOWN)
            paths[category] = path
        labels = (path[0], path[1], category or UNKNOWN, code or UNKNOWN)
        table.append([v.setdefault(label, len(v)) for v, label in zip(vocabs, labels, strict=True)])
    sizes = [len(v) for v in vocabs]
    # the last row is the invalid prediction: class id n_classes at every level
    table.append(sizes)
    lookup = torch.tensor(table, dtype=torch.int64).view(-1, len(LEVEL_NAMES))
    gold_index = torch.tensor(gold_rows, dtype=torch.int64)
    pred_index = torch.tensor(pred_rows, dtype=torch.int64)
    gold_ids = lookup[gold_index]
    pred_ids = lookup[pred_index]  # -1 picks the last row
    levels = [
        (gold_ids[:, k].contiguous(), pred_ids[:, k].contiguous(), sizes[k])
        for k in range(len(LEVEL_NAMES))
    ]
    return levels, [list(v) for v in vocabs]


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
    cs = codeset if codeset is not None else load_codeset()
    n = len(predictions)
    if n == 0:
        raise ValueError("nothing to evaluate: no rows")
    if len(golds) != n:
        raise ValueError(f"{n} predictions but {len(golds)} gold labels")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    primary = [_primary(g, cs, i) for i, g in enumerate(golds)]
    levels, labels = _encode(predictions.codes, primary, cs)
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
    chapters = _chapters(levels, labels[0], cs) if by_chapter else ()
    return EvalReport(
        n=n,
        unparseable=int(predictions.unparseable.sum()),
        invalid=int(predictions.invalid.sum()),
        levels=results,
        intervals=intervals,
        bootstrap=max(bootstrap, 0),
        seed=seed,
        confidence=confidence,
        chapters=chapters,
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
    return evaluate(
        extract_codes(predictions, cs),
        golds,
        codeset=cs,
        bootstrap=bootstrap,
        seed=seed,
        confidence=confidence,
        by_chapter=by_chapter,
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
