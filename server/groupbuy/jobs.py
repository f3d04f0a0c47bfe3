"""`haodian worker` for group-buy: the seat stream consumer and the deadline sweep.

The consumer turns each seat the script took into a seat row and an order (and, for a new
group, the group), acknowledged only after the commit. The sweep settles every group past
its deadline every `groupbuy_sweep_seconds`, as a net under the delayed outbox event each
group gets when it opens: a deadline is acted on within seconds even if that event is late.
"""

from __future__ import annotations

import asyncio
import logging
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

    async def refresh(self) -> None:
        since = utcnow() - DRAIN_AFTER_END
        ids = await GroupBuy.filter(state=ActivityState.ON, ends_at__gt=since).values_list(
            "id", flat=True
        )
        self.streams = {int(i): seats.activity_keys(int(i))["stream"] for i in ids}

    async def handle_entry(self, activity_id: int, entry: dict[str, str]) -> str:
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
