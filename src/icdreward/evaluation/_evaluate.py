"""Predictions and gold codes -> class ids per level -> metrics, intervals, chapters."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch

from icdreward.codeset import CodeSet, load_codeset
from icdreward.evaluation._bootstrap import INTERVAL_METHODS, ResamplePlan
from icdreward.evaluation._factorize import factorize
from icdreward.evaluation._groups import PER_NOTE_MODES, pass_at_k_table, pick_rows
from icdreward.evaluation._metrics import confusion_counts, scores
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
    "Encoded",
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


def _primary_codes(
    golds: Sequence[object], codeset: CodeSet
) -> tuple[list[object], list[str], torch.Tensor]:
    """The distinct gold labels, the primary code of each, and per row the index of its label.

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
    return distinct, primary, rows


@attrs.frozen(eq=False)
class Encoded:
    """Rows as class ids at every level.

    Attributes:
        levels: per level, ``(gold ids, predicted ids, number of classes)``, ``int64 [N]``
            each; a predicted id equal to the number of classes is the invalid prediction.
        labels: per level, the class labels.
        gold_rows: per row, the index of its distinct gold label (``int64 [N]``).
        pred_class: per row, its full-code class, -1 for no valid prediction.
        gold_sets: per level, per distinct gold label, the ids of all its codes (primary
            and secondary) at that level, deduplicated (only with ``multilabel``).
    """

    levels: list[tuple[torch.Tensor, torch.Tensor, int]]
    labels: list[list[str]]
    gold_rows: torch.Tensor
    pred_class: torch.Tensor
    gold_sets: list[list[list[int]]]


def _encode(
    pred_codes: list[str],
    pred_rows: torch.Tensor,
    golds: Sequence[object],
    codeset: CodeSet,
    *,
    multilabel: bool = False,
) -> Encoded:
    """Rows as class ids per level (see :class:`Encoded`).

    Predictions come as distinct codes (``""``: none or invalid) and the index of each
    row's code. Labels are computed for the distinct codes only; rows get their class
    ids by tensor gathers.

    Raises:
        ValueError: a gold label holds no code.
    """
    distinct_golds, gold_codes_, gold_rows = _primary_codes(golds, codeset)
    # classes are numbered in order of first occurrence: in the golds, then predictions,
    # then (multi-label only) secondary gold codes, which no single-label count touches
    index = dict.fromkeys(gold_codes_)
    index.update(dict.fromkeys(c for c in pred_codes if c))
    all_codes: list[tuple[str, ...]] = []
    if multilabel:
        all_codes = [tuple(dict.fromkeys(gold_codes(g, codeset.normalize))) for g in distinct_golds]
        index.update(dict.fromkeys(c for codes in all_codes for c in codes))
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
    gold_sets: list[list[list[int]]] = []
    for labels, ids in per_level:
        size = len(labels)
        lookup = torch.cat([ids, torch.tensor([size])])  # size: the invalid prediction
        levels.append((lookup[gold_class], lookup[pred_class], size))
        if multilabel:
            table = ids.tolist()
            gold_sets.append(
                [list(dict.fromkeys(table[classes[c]] for c in cs)) for cs in all_codes]
            )
    return Encoded(
        levels=levels,
        labels=[labels for labels, _ in per_level],
        gold_rows=gold_rows,
        pred_class=pred_class,
        gold_sets=gold_sets,
    )


def _category_path(category: str, codeset: CodeSet) -> tuple[str, str]:
    """(chapter, block) of a category; ``("?", "?")`` when it is not in the code set."""
    found = codeset.hierarchy(category)
    return (found[0], found[1]) if len(found) >= 2 else (UNKNOWN, UNKNOWN)


def _check_order(golds: object, predictions: object) -> None:
    """Catch ``(predictions, golds)`` passed in the old order, which would silently swap
    precision and recall."""
    if isinstance(golds, Predictions):
        raise TypeError(
            "the first argument is Predictions: the order is (golds, predictions), "
            "as in scikit-learn's (y_true, y_pred)"
        )
    if isinstance(predictions, Sequence) and any(
        isinstance(p, list | tuple) for p in predictions[:1000]
    ):
        raise TypeError(
            "predictions hold lists of codes (gold labels?): the order is "
            "(golds, predictions), as in scikit-learn's (y_true, y_pred)"
        )


