"""The result of scoring one batch: the total, every component, and the flags."""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch

from icdreward.batch import ParsedBatch
from icdreward.groups import GroupStats

__all__ = ["ComponentSummary", "ScoreResult"]


@attrs.frozen
class ComponentSummary:
    """Mean and spread of one component (or the total) over a batch."""

    name: str
    weight: float
    mean: float
    std: float
    min: float
    max: float
    failed: int


@attrs.frozen(eq=False)
class ScoreResult:
    """Scores of one batch, keeping every component for logging.

    Attributes:
        total: ``float32 [B]``, the weighted sum of the components (never NaN or
            infinite). It is summed in ``float64``; a sum that does not fit ``float32``
            is a failure of the sample (see :attr:`total_failed`), never a silent 0.
        components: component name -> ``float32 [B]`` raw (unweighted) values. A value
            the component could not produce holds the fallback value, or 0 where
            the component abstained (see :attr:`included`).
        weights: component name -> weight in the total.
        included: ``bool [B, K]``, False where a component abstained for a sample.
        failed: component name -> ``bool [B]``, True where the component could not
            score the sample (an infrastructure failure, not a bad completion).
        failure_reasons: component name -> per-sample reason (None when it did not fail).
        parsed: the parsed completions (codes, traces, format flags).
        gold_missing: ``bool [B]``, True where the gold label held no readable code (the
            sample then scores as a wrong answer; check the data).
        groups: per-group statistics when group ids were given.
        total_failed: ``bool [B]``, True where the weighted total was not finite in
            ``float32`` (components finite, but their weighted sum overflows). The
            engine-wide ``[failure]`` policy applies: ``fallback`` puts the fallback
            value in :attr:`total`, ``abstain`` leaves the sample without a total
            (:attr:`total_included` False, :attr:`total` 0), ``raise`` raises
            :class:`~icdreward.errors.ComponentFailure` for ``"score"``. In
            :meth:`to_records`, ``failed`` then lists ``"score"``.
        total_reasons: per sample, why its total failed (None where it did not).
        total_included: ``bool [B]``, False where the total abstained.
        monitors: reward-hacking monitors of the batch, by name (see
            :mod:`icdreward.monitors`): shares of unparseable, invalid, non-billable and
            unspecified answers, of traces copying the note, mean trace length, chapter
            entropy and, with groups, the spread of codes within groups.
    """

    total: torch.Tensor
    components: dict[str, torch.Tensor]
    weights: dict[str, float]
    included: torch.Tensor
    failed: dict[str, torch.Tensor]
    failure_reasons: dict[str, tuple[str | None, ...]]
    parsed: ParsedBatch
    gold_missing: torch.Tensor
    groups: GroupStats | None = None
    total_failed: torch.Tensor = attrs.field()
    total_reasons: tuple[str | None, ...] = attrs.field()
    total_included: torch.Tensor = attrs.field()

    @total_failed.default
    def _no_total_failed(self) -> torch.Tensor:
        return torch.zeros(len(self), dtype=torch.bool)

    @total_reasons.default
    def _no_total_reasons(self) -> tuple[str | None, ...]:
        return (None,) * len(self)

    @total_included.default
    def _all_totals_included(self) -> torch.Tensor:
        return torch.ones(len(self), dtype=torch.bool)

    monitors: dict[str, float] = attrs.field(factory=dict)

    def __len__(self) -> int:
        return int(self.total.shape[0])

    @property
    def names(self) -> tuple[str, ...]:
        """Component names, in configuration order (the columns of :attr:`matrix`)."""
        return tuple(self.components)

    @property
    def matrix(self) -> torch.Tensor:
        """``float32 [B, K]``: the raw component values stacked column-wise."""
        if not self.components:
            return torch.zeros(len(self), 0)
        return torch.stack(list(self.components.values()), dim=1)

    @property
    def parse_failure(self) -> torch.Tensor:
        """``bool [B]``: no diagnosis code could be extracted."""
        return self.parsed.parse_failure

    @property
    def invalid_code(self) -> torch.Tensor:
        """``bool [B]``: a code was extracted but is not a valid ICD-10-CM code."""
        return self.parsed.invalid_code

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per sample.

        Keys: ``score`` (None where the total abstained), one per component (None
        where it abstained), ``code`` (the predicted code or ""), ``parse_failure``,
        ``invalid_code``, ``gold_missing`` and ``failed`` (the names of components
        that could not score the sample, and ``"score"`` where the total failed).
        """
        # float32 values printed at full float64 precision read as 0.10000000149...;
        # six decimals are exact for any reward scale in practice.
        totals = [round(v, 6) for v in self.total.tolist()]
        columns = {
            name: [round(v, 6) for v in values.tolist()] for name, values in self.components.items()
        }
        included = self.included.tolist()
        failed = {name: mask.tolist() for name, mask in self.failed.items()}
        parse_failure = self.parse_failure.tolist()
        invalid = self.invalid_code.tolist()
        gold_missing = self.gold_missing.tolist()
        total_failed = self.total_failed.tolist()
        total_included = self.total_included.tolist()
        names = self.names
        records: list[dict[str, Any]] = []
        for i, total in enumerate(totals):
            record: dict[str, Any] = {"score": total if total_included[i] else None}
            row = included[i]
            for k, name in enumerate(names):
                record[name] = columns[name][i] if row[k] else None
            record["code"] = self.parsed.codes[i]
            record["parse_failure"] = parse_failure[i]
            record["invalid_code"] = invalid[i]
            record["gold_missing"] = gold_missing[i]
            record["failed"] = [name for name in names if failed[name][i]]
            if total_failed[i]:
                record["failed"].append("score")
            records.append(record)
        return records

    def summary(self) -> list[ComponentSummary]:
        """Mean, std, min, max and failure count of the total and every component.

        A component's statistics cover the samples it was included for: where it
        abstained it has no value, and counting it as 0 would bias the mean.
        """
        totals = self.total[self.total_included]
        rows = [_summarise("score", 1.0, totals, int(self.total_failed.sum()))]
        for k, (name, values) in enumerate(self.components.items()):
            failures = int(self.failed[name].sum())
            kept = values[self.included[:, k]]
            rows.append(_summarise(name, self.weights[name], kept, failures))
        return rows


def _summarise(name: str, weight: float, values: torch.Tensor, failed: int) -> ComponentSummary:
    if values.numel() == 0:
        nan = math.nan
        return ComponentSummary(name, weight, nan, nan, nan, nan, failed)
    v = values.to(torch.float64)
    std = float(v.std(correction=0)) if v.numel() > 1 else 0.0
    return ComponentSummary(
        name, weight, float(v.mean()), std, float(v.min()), float(v.max()), failed
    )
