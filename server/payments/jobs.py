"""Worker jobs: close expired unpaid orders, find lost notifications, push refunds."""

from __future__ import annotations

import logging
from typing import Any

from arq import cron

from server.payments import service
from server.settings import Settings

log = logging.getLogger("haodian.payments")


async def payments_sweep(ctx: dict[str, Any]) -> dict[str, int]:
    settings: Settings = ctx["settings"]
    counts = await service.sweep(settings)
    if any(counts.values()):
        log.info("payments sweep", extra=counts)
    return counts


def _every(seconds: int) -> set[int]:
    seconds = max(1, min(60, seconds))
    return set(range(0, 60, seconds))


functions: list[Any] = [payments_sweep]
cron_jobs: list[Any] = [
    cron(
        payments_sweep,
        second=_every(Settings().payment_sweep_seconds),
        unique=True,
        run_at_startup=True,
        timeout=120,
    )
]
