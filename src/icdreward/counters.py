"""The growth of the counters some reward components keep, batch by batch.

A component counts when it has a ``stats`` attribute whose ``as_dict()`` returns
counter name -> number, like the built-in judge's ``JudgeStats`` (requests, retries,
cache hits). A trainer logs what one batch cost, not a running total:
:class:`CounterDeltas` gives each counter's growth since the last call. The trainer
integrations (TRL's ``log_metric``, verl's ``reward_extra_info``) name the keys their
own way.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping

__all__ = ["CounterDeltas"]


class CounterDeltas:
    """Per-batch increments of the components' counters, safe to call from several threads.

    The counter names are fixed when this object is built, so every call returns the
    same keys. A component whose counters cannot be read then is left out.

    Args:
        rewards: component name -> component (:attr:`RewardEngine.rewards
            <icdreward.RewardEngine.rewards>`).
        prefix: put before every ``<component>/<counter>`` key (a trainer's namespace).

    >>> class Stats:
    ...     def __init__(self) -> None:
    ...         self.requests = 0
    ...     def as_dict(self) -> dict[str, int]:
    ...         return {"requests": self.requests}
    >>> class Judge:
    ...     stats = Stats()
    >>> judge = Judge()
    >>> deltas = CounterDeltas({"judge": judge, "exact": object()})
    >>> judge.stats.requests = 5
    >>> deltas.deltas(), deltas.deltas()
    ({'judge/requests': 5.0}, {'judge/requests': 0.0})
    """

    def __init__(self, rewards: Mapping[str, object], prefix: str = "") -> None:
        self.prefix = prefix
        self._sources: dict[str, Callable[[], Mapping[str, object]]] = {}
        for name, reward in rewards.items():
            read = _reader(reward)
            if read is not None:
                self._sources[name] = read
        self._last = {name: _numbers(read()) for name, read in self._sources.items()}
        self._lock = threading.Lock()

    @property
    def components(self) -> tuple[str, ...]:
        """The components whose counters are reported."""
        return tuple(self._sources)

    @property
    def keys(self) -> tuple[str, ...]:
        """Every ``<prefix><component>/<counter>`` key :meth:`deltas` returns, in order."""
        return tuple(
            f"{self.prefix}{name}/{counter}"
            for name, counts in self._last.items()
            for counter in counts
        )

    def deltas(self) -> dict[str, float]:
        """``<prefix><component>/<counter>``: each counter's growth since the last call.

        A counter that went down was reset meanwhile (``reset_stats()``): its delta is
        its current value. Counters that cannot be read count 0.
        """
        out: dict[str, float] = {}
        prefix = self.prefix
        with self._lock:
            for name, read in self._sources.items():
                last = self._last[name]
                try:
                    now = _numbers(read())
                except Exception:
                    now = last
                for counter, before in last.items():
                    value = now.get(counter, before)
                    key = f"{prefix}{name}/{counter}"
                    out[key] = value - before if value >= before else value
                self._last[name] = {k: now.get(k, v) for k, v in last.items()}
        return out


def _reader(reward: object) -> Callable[[], Mapping[str, object]] | None:
    """A call that reads ``reward``'s counters, or None when it keeps none (or they fail)."""
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
