"""`haodian worker` for membership: the monthly tier review (downgrades happen only here) and
the daily expiry of points lots past their date."""

from __future__ import annotations

import logging
from typing import Any

from arq import cron

from server.membership import birthday, cards, segments, service

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


async def birthday_packs(ctx: dict[str, Any]) -> dict[str, int]:
    counts = await birthday.give_packs()
    if counts["packs"]:
        log.info("birthday packs", extra=counts)
    return counts


async def segments_refresh(ctx: dict[str, Any]) -> dict[str, int]:
    return await segments.compute_all()


async def card_packs(ctx: dict[str, Any]) -> dict[str, int]:
    return {"packs": await cards.give_due_packs()}


functions: list[Any] = [
    membership_monthly_review,
    points_expiry,
    birthday_packs,
    segments_refresh,
    card_packs,
]
cron_jobs: list[Any] = [
    # Schedules are Asia/Shanghai (infra.jobs): the review on the 1st just after midnight,
    # lots (which expire at midnight) swept every hour, idempotently.
    cron(membership_monthly_review, day=1, hour=0, minute=10, second=0, unique=True, timeout=3600),
    cron(points_expiry, minute=5, second=0, unique=True, timeout=3600),
    # Birthdays: just after midnight, and again in the morning in case a worker was down.
    cron(birthday_packs, hour={0, 9}, minute=20, second=0, unique=True, timeout=3600),
    # RFM (incremental) and every segment, hourly.
    cron(segments_refresh, minute=40, second=0, unique=True, timeout=3600),
    # Paid cards: each running card's pack for its current 30-day slot, once.
    cron(card_packs, hour={0, 12}, minute=30, second=0, unique=True, timeout=3600),
]
