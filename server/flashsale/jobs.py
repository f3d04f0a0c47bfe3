"""The flash-sale stream consumer, run by `haodian worker`.

For every live (or recently ended) sale it reads the sale's reservation stream through
consumer group "fs" (`infra.streams.StreamConsumer`: own pending entries first, then new
ones, XAUTOCLAIM of a dead consumer's) and turns each entry into a reservation row and an
order in one transaction, acknowledged only after that commit. The Redis side of released
reservations comes through the outbox (`service._released`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from server.flashsale import service
from server.flashsale.models import FlashSale, SaleState
from server.infra.clock import utcnow
from server.infra.redis import Scripts
from server.infra.streams import StreamConsumer
from server.settings import Settings

DRAIN_AFTER_END = timedelta(days=1)


class Consumer(StreamConsumer):
    group = service.GROUP
    kind = "flash-sale"

    def __init__(self, redis: Any, scripts: Scripts, settings: Settings) -> None:
        super().__init__(redis, settings.worker_name, settings.flashsale_claim_idle_ms)
        self.scripts = scripts
        self.sales: dict[int, tuple[FlashSale, str]] = {}
        self.expiry_set: set[int] = set()

    async def refresh(self) -> None:
        since = utcnow() - DRAIN_AFTER_END
        sales = await FlashSale.filter(state=SaleState.ON, ends_at__gt=since).select_related(
            "sku__product"
        )
        self.sales = {s.id: (s, f"{s.sku.product.name} {s.sku.name}".strip()[:128]) for s in sales}
        self.streams = {s: service.stream_key(s) for s in self.sales}

    async def before_entries(self, sale_id: int) -> None:
        if sale_id in self.expiry_set:
            return
        # Keys the grab script created after the warm (buyers, answers, the stream) expire
        # with the sale's other keys, a week after it ends.
        until = self.sales[sale_id][0].ends_at + service.KEEP_AFTER_END
        keys = service.sale_keys(sale_id)
        for k in ("buyers", "reqs", "released", "stream"):
            await self.redis.pexpireat(keys[k], until)
        self.expiry_set.add(sale_id)

    async def handle_entry(self, sale_id: int, entry: dict[str, str]) -> str:
        sale, name = self.sales[sale_id]
        return await service.materialise(sale, name, entry)

    async def no_group(self, sale_id: int) -> None:
        # warming creates the group when it loads the sale; make sure of it anyway
        await service.warm(self.redis, self.scripts, self.sales[sale_id][0])
        await self.ensure_group(self.streams[sale_id])


async def run_consumer(ctx: dict[str, Any]) -> None:
    await Consumer(ctx["redis_client"], ctx["scripts"], ctx["settings"]).run()


consumers = [run_consumer]
functions: list[Any] = []
