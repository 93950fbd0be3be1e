"""The report of an evaluation: metrics per level, intervals, chapters; JSON-ready."""

from __future__ import annotations

from typing import Any

import attrs

from icdreward.evaluation._groups import PassAtK
from icdreward.evaluation._metrics import LevelScores

__all__ = ["LEVEL_NAMES", "ChapterScores", "EvalReport"]

LEVEL_NAMES: tuple[str, ...] = ("chapter", "block", "category", "full_code")
"""The levels evaluated, coarsest first."""


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
        n: rows evaluated: one per note, or every sample with ``per_note="all"``.
        unparseable: evaluated rows whose prediction has no code.
        invalid: evaluated rows whose predicted code is not in the code set.
        levels: metrics per level name (:data:`LEVEL_NAMES`).
        intervals: per level, per metric (``macro_f1``, ``micro_f1``, ``accuracy``,
            ``macro_precision``, ``macro_recall``), ``(low, high)`` (empty without bootstrap).
        bootstrap: number of resamples (0: no intervals); notes are resampled.
        seed: seed of the resampling.
        confidence: level of the intervals.
        chapters: per chapter scores (empty unless asked for).
        notes: distinct notes.
        samples: input rows (samples over all notes).
        per_note: how one row per note was chosen (``first``, ``majority``,
            ``best-reward``) or ``all``.
        interval_method: ``"bca"`` or ``"percentile"``.
        pass_at_k: pass@k and any-of-k per ``k`` (empty when every note has one sample).
        multilabel: per level, the literature-style multi-label metrics over each note's
            gold set (empty unless asked for).
        multilabel_intervals: their intervals, like ``intervals``.
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
    notes: int = 0
    samples: int = 0
    per_note: str = "first"
    interval_method: str = "bca"
    pass_at_k: tuple[PassAtK, ...] = ()
    multilabel: dict[str, dict[str, float]] = attrs.field(factory=dict)
    multilabel_intervals: dict[str, dict[str, tuple[float, float]]] = attrs.field(factory=dict)

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
        result["notes"] = self.notes
        result["samples"] = self.samples
        result["per_note"] = self.per_note
        result["bootstrap"] = (
            {
                "resamples": self.bootstrap,
                "seed": self.seed,
                "confidence": self.confidence,
                "method": self.interval_method,
                "unit": "note",
            }
            if self.bootstrap
            else None
        )
        if self.pass_at_k:
            result["pass_at_k"] = [p.to_dict() for p in self.pass_at_k]
        if self.multilabel:
            multilabel: dict[str, Any] = {}
            for name in reversed(LEVEL_NAMES):
                entry = dict(self.multilabel[name])
                for metric, (low, high) in self.multilabel_intervals.get(name, {}).items():
                    entry[f"{metric}_ci"] = [low, high]
                multilabel[name] = entry
            result["multilabel"] = multilabel
        if self.chapters:
            result["by_chapter"] = [c.to_dict() for c in self.chapters]
        return result
