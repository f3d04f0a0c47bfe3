"""Demo group-buy: one live activity — groups of 3, a snack WH0001 sells at about 70% of
its price, vouchers written off at WH0001 (where the demo clerk works) — so the README can
walk open -> share -> join -> succeed -> voucher -> write-off -> stats.

Idempotent: while a live demo activity (same SKU and title, running, not ended) exists,
nothing is added; once it has ended a later start makes a fresh one.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from redis.asyncio import Redis

from server.settings import Settings

DEMO_STORE_CODE = "WH0001"
GROUP_SIZE = 3
UNITS = 3_000
RUNS_FOR = timedelta(days=30)
GROUP_MINUTES = 24 * 60
PER_MEMBER_LIMIT = 5


def group_price(price_fen: int) -> int:
    """About 70% of the price, in whole jiao, always below it."""
    return max(1, min(price_fen - 1, price_fen * 7 // 10 // 10 * 10))


async def seed(settings: Settings, redis: Redis, progress: Any) -> None:
    from server.catalog.models import StoreSku
    from server.groupbuy import service
    from server.groupbuy.models import ActivityState, GroupBuy
    from server.infra.clock import utcnow
    from server.infra.redis import Scripts
    from server.stores.models import Store

    store = await Store.get_or_none(code=DEMO_STORE_CODE)
    if store is None:
        return
    offer = (
        await StoreSku.filter(store_id=store.id, available=True, stock__gt=0, sku__on_sale=True)
        .order_by("sku_id")
        .select_related("sku__product")
        .first()
    )
    if offer is None:
        return
    sku = offer.sku
    title = f"{GROUP_SIZE}人团 {sku.product.name} {sku.name}".strip()[:128]
    now = utcnow()
    if await GroupBuy.exists(sku_id=sku.id, title=title, state=ActivityState.ON, ends_at__gt=now):
        return
    scripts = Scripts(redis)
    try:
        await service.create_activity(
            scripts,
            operator_id=None,
            sku_id=sku.id,
            title=title,
            group_price_fen=group_price(sku.price_fen),
            group_size=GROUP_SIZE,
            units=UNITS,
            starts_at=now,
            ends_at=now + RUNS_FOR,
            group_minutes=GROUP_MINUTES,
            per_member_limit=PER_MEMBER_LIMIT,
            store_ids=[store.id],
        )
    finally:
        await scripts.aclose()
    progress(1)
