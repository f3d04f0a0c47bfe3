"""Writes from concurrent requests gathered into one statement (group insert).

A hot path that must be durable before it answers (a coupon claim) pays one database round
trip per request, and the database one statement and one commit per request. Here requests
of the same moment queue their row; one write takes every row queued so far, and each
request gets its own row's result. While a few writes are in flight the next rows wait, so
batches grow with the load, and one request alone waits for nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupWriter(Generic[T, R]):
    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[list[R]]],
        *,
        max_batch: int = 500,
        max_in_flight: int = 2,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reset()

    def _reset(self) -> None:
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, item: T) -> asyncio.Future[R]:
        """Queue a row; the future holds its result (what `write` returned for it)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests, a restarted worker)
            self._loop = loop
            self._reset()
        fut: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, fut))
        self._schedule()
        return fut

    def _schedule(self) -> None:
        if not self._scheduled and self._pending and self._in_flight < self._max_in_flight:
            self._scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._start)  # the rest of this tick's requests join in

    def _start(self) -> None:
        self._scheduled = False
        while self._pending and self._in_flight < self._max_in_flight:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            self._in_flight += 1
            task = asyncio.ensure_future(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._write([item for item, _ in batch])
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
        except Exception as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
        finally:
            self._in_flight -= 1
            self._schedule()
