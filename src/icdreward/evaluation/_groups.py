"""Several samples per note: one prediction per note, and pass@k / any-of-k.

Rows carry a note index (``int64 [N]``, dense, ``0 … G-1``) and a sample index. A
*per-note* mode picks the row that stands for its note:

* ``first``: the sample with the lowest sample index;
* ``majority``: a sample whose valid code is the most frequent among the note's valid
  codes (ties: the code whose first sample comes first); a note without any valid code
  keeps its first sample (wrong at every level);
* ``best-reward``: the sample with the highest reward (ties: the lowest sample index;
  a missing reward counts as the lowest);
* ``all``: every sample is evaluated (and the bootstrap still resamples notes).

Everything here is sorting and segment reductions over tensors: linear-logarithmic in
the number of rows, no Python loop over rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch

__all__ = [
    "PER_NOTE_MODES",
    "PassAtK",
    "any_of_k",
    "k_values",
    "pass_at_k",
    "pass_at_k_table",
    "pick_rows",
    "sample_order",
]

PER_NOTE_MODES: tuple[str, ...] = ("first", "majority", "best-reward", "all")


def sample_order(note: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """Row indices sorted by note, then sample index, then row (a stable lexicographic sort)."""
    by_sample = torch.sort(sample, stable=True).indices
    return by_sample[torch.sort(note[by_sample], stable=True).indices]


def _segment_starts(sorted_note: torch.Tensor) -> torch.Tensor:
    """``bool [N]``: where a new note begins in rows sorted by note."""
    start = torch.ones_like(sorted_note, dtype=torch.bool)
    start[1:] = sorted_note[1:] != sorted_note[:-1]
    return start


def pick_rows(
    mode: str,
    note: torch.Tensor,
    sample: torch.Tensor,
    pred_class: torch.Tensor,
    reward: torch.Tensor | None = None,
) -> torch.Tensor:
    """The rows evaluated in ``mode``: ``int64 [G]`` (one per note, in note order), or
    every row for ``all``.

    ``pred_class`` holds each row's predicted full-code class, negative for no valid
    code. ``best-reward`` needs ``reward`` (``float [N]``, NaN for missing).

    Raises:
        ValueError: an unknown mode, or ``best-reward`` without rewards.
    """
    if mode not in PER_NOTE_MODES:
        raise ValueError(f"unknown per-note mode {mode!r} (one of {', '.join(PER_NOTE_MODES)})")
    n = int(note.numel())
    if mode == "all":
        return torch.arange(n)
    order = sample_order(note, sample)
    if mode == "first":
        return order[_segment_starts(note[order])]
    if mode == "best-reward":
        if reward is None:
            raise ValueError("per-note mode 'best-reward' needs a reward per row")
        value = torch.nan_to_num(reward.double(), nan=-torch.inf)
        # highest reward first within a note; the sample order breaks ties (stable sort)
        by_reward = order[torch.sort(-value[order], stable=True).indices]
        by_reward = by_reward[torch.sort(note[by_reward], stable=True).indices]
        return by_reward[_segment_starts(note[by_reward])]
    return _majority(order, note, pred_class)


def _majority(order: torch.Tensor, note: torch.Tensor, pred_class: torch.Tensor) -> torch.Tensor:
    first = order[_segment_starts(note[order])]
    valid = order[pred_class[order] >= 0]  # still in note/sample order
    if valid.numel() == 0:
        return first
    width = int(pred_class.max()) + 1
    key = note[valid] * width + pred_class[valid]
    pairs, pair_of_row, votes = torch.unique(key, return_inverse=True, return_counts=True)
    # the earliest sample (position in `valid`) of every (note, code) pair
    position = torch.arange(valid.numel())
    earliest = torch.full((pairs.numel(),), valid.numel(), dtype=torch.int64)
    earliest.scatter_reduce_(0, pair_of_row, position, reduce="amin")
    pair_note = pairs // width
    # per note: most votes first, then the earliest first sample
    rank = torch.sort(earliest, stable=True).indices
    rank = rank[torch.sort(-votes[rank], stable=True).indices]
    rank = rank[torch.sort(pair_note[rank], stable=True).indices]
    winners = rank[_segment_starts(pair_note[rank])]
    picked = first.clone()
    picked[pair_note[winners]] = valid[earliest[winners]]
    return picked


@attrs.frozen
class PassAtK:
    """pass@k and any-of-k at one ``k`` (per level, :data:`~icdreward.evaluation.LEVEL_NAMES`).

    Attributes:
        k: samples considered.
        notes: notes with at least ``k`` samples (the others are left out).
        pass_at_k: per level, the unbiased estimator ``1 − C(n−c, k) / C(n, k)`` averaged
            over the notes (``n`` samples, ``c`` of them right at that level).
        any_of_k: per level, the share of notes with a right sample among their first
            ``k`` samples (by sample index).
    """

    k: int
    notes: int
    pass_at_k: dict[str, float]
    any_of_k: dict[str, float]

    def to_dict(self) -> dict[str, object]:
        return attrs.asdict(self)


def _log_binomial(n: torch.Tensor, k: int) -> torch.Tensor:
    return torch.lgamma(n + 1) - torch.lgamma(torch.tensor(k + 1.0)) - torch.lgamma(n - k + 1)


def pass_at_k(note: torch.Tensor, correct: torch.Tensor, k: int, n_notes: int) -> tuple[float, int]:
    """The unbiased pass@k over the notes with at least ``k`` samples, and their number.

    ``correct`` is ``bool [N]``, one per row. For a note with ``n`` samples of which ``c``
    are right, pass@k is ``1 − C(n−c, k) / C(n, k)`` (Chen et al. 2021), exactly 1 when
    ``n − c < k``.
    """
    n = torch.bincount(note, minlength=n_notes).double()
    c = torch.bincount(note[correct], minlength=n_notes).double()
    eligible = n >= k
    wrong = n - c
    ratio = torch.where(
        wrong >= k,
        torch.exp(_log_binomial(wrong.clamp(min=k), k) - _log_binomial(n.clamp(min=k), k)),
        torch.zeros_like(n),
    )
    count = int(eligible.sum())
    if count == 0:
        return 0.0, 0
    return float((1.0 - ratio)[eligible].mean()), count


def any_of_k(
    order: torch.Tensor, note: torch.Tensor, correct: torch.Tensor, k: int, n_notes: int
) -> tuple[float, int]:
    """The share of notes (with at least ``k`` samples) that have a right sample among
    their first ``k`` (``order`` from :func:`sample_order`), and the number of such notes."""
    sorted_note = note[order]
    start = _segment_starts(sorted_note)
    segment = torch.cumsum(start.long(), 0) - 1
    first_position = torch.nonzero(start).flatten()
    rank = torch.arange(order.numel()) - first_position[segment]
    n = torch.bincount(note, minlength=n_notes)
    within = rank < k
    hit = torch.zeros(n_notes, dtype=torch.bool)
    hit[sorted_note[within & correct[order]]] = True
    eligible = n >= k
    count = int(eligible.sum())
    if count == 0:
        return 0.0, 0
    return float(hit[eligible].double().mean()), count


def k_values(max_samples: int) -> list[int]:
    """1, 2, 4, … up to ``max_samples``, and ``max_samples`` itself."""
    ks = [1]
    while ks[-1] * 2 <= max_samples:
        ks.append(ks[-1] * 2)
    if ks[-1] != max_samples:
        ks.append(max_samples)
    return ks


def pass_at_k_table(
    note: torch.Tensor,
    sample: torch.Tensor,
    correct: Sequence[tuple[str, torch.Tensor]],
    n_notes: int,
) -> tuple[PassAtK, ...]:
    """:class:`PassAtK` for every ``k`` of :func:`k_values` (``correct``: per level name,
    ``bool [N]``)."""
    max_samples = int(torch.bincount(note, minlength=n_notes).max()) if n_notes else 0
    order = sample_order(note, sample)
    table = []
    for k in k_values(max_samples) if max_samples else []:
        passes, anys = {}, {}
        notes = 0
        for level, right in correct:
            passes[level], notes = pass_at_k(note, right, k, n_notes)
            anys[level], _ = any_of_k(order, note, right, k, n_notes)
        table.append(PassAtK(k=k, notes=notes, pass_at_k=passes, any_of_k=anys))
    return tuple(table)