def evaluate(
    golds: Sequence[object],
    predictions: Predictions,
    *,
    note_ids: Sequence[object] | None = None,
    samples: Sequence[int] | torch.Tensor | None = None,
    rewards: Sequence[float | None] | torch.Tensor | None = None,
    per_note: str = "first",
    codeset: CodeSet | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    confidence: float = 0.95,
    interval: str = "bca",
    by_chapter: bool = False,
    multilabel: bool = False,
) -> EvalReport:
    """Metrics of ``predictions`` against the primary code of each gold label.

    The order is scikit-learn's (``y_true, y_pred``). ``golds`` hold, per row, one code
    or a list of codes (primary first), as the ``gold`` field of
    :meth:`RewardEngine.score <icdreward.RewardEngine.score>`.

    Args:
        note_ids: per row, the note it is a sample of (default: every row is its own
            note). Rows of one note are its samples; the bootstrap resamples notes.
        samples: per row, its sample index within the note (default: the order of the
            rows). Picks ``first`` and orders the samples for any-of-k.
        rewards: per row, a reward (None or NaN: missing), for ``best-reward``.
        per_note: ``first``, ``majority``, ``best-reward`` or ``all`` (see
            :mod:`icdreward.evaluation._groups`).
        bootstrap: resamples of notes for the intervals (0: none).
        interval: ``"bca"`` (bias-corrected and accelerated) or ``"percentile"``.
        multilabel: also compute the literature-style multi-label metrics
            (each note's full gold set; ``docs/evaluation.md``).

    Raises:
        ValueError: no rows, lengths differ, a gold label holds no code, an unknown mode
            or interval method, or ``confidence`` is not in (0, 1).
        TypeError: the arguments look swapped.
    """
    _check_order(golds, predictions)
    codes, rows = factorize(predictions.codes)
    return _evaluate(
        codes,
        rows,
        predictions.unparseable,
        predictions.invalid,
        golds,
        _Options(
            note_ids=note_ids,
            samples=samples,
            rewards=rewards,
            per_note=per_note,
            bootstrap=bootstrap,
            seed=seed,
            confidence=confidence,
            interval=interval,
            by_chapter=by_chapter,
            multilabel=multilabel,
        ),
        codeset=codeset if codeset is not None else load_codeset(),
    )


def evaluate_codes(
    golds: Sequence[object],
    predictions: Sequence[object],
    *,
    note_ids: Sequence[object] | None = None,
    samples: Sequence[int] | torch.Tensor | None = None,
    rewards: Sequence[float | None] | torch.Tensor | None = None,
    per_note: str = "first",
    codeset: CodeSet | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    confidence: float = 0.95,
    interval: str = "bca",
    by_chapter: bool = False,
    multilabel: bool = False,
) -> EvalReport:
    """:func:`evaluate` for already extracted codes (see :func:`extract_codes`).

    The order is scikit-learn's: ``evaluate_codes(golds, predictions)``.

    >>> report = evaluate_codes(["M5116", "E1165", "I10"], ["M51.16", "E11.9", None])
    >>> report.levels["full_code"].accuracy, report.levels["category"].accuracy
    (0.3333333333333333, 0.6666666666666666)
    """
    _check_order(golds, predictions)
    cs = codeset if codeset is not None else load_codeset()
    # extract_codes, kept as distinct codes: the per-row tuple of codes is not needed
    codes, rows, unparseable, invalid = extract_distinct(predictions, cs)
    return _evaluate(
        codes,
        rows,
        unparseable,
        invalid,
        golds,
        _Options(
            note_ids=note_ids,
            samples=samples,
            rewards=rewards,
            per_note=per_note,
            bootstrap=bootstrap,
            seed=seed,
            confidence=confidence,
            interval=interval,
            by_chapter=by_chapter,
            multilabel=multilabel,
        ),
        codeset=cs,
    )


@attrs.frozen
class _Options:
    note_ids: Sequence[object] | None
    samples: Sequence[int] | torch.Tensor | None
    rewards: Sequence[float | None] | torch.Tensor | None
    per_note: str
    bootstrap: int
    seed: int
    confidence: float
    interval: str
    by_chapter: bool
    multilabel: bool


