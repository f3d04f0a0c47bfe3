"""Demo gift cards: two designs on sale, so the README can walk buy -> give -> claim -> pay
half a pickup order with the card. Idempotent: a design of the same name is not added twice."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from server.settings import Settings

DESIGNS = [
    {"name": "好店+ 心意卡", "face_values_fen": [5000, 10000, 20000, 50000], "theme": "red"},
    {"name": "好店+ 生日卡", "face_values_fen": [10000, 30000], "theme": "birthday"},
]


async def seed(settings: Settings, redis: Redis, progress: Any) -> None:
    from server.giftcards import service
    from server.giftcards.models import GiftCardDesign

    for d in DESIGNS:
        if await GiftCardDesign.filter(name=d["name"], retired_at=None).exists():
            continue
        await service.create_design(None, valid_days=3 * 365, **d)
        progress(1)
