"""One training step's reward components as verl step metrics (``icdreward/<name>``).

verl's v1 trainer logs only the total reward of a training step; the components,
flags, monitors and judge counters each response carries in its ``reward_extra_info``
are read by validation and the DAPO filter only. :func:`step_metrics` reduces the
step's records to one number per key, so the sampler can hand them to the trainer.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["COUNT_PREFIX", "METRIC_PREFIX", "step_metrics"]

COUNT_PREFIX = "count/"
"""The prefix of a counter's key in ``reward_extra_info`` (summed over a step, not averaged).

verl keeps one ``reward_extra_info`` dict per response and nothing per batch, so what a
batch cost (judge requests, retries, cache hits) is spread evenly over its responses as
``count/<component>/<counter>``: summing those over any set of responses (a step) gives
what their batches cost, whichever worker scored them."""

METRIC_PREFIX = "icdreward/"
"""Every metric :func:`step_metrics` returns starts with this."""


def step_metrics(records: Iterable[tuple[str, Mapping[str, Any] | None]]) -> dict[str, float]:
    """Reduce ``(group id, reward_extra_info)`` pairs, one per response, to step metrics.

    - ``icdreward/<key>``: the mean over the responses that carry a finite number
      under ``key`` (components, ``score``, the 0/1 flags, ``monitor/*``);
    - ``icdreward/count/<component>/<counter>``: the sum (what the step's batches cost);
    - ``icdreward/group/all_equal``: the share of GRPO groups of two or more responses
      whose ``score`` is the same for all (they give no advantage);
    - ``icdreward/samples``: responses read; ``icdreward/malformed``: values skipped
      because they were missing, not numbers or not finite (a record that is not a
      dict counts once).

    A malformed record never raises: what cannot be read is counted and skipped.

    >>> m = step_metrics([("a", {"score": 1.0, "count/judge/requests": 0.5}),
    ...                   ("a", {"score": 1.0, "count/judge/requests": 0.5}),
    ...                   ("b", {"score": float("nan")})])
    >>> m["icdreward/score"], m["icdreward/count/judge/requests"], m["icdreward/malformed"]
    (1.0, 1.0, 1.0)
    >>> m["icdreward/group/all_equal"]  # group "b" has one response: not counted
    1.0
    """
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    group_scores: dict[str, list[float]] = defaultdict(list)
    samples = malformed = 0
    for group, info in records:
        samples += 1
        if not isinstance(info, Mapping):
            malformed += 1
            continue
        for key, raw in info.items():
            value = _number(raw)
            if value is None:
                malformed += 1
                continue
            name = str(key)
            sums[name] += value
            counts[name] += 1
            if name == "score":
                group_scores[str(group)].append(value)
    metrics: dict[str, float] = {}
    for name, total in sums.items():
        summed = name.startswith(COUNT_PREFIX)
        metrics[METRIC_PREFIX + name] = total if summed else total / counts[name]
    groups = [scores for scores in group_scores.values() if len(scores) > 1]
    if groups:
        equal = sum(1 for scores in groups if max(scores) == min(scores))
        metrics[METRIC_PREFIX + "group/all_equal"] = equal / len(groups)
    metrics[METRIC_PREFIX + "samples"] = float(samples)
    metrics[METRIC_PREFIX + "malformed"] = float(malformed)
    return metrics


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            value = value.item()
        except (TypeError, ValueError, RuntimeError):
            return None
    if not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
