"""Demo membership: a four-tier ladder and three top-up plans. Idempotent: tiers are set only
when none are configured, a plan only when no active plan has the same price."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from server.settings import Settings

TIERS = [
    {"code": "regular", "name": "会员", "min_growth": 0, "points_multiplier": 1.0},
    {"code": "silver", "name": "银卡", "min_growth": 50_000, "points_multiplier": 1.2},
    {"code": "gold", "name": "金卡", "min_growth": 200_000, "points_multiplier": 1.5},
    {"code": "platinum", "name": "白金卡", "min_growth": 500_000, "points_multiplier": 2.0},
]
PLANS = [(10_000, 11_000), (30_000, 34_000), (50_000, 58_000)]


async def seed(settings: Settings, redis: Redis, progress: Any) -> None:
    from server.membership import service, stored_value
    from server.membership.models import StoredValuePlan, Tier

    if not await Tier.exists():
        await service.replace_tiers(TIERS)
        progress(len(TIERS))
    for pay_fen, credit_fen in PLANS:
        if not await StoredValuePlan.filter(pay_fen=pay_fen, active=True).exists():
            await stored_value.create_plan(None, pay_fen, credit_fen)
            progress(1)
