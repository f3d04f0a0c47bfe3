"""`haodian worker` for membership: the monthly tier review (downgrades happen only here) and
the daily expiry of points lots past their date."""

from __future__ import annotations

import logging
from typing import Any

from arq import cron

from server.membership import service

log = logging.getLogger("haodian.membership")


async def membership_monthly_review(ctx: dict[str, Any]) -> dict[str, int]:
    counts = await service.monthly_review()
    log.info("monthly tier review", extra=counts)
    return counts


async def points_expiry(ctx: dict[str, Any]) -> dict[str, int]:
    done = await service.expire_points()
    if done:
        log.info("points lots expired", extra={"lots": done})
    return {"lots": done}


functions: list[Any] = [membership_monthly_review, points_expiry]
cron_jobs: list[Any] = [
    # The 1st at 08:10 Asia/Shanghai; a review changes a member once a month whenever it runs.
    cron(membership_monthly_review, day=1, hour=0, minute=10, second=0, unique=True, timeout=3600),
    # Lots expire at midnight Asia/Shanghai (16:00 UTC): swept daily just after.
    cron(points_expiry, hour={16}, minute=5, second=0, unique=True, timeout=3600),
]
