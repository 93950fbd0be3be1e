"""An asyncio event loop of its own, running in a daemon thread.

Synchronous code that must run coroutines (the engine's ``score()`` calling an
async reward, a test helper checking one, a judge serving callers on any thread)
cannot use ``asyncio.run`` per call: that fails inside a running loop, and it
builds a new loop each time, so clients bound to the previous loop break. A
:class:`LoopThread` keeps one loop alive in a thread of its own and hands it
coroutines from any thread, or from inside another running loop.

>>> import asyncio
>>> loop = LoopThread("doctest-loop")
>>> async def answer() -> int:
...     await asyncio.sleep(0)
...     return 42
>>> loop.run(answer())
42
>>> loop.stop()
>>> loop.running
False
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LoopStopped", "LoopThread"]

_T = TypeVar("_T")


class LoopStopped(RuntimeError):
    """The :class:`LoopThread` was stopped while a coroutine handed to it still ran."""


class LoopThread:
    """One asyncio event loop in a daemon thread, started on first use.

    :meth:`submit` and :meth:`run` are safe to call from any thread. The loop
    starts on the first :meth:`start`, :meth:`submit` or :meth:`run`, and starts
    afresh after :meth:`stop` or in a forked child (threads do not survive a fork;
    the parent's loop is then left alone). The thread is a daemon: a coroutine that
    never finishes cannot keep the interpreter from exiting.

    Args:
        name: the thread's name (what ``threading.enumerate()`` and debuggers show).
    """

    def __init__(self, name: str = "icdreward-loop") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop while it runs in this process, else None."""
        with self._lock:
            return self._loop if self._alive() else None

    @property
    def running(self) -> bool:
        """Whether the loop thread runs in this process."""
        with self._lock:
            return self._alive()

    def start(self) -> bool:
        """Start the loop unless it already runs; True when a new loop was started.

        A caller that keeps state bound to the loop (clients, semaphores) resets it
        when this returns True.
        """
        with self._lock:
            return self._start()

    def submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        """Schedule ``coro`` on the loop (starting it if needed) and return its future."""
        # Under the lock, so that stop() cannot end the loop between the two steps and
        # leave the coroutine queued on a loop that never runs it.
        with self._lock:
            self._start()
            assert self._loop is not None
            return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        """Run ``coro`` on the loop and wait for its result (or exception).

        Raises:
            LoopStopped: :meth:`stop` cancelled the coroutine before it finished.
            TimeoutError: ``timeout`` seconds passed first (the coroutine keeps running).
        """
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.CancelledError:
            raise LoopStopped(f"event loop {self.name!r} was stopped while this ran") from None

    def owns_running_loop(self) -> bool:
        """Whether the caller is a coroutine running on this loop."""
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            return False
        return current is self._loop

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel every task on the loop, stop it and join its thread (idempotent).

        Callers waiting in :meth:`run` get :class:`LoopStopped`. Called from a
        coroutine on the loop itself, this only asks the loop to stop (a thread
        cannot join itself). In a forked child it forgets the parent's loop.

        Args:
            timeout: seconds to wait for the cancelled tasks and for the thread.
        """
        with self._lock:
            loop, thread, pid = self._loop, self._thread, self._pid
            self._loop = self._thread = None
        if loop is None or thread is None or pid != os.getpid() or loop.is_closed():
            return
        if threading.current_thread() is thread:
            loop.call_soon(loop.stop)
            return
        if thread.is_alive():
            asyncio.run_coroutine_threadsafe(_shutdown(timeout), loop)
            thread.join(timeout)
        if not thread.is_alive():
            loop.close()

    def _alive(self) -> bool:
        return (
            self._loop is not None
            and self._thread is not None
            and self._thread.is_alive()
            and self._pid == os.getpid()
        )

    def _start(self) -> bool:
        # The caller holds the lock.
        if self._alive():
            return False
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=self.name, daemon=True)
        thread.start()
        self._loop, self._thread, self._pid = loop, thread, os.getpid()
        return True


async def _shutdown(timeout: float) -> None:
    loop = asyncio.get_running_loop()
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)
    # One more turn of the loop: the done-callbacks that wake the threads waiting in
    # run() must run before the loop stops.
    await asyncio.sleep(0)
    loop.stop()
