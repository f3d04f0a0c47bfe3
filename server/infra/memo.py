"""A hot path's copy of a row, kept by each worker for a moment and loaded once at a time.

When the copy expires under load, every request of that moment would otherwise query the
database for the same row (a claim burst of 32 requests a worker made 32 template reads each
time the copy ran out); here the first loads it and the others await that load. A failed
load (the row is gone) is not kept: each caller sees the error, the next one asks again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Recent(Generic[K, V]):
    def __init__(self, ttl: float, max_keys: int = 10_000) -> None:
        self._ttl = ttl
        self._max_keys = max_keys
        self._values: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Task[V]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        hit = self._values.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a load begun on another loop (tests) never ends here
            self._loop = loop
            self._loading.clear()
        task = self._loading.get(key)
        if task is None:
            task = self._loading[key] = loop.create_task(self._load(key, load))
        # shield: a caller that goes away (its request cancelled) leaves the load to the rest
        return await asyncio.shield(task)

    async def _load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        try:
            value = await load()
            if len(self._values) >= self._max_keys:
                self._values.clear()
            self._values[key] = (time.monotonic() + self._ttl, value)
            return value
        finally:
            self._loading.pop(key, None)

    def forget(self, key: K) -> None:
        """Drop the copy (the row was just changed by this worker)."""
        self._values.pop(key, None)
