"""Demo accounts: the operator the README names."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from server.demo import DEMO_OPERATOR
from server.identity.models import Operator
from server.identity.service import create_or_reset_operator
from server.settings import Settings


async def seed(settings: Settings, redis: Redis, progress: Any) -> None:
    username, password = DEMO_OPERATOR
    if not await Operator.exists(username=username):
        await create_or_reset_operator(username, password, ["admin"])
    progress(1)
