"""What the TRL adapter reports for each scored batch: metrics and per-sample columns.

TRL hands every reward function two callbacks. ``log_metric(name, value)`` collects one
scalar per call; at each logging step the trainer averages what was collected (over the
batches of the step and over processes) into ``trainer.state.log_history``. A value
must never be NaN: a JSON logger would choke on it. ``log_extra(column, values)`` adds a
column, one value per completion, to the completions table (``GRPOConfig(
log_completions=True)``). Every column must be given for every batch, or the table's
columns end up with different lengths.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from icdreward import counters
from icdreward.result import ScoreResult

__all__ = [
    "SAMPLE_COLUMNS",
    "CounterDeltas",
    "batch_metrics",
    "component_means",
    "sample_columns",
]

SAMPLE_COLUMNS = ("icd_code", "icd_parse_failure", "icd_invalid_code", "icd_failed")
"""The columns :func:`sample_columns` gives to TRL's completions table, in order."""

# The total's name in ScoreResult.to_records() and in icdreward/failed/<name>; the
# configuration reserves it, so no component can take it.
_TOTAL = "score"


def batch_metrics(result: ScoreResult) -> dict[str, float]:
    """The metrics of one scored batch, by the name TRL logs them under.

    - ``icdreward/monitor/<name>``: every monitor of :attr:`ScoreResult.monitors`
      (see :mod:`icdreward.monitors`). ``parse_failure`` and ``invalid_code`` are
      given even when a configuration turns the monitors off: the flags are there.
    - ``icdreward/failed/<component>``: the share of samples the component could not
      score (an infrastructure failure, not a bad completion); ``icdreward/failed/score``
      the share whose weighted total could not be computed.
    - ``icdreward/failed``: the share of (component, sample) pairs that failed.
    - ``icdreward/all_equal_groups``: with GRPO groups, the share of groups whose totals
      are all equal (zero advantage).

    An empty batch gives no metrics (a share of nothing would be NaN).
    """
    size = len(result)
    if size == 0:
        return {}
    monitors = dict(result.monitors)
    if "parse_failure" not in monitors:
        monitors["parse_failure"] = float(result.parse_failure.float().mean())
    if "invalid_code" not in monitors:
        monitors["invalid_code"] = float(result.invalid_code.float().mean())
    metrics = {f"icdreward/monitor/{name}": float(v) for name, v in monitors.items()}
    if result.failed:
        # One reduction for every component: each torch call costs microseconds.
        counts: list[int] = torch.stack(list(result.failed.values())).sum(dim=1).tolist()
        for name, count in zip(result.failed, counts, strict=True):
            metrics[f"icdreward/failed/{name}"] = count / size
        metrics["icdreward/failed"] = sum(counts) / (size * len(counts))
    metrics[f"icdreward/failed/{_TOTAL}"] = float(result.total_failed.sum()) / size
    if result.groups is not None:
        metrics["icdreward/all_equal_groups"] = result.groups.all_equal_share
    return metrics


def component_means(result: ScoreResult) -> dict[str, float]:
    """``icdreward/<component>/mean`` over the samples each component did not abstain on.

    A component that abstained on every sample has no mean and is left out (never NaN).
    """
    metrics: dict[str, float] = {}
    for k, (name, values) in enumerate(result.components.items()):
        kept = values[result.included[:, k]]
        if kept.numel():
            metrics[f"icdreward/{name}/mean"] = float(kept.mean())
    return metrics


def sample_columns(result: ScoreResult) -> dict[str, list[Any]]:
    """Per-sample flags of one batch, as :data:`SAMPLE_COLUMNS` of the completions table.

    ``icd_code`` is the predicted code ("" where none was read), ``icd_parse_failure``
    and ``icd_invalid_code`` are booleans, and ``icd_failed`` names the components that
    could not score the sample, comma-separated (``"score"`` where the total failed;
    "" where nothing failed). Strings and booleans, so the table stays a plain parquet.
    """
    size = len(result)
    failed = [name for name, mask in result.failed.items() if bool(mask.any())]
    if bool(result.total_failed.any()):
        failed.append(_TOTAL)
    if failed:
        masks = [result.failed.get(name, result.total_failed) for name in failed]
        rows: list[list[bool]] = torch.stack(masks, dim=1).tolist()
        names = [",".join(n for n, hit in zip(failed, row, strict=True) if hit) for row in rows]
    else:  # the usual case: no failure at all, no per-sample work
        names = [""] * size
    return {
        "icd_code": list(result.parsed.codes),
        "icd_parse_failure": result.parse_failure.tolist(),
        "icd_invalid_code": result.invalid_code.tolist(),
        "icd_failed": names,
    }


class CounterDeltas(counters.CounterDeltas):
    """Per-batch increments of the counters some components keep (the judge's ``stats``).

    :class:`icdreward.counters.CounterDeltas` with TRL's names: :meth:`metrics` gives,
    per counter, how much it grew since the last call (or since this object was built),
    as ``icdreward/<component>/<counter>``: what one batch cost, not a running total. A
    counter that went down was reset meanwhile (``reset_stats()``); its delta is then
    its current value.

    Args:
        rewards: component name -> component (:attr:`RewardEngine.rewards
            <icdreward.RewardEngine.rewards>`).
    """

    def __init__(self, rewards: Mapping[str, object]) -> None:
        super().__init__(rewards, prefix="icdreward/")

    def metrics(self) -> dict[str, float]:
        """``icdreward/<component>/<counter>``: each counter's growth since the last call."""
        return self.deltas()
