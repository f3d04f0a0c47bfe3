"""Rate limits on Redis through the `limits` library (moving window, shared by all workers)."""

from __future__ import annotations

import time

from limits import parse
from limits.aio.storage import RedisClusterStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from server.infra.errors import RateLimited
from server.infra.redis import is_cluster_url


def _storage_uri(redis_url: str) -> str:
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    return "async+" + redis_url  # redis://, rediss://, redis+cluster:// alike


class RateLimits:
    def __init__(self, redis_url: str) -> None:
        storage = RedisClusterStorage if is_cluster_url(redis_url) else RedisStorage
        self._limiter = MovingWindowRateLimiter(
            storage(_storage_uri(redis_url), implementation="redispy", key_prefix="rl")
        )

    async def hit(self, rule: str, *key: str, what: str = "requests") -> None:
        """Count one hit of `rule` (e.g. "10/minute") for `key`; 429 when over."""
        item = parse(rule)
        if not await self._limiter.hit(item, *key):
            stats = await self._limiter.get_window_stats(item, *key)
            retry = max(1, int(stats.reset_time - time.time()))
            raise RateLimited(
                f"too many {what}; try again in {retry} s",
                headers={"Retry-After": str(retry)},
            )

    async def clear(self, rule: str, *key: str) -> None:
        await self._limiter.clear(parse(rule), *key)
