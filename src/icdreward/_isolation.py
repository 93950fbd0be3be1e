"""Isolating the samples a component fails on, so one poisonous sample costs only itself.

When a component raises on a batch, the batch is bisected and each half scored
again, down to single samples: the rest of the batch still gets real scores. A
budget of calls per component and batch stops an error that is about no sample in
particular (an outage, a bug) from costing ``2B`` calls: past it, the samples left
fail with the error seen.

One routine serves sync and async components: :func:`isolate` is a coroutine that
awaits the component's scoring call. For an async component it runs on an event
loop; for a sync one, :func:`isolate_sync` wraps ``score`` in a coroutine that never
suspends, so the whole bisection runs to its end in a single ``send`` on the calling
thread, with no event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import torch

from icdreward._outcome import Outcome, failure_reason, to_outcome
from icdreward.batch import ScoringBatch
from icdreward.components import RewardOutput

__all__ = ["ISOLATION_CALLS", "isolate", "isolate_sync"]

# Calls one component may spend per batch to isolate the samples it fails on.
ISOLATION_CALLS = 64

_T = TypeVar("_T")
_AScore = Callable[[ScoringBatch], Awaitable[torch.Tensor | RewardOutput]]


async def isolate(
    score: _AScore, batch: ScoringBatch, exc: Exception, budget: list[int] | None = None
) -> Outcome:
    """Score the halves of ``batch``, on which ``score`` raised ``exc``, again, recursively.

    Args:
        score: the component's scoring call.
        batch: the batch that raised.
        exc: what it raised (the reason of samples left unscored).
        budget: calls left, shared by the recursion (default :data:`ISOLATION_CALLS`).
    """
    budget = [ISOLATION_CALLS] if budget is None else budget
    if len(batch) <= 1 or budget[0] <= 0:
        return Outcome.failure(len(batch), failure_reason(exc))
    parts = []
    for half in (range(len(batch) // 2), range(len(batch) // 2, len(batch))):
        sub = batch.subset(half)
        if budget[0] <= 0:
            parts.append(Outcome.failure(len(sub), failure_reason(exc)))
            continue
        budget[0] -= 1
        try:
            parts.append(to_outcome(await score(sub), len(sub)))
        except Exception as sub_exc:
            parts.append(await isolate(score, sub, sub_exc, budget))
    return Outcome.concat(parts)


def isolate_sync(
    score: Callable[[ScoringBatch], torch.Tensor | RewardOutput],
    batch: ScoringBatch,
    exc: Exception,
) -> Outcome:
    """:func:`isolate` for a sync component, on the calling thread."""

    async def call(sub: ScoringBatch) -> torch.Tensor | RewardOutput:
        return score(sub)

    return _run_unsuspended(isolate(call, batch, exc))


def _run_unsuspended(coro: Coroutine[Any, Any, _T]) -> _T:
    """The result of a coroutine that awaits nothing which suspends."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: _T = done.value
        return result
    coro.close()
    raise RuntimeError("isolating a sync component suspended; it must run without a loop")
