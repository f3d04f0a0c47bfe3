"""Demo takeout: the sandbox's courier moves each waybill on by itself every few seconds, so a
dispatched demo order reaches "delivered" while you watch the board. (The delivering stores
and their areas are the stores domain's demo data: WH0001 and the Wuhan stores with takeout.)"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from server.settings import Settings

DEMO_COURIER_STEP_S = 5


async def seed(settings: Settings, redis: Redis, progress: Any) -> None:
    if not settings.sandbox_enabled:
        return
    from server.wechat.sandbox.delivery_routes import K_CONF

    await redis.hsetnx(K_CONF, "auto_seconds", DEMO_COURIER_STEP_S)
    progress(1)
