"""Retries with exponential backoff and jitter, honouring ``Retry-After``, under a deadline.

A retry is worth it only for failures another attempt may fix (timeouts, connection
errors, 429, 5xx, malformed bodies); a 400 is sent once. The wait before attempt
``k + 1`` is ``min(backoff_max, backoff * 2**k)`` scaled by a random factor in
``[0.5, 1]`` (so that many clients that failed together do not retry together), and
at least the server's ``Retry-After`` up to ``retry_after_max``. Timeouts are the
HTTP client's and the deadline is checked against the event loop's clock: no signals,
so all of it works off the main thread.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Mapping
from typing import Any

import attrs

from icdreward.openai_client._client import AttemptFailed, Completion, OpenAIClient

__all__ = ["RequestFailed", "RetryPolicy", "send_with_retries"]


@attrs.frozen
class RetryPolicy:
    """How often and how patiently a request is retried.

    Attributes:
        retries: retries after the first attempt (0: one attempt only).
        backoff: the first wait, in seconds, before jitter.
        backoff_max: the longest wait before jitter, in seconds.
        retry_after_max: the longest ``Retry-After`` honoured, in seconds.
    """

    retries: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    backoff: float = attrs.field(default=0.5, validator=attrs.validators.ge(0.0))
    backoff_max: float = attrs.field(default=8.0, validator=attrs.validators.ge(0.0))
    retry_after_max: float = attrs.field(default=30.0, validator=attrs.validators.ge(0.0))

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt ``attempt`` (0-based).

        >>> policy = RetryPolicy(backoff=1.0, backoff_max=3.0, retry_after_max=10.0)
        >>> rng = random.Random(0)
        >>> 2.0 <= policy.delay(2, None, rng) <= 3.0, policy.delay(0, 60.0, rng)
        (True, 10.0)
        """
        base = min(self.backoff_max, self.backoff * 2**attempt)
        delay: float = base * (0.5 + 0.5 * rng.random())
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_max))
        return delay


class RequestFailed(Exception):
    """Every attempt of a request failed, or it could not be retried in time.

    Attributes:
        reason: the last attempt's reason, with ``(gave up after N attempts)`` when
            the retries ran out, or what the deadline cut short.
        kind: the last attempt's :attr:`AttemptFailed.kind`, or ``"deadline"``.
        attempts: attempts sent.
    """

    def __init__(self, reason: str, *, kind: str, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.attempts = attempts


async def send_with_retries(
    client: OpenAIClient,
    path: str,
    body: Mapping[str, Any],
    *,
    policy: RetryPolicy,
    timeout: float,
    semaphore: asyncio.Semaphore | None = None,
    deadline: float | None = None,
    rng: random.Random | None = None,
) -> Completion:
    """Send ``body`` until an attempt succeeds, fails for good, or retries or time run out.

    Each attempt holds ``semaphore`` (a concurrency cap shared by all callers) while it
    is in flight, not while it waits to retry, and goes to the least busy replica,
    another one than the last attempt's when there are several.

    Args:
        client: the endpoint's client (used on this event loop only).
        path: ``"/chat/completions"`` or ``"/completions"``.
        body: the JSON body, sent as-is.
        policy: retries and backoff.
        timeout: seconds per attempt (shortened to what is left before ``deadline``).
        semaphore: held during each attempt (None: no cap).
        deadline: the event loop's ``time()`` by which an answer is needed (None: none).
        rng: the jitter's source (None: a fresh ``random.Random()``).

    Raises:
        RequestFailed: no attempt succeeded (see its ``reason`` and ``kind``).
    """
    loop = asyncio.get_running_loop()
    rng = rng if rng is not None else random.Random()
    cap = semaphore if semaphore is not None else _NoCap()
    end = math.inf if deadline is None else deadline
    replica: int | None = None
    failure: AttemptFailed | None = None
    attempts = 0
    for attempt in range(policy.retries + 1):
        async with cap:
            remaining = end - loop.time()
            if remaining <= 0:
                before = f"{failure.reason}; then the" if failure else "the"
                raise RequestFailed(
                    f"{before} deadline passed before the request was sent",
                    kind="deadline",
                    attempts=attempts,
                )
            replica = client.pick(avoid=replica)
            attempts += 1
            try:
                return await client.send(replica, path, body, min(timeout, remaining))
            except AttemptFailed as exc:
                failure = exc
        if not failure.retryable or attempt == policy.retries:
            break
        wait = policy.delay(attempt, failure.retry_after, rng)
        if loop.time() + wait >= end:
            raise RequestFailed(
                f"{failure.reason}; no time left to retry before the deadline",
                kind=failure.kind,
                attempts=attempts,
            )
        await asyncio.sleep(wait)
    assert failure is not None  # every way out of the loop without an answer set it
    if failure.retryable:
        raise RequestFailed(
            f"{failure.reason} (gave up after {policy.retries + 1} attempts)",
            kind=failure.kind,
            attempts=attempts,
        )
    raise RequestFailed(failure.reason, kind=failure.kind, attempts=attempts)


class _NoCap:
    """An ``async with`` that does nothing (no concurrency cap)."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None
