"""Coupons another domain gives for one fact: a group-buy voucher, a tier benefit, a
birthday gift, a points reward. Each takes a unit of its template like any coupon."""

from __future__ import annotations

from typing import Any

from tortoise.exceptions import IntegrityError

from server.coupons import stock
from server.coupons.errors import AlreadyUsed, SoldOut
from server.coupons.models import Channel, Coupon, CouponKind, CouponStatus, CouponTemplate
from server.coupons.templates import create_template, validity
from server.infra.clock import utcnow
from server.infra.errors import Unavailable
from server.infra.redis import shared_scripts


async def create_voucher_template(
    *, name: str, sku_id: int, sku_name: str, store_ids: list[int], total: int, valid_days: int
) -> CouponTemplate:
    """A store-only "one free item" template that is never offered in the coupon centre:
    what a group-buy voucher is, so live codes, store-scoped write-off and stats apply."""
    return await create_template(
        {
            "name": name[:64],
            "kind": CouponKind.FREE_ITEM,
            "free_sku_id": sku_id,
            "free_item_name": sku_name[:64],
            "total": total,
            "per_member_limit": total,
            "valid_days": valid_days,
            "channel": Channel.STORE,
            "store_ids": store_ids,
            "in_center": False,
            "granted_only": True,
        }
    )


async def grant_coupon(template_id: int, member_id: int, ref: str, connection: Any) -> int:
    """Give a member one coupon of the template for the fact `ref`, inside the caller's
    transaction; granting the same `ref` again returns the first coupon's id.

    The unit comes from Redis by the request `grant:<ref>`, so a grant whose transaction
    rolled back and is tried again takes the same unit, not a second one."""
    existing = await Coupon.filter(grant_ref=ref).using_db(connection).first()
    if existing is not None:
        return existing.id
    t = await CouponTemplate.get(id=template_id).using_db(connection)
    valid_from, valid_until = validity(t, utcnow())
    for attempt in range(3):
        request = f"grant:{ref}" if attempt == 0 else f"grant:{ref}:{attempt}"
        units = (await stock.take_units(shared_scripts(), t, 1, request)).all()
        if not units:
            raise SoldOut(f"coupon template {template_id} has no units left")
        try:
            async with connection._in_transaction() as sp:
                coupon = await Coupon.create(
                    template_id=template_id,
                    member_id=member_id,
                    grant_ref=ref,
                    unit=units[0],
                    valid_from=valid_from,
                    valid_until=valid_until,
                    using_db=sp,
                )
            return coupon.id
        except IntegrityError:
            again = await Coupon.filter(grant_ref=ref).using_db(connection).first()
            if again is not None:  # the same grant, made by a concurrent transaction
                return again.id
            # else Redis handed this unit out twice after a re-warm: take another
    raise Unavailable("coupon stock is being reloaded; try again", code="TRY_AGAIN")


async def void_coupon(coupon_id: int, connection: Any) -> None:
    """Take back an unused coupon (its reason went away, e.g. the order was refunded); a coupon
    already used cannot be taken back: COUPON_ALREADY_USED."""
    changed = (
        await Coupon.filter(id=coupon_id, status__in=[CouponStatus.UNUSED, CouponStatus.LOCKED])
        .using_db(connection)
        .update(status=CouponStatus.VOID)
    )
    if changed:
        return
    c = await Coupon.filter(id=coupon_id).using_db(connection).first()
    if c is not None and c.status == CouponStatus.USED:
        raise AlreadyUsed("the voucher of this order has already been used")


async def count_void(template_id: int) -> int:
    return await Coupon.filter(template_id=template_id, status=CouponStatus.VOID).count()
