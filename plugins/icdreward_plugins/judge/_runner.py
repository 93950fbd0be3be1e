"""The judge's own event loop: concurrency cap, in-flight sharing, retries, deadlines.

Every request of a judge runs on one private event loop in a daemon thread
(``icdreward-judge``, an :class:`icdreward.loop.LoopThread`), started on first use.
Callers hand it the prompts they need (:meth:`JudgeRunner.submit`) from any thread or
event loop: the engine's sync ``score()`` from verl's worker threads, ``ascore()`` on a
trainer's loop, or ``asyncio.run`` per call. This gives, whatever the callers:

* one ``AsyncOpenAI`` client per replica, created in and bound to this loop, never
  used from a loop it does not belong to, and closed properly by ``close()``;
* one semaphore, so ``max_concurrency`` bounds the requests of all callers together;
* one table of requests in flight, so a prompt that another caller is already
  waiting for is not sent twice (verl calls the reward once per sample, so the n
  samples of a group arrive as n separate calls);
* no signal-based timeouts: per-request timeouts are the HTTP client's, the batch
  deadline is ``asyncio.wait``'s.

A request that no caller waits for any more (its batch hit the deadline, or was
cancelled) is cancelled, so a dead judge does not pile up work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import math
import random
import threading
from typing import Any

import attrs

from icdreward.loop import LoopThread

from ._cache import VerdictCache
from ._outcome import Outcome
from ._params import JudgeParams
from ._render import Request
from ._stats import StatsCounter
from ._transport import AttemptFailed, Transport
from ._verdict import VerdictError, parse_verdict

__all__ = ["JudgeRunner"]


@attrs.define(eq=False)
class _Flight:
    """A prompt being asked: its task, how many batches wait for it, their deadline."""

    deadline: float
    waiters: int = 0
    task: asyncio.Task[Outcome] | None = None


class JudgeRunner:
    """Runs judge requests on a private event loop thread (see the module docs).

    Args:
        params: the judge's parameters.
        api_key: the resolved API key.
        score_range: the template's ``(min_score, max_score)``.
        cache: verdicts are stored there as they arrive.
        stats: counters to update.
    """

    def __init__(
        self,
        params: JudgeParams,
        api_key: str,
        score_range: tuple[int, int],
        cache: VerdictCache,
        stats: StatsCounter,
    ) -> None:
        self._params = params
        self._api_key = api_key
        self._range = score_range
        self._cache = cache
        self._stats = stats
        self._lock = threading.Lock()
        self._loop = LoopThread("icdreward-judge")
        # Owned by the loop (created and used only there):
        self._transport: Transport | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._flights: dict[str, _Flight] = {}
        self._random = random.Random()

    # -- entry points (any thread) -----------------------------------------------------

    def submit(self, pending: dict[str, Request]) -> concurrent.futures.Future[dict[str, Outcome]]:
        """Ask for the verdicts of ``pending`` (cache key -> request) on the judge loop."""
        with self._lock:
            if self._loop.start():
                # First use, after close(), or in a forked child (threads do not survive
                # a fork): what was bound to an earlier loop is of no use on this one.
                self._transport = self._semaphore = None
                self._flights = {}
            return self._loop.submit(self.judge(pending))

    def owns_running_loop(self) -> bool:
        """Whether the caller runs on the judge's own loop (then await :meth:`judge`)."""
        return self._loop.owns_running_loop()

    def close(self) -> None:
        """Cancel what is in flight, close the clients and stop the loop thread."""
        with self._lock:
            if not self._loop.running:
                return
            if not self._loop.owns_running_loop():  # from the loop itself it would wait on itself
                # Closing must finish even if the clients misbehave.
                with contextlib.suppress(Exception):
                    self._loop.run(self._aclose(), timeout=10)
            self._loop.stop(timeout=10)

    # -- on the loop ---------------------------------------------------------------------

    async def judge(self, pending: dict[str, Request]) -> dict[str, Outcome]:
        """Verdicts for ``pending`` within the batch deadline (runs on the judge loop)."""
        loop = asyncio.get_running_loop()
        budget = self._params.deadline
        deadline = math.inf if budget is None else loop.time() + budget
        results: dict[str, Outcome] = {}
        if self._cache.path is not None:
            found = await asyncio.to_thread(self._cache.load_many, list(pending))
            self._stats.add(disk_hits=len(found))
            results.update((key, Outcome(score)) for key, score in found.items())
        tasks: dict[str, asyncio.Task[Outcome]] = {}
        flights: dict[str, _Flight] = {}
        joined = 0
        try:
            for key, request in pending.items():
                if key in results:
                    continue
                flight = self._flights.get(key)
                if flight is None:
                    flight = _Flight(deadline=deadline)
                    flight.task = loop.create_task(self._fetch(request, flight, key))
                    flight.task.add_done_callback(functools.partial(self._landed, key, flight))
                    self._flights[key] = flight
                else:
                    joined += 1
                    flight.deadline = max(flight.deadline, deadline)
                flight.waiters += 1
                flights[key] = flight
                assert flight.task is not None
                tasks[key] = flight.task
            if joined:
                self._stats.add(deduplicated=joined)
            if tasks:
                timeout = None if budget is None else max(deadline - loop.time(), 0.0)
                await asyncio.wait(set(tasks.values()), timeout=timeout)
            for key, task in tasks.items():
                results[key] = self._result(task, budget)
        finally:
            for key, flight in flights.items():
                self._release(key, flight)
        if self._cache.path is not None:
            await asyncio.to_thread(self._cache.flush)
        return results

    @staticmethod
    def _result(task: asyncio.Task[Outcome], budget: float | None) -> Outcome:
        if task.cancelled():
            return Outcome(None, "the request was cancelled (the judge was closed)", "cancelled")
        if not task.done():
            reason = f"no verdict within the batch deadline of {budget} s"
            return Outcome(None, reason, "deadline")
        error = task.exception()
        if error is not None:  # a bug, not a judge failure: still only this prompt fails
            return Outcome(None, f"judge request crashed: {type(error).__name__}: {error}", "bug")
        return task.result()

    def _release(self, key: str, flight: _Flight) -> None:
        # Release the request this batch joined, by identity: once it has landed, a later
        # batch may have started a new request for the same prompt under the same key.
        flight.waiters -= 1
        if flight.waiters <= 0 and flight.task is not None and not flight.task.done():
            # Nobody waits for it any more: stop spending the judge's time on it.
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.task.cancel()

    def _landed(self, key: str, flight: _Flight, task: asyncio.Task[Outcome]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

    def _state(self) -> tuple[Transport, asyncio.Semaphore]:
        if self._transport is None or self._semaphore is None:
            self._transport = Transport(self._params, self._api_key)
            self._semaphore = asyncio.Semaphore(self._params.max_concurrency)
        return self._transport, self._semaphore

    async def _fetch(self, request: Request, flight: _Flight, key: str) -> Outcome:
        """Ask until a verdict, a non-retryable failure, the retry budget or the deadline."""
        p = self._params
        path, body = request
        loop = asyncio.get_running_loop()
        low, high = self._range
        try:
            transport, semaphore = self._state()
        except Exception as exc:  # e.g. http_backend = "aiohttp" without aiohttp
            return Outcome(None, f"judge client could not be built: {exc}", "client_errors")
        replica: int | None = None
        failure: AttemptFailed | None = None
        for attempt in range(p.retries + 1):
            if attempt:
                self._stats.add(retries=1)
            async with semaphore:
                remaining = flight.deadline - loop.time()
                if remaining <= 0:
                    before = f"{failure.reason}; then the" if failure else "the"
                    reason = f"{before} batch deadline passed before the request was sent"
                    return Outcome(None, reason, "deadline")
                replica = transport.pick(avoid=replica)
                self._stats.add(requests=1)
                try:
                    answer = await transport.send(replica, path, body, min(p.timeout, remaining))
                except AttemptFailed as exc:
                    failure = exc
                else:
                    self._stats.add(
                        prompt_tokens=answer.prompt_tokens,
                        completion_tokens=answer.completion_tokens,
                    )
                    try:
                        score = parse_verdict(answer.text, low, high, p.constrained)
                    except VerdictError as exc:
                        cut = answer.finish_reason == "length"
                        hint = " (cut off: raise max_tokens)" if cut else ""
                        failure = AttemptFailed(
                            f"{transport.urls[replica]}: unusable verdict: {exc}{hint}",
                            kind="bad_verdicts",
                            retryable=True,
                        )
                    else:
                        self._stats.add(verdicts=1)
                        self._cache.put(key, score)
                        return Outcome(score)
            self._stats.add(**{failure.kind: 1})
            if not failure.retryable or attempt == p.retries:
                break
            delay = self._delay(attempt, failure.retry_after)
            if loop.time() + delay >= flight.deadline:
                return Outcome(
                    None,
                    f"{failure.reason}; no time left to retry before the batch deadline",
                    failure.kind,
                )
            await asyncio.sleep(delay)
        assert failure is not None  # every path out of the loop without a verdict set it
        if failure.retryable:
            return Outcome(
                None, f"{failure.reason} (gave up after {p.retries + 1} attempts)", failure.kind
            )
        return Outcome(None, failure.reason, failure.kind)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter; at least the server's ``Retry-After``."""
        p = self._params
        base = min(p.backoff_max, p.backoff * 2**attempt)
        delay: float = base * (0.5 + 0.5 * self._random.random())
        if retry_after is not None:
            delay = max(delay, min(retry_after, p.retry_after_max))
        return delay

    async def _aclose(self) -> None:
        # Cancel everything still running here (requests, and batches that callers
        # wait for), so that no caller is left waiting on a loop that is stopping.
        current = asyncio.current_task()
        running = [t for t in asyncio.all_tasks() if t is not current]
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=5)
        self._flights.clear()
        if self._transport is not None:
            await self._transport.aclose()
        self._transport = None
        self._semaphore = None

    def __getstate__(self) -> dict[str, Any]:  # pragma: no cover - defensive
        raise TypeError("JudgeRunner is not picklable; pickle the JudgeReward instead")
