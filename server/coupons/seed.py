"""Demo coupons: templates a shopper can claim in the coupon centre, one of them valid only
at the demo store WH0001, so the README can walk claim -> live code -> scan at /staff/scan
(the demo clerk there comes from identity's seed).

Idempotent: templates are matched by name; nothing is added twice.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from server.coupons import templates
from server.coupons.models import CouponTemplate
from server.coupons.schemas import TemplateIn
from server.settings import Settings

DEMO_STORE_CODE = "WH0001"

TEMPLATES: list[dict[str, Any]] = [
    {
        "name": "新人立减 ¥5",
        "kind": "amount_off",
        "amount_off_fen": 500,
        "total": 100_000,
        "per_member_limit": 1,
        "valid_days": 30,
        "channel": "both",
    },
    {
        "name": "满 ¥99 减 ¥20",
        "kind": "threshold",
        "amount_off_fen": 2000,
        "threshold_fen": 9900,
        "total": 50_000,
        "per_member_limit": 2,
        "valid_days": 14,
        "channel": "both",
    },
    {
        "name": "坚果 85 折 (最高减 ¥30)",
        "kind": "percent_off",
        "percent_off": 15,
        "max_off_fen": 3000,
        "total": 20_000,
        "per_member_limit": 1,
        "valid_days": 7,
        "channel": "online",
    },
]
STORE_ONLY = {
    "name": "江汉路店 到店领取 免费柠檬茶",
    "kind": "free_item",
    "free_item_name": "柠檬茶",
    "total": 500,
    "per_member_limit": 1,
    "valid_days": 3,
    "channel": "store",
}


async def seed(settings: Settings, redis: Redis, progress: Any) -> None:
    from server.stores.models import Store

    store = await Store.get_or_none(code=DEMO_STORE_CODE)
    wanted = list(TEMPLATES)
    if store is not None:
        wanted.append({**STORE_ONLY, "store_ids": [store.id]})
    for data in wanted:
        if not await CouponTemplate.exists(name=data["name"]):
            await templates.create_template(TemplateIn(**data).model_dump())
            progress(1)
