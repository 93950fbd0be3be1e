"""Cost of the judge's escaping (pytest-benchmark): linear, and cheap on real notes.

(a) ``test_neutralize_note``: a 12,000-character admission note (ASCII prose with a
    few non-ASCII characters), the size the judge clips notes to.
(b) ``test_neutralize_adversarial_is_linear``: 1 MB and 2 MB of ``<<<<``, control and
    format characters, full-width brackets and whitespace runs after ``<``; the 2 MB
    text must cost at most 3x the 1 MB one (a quadratic pass would cost 4x).

Run: ``pytest benchmarks/test_escape_bench.py --benchmark-only``.
"""

from __future__ import annotations

import time
from typing import Any

from icdreward_plugins.judge._escape import neutralize

_UNIT = "<<<<\x01\u200b<    \t\n[[[[INSTINST<\uff1c\ufe64{{}}" + " " * 64 + "<" + "a" * 64


def _adversarial(size: int) -> str:
    return (_UNIT * (size // len(_UNIT) + 1))[:size]


def _best_of(text: str, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        neutralize(text)
        best = min(best, time.perf_counter() - started)
    return best


def test_neutralize_note(benchmark: Any) -> None:
    sentence = "Pt c/o low back pain radiating to L leg, MRI: L5-S1 disc herniation, K < 3.5; "
    note = (sentence * (12_000 // len(sentence) + 1))[:11_990] + " 37.8 °C µg"
    out = benchmark(neutralize, note)
    assert "K < 3.5" in out


def test_neutralize_adversarial_is_linear(benchmark: Any) -> None:
    one, two = _adversarial(1_000_000), _adversarial(2_000_000)
    benchmark.pedantic(neutralize, args=(one,), rounds=3, iterations=1)
    small, large = _best_of(one), _best_of(two)
    benchmark.extra_info.update(
        seconds_1mb=round(small, 4), seconds_2mb=round(large, 4), ratio=round(large / small, 2)
    )
    assert large <= 3 * small