def _notes(options: _Options, n: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per row its note (dense ``int64``) and sample index, and the number of notes."""
    if options.note_ids is None:
        note = torch.arange(n)
    else:
        if len(options.note_ids) != n:
            raise ValueError(f"{n} predictions but {len(options.note_ids)} note ids")
        try:
            _, note = factorize(options.note_ids)
        except TypeError:
            _, note = factorize([repr(v) for v in options.note_ids])
    if options.samples is None:
        sample = torch.arange(n)
    else:
        sample = torch.as_tensor(options.samples, dtype=torch.int64).flatten()
        if sample.numel() != n:
            raise ValueError(f"{n} predictions but {sample.numel()} sample indices")
    return note, sample, int(note.max()) + 1 if n else 0


def _rewards(options: _Options, n: int) -> torch.Tensor | None:
    if options.rewards is None:
        return None
    if isinstance(options.rewards, torch.Tensor):
        values = options.rewards.double().flatten()
    else:
        values = torch.tensor(
            [float("nan") if r is None else float(r) for r in options.rewards],
            dtype=torch.float64,
        )
    if values.numel() != n:
        raise ValueError(f"{n} predictions but {values.numel()} rewards")
    return values


def _evaluate(
    pred_codes: list[str],
    pred_rows: torch.Tensor,
    unparseable: torch.Tensor,
    invalid: torch.Tensor,
    golds: Sequence[object],
    options: _Options,
    *,
    codeset: CodeSet,
) -> EvalReport:
    """:func:`evaluate`, with the predicted codes given as by :func:`extract_distinct`."""
    n = int(pred_rows.numel())
    if n == 0:
        raise ValueError("nothing to evaluate: no rows")
    if len(golds) != n:
        raise ValueError(f"{n} predictions but {len(golds)} gold labels")
    if not 0.0 < options.confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {options.confidence}")
    if options.interval not in INTERVAL_METHODS:
        raise ValueError(
            f"unknown interval method {options.interval!r} (one of {', '.join(INTERVAL_METHODS)})"
        )
    if options.per_note not in PER_NOTE_MODES:
        raise ValueError(
            f"unknown per-note mode {options.per_note!r} (one of {', '.join(PER_NOTE_MODES)})"
        )
    note, sample, n_notes = _notes(options, n)
    encoded = _encode(pred_codes, pred_rows, golds, codeset, multilabel=options.multilabel)
    correct = [
        (name, gold == pred)
        for name, (gold, pred, _) in zip(LEVEL_NAMES, encoded.levels, strict=True)
    ]
    multi_sample = bool(torch.bincount(note).max() > 1)
    table = pass_at_k_table(note, sample, correct, n_notes) if multi_sample else ()
    picked = pick_rows(options.per_note, note, sample, encoded.pred_class, _rewards(options, n))
    levels = [(gold[picked], pred[picked], size) for gold, pred, size in encoded.levels]
    results = {
        name: scores(gold, pred, size)
        for name, (gold, pred, size) in zip(LEVEL_NAMES, levels, strict=True)
    }
    plan = ResamplePlan.build(
        encoded.levels,
        encoded.gold_rows,
        encoded.pred_class,
        encoded.gold_sets,
        picked,
        note[picked],
        n_notes,
        multilabel=options.multilabel,
    )
    multilabel = plan.multilabel_point() if options.multilabel else {}
    intervals: dict[str, dict[str, tuple[float, float]]] = {}
    multilabel_intervals: dict[str, dict[str, tuple[float, float]]] = {}
    if options.bootstrap > 0:
        intervals, multilabel_intervals = plan.intervals(
            results,
            multilabel,
            resamples=options.bootstrap,
            seed=options.seed,
            confidence=options.confidence,
            method=options.interval,
        )
    chapters = _chapters(levels, encoded.labels[0], codeset) if options.by_chapter else ()
    return EvalReport(
        n=int(picked.numel()),
        unparseable=int(unparseable[picked].sum()),
        invalid=int(invalid[picked].sum()),
        levels=results,
        intervals=intervals,
        bootstrap=max(options.bootstrap, 0),
        seed=options.seed,
        confidence=options.confidence,
        chapters=chapters,
        notes=n_notes,
        samples=n,
        per_note=options.per_note,
        interval_method=options.interval,
        pass_at_k=table,
        multilabel=multilabel,
        multilabel_intervals=multilabel_intervals,
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
