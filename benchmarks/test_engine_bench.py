"""Overhead of the engine's time limits (pytest-benchmark).

Target (issue #12): the time-limit machinery adds at most 5 % to the ``default`` preset
at B = 512. With limits on (the default, 600 s per component), a batch is scored in a
worker thread that the caller waits for; with ``[limits] time_limit = false`` it is
scored in the caller's thread.

The machine is noisy, so the two engines are measured in alternating blocks of rounds
(each block after a warm-up round, so that each starts from the state it would run in)
and the target is asserted on the fastest rounds of each: the ones least disturbed by
other work. The per-completion figures land in ``extra_info``.

Run: ``pytest benchmarks/test_engine_bench.py --benchmark-only``.
"""

from __future__ import annotations

import time
from typing import Any

from icdreward import RewardEngine

from _corpus import completions

BATCH = 512
MAX_OVERHEAD = 1.05
_BLOCKS = 16
_ROUNDS = 6
_FASTEST = 3


def _block(engine: RewardEngine, args: tuple[Any, ...]) -> list[float]:
    engine.score(*args)  # warm-up after the other engine ran
    times = []
    for _ in range(_ROUNDS):
        start = time.perf_counter()
        engine.score(*args)
        times.append(time.perf_counter() - start)
    return times


def test_time_limits_overhead_on_default(benchmark: Any) -> None:
    texts, golds, notes = completions(BATCH)
    args = (texts, golds, notes)
    limited = RewardEngine.from_preset("default")
    unlimited = RewardEngine.from_config({"preset": "default", "limits": {"time_limit": False}})
    assert limited.config.limits.time_limit is not None
    on: list[float] = []
    off: list[float] = []

    def measure() -> None:
        for _ in range(_BLOCKS):
            off.extend(_block(unlimited, args))
            on.extend(_block(limited, args))

    benchmark.pedantic(measure, rounds=1, iterations=1)
    best_on = sum(sorted(on)[:_FASTEST]) / _FASTEST
    best_off = sum(sorted(off)[:_FASTEST]) / _FASTEST
    ratio = best_on / best_off
    benchmark.extra_info["us_per_completion_limits_on"] = round(best_on / BATCH * 1e6, 3)
    benchmark.extra_info["us_per_completion_limits_off"] = round(best_off / BATCH * 1e6, 3)
    benchmark.extra_info["overhead_ratio"] = round(ratio, 4)
    assert ratio <= MAX_OVERHEAD, f"time limits cost {100 * (ratio - 1):.1f} % on default"
