"""Bench only: the claim as it was before units (a conditional UPDATE of one stock row and
the insert, in one transaction, so every claim of a template queues on that row's lock).
`haodian bench coupons` measures the claim against it; mounted with HAODIAN_BENCH_ROUTES=1."""

from __future__ import annotations

from tortoise.transactions import in_transaction

from server.coupons.errors import LimitReached, SoldOut
from server.coupons.models import BaselineStock, Coupon
from server.coupons.templates import cached_template, validity
from server.infra.clock import utcnow
from server.infra.errors import NotFound


async def create_baseline(template_id: int, remaining: int) -> None:
    await BaselineStock.create(template_id=template_id, remaining=remaining)


async def pg_claim(template_id: int, member_id: int) -> int:
    t = await cached_template(template_id)
    now = utcnow()
    valid_from, valid_until = validity(t, now)
    async with in_transaction() as conn:
        changed, _ = await conn.execute_query(
            "UPDATE coupon_baseline_stock SET remaining = remaining - 1"
            " WHERE template_id = $1 AND remaining > 0",
            [t.id],
        )
        if not changed:
            if not await BaselineStock.exists(template_id=t.id):
                raise NotFound(f"no baseline stock for template {t.id}")
            raise SoldOut("this coupon is all gone")
        held = await Coupon.filter(template_id=t.id, member_id=member_id).using_db(conn).count()
        if held >= t.per_member_limit:
            raise LimitReached("limit reached")
        coupon = await Coupon.create(
            template_id=t.id,
            member_id=member_id,
            claim_seq=held + 1,
            unit=None,
            valid_from=valid_from,
            valid_until=valid_until,
            using_db=conn,
        )
    return coupon.id
