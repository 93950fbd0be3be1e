"""The growth of the counters components keep (the judge's ``stats``), batch by batch.

verl keeps one ``reward_extra_info`` dict per response and nothing per batch, so what a
batch cost (judge requests, retries, cache hits) is spread evenly over its responses
as ``count/<component>/<counter>``: summing those over any set of responses (a step)
gives what their batches cost, whichever worker scored them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping

__all__ = ["COUNT_PREFIX", "CounterDeltas"]

COUNT_PREFIX = "count/"
"""The prefix of a counter's key in ``reward_extra_info`` (summed, not averaged)."""


class CounterDeltas:
    """Per-batch increments of the components' counters, safe to call from several threads.

    A component counts when it has a ``stats`` attribute whose ``as_dict()`` returns
    counter name -> number, like the built-in judge's ``JudgeStats``. The counter names
    are fixed when this object is built, so every response carries the same keys.

    Args:
        rewards: component name -> component (``RewardEngine.rewards``).
    """

    def __init__(self, rewards: Mapping[str, object]) -> None:
        self._sources: dict[str, Callable[[], Mapping[str, object]]] = {}
        for name, reward in rewards.items():
            read = _reader(reward)
            if read is not None:
                self._sources[name] = read
        self._last = {name: _numbers(read()) for name, read in self._sources.items()}
        self._lock = threading.Lock()

    @property
    def keys(self) -> tuple[str, ...]:
        """Every ``count/<component>/<counter>`` key :meth:`deltas` returns."""
        return tuple(
            f"{COUNT_PREFIX}{name}/{counter}"
            for name, counts in self._last.items()
            for counter in counts
        )

    def deltas(self) -> dict[str, float]:
        """How much each counter grew since the last call, by :attr:`keys`.

        A counter that went down was reset meanwhile (``reset_stats()``): its delta is
        its current value. A counter that cannot be read counts 0.
        """
        out: dict[str, float] = {}
        with self._lock:
            for name, read in self._sources.items():
                last = self._last[name]
                try:
                    now = _numbers(read())
                except Exception:
                    now = last
                for counter, before in last.items():
                    value = now.get(counter, before)
                    out[f"{COUNT_PREFIX}{name}/{counter}"] = (
                        value - before if value >= before else value
                    )
                self._last[name] = {k: now.get(k, v) for k, v in last.items()}
        return out


def _reader(reward: object) -> Callable[[], Mapping[str, object]] | None:
    try:
        as_dict = getattr(reward.stats, "as_dict", None)  # type: ignore[attr-defined]
    except Exception:  # no counters, or a property that fails: nothing to report
        return None
    if not callable(as_dict):
        return None

    def read() -> Mapping[str, object]:
        counts: Mapping[str, object] = reward.stats.as_dict()  # type: ignore[attr-defined]
        return counts

    try:
        read()
    except Exception:
        return None
    return read


def _numbers(counts: Mapping[str, object]) -> dict[str, float]:
    return {
        str(k): float(v)
        for k, v in counts.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }
