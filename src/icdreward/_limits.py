"""Time limits on reward components: the engine stops waiting for a hung call.

A sync component cannot be interrupted: Python has no safe way to stop a thread,
and signal-based timeouts (``SIGALRM``) work only on the main thread, which verl's
and Ray's reward workers are not. So the engine runs each call of a time-limited
sync component in a **worker thread** and waits for it at most the limit. Threads,
not processes: a component shares the engine's process state (the code set, torch
tensors, a model on a GPU, clients), which a process would have to rebuild or
pickle for every batch. An async component runs under ``asyncio.wait_for``, which
cancels it at the limit.

A sync call that passed its limit keeps running in its thread (nothing can stop
it) until it returns by itself. Meanwhile that component is *not called again*:
each later batch fails for it at once, with a reason saying so, instead of piling
up one more stuck thread per batch or running a component that may not be
thread-safe next to its own stuck call. Once the stuck call returns, the next batch
calls the component as usual. Workers are daemon threads, so a call that never
returns cannot keep the interpreter from exiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import attrs
import torch

from icdreward._outcome import Outcome

__all__ = ["Step", "TimeLimit", "Workers", "run_steps", "timed_out_reason"]

log = logging.getLogger("icdreward")
_T = TypeVar("_T")


def timed_out_reason(seconds: float) -> str:
    """The failure reason of samples whose component passed its time limit."""
    return f"timed out after {seconds:g} s"


class Workers:
    """Daemon threads that run sync components' calls, one call per thread at a time.

    A thread that finishes a call waits for the next one, so a steady engine reuses
    the same thread or two; more start only while calls run at once (several
    threads scoring through one engine, or a call stuck past its limit).
    """

    def __init__(self, name: str = "icdreward-worker") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._closed = False

    def submit(self, fn: Callable[[], _T]) -> concurrent.futures.Future[_T]:
        """Run ``fn()`` in a worker thread, with the caller's grad mode and context."""
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        with self._lock:
            worker = self._idle.pop() if self._idle else None
            self._closed = False  # a closed engine that scores again gets threads again
        if worker is None:
            worker = _Worker(self)
        # Grad mode and context variables are per thread: carry the caller's over, so
        # that a component runs under torch.no_grad() when the caller scores under it.
        grad = torch.is_grad_enabled()
        context = contextvars.copy_context()
        worker.jobs.put((lambda: context.run(_with_grad, grad, fn), future))
        return future

    def close(self) -> None:
        """End the idle threads; threads still in a call end when it returns."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._closed = True
        for worker in idle:
            worker.jobs.put(None)

    def _release(self, worker: _Worker) -> bool:
        """Put ``worker`` back among the idle ones; False when it should end."""
        with self._lock:
            if self._closed:
                return False
            self._idle.append(worker)
            return True


def _with_grad(grad: bool, fn: Callable[[], _T]) -> _T:
    with torch.set_grad_enabled(grad):
        return fn()


_Job = tuple[Callable[[], Any], "concurrent.futures.Future[Any]"]


class _Worker:
    def __init__(self, pool: Workers) -> None:
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._pool = pool
        thread = threading.Thread(target=self._serve, name=pool.name, daemon=True)
        thread.start()

    def _serve(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            fn, future = job
            if not future.set_running_or_notify_cancel():
                if not self._pool._release(self):
                    return
                continue
            try:
                result = fn()
            except BaseException as exc:
                error: BaseException | None = exc
            else:
                error = None
            # Idle again before the caller learns the result, so that its next call
            # finds this thread instead of starting another one.
            keep = self._pool._release(self)
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
            del fn, future, job, error
            if not keep:
                return


class TimeLimit:
    """One component's time limit.

    Args:
        key: the component's name (for the warning).
        seconds: the limit per batch.
    """

    def __init__(self, key: str, seconds: float) -> None:
        self.key = key
        self.seconds = seconds
        # Set while a call of this component that passed its limit has not returned.
        self._stuck: threading.Event | None = None

    async def wait(self, coro: Coroutine[Any, Any, Outcome], size: int) -> Outcome:
        """An async component's work on a batch, cancelled at the limit."""
        try:
            return await asyncio.wait_for(coro, self.seconds)
        except TimeoutError:
            self._warn(size, "it was cancelled")
            return Outcome.failure(size, timed_out_reason(self.seconds))

    def busy(self, size: int) -> Outcome | None:
        """The outcome of a batch this component must not be called for, or None."""
        stuck = self._stuck
        if stuck is None:
            return None
        if stuck.is_set():
            self._stuck = None
            return None
        return Outcome.failure(
            size,
            f"not called: its call on an earlier batch {timed_out_reason(self.seconds)} "
            "and is still running",
        )

    def expired(self, returned: threading.Event, size: int) -> Outcome:
        """Record that a call passed the limit (``returned`` is set when it returns)."""
        self._stuck = returned
        self._warn(size, "its call keeps running in its thread; until it returns, later "
                   "batches fail for this component without calling it")  # fmt: skip
        return Outcome.failure(size, timed_out_reason(self.seconds))

    def _warn(self, size: int, what: str) -> None:
        log.warning(
            "reward %r %s on a batch of %d samples; %s",
            self.key, timed_out_reason(self.seconds), size, what,
        )  # fmt: skip


@attrs.frozen
class Step:
    """One step of scoring a batch in a worker thread.

    Attributes:
        run: does the work and returns its result.
        keep: stores that result where the later steps read it; not called for a
            step the caller stopped waiting for, so a call that returns late cannot
            overwrite what replaced its result.
        limit: the step's time limit (None: the caller waits as long as it takes).
        expired: called when the step passed its limit, with an event that is set
            when its call returns; it stores the step's replacement result.
    """

    run: Callable[[], Any]
    keep: Callable[[Any], None] | None = None
    limit: TimeLimit | None = None
    expired: Callable[[threading.Event], None] | None = None


def run_steps(steps: Sequence[Step], workers: Workers) -> None:
    """Run ``steps`` in order in a worker thread; stop waiting for a step at its limit.

    All the steps of a batch run in *one* worker call: a batch costs one hand-over
    between threads, not one per component, and all its torch work happens in one
    thread (torch keeps an OpenMP team per calling thread; two teams taking turns
    each spin on the CPU the other needs). The caller sleeps until the steps are done
    or the step being run passes its limit; the steps after a stuck one then
    continue in another worker.

    Raises:
        BaseException: whatever a step raised (the steps after it do not run).
    """
    start = 0
    while start < len(steps):
        run = _Run(steps[start:])
        # Woken once the worker is idle again: the next batch then finds the same
        # thread (and its OpenMP team) instead of starting another one.
        workers.submit(run.serve).add_done_callback(run.ended)
        stuck = run.wait()
        if stuck is None:
            return
        expired = steps[start + stuck].expired
        if expired is not None:
            expired(run.returned)
        start += stuck + 1


class _Run:
    """Steps run one after another in a worker; the caller waits with deadlines."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = steps
        self.returned = threading.Event()  # the abandoned step's call came back
        self._cond = threading.Condition(threading.Lock())
        self._current = 0  # the step running (or next); len(steps) when all ended
        self._started = time.monotonic()
        self._abandoned = False
        self._ended = False
        self._error: BaseException | None = None
        # _later[i]: the shortest limit among the steps after step i (None: none).
        self._later: list[float | None] = [None] * len(steps)
        shortest: float | None = None
        for i in range(len(steps) - 1, -1, -1):
            self._later[i] = shortest
            limit = steps[i].limit
            if limit is not None:
                shortest = limit.seconds if shortest is None else min(shortest, limit.seconds)

    def serve(self) -> None:
        """The worker's side: run every step unless the caller gave up on this run."""
        with self._cond:
            if self._abandoned:  # given up before this thread even started
                self.returned.set()
                return
            self._started = time.monotonic()
        for i, step in enumerate(self.steps):
            error: BaseException | None = None
            value: Any = None
            try:
                value = step.run()
            except BaseException as exc:
                error = exc
            with self._cond:
                if self._abandoned:
                    self.returned.set()
                    return
                if error is None and step.keep is not None:
                    try:
                        step.keep(value)
                    except BaseException as exc:
                        error = exc
                # The end of a step and the start of the next in one step: the
                # caller never sees a finished step as the one running.
                self._current, self._started = i + 1, time.monotonic()
                if error is not None:
                    self._error, self._current = error, len(self.steps)
                    return

    def ended(self, _: object) -> None:
        """Called once :meth:`serve` has returned and its thread is idle."""
        with self._cond:
            self._ended = True
            self._cond.notify()

    def wait(self) -> int | None:
        """The caller's side: None when every step ended, else the index of a stuck one.

        Raises:
            BaseException: what a step raised.
        """
        with self._cond:
            while not self._ended:
                current = self._current
                # The worker moves from step to step without waking this thread (a
                # wake-up per step would cost more than the steps), so wake up after
                # the shortest limit of the steps to come at the latest: none of them
                # started before now, so none of their deadlines is missed.
                timeout = self._later[current] if current < len(self.steps) else None
                limit = self.steps[current].limit if current < len(self.steps) else None
                if limit is not None:
                    left = self._started + limit.seconds - time.monotonic()
                    if left <= 0:
                        self._abandoned = True
                        return current
                    timeout = left if timeout is None else min(left, timeout)
                self._cond.wait(timeout)
            error, self._error = self._error, None
        if error is not None:
            raise error
        return None
