"""The flash-sale stream consumer, run by `haodian worker`.

For every live (or recently ended) sale it reads the sale's reservation stream through
consumer group "fs", turns each entry into a reservation row and an order in one
transaction, and acknowledges the entry only after that commit. On start it re-reads
its own pending entries (a crash between commit and XACK leaves them there; the insert
is idempotent by order number), and it regularly claims entries that a dead consumer
left pending for longer than `flashsale_claim_idle_ms` (XAUTOCLAIM). The Redis side of
released reservations comes through the outbox (`service._released`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from datetime import timedelta
from typing import Any

from redis.exceptions import ResponseError

from server.flashsale import service
from server.flashsale.models import FlashSale, SaleState
from server.infra.clock import utcnow
from server.infra.redis import Scripts
from server.settings import Settings

log = logging.getLogger("haodian.flashsale.consumer")

DRAIN_AFTER_END = timedelta(days=1)
BATCH = 200


class Consumer:
    def __init__(self, redis: Any, scripts: Scripts, settings: Settings) -> None:
        self.redis = redis
        self.scripts = scripts
        self.settings = settings
        self.name = settings.worker_name or socket.gethostname()
        self.sales: dict[int, tuple[FlashSale, str]] = {}
        self.own_pending_done: set[int] = set()
        self.expiry_set: set[int] = set()
        self.sales_at = 0.0
        self.claim_at = 0.0

    async def refresh_sales(self) -> None:
        since = utcnow() - DRAIN_AFTER_END
        sales = await FlashSale.filter(state=SaleState.ON, ends_at__gt=since).select_related(
            "sku__product"
        )
        self.sales = {s.id: (s, f"{s.sku.product.name} {s.sku.name}".strip()[:128]) for s in sales}

    async def handle(self, sale_id: int, entries: list[Any]) -> int:
        sale, name = self.sales[sale_id]
        key = service.stream_key(sale_id)
        if entries and sale_id not in self.expiry_set:
            # Keys the grab script created after the warm (buyers, answers, the stream)
            # expire with the sale's other keys, a week after it ends.
            until = sale.ends_at + service.KEEP_AFTER_END
            keys = service.sale_keys(sale_id)
            for k in ("buyers", "reqs", "released", "stream"):
                await self.redis.pexpireat(keys[k], until)
            self.expiry_set.add(sale_id)
        for entry_id, fields in entries:
            if fields is None:  # deleted entry still listed as pending
                await self.redis.xack(key, service.GROUP, entry_id)
                continue
            outcome = await service.materialise(sale, name, service._entry_fields(fields))
            service._fault("after_insert_before_ack")
            await self.redis.xack(key, service.GROUP, entry_id)
            log.debug("reservation %s", outcome, extra={"sale": sale_id, "entry": entry_id})
        return len(entries)

    async def read(self, sale_id: int) -> int:
        key = service.stream_key(sale_id)
        # Our own pending entries first (a crash between commit and XACK), then new ones.
        start = ">" if sale_id in self.own_pending_done else "0"
        try:
            reply = await self.redis.xreadgroup(service.GROUP, self.name, {key: start}, count=BATCH)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await service.warm(self.redis, self.scripts, self.sales[sale_id][0])
            try:  # warming creates the group when it loads the sale; make sure of it anyway
                await self.redis.xgroup_create(key, service.GROUP, id="0", mkstream=True)
            except ResponseError as busy:
                if "BUSYGROUP" not in str(busy):
                    raise
            return 0
        entries = reply[0][1] if reply else []
        if start == "0" and not entries:
            self.own_pending_done.add(sale_id)
        return await self.handle(sale_id, entries)

    async def claim(self, sale_id: int) -> int:
        key = service.stream_key(sale_id)
        try:
            reply = await self.redis.xautoclaim(
                key,
                service.GROUP,
                self.name,
                min_idle_time=self.settings.flashsale_claim_idle_ms,
                start_id="0-0",
                count=BATCH,
            )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                return 0
            raise
        entries = reply[1]
        if entries:
            log.info(
                "claimed entries of a dead consumer", extra={"sale": sale_id, "n": len(entries)}
            )
        return await self.handle(sale_id, entries)

    async def step(self) -> int:
        now = time.monotonic()
        if now >= self.sales_at:
            await self.refresh_sales()
            self.sales_at = now + 2
        done = 0
        for sale_id in list(self.sales):
            done += await self.read(sale_id)
        if now >= self.claim_at:
            for sale_id in list(self.sales):
                done += await self.claim(sale_id)
            self.claim_at = now + max(0.5, self.settings.flashsale_claim_idle_ms / 4000)
        return done


async def run_consumer(ctx: dict[str, Any]) -> None:
    consumer = Consumer(ctx["redis_client"], ctx["scripts"], ctx["settings"])
    log.info("flash-sale consumer started", extra={"consumer": consumer.name})
    while True:
        try:
            done = await consumer.step()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("flash-sale consumer step failed; retrying")
            await asyncio.sleep(1)
            continue
        if not done:
            await asyncio.sleep(0.05)


consumers = [run_consumer]
functions: list[Any] = []
