"""Warming a hot-path source (a flash sale, a group-buy activity) into Redis, once at a time.

After a Redis restart every request of the moment finds the source cold: one of them warms
it, the others wait for that. A source found missing is remembered for a second, so a bogus
id costs one database query a second, not one per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from server.infra.errors import AppError


class WarmOnce:
    def __init__(self, missing: Callable[[int], AppError]) -> None:
        self._missing_error = missing
        self._running: dict[int, asyncio.Future[bool]] = {}
        self._missing: dict[int, float] = {}

    def check(self, key: int) -> None:
        """Raise the not-found error for a key found missing within the last second."""
        if self._missing.get(key, 0) > time.monotonic():
            raise self._missing_error(key)

    async def run(self, key: int, warm: Callable[[], Awaitable[bool]]) -> None:
        """Run `warm` (False: the source does not exist) unless a run for `key` is in flight,
        then wait for that one."""
        self.check(key)
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(warm())
            self._running[key] = task
            task.add_done_callback(lambda _t: self._running.pop(key, None))
        if not await asyncio.shield(task):
            if len(self._missing) > 10_000:
                self._missing.clear()
            self._missing[key] = time.monotonic() + 1
            raise self._missing_error(key)
