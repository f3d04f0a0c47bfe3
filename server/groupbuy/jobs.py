"""`haodian worker` for group-buy: the seat stream consumer and the deadline sweep.

The consumer turns each seat the script took into a seat row and an order (and, for a new
group, the group), acknowledged only after the commit. The sweep settles every group past
its deadline every `groupbuy_sweep_seconds`, as a net under the delayed outbox event each
group gets when it opens: a deadline is acted on within seconds even if that event is late.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

from server.groupbuy import outcomes, seats
from server.groupbuy.models import ActivityState, GroupBuy
from server.infra.clock import utcnow
from server.infra.redis import Scripts
from server.infra.streams import StreamConsumer
from server.settings import Settings

log = logging.getLogger("haodian.groupbuy")

DRAIN_AFTER_END = timedelta(days=1)


class SeatConsumer(StreamConsumer):
    group = seats.GROUP
    kind = "group-buy"

    def __init__(self, redis: Any, scripts: Scripts, settings: Settings) -> None:
        super().__init__(redis, settings.worker_name, settings.flashsale_claim_idle_ms)
        self.scripts = scripts
        self.keep_until: dict[int, int] = {}  # activity -> when its keys may expire (ms)
        self.expiry_at = 0.0

    async def refresh(self) -> None:
        since = utcnow() - DRAIN_AFTER_END
        rows = await GroupBuy.filter(state=ActivityState.ON, ends_at__gt=since).values_list(
            "id", "ends_at"
        )
        self.keep_until = {
            int(i): int((end + seats.KEEP_AFTER_END).timestamp() * 1000) for i, end in rows
        }
        self.streams = {i: seats.activity_keys(i)["stream"] for i in self.keep_until}
        if time.monotonic() >= self.expiry_at:
            # Keys the scripts made since (a first freed seat's set, the first open group's
            # zset) expire with the others a week after the end: set on every key, each minute.
            for activity_id, until in self.keep_until.items():
                for key in seats.activity_keys(activity_id).values():
                    await self.redis.pexpireat(key, until)
            self.expiry_at = time.monotonic() + 60

    async def handle_entry(self, activity_id: int, entry: dict[str, str]) -> str:
        if entry.get("mode") == "open":
            for key in seats.group_keys(activity_id, entry["g"]):
                await self.redis.pexpireat(key, self.keep_until[activity_id])
        return await seats.materialise(activity_id, entry)


async def run_seat_consumer(ctx: dict[str, Any]) -> None:
    await SeatConsumer(ctx["redis_client"], ctx["scripts"], ctx["settings"]).run()


async def run_deadline_sweep(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    while True:
        try:
            settled = await outcomes.settle_due(ctx["scripts"])
            if settled:
                log.info("group-buy deadlines settled", extra={"groups": settled})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("group-buy deadline sweep failed; retrying")
        await asyncio.sleep(max(1, settings.groupbuy_sweep_seconds))


consumers = [run_seat_consumer, run_deadline_sweep]
functions: list[Any] = []
