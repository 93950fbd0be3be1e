"""Classification metrics over integer class ids, computed with torch.

Every function takes ``gold`` and ``pred`` as ``int64 [N]`` tensors of class ids in
``[0, n_classes)``; a prediction equal to ``n_classes`` is the *invalid* prediction: it
is wrong for every row, never a class, and never counted as a prediction of a class.
"""

from __future__ import annotations

import attrs
import torch

__all__ = ["Counts", "LevelScores", "bootstrap_scores", "confusion_counts", "scores"]


@attrs.frozen(eq=False)
class Counts:
    """Per-class counts ``[..., n_classes]`` (one row per bootstrap resample, or none).

    Attributes:
        tp: rows of the class predicted as the class.
        gold: rows whose gold label is the class (tp + false negatives).
        pred: rows predicted as the class (tp + false positives).
        n: rows counted (invalid predictions included).
    """

    tp: torch.Tensor
    gold: torch.Tensor
    pred: torch.Tensor
    n: int


@attrs.frozen
class LevelScores:
    """The metrics of one level (plain floats, JSON-ready through :meth:`to_dict`)."""

    macro_f1: float
    micro_f1: float
    accuracy: float
    macro_precision: float
    macro_recall: float
    n_classes: int

    def to_dict(self) -> dict[str, float | int]:
        return attrs.asdict(self)


def confusion_counts(gold: torch.Tensor, pred: torch.Tensor, n_classes: int) -> Counts:
    """True positives, gold and predicted counts per class, by ``bincount``."""
    width = n_classes + 1  # the last bin holds invalid predictions
    hit = gold == pred
    tp = torch.bincount(gold[hit], minlength=width)[:n_classes]
    gold_count = torch.bincount(gold, minlength=width)[:n_classes]
    pred_count = torch.bincount(pred, minlength=width)[:n_classes]
    return Counts(tp=tp, gold=gold_count, pred=pred_count, n=int(gold.numel()))


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` with 0 where ``den`` is 0 (``zero_division=0``)."""
    num, den = num.double(), den.double()
    return torch.where(den > 0, num / den.clamp(min=1), torch.zeros_like(num))


def _macro(
    counts: Counts,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Macro F1, precision, recall, micro F1, accuracy and number of classes (last dim)."""
    present = (counts.gold + counts.pred) > 0
    classes = present.sum(-1)
    denom = classes.double().clamp(min=1)
    precision = _ratio(counts.tp, counts.pred)
    recall = _ratio(counts.tp, counts.gold)
    f1 = _ratio(2 * counts.tp, counts.gold + counts.pred)
    total_tp = counts.tp.sum(-1)
    micro_f1 = _ratio(2 * total_tp, counts.pred.sum(-1) + counts.gold.sum(-1))
    accuracy = total_tp.double() / max(counts.n, 1)
    return (
        f1.sum(-1) / denom,
        precision.sum(-1) / denom,
        recall.sum(-1) / denom,
        micro_f1,
        accuracy,
        classes,
    )


def scores(gold: torch.Tensor, pred: torch.Tensor, n_classes: int) -> LevelScores:
    """Macro/micro F1, accuracy, macro precision and recall over the classes.

    The classes are those that occur as a gold label or as a (valid) prediction; a
    class id in ``[0, n_classes)`` that occurs in neither is left out of the averages.
    """
    counts = confusion_counts(gold, pred, n_classes)
    macro_f1, precision, recall, micro_f1, accuracy, classes = _macro(counts)
    return LevelScores(
        macro_f1=float(macro_f1),
        micro_f1=float(micro_f1),
        accuracy=float(accuracy),
        macro_precision=float(precision),
        macro_recall=float(recall),
        n_classes=int(classes),
    )


def bootstrap_scores(
    levels: list[tuple[torch.Tensor, torch.Tensor, int]],
    resamples: int,
    *,
    seed: int,
    max_elements: int = 1 << 23,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Macro F1 and accuracy of every level on ``resamples`` bootstrap resamples.

    Rows are drawn with replacement (``N`` out of ``N``), the same resamples for every
    level, from a ``torch.Generator`` seeded with ``seed``; resamples are processed in
    blocks of at most ``max_elements`` drawn rows. Returns per level ``(macro_f1,
    accuracy)``, each ``float64 [resamples]``.
    """
    n = int(levels[0][0].numel()) if levels else 0
    out: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = [([], []) for _ in levels]
    if n == 0 or resamples <= 0:
        empty = torch.zeros(0, dtype=torch.float64)
        return [(empty, empty) for _ in levels]
    generator = torch.Generator().manual_seed(seed)
    block = max(1, min(resamples, max_elements // n))
    # Counts are added up in floating point, which is faster; exactly, as every partial
    # sum is a whole number of at most n draws, below 2**24 (float32) or 2**53.
    dtype = torch.float32 if n < 1 << 24 else torch.float64
    # per level, the class each row adds to the true positives: its gold class when the
    # prediction is right, else the invalid bin (dropped)
    hit_ids = [torch.where(gold == pred, gold, n_classes) for gold, pred, n_classes in levels]
    done = 0
    while done < resamples:
        r = min(block, resamples - done)
        index = torch.randint(n, (r, n), generator=generator)
        # draws[j, i]: how often row i is drawn in resample j, found once for all levels
        draws = torch.empty((r, n), dtype=dtype)
        for j, rows in enumerate(index):
            draws[j] = torch.bincount(rows, minlength=n)
        for (gold, pred, n_classes), hit, (f1s, accs) in zip(levels, hit_ids, out, strict=True):
            counts = Counts(
                tp=_resampled_counts(hit, draws, n_classes),
                gold=_resampled_counts(gold, draws, n_classes),
                pred=_resampled_counts(pred, draws, n_classes),
                n=n,
            )
            macro_f1, _, _, _, accuracy, _ = _macro(counts)
            f1s.append(macro_f1)
            accs.append(accuracy)
        done += r
    return [(torch.cat(f1s), torch.cat(accs)) for f1s, accs in out]


def _resampled_counts(ids: torch.Tensor, draws: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``int64 [R, n_classes]``: per resample, the drawn rows of each class.

    ``ids`` holds each row's class (``n_classes``: counted nowhere) and ``draws`` ``[R,
    N]`` how often each row is drawn. Adding each row's draws to its class is one pass
    over ``R x N`` counts, contiguous, where counting every drawn row (a ``bincount`` of
    the resampled ids) scatters ``R x N`` increments, for every level.
    """
    counts = torch.zeros(draws.shape[0], n_classes + 1, dtype=draws.dtype)
    counts.index_add_(1, ids, draws)
    # resamples first, contiguous: the layout whose sums over classes (in _macro) add
    # in the order they always have, so the intervals stay the same to the last bit
    return counts.long()[:, :n_classes]
