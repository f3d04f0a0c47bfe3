"""`haodian worker` for gift cards: bearer cards past their date, and the 7-day notices.
(Unclaimed gifts come back through their delayed outbox event, not a sweep.)"""

from __future__ import annotations

import logging
from typing import Any

from arq import cron

from server.giftcards import printed

log = logging.getLogger("haodian.giftcards")


async def giftcards_daily(ctx: dict[str, Any]) -> dict[str, int]:
    counts = {
        "expired": await printed.expire_bearer_cards(),
        "reminded": await printed.remind_expiring(),
    }
    if any(counts.values()):
        log.info("gift-card expiry", extra=counts)
    return counts


functions: list[Any] = [giftcards_daily]
cron_jobs: list[Any] = [
    cron(giftcards_daily, minute={5, 35}, second=0, unique=True, run_at_startup=True, timeout=300)
]
