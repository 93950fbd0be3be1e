"""Predictions and gold codes -> class ids per level -> metrics, intervals, chapters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar, cast

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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

_T = TypeVar("_T")

_SEPARATOR = "\0"
"""Joins strings for Arrow to split (a value holding it is caught by the count)."""


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
    codes, rows, unparseable, invalid = _extract(values, codeset)
    per_row = np.array(codes, dtype=object)[rows.numpy()]  # a gather in C, not a loop
    return Predictions(codes=tuple(per_row.tolist()), unparseable=unparseable, invalid=invalid)


def _extract(
    values: Sequence[object], codeset: CodeSet
) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`extract_codes` as distinct codes and rows: per distinct value its code
    (``""`` when none or invalid), per row the index of its value (``int64 [N]``), and
    the unparseable and invalid flags (``bool [N]``)."""
    try:
        distinct, rows = _factorize(values)
    except TypeError:  # an unhashable value: not a str, so it normalizes to "" as None does
        distinct, rows = _factorize([v if isinstance(v, str) else None for v in values])
    # normalized and validated once per distinct value; the rows take theirs by index
    normalized = list(map(codeset.normalize, distinct))
    valid = codeset.validate_many(normalized)
    codes = [c if ok else "" for c, ok in zip(normalized, valid, strict=True)]
    empty = torch.tensor([not c for c in normalized], dtype=torch.bool)[rows]
    invalid = ~empty & ~torch.tensor(valid, dtype=torch.bool)[rows]
    return codes, rows, empty, invalid


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


def _factorize(values: Sequence[_T]) -> tuple[list[_T], torch.Tensor]:
    """The distinct values in order of first occurrence, and per row the index of its
    value (``int64 [N]``), so that per-value work is done once and per-row work in C.

    Raises:
        TypeError: a value is unhashable.
    """
    encoded = _factorize_strings(values)
    if encoded is None:  # not all str or None: a dict finds the distinct values
        position = dict.fromkeys(values)
        position = dict(zip(position, range(len(position)), strict=True))
        rows = np.fromiter(map(position.__getitem__, values), np.int64, count=len(values))
        return list(position), torch.from_numpy(rows)
    distinct, index = encoded
    # Renumber in order of first occurrence (the order a dict gives): class ids follow
    # it, and with them the order of the sums over classes, hence the last bit of the
    # macro averages. Arrow keeps that order already, but does not promise it.
    n, k = int(index.numel()), len(distinct)
    first = torch.full((k,), n, dtype=torch.int64)
    first.scatter_reduce_(0, index, torch.arange(n), reduce="amin")  # first row of each
    is_first = torch.zeros(n, dtype=torch.bool)
    is_first[first] = True
    order = index[is_first]  # the distinct values by their first row (no sort: linear)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(k)
    return [distinct[i] for i in order.tolist()], rank[index]


def _factorize_strings(values: Sequence[_T]) -> tuple[list[_T], torch.Tensor] | None:
    """:func:`_factorize` by Arrow's dictionary encoding (hashing in C: several times
    faster than a dict on a million rows); ``None`` unless every value is a str or
    ``None``."""
    array = _string_array(values)
    if array is None:
        return None
    encoded = array.dictionary_encode(null_encoding="encode")
    index = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)  # writable
    return cast(list[_T], encoded.dictionary.to_pylist()), torch.from_numpy(index)


def _string_array(values: Sequence[object]) -> pa.Array[Any] | None:
    """``values`` as an Arrow string array; ``None`` unless each is a str or ``None``."""
    try:
        joined = _SEPARATOR.join(cast(Sequence[str], values))
    except TypeError:  # a None, or not a str at all
        joined = None
    if joined is not None:
        # All str: one join and Arrow's split, twice as fast as converting each string
        try:
            text = pa.array([joined], pa.large_string())
        except (pa.ArrowException, ValueError):  # lone surrogates: not UTF-8
            return None
        pieces = pc.split_pattern(text, _SEPARATOR).flatten()
        if len(pieces) == len(values):  # else a value holds the separator itself
            return pieces
    try:
        array = pa.array(cast(Any, values))  # inferred: pa.string() would take bytes as text
    except (pa.ArrowException, TypeError, ValueError):  # other types, lone surrogates
        return None
    if not isinstance(array, pa.Array) or not (
        pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
    ):  # bytes, all None, or chunked (over 2 GiB of text)
        return None
    return array


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
        distinct, rows = _factorize(golds)
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
    categories, category_of = _factorize([c[:3] for c in codes])
    paths = [_category_path(c, codeset) for c in categories]
    chapters, chapter_of = _factorize([chapter for chapter, _ in paths])
    blocks, block_of = _factorize([block for _, block in paths])
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
    codes, rows = _factorize(predictions.codes)
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
    codes, rows, unparseable, invalid = _extract(predictions, cs)
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
    """:func:`evaluate`, with the predicted codes given as by :func:`_extract`."""
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
