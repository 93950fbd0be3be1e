"""Cost of reward integrity: the hacking monitors and ``icdreward audit`` (pytest-benchmark).

Targets (issue 10): the monitors add at most 10 % to ``default``'s per-completion time
at B = 512 and 4096 (GRPO batches: groups of 8 samples sharing a note); an audit of the
bundled examples takes at most 5 s. Like the other benchmarks, each asserts on the
fastest round, the one least disturbed by other work on the machine.

Run: ``pytest benchmarks/test_integrity_bench.py --benchmark-only``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from icdreward import RewardEngine, ScoringBatch
from icdreward.audit import audit
from icdreward.monitors import MONITORS, batch_monitors

from _corpus import completions

MONITOR_OVERHEAD = 1.10
AUDIT_SECONDS = 5.0
# The ``integrity`` component alone, per completion on fresh varied batches: a guard
# against regressions (measured about 20 us on the 2-core development VM; issue 14 aims
# at 8 us, which the pure-Python checks do not reach yet).
INTEGRITY_US = 30.0


def _fastest(call: Any, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("batch", [512, 4096])
def test_monitors_overhead(benchmark: Any, batch: int) -> None:
    """The monitors' own time on a fresh batch, against scoring without them.

    The monitors run after the components, on what they leave behind, so their cost
    adds up: timing them alone is steadier on a noisy machine than the difference of
    two totals (which swings by more than the 10 % it is meant to show).
    """
    texts, golds, notes = completions(batch)
    groups = [i // 8 for i in range(batch)]
    off = RewardEngine.from_config({"preset": "default", "monitors": False})
    off.score(texts, golds, notes, groups)  # warm like a running trainer

    def fresh_batch() -> tuple[tuple[ScoringBatch], dict[str, Any]]:
        prepared = off._prepare(texts, golds, notes, groups)
        _ = prepared.pred_levels  # computed by the hierarchy component before the monitors
        return (prepared,), {}

    monitors = benchmark.pedantic(batch_monitors, setup=fresh_batch, rounds=30, warmup_rounds=2)
    assert set(monitors) == set(MONITORS)
    alone = benchmark.stats.stats.min
    scoring = _fastest(lambda: off.score(texts, golds, notes, groups), 15)
    ratio = (scoring + alone) / scoring
    benchmark.extra_info["us_per_completion_monitors"] = round(alone / batch * 1e6, 3)
    benchmark.extra_info["us_per_completion_scoring"] = round(scoring / batch * 1e6, 3)
    benchmark.extra_info["overhead_ratio"] = round(ratio, 3)
    assert ratio <= MONITOR_OVERHEAD, f"monitors cost {ratio:.3f}x at B={batch}"


@pytest.mark.parametrize("preset", ["default", "deepicd-r1"])
def test_audit_of_bundled_examples(benchmark: Any, preset: str) -> None:
    engine = RewardEngine.from_preset(preset)
    report = benchmark.pedantic(audit, args=(engine,), rounds=3, iterations=1, warmup_rounds=0)
    assert report.rows > 0 and report.strategies
    benchmark.extra_info["seconds_min"] = round(benchmark.stats.stats.min, 3)
    assert benchmark.stats.stats.min <= AUDIT_SECONDS


@pytest.mark.parametrize("batch", [512, 4096])
def test_integrity_alone(benchmark: Any, batch: int) -> None:
    """``integrity`` on a fresh batch each round: new notes, traces and answers.

    A fresh component each round, so no note or answer is remembered from an earlier
    round (a trainer sees new prompts in every step).
    """
    engine = RewardEngine.from_config({"preset": "default", "monitors": False})
    bound = engine.rewards["integrity"]
    seeds = iter(range(1, 10_000))
    engine.score(*completions(batch, 0))  # warm like a running trainer

    def fresh_batch() -> tuple[tuple[ScoringBatch], dict[str, Any]]:
        texts, golds, notes = completions(batch, next(seeds))
        return (engine._prepare(texts, golds, notes, None),), {}

    def score(prepared: ScoringBatch) -> Any:
        return type(bound)(bound.params, bound.context).score(prepared)

    values = benchmark.pedantic(score, setup=fresh_batch, rounds=12, warmup_rounds=1)
    assert len(values) == batch
    per_completion = benchmark.stats.stats.min / batch * 1e6
    benchmark.extra_info["us_per_completion"] = round(per_completion, 3)
    assert per_completion <= INTEGRITY_US, f"integrity costs {per_completion:.1f} us at B={batch}"
