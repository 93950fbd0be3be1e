"""Isolating the samples a component fails on, so one poisonous sample costs only itself.

When a component raises on a batch, the batch is bisected and each half scored
again, down to single samples: the rest of the batch still gets real scores. A
budget of calls per component and batch stops an error that is about no sample in
particular (an outage, a bug) from costing ``2B`` calls: past it, the samples left
fail with the error seen.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import torch

from icdreward._outcome import Outcome, failure_reason, to_outcome
from icdreward.batch import ScoringBatch
from icdreward.components import RewardOutput

__all__ = ["ISOLATION_CALLS", "isolate", "isolate_async"]

# Calls one component may spend per batch to isolate the samples it fails on.
ISOLATION_CALLS = 64

_Score = Callable[[ScoringBatch], torch.Tensor | RewardOutput]
_AScore = Callable[[ScoringBatch], Awaitable[torch.Tensor | RewardOutput]]


def isolate(score: _Score, batch: ScoringBatch, exc: Exception, budget: list[int]) -> Outcome:
    """Score the halves of ``batch`` (which raised ``exc``) again, recursively."""
    if len(batch) <= 1 or budget[0] <= 0:
        return Outcome.failure(len(batch), failure_reason(exc))
    parts = []
    for half in _halves(len(batch)):
        sub = batch.subset(half)
        if budget[0] <= 0:
            parts.append(Outcome.failure(len(sub), failure_reason(exc)))
            continue
        budget[0] -= 1
        try:
            parts.append(to_outcome(score(sub), len(sub)))
        except Exception as sub_exc:
            parts.append(isolate(score, sub, sub_exc, budget))
    return Outcome.concat(parts)


async def isolate_async(
    score: _AScore, batch: ScoringBatch, exc: Exception, budget: list[int]
) -> Outcome:
    """:func:`isolate` for async components."""
    if len(batch) <= 1 or budget[0] <= 0:
        return Outcome.failure(len(batch), failure_reason(exc))
    parts = []
    for half in _halves(len(batch)):
        sub = batch.subset(half)
        if budget[0] <= 0:
            parts.append(Outcome.failure(len(sub), failure_reason(exc)))
            continue
        budget[0] -= 1
        try:
            parts.append(to_outcome(await score(sub), len(sub)))
        except Exception as sub_exc:
            parts.append(await isolate_async(score, sub, sub_exc, budget))
    return Outcome.concat(parts)


def _halves(size: int) -> tuple[range, range]:
    return range(size // 2), range(size // 2, size)
