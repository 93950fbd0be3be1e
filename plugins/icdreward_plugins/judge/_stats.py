"""Counters of what the judge did, readable at any time from any thread.

A GRPO run leaves the judge on for days; these tell whether it earns its cost
(cache and deduplication hits, tokens) and whether it is healthy (retries, rate
limits, timeouts, failures). Read them with ``engine.rewards["judge"].stats``.
"""

from __future__ import annotations

import threading

import attrs

__all__ = ["JudgeStats", "StatsCounter"]


@attrs.frozen
class JudgeStats:
    """A snapshot of the judge's counters since it was built (or ``reset_stats``).

    Attributes:
        samples: samples scored.
        not_sent: samples not sent (empty trace or no valid code).
        deduplicated: samples that shared a request with an identical prompt (in
            the same batch, or already in flight for another caller).
        cache_hits: samples answered from the memory cache.
        disk_hits: prompts answered from the SQLite cache.
        requests: HTTP requests sent (every attempt counts).
        verdicts: verdicts received from the judge.
        retries: attempts after the first one.
        failures: samples reported as failed (the failure policy decides their value).
        timeouts, connection_errors, rate_limited, server_errors, client_errors,
        malformed, bad_verdicts, deadline_exceeded: failed attempts (or samples, for
            ``deadline_exceeded``) by cause.
        prompt_tokens, completion_tokens: tokens the server reported using.
    """

    samples: int = 0
    not_sent: int = 0
    deduplicated: int = 0
    cache_hits: int = 0
    disk_hits: int = 0
    requests: int = 0
    verdicts: int = 0
    retries: int = 0
    failures: int = 0
    timeouts: int = 0
    connection_errors: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    client_errors: int = 0
    malformed: int = 0
    bad_verdicts: int = 0
    deadline_exceeded: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict (for logging to a tracker)."""
        return attrs.asdict(self)


_FIELDS = tuple(f.name for f in attrs.fields(JudgeStats))


class StatsCounter:
    """The mutable counters behind :class:`JudgeStats` (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(_FIELDS, 0)

    def add(self, **amounts: int) -> None:
        """Increase counters by name (``add(requests=1, retries=1)``)."""
        with self._lock:
            for name, amount in amounts.items():
                self._counts[name] += amount

    def snapshot(self) -> JudgeStats:
        with self._lock:
            return JudgeStats(**self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts = dict.fromkeys(_FIELDS, 0)
