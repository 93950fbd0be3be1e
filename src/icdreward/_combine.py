"""Combining the components' outcomes into a batch's weighted total, with failure policies."""

from __future__ import annotations

import logging
import math

import attrs
import torch

from icdreward._limits import TimeLimit
from icdreward._outcome import Outcome, no_failures, with_non_finite_failed
from icdreward.batch import ScoringBatch
from icdreward.components import Reward
from icdreward.config import ComponentConfig, FailureConfig, FailurePolicy
from icdreward.errors import ComponentFailure
from icdreward.groups import group_statistics
from icdreward.result import ScoreResult

__all__ = ["Bound", "combine"]

log = logging.getLogger("icdreward")


@attrs.frozen(eq=False)
class Bound:
    """A configured reward component ready to run (``limit``: None when it has none)."""

    config: ComponentConfig
    reward: Reward
    policy: FailurePolicy
    fallback: float
    limit: TimeLimit | None = None


def combine(
    bound: list[Bound],
    weights: torch.Tensor,
    batch: ScoringBatch,
    outcomes: list[Outcome],
    failure: FailureConfig,
) -> ScoreResult:
    """The :class:`ScoreResult` of ``batch`` from one outcome per bound component.

    Args:
        bound: the components, in configuration order.
        weights: ``float64 [K]``, their weights.
        batch: the scored batch.
        outcomes: one per component.
        failure: the engine-wide policy, applied to totals that do not fit ``float32``.

    Raises:
        ComponentFailure: a component failed on some sample and its policy is
            ``"raise"``, or (as component ``"score"``) a total overflowed and the
            engine-wide policy is ``"raise"``.
    """
    size = len(batch)
    # Work on the stacked [B, K] matrix: a handful of tensor operations per batch,
    # whatever the number of components (a configuration has at least one).
    matrix = torch.stack([o.values for o in outcomes], dim=1)
    # A NaN or an infinity anywhere makes the sum non-finite: one reduction tells that
    # a batch is clean (a sum that overflows only sends it through the full check).
    if not math.isfinite(float(matrix.sum())):
        finite = torch.isfinite(matrix)
        if not bool(finite.all()):
            outcomes = [with_non_finite_failed(o, finite[:, k]) for k, o in enumerate(outcomes)]
            matrix = torch.where(finite, matrix, 0.0)
    clean = no_failures(size)
    if all(o.failed is clean for o in outcomes):
        # Every component returned plain values: nothing failed, nothing to stack.
        failed = torch.zeros(size, len(outcomes), dtype=torch.bool)
        included = torch.ones(size, len(outcomes), dtype=torch.bool)
        weighted = matrix
    else:
        failed = torch.stack([o.failed for o in outcomes], dim=1)
        included = torch.ones_like(failed)
        weighted = matrix
        if bool(failed.any()):
            for k in failed.any(dim=0).nonzero().flatten().tolist():
                apply_policy(bound[k], outcomes[k], matrix[:, k], included[:, k])
            weighted = matrix * included
    # In float64: finite float32 components (two at 3e38, or a weight of 1e38) can sum
    # past float32's range. What does not fit float32 becomes infinite here and is
    # handled as a failure of the sample below, not turned into a silent 0.
    total = (weighted.to(torch.float64) @ weights).to(torch.float32)
    total_failed, reasons, total_included = _total_failures(total, failure, size)
    if total_failed is not None:
        total = torch.where(total_failed, _replacement(failure), total)
    gold_missing = batch.gold_keys[:, 0] == 0  # the primary gold slot is empty
    if bool(gold_missing.any()):
        log.warning(
            "%d of %d samples have no readable gold code; they score as wrong answers",
            int(gold_missing.sum()), size,
        )  # fmt: skip
    groups = None
    if batch.group_ids is not None and size:
        groups = group_statistics(total, batch.group_ids, valid=total_included)
    names = tuple(b.config.key for b in bound)
    return ScoreResult(
        total=total,
        components=dict(zip(names, matrix.unbind(dim=1), strict=True)),
        weights={b.config.key: b.config.weight for b in bound},
        included=included,
        failed=dict(zip(names, failed.unbind(dim=1), strict=True)),
        failure_reasons={n: o.reasons for n, o in zip(names, outcomes, strict=True)},
        parsed=batch.parsed,
        gold_missing=gold_missing,
        groups=groups,
        total_failed=no_failures(size) if total_failed is None else total_failed,
        total_reasons=reasons or (None,) * size,
        total_included=torch.ones(size, dtype=torch.bool)
        if total_included is None
        else total_included,
    )


def _total_failures(
    total: torch.Tensor, failure: FailureConfig, size: int
) -> tuple[torch.Tensor | None, tuple[str | None, ...], torch.Tensor | None]:
    """Flags, reasons and inclusion of totals that are not finite (None: all fine)."""
    finite = torch.isfinite(total)
    if bool(finite.all()):
        return None, (), None
    bad = ~finite
    reasons = tuple(
        None if ok else "the weighted total of the components does not fit float32"
        for ok in finite.tolist()
    )
    log.warning(
        "the weighted total of %d of %d samples does not fit float32 (policy %s)",
        int(bad.sum()), size, failure.policy,
    )  # fmt: skip
    if failure.policy == "raise":
        raise ComponentFailure("score", {i: r for i, r in enumerate(reasons) if r is not None})
    included = finite if failure.policy == "abstain" else torch.ones(size, dtype=torch.bool)
    return bad, reasons, included


def _replacement(failure: FailureConfig) -> torch.Tensor:
    value = failure.fallback if failure.policy == "fallback" else 0.0
    return torch.tensor(value, dtype=torch.float32)


def apply_policy(
    bound: Bound, outcome: Outcome, values: torch.Tensor, included: torch.Tensor
) -> None:
    """Apply ``bound``'s failure policy to its column (``values``, ``included``) in place."""
    mask = outcome.failed
    key, size = bound.config.key, int(mask.numel())
    # One line per component and batch, not per sample: a long run with a broken
    # component must not drown its own log.
    first = next(r for r, m in zip(outcome.reasons, mask.tolist(), strict=True) if m)
    log.warning(
        "reward %r could not score %d of %d samples (policy %s); first: %s",
        key, int(mask.sum()), size, bound.policy, first,
    )  # fmt: skip
    if bound.policy == "raise":
        reasons = {i: r or "failed" for i, r in enumerate(outcome.reasons) if r is not None}
        raise ComponentFailure(key, reasons)
    if bound.policy == "fallback":
        values[mask] = bound.fallback
    else:
        values[mask] = 0.0
        included[mask] = False
