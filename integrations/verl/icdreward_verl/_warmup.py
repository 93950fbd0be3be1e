"""Build what the engine builds on first use before the first batch arrives.

A fresh engine builds some indexes lazily: the free-text index of the code set (the
descriptions and inclusion terms, about 2.6 s) is made by the first diagnosis written in
words, and the first batch also pays for first-call work in the parser, the rewards and
the monitors. On fresh verl reward workers that made the first batch of a run cost 3–6 s
for 256 responses. :func:`warm_engine` scores a few made-up completions (a code, a
diagnosis in words, garbage) once per engine, so whatever a batch builds is built; with
a component that waits on a server (the judge) it only parses them, so the warm-up sends
no request.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref

from icdreward.engine import RewardEngine

__all__ = ["WARMUP_COMPLETIONS", "warm_engine"]

log = logging.getLogger("icdreward.verl")

WARMUP_COMPLETIONS: tuple[str, ...] = (
    "<think>Chronic low back pain radiating to the left leg.</think><diagnosis>M51.16</diagnosis>",
    "<think>Thirsty, polyuria, raised HbA1c, no complications found.</think>"
    "<diagnosis>type 2 diabetes mellitus without complications</diagnosis>",
    "no tags at all",
    "",
)
"""The made-up completions of the warm-up: a code, free text, no tags, empty."""

_GOLD = "M5116"
_NOTE = "Chronic low back pain radiating to the left leg; MRI shows an L5 disc herniation."

_warmed: weakref.WeakSet[RewardEngine] = weakref.WeakSet()
_lock = threading.Lock()


def warm_engine(engine: RewardEngine) -> float:
    """Warm ``engine`` once (later calls return at once); returns the seconds it took.

    Never raises: a warm-up that fails is logged, and the first batch then builds
    what it needs itself, as without a warm-up.
    """
    with _lock:  # two managers of one process share an engine: warm it once
        if engine in _warmed:
            return 0.0
        started = time.perf_counter()
        try:
            completions = list(WARMUP_COMPLETIONS)
            if any(reward.is_async for reward in engine.rewards.values()):
                engine.parser.parse(completions)
            else:
                size = len(completions)
                engine.score(completions, [_GOLD] * size, notes=[_NOTE] * size)
        except Exception:
            log.warning("icdreward: warming the reward engine failed", exc_info=True)
        _warmed.add(engine)
        return time.perf_counter() - started
