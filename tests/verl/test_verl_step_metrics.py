"""The reduction of a step's ``reward_extra_info`` records to ``icdreward/<key>`` metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from icdreward.counters import CounterDeltas
from icdreward_verl._step_metrics import COUNT_PREFIX, step_metrics


def test_components_and_flags_are_means_counters_are_sums() -> None:
    records = [
        ("g1", {"score": 2.0, "exact": 1.0, "parse_failure": 0.0, "count/judge/requests": 0.25}),
        ("g1", {"score": 2.0, "exact": 1.0, "parse_failure": 1.0, "count/judge/requests": 0.25}),
        ("g2", {"score": 0.0, "exact": 0.0, "parse_failure": 0.0, "count/judge/requests": 0.25}),
        ("g2", {"score": 1.0, "exact": 0.0, "parse_failure": 0.0, "count/judge/requests": 0.25}),
    ]
    m = step_metrics(records)
    assert m["icdreward/score"] == pytest.approx(1.25)
    assert m["icdreward/exact"] == pytest.approx(0.5)
    assert m["icdreward/parse_failure"] == pytest.approx(0.25)
    assert m["icdreward/count/judge/requests"] == pytest.approx(1.0)  # summed
    assert m["icdreward/group/all_equal"] == pytest.approx(0.5)  # g1 equal, g2 not
    assert m["icdreward/samples"] == 4 and m["icdreward/malformed"] == 0


def test_malformed_records_are_counted_and_skipped_never_raised() -> None:
    records = [
        ("a", {"score": 1.0, "exact": float("nan")}),
        ("a", {"score": np.float32(3.0), "exact": "x", "monitor/trace_chars": None}),
        ("b", None),
        ("b", ["not", "a", "dict"]),  # type: ignore[list-item]
        ("c", {"score": math.inf, "flag": True}),
    ]
    m = step_metrics(records)  # type: ignore[arg-type]
    assert m["icdreward/score"] == pytest.approx(2.0)  # the two finite scores
    assert "icdreward/exact" not in m  # no finite value at all
    assert m["icdreward/flag"] == 1.0
    assert m["icdreward/malformed"] == 6  # nan, "x", None, None record, list, inf
    assert m["icdreward/samples"] == 5
    assert m["icdreward/group/all_equal"] == 0.0  # only group a has two scores: 1 and 3
    assert all(math.isfinite(v) for v in m.values())


def test_no_group_of_two_means_no_all_equal_metric() -> None:
    assert "icdreward/group/all_equal" not in step_metrics([("a", {"score": 1.0})])
    assert step_metrics([]) == {"icdreward/samples": 0.0, "icdreward/malformed": 0.0}


class _Stats:
    def __init__(self) -> None:
        self.counts = {"requests": 0, "retries": 0, "ok": True}

    def as_dict(self) -> dict[str, object]:
        return dict(self.counts)


class _Judge:
    def __init__(self) -> None:
        self.stats = _Stats()


def test_counter_deltas_are_growth_since_the_last_call() -> None:
    judge = _Judge()
    deltas = CounterDeltas({"judge": judge, "exact": object()}, prefix=COUNT_PREFIX)
    assert deltas.keys == ("count/judge/requests", "count/judge/retries")  # no bool, no exact
    judge.stats.counts.update(requests=5, retries=1)
    assert deltas.deltas() == {"count/judge/requests": 5.0, "count/judge/retries": 1.0}
    judge.stats.counts.update(requests=7)
    assert deltas.deltas() == {"count/judge/requests": 2.0, "count/judge/retries": 0.0}
    judge.stats.counts.update(requests=3)  # reset meanwhile: the current value
    assert deltas.deltas()["count/judge/requests"] == 3.0
