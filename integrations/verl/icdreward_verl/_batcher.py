"""Gather concurrent single-item calls into batches, within a size and a wait bound.

verl's reward loop calls ``run_single`` once per response, concurrently, as the
rollout finishes them. Scoring them one by one throws away what makes icdreward
fast (a few tensor operations per batch, one judge request per distinct prompt), so
:class:`MicroBatcher` holds each call until ``max_size`` have arrived or ``max_wait``
seconds have passed since the first one of the batch, then scores them together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["MicroBatcher"]

_In = TypeVar("_In")
_Out = TypeVar("_Out")


class MicroBatcher(Generic[_In, _Out]):
    """Batch :meth:`submit` calls made on one event loop.

    Args:
        score: scores a batch: one result, or one exception, per item, in order. An
            exception it raises itself fails every item of that batch.
        max_size: the most items in a batch; a full batch is scored at once.
        max_wait: seconds a batch waits for more items after its first one.

    Batches are scored concurrently with the next batch filling up, so a slow batch
    (a judge waiting on its server) does not hold the ones behind it.
    """

    def __init__(
        self,
        score: Callable[[list[_In]], Awaitable[Sequence[_Out | BaseException]]],
        *,
        max_size: int,
        max_wait: float,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        if max_wait < 0:
            raise ValueError(f"max_wait must be at least 0, got {max_wait}")
        self._score = score
        self._max_size = max_size
        self._max_wait = max_wait
        self._items: list[_In] = []
        self._futures: list[asyncio.Future[_Out]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, item: _In) -> _Out:
        """Score ``item`` as part of a batch; returns its result or raises its exception."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Items and a timer left by a loop that has ended (asyncio.run called again)
            # would never be flushed: their callers are gone with that loop.
            self._items, self._futures, self._timer = [], [], None
            self._loop = loop
        future: asyncio.Future[_Out] = loop.create_future()
        self._items.append(item)
        self._futures.append(future)
        if len(self._items) >= self._max_size:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._max_wait, self._flush)
        return await future

    @property
    def pending(self) -> int:
        """Items waiting for their batch to start."""
        return len(self._items)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._items:
            return
        items, futures = self._items, self._futures
        self._items, self._futures = [], []
        task = asyncio.get_running_loop().create_task(self._run(items, futures))
        # The loop keeps only weak references to tasks: hold on until it is done.
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, items: list[_In], futures: list[asyncio.Future[_Out]]) -> None:
        try:
            results = list(await self._score(items))
            if len(results) != len(items):
                raise RuntimeError(f"scored {len(results)} results for {len(items)} items")
        except asyncio.CancelledError:
            for future in futures:
                future.cancel()
            raise
        except Exception as exc:
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, result in zip(futures, results, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
