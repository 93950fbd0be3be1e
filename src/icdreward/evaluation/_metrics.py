"""Classification metrics over integer class ids, computed with torch.

Every function takes ``gold`` and ``pred`` as ``int64 [N]`` tensors of class ids in
``[0, n_classes)``; a prediction equal to ``n_classes`` is the *invalid* prediction: it
is wrong for every row, never a class, and never counted as a prediction of a class.
"""

from __future__ import annotations

import attrs
import torch

__all__ = [
    "METRICS",
    "MULTILABEL_METRICS",
    "Counts",
    "Entries",
    "LevelScores",
    "confusion_counts",
    "scores",
    "weighted_metrics",
    "weighted_multilabel_metrics",
]


@attrs.frozen(eq=False)
class Counts:
    """Per-class counts ``[..., n_classes]`` (one row per bootstrap resample, or none).

    Attributes:
        tp: rows of the class predicted as the class.
        gold: rows whose gold label is the class (tp + false negatives).
        pred: rows predicted as the class (tp + false positives).
        n: rows counted (invalid predictions included): an int, or per resample ``[...]``.
    """

    tp: torch.Tensor
    gold: torch.Tensor
    pred: torch.Tensor
    n: int | torch.Tensor


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
    """``num / den`` with 0 where ``den`` is 0 (``zero_division=0``).

    Every caller divides counts by counts that include them (true positives by gold or
    predicted counts, and sums of those), so ``num`` is 0 wherever ``den`` is, and a
    denominator clamped to 1 gives that 0 without a ``where`` (counts are whole numbers:
    where ``den`` is not 0 it is at least 1, and the clamp changes nothing).
    """
    return num.double() / den.double().clamp(min=1)


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
    n = counts.n if isinstance(counts.n, torch.Tensor) else torch.tensor(float(counts.n))
    accuracy = total_tp.double() / n.double().clamp(min=1)
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


METRICS: tuple[str, ...] = (
    "macro_f1",
    "micro_f1",
    "accuracy",
    "macro_precision",
    "macro_recall",
)
"""The single-label metrics of a level that get intervals, in the order of
:func:`weighted_metrics`."""

MULTILABEL_METRICS: tuple[str, ...] = (
    "micro_f1",
    "micro_precision",
    "micro_recall",
    "macro_f1",
)
"""The multi-label (literature-style) metrics of a level, in the order of
:func:`weighted_multilabel_metrics`."""


@attrs.frozen(eq=False)
class Entries:
    """Sparse contributions of cells to per-class counts.

    Entry ``e`` adds ``count[e]`` to class ``cls[e]`` for each time its cell ``cell[e]``
    is counted; ``cls == n_classes`` is a bin that is counted nowhere (the invalid
    prediction, or a miss for the true positives).
    """

    cell: torch.Tensor
    cls: torch.Tensor
    count: torch.Tensor | None = None
    """None: 1 for every entry."""
    identity: bool = False
    """Entry ``e`` is cell ``e`` (``cell`` is ``0 … K-1``): no gather is needed."""

    def counts(self, weights: torch.Tensor, n_classes: int) -> torch.Tensor:
        """``[R, n_classes]``: per row of ``weights`` (``[R, K]``) the count of each class."""
        contributions = weights if self.identity else weights[:, self.cell]
        if self.count is not None:
            contributions = contributions * self.count.to(weights.dtype)
        out = torch.zeros(weights.shape[0], n_classes + 1, dtype=weights.dtype)
        out.index_add_(1, self.cls, contributions)
        return out[:, :n_classes]


def weighted_metrics(
    tp: Entries,
    gold: Entries,
    pred: Entries,
    rows: torch.Tensor,
    n_classes: int,
    weights: torch.Tensor,
) -> torch.Tensor:
    """``float64 [R, 6]``: :data:`METRICS` and the number of classes, per row of ``weights``.

    ``rows[k]`` is the number of evaluated rows of cell ``k`` (the accuracy's denominator).
    """
    counts = Counts(
        tp=tp.counts(weights, n_classes),
        gold=gold.counts(weights, n_classes),
        pred=pred.counts(weights, n_classes),
        n=weights.double() @ rows.double(),
    )
    macro_f1, precision, recall, micro_f1, accuracy, classes = _macro(counts)
    return torch.stack([macro_f1, micro_f1, accuracy, precision, recall, classes.double()], dim=-1)


def weighted_multilabel_metrics(
    tp: Entries, gold: Entries, pred: Entries, n_classes: int, weights: torch.Tensor
) -> torch.Tensor:
    """``float64 [R, 5]``: :data:`MULTILABEL_METRICS` and the number of labels averaged.

    Micro scores pool the (row, label) pairs: ``P = ΣTP / Σ|pred|``, ``R = ΣTP / Σ|gold|``,
    ``F1 = 2ΣTP / (Σ|pred| + Σ|gold|)``; macro F1 averages ``2TP / (gold + pred)`` over the
    labels that occur in a gold set or a prediction (0 where a denominator is 0).
    """
    tps = tp.counts(weights, n_classes).double()
    golds = gold.counts(weights, n_classes).double()
    preds = pred.counts(weights, n_classes).double()
    total_tp, total_gold, total_pred = tps.sum(-1), golds.sum(-1), preds.sum(-1)
    present = (golds + preds) > 0
    labels = present.sum(-1).double()
    return torch.stack(
        [
            _ratio(2 * total_tp, total_pred + total_gold),
            _ratio(total_tp, total_pred),
            _ratio(total_tp, total_gold),
            _ratio(2 * tps, golds + preds).sum(-1) / labels.clamp(min=1),
            labels,
        ],
        dim=-1,
    )
