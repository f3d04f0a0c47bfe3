"""Coupons on online orders: pricing rules, locks inside the order's transaction, and the
lifecycle hooks that use or release them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from server.coupons.errors import AlreadyUsed, StoreNotAllowed
from server.coupons.models import (
    Channel,
    Coupon,
    CouponKind,
    CouponStatus,
    CouponTemplate,
)
from server.coupons.templates import yuan
from server.coupons.wallet import coupon_status
from server.infra.clock import utcnow
from server.infra.errors import Conflict, NotFound
from server.orders import lifecycle
from server.orders.models import OrderStatus


@dataclass
class PricedLine:
    sku_id: int | None
    quantity: int
    unit_price_fen: int
    category_id: int | None = None

    @property
    def line_fen(self) -> int:
        return self.quantity * self.unit_price_fen


@dataclass
class CouponLock:
    """What lock_coupons_for_order took: the total and each coupon's share."""

    discount_fen: int
    per_coupon: dict[int, int] = field(default_factory=dict)  # coupon id -> fen


def _field(line: Any, name: str, default: Any = None) -> Any:
    if isinstance(line, dict):
        return line.get(name, default)
    return getattr(line, name, default)


def template_discount(t: CouponTemplate, lines: list[PricedLine], already_fen: int = 0) -> int:
    """What one coupon of `t` takes off these lines (after `already_fen` from other coupons).

    Raises COUPON_NOT_APPLICABLE when the order does not qualify (threshold not met, no
    eligible item)."""

    def eligible(line: PricedLine) -> bool:
        if t.sku_ids and line.sku_id in t.sku_ids:
            return True
        if t.category_ids and line.category_id in t.category_ids:
            return True
        return not t.sku_ids and not t.category_ids

    base = sum(line.line_fen for line in lines if eligible(line))
    goods = sum(line.line_fen for line in lines)
    room = max(0, goods - already_fen)
    if base <= 0:
        raise Conflict(f"“{t.name}” applies to none of these items", code="COUPON_NOT_APPLICABLE")
    if t.kind == CouponKind.AMOUNT_OFF:
        off = min(t.amount_off_fen or 0, base)
    elif t.kind == CouponKind.PERCENT_OFF:
        off = base * (t.percent_off or 0) // 100
        if t.max_off_fen:
            off = min(off, t.max_off_fen)
    elif t.kind == CouponKind.THRESHOLD:
        if base < (t.threshold_fen or 0):
            raise Conflict(
                f"“{t.name}” needs {yuan(t.threshold_fen or 0)} of eligible items "
                f"(this order has {yuan(base)})",
                code="COUPON_NOT_APPLICABLE",
            )
        off = t.amount_off_fen or 0
    else:
        prices = [line.unit_price_fen for line in lines if line.sku_id == t.free_sku_id]
        if not prices:
            raise Conflict(
                f"“{t.name}” needs its free item in the order", code="COUPON_NOT_APPLICABLE"
            )
        off = max(prices)
    return max(0, min(off, room))


async def _priced_lines(lines: Iterable[Any]) -> list[PricedLine]:
    out = [
        PricedLine(
            sku_id=_field(line, "sku_id"),
            quantity=int(_field(line, "quantity", 1)),
            unit_price_fen=int(_field(line, "unit_price_fen", 0)),
            category_id=_field(line, "category_id"),
        )
        for line in lines
    ]
    missing = {pl.sku_id for pl in out if pl.sku_id and pl.category_id is None}
    if missing:
        from server.catalog.models import Sku

        cats = dict(
            await Sku.filter(id__in=list(missing)).values_list("id", "product__category_id")
        )
        for pl in out:
            if pl.category_id is None and pl.sku_id in cats:
                pl.category_id = cats[pl.sku_id]
    return out


async def quote_coupons(
    member_id: int,
    coupon_ids: list[int],
    lines: Iterable[Any],
    store_id: int | None,
    connection: Any = None,
) -> CouponLock:
    """Check the coupons fit this order and price them, writing nothing."""
    ids = list(dict.fromkeys(coupon_ids))
    if not ids:
        return CouponLock(discount_fen=0)
    priced = await _priced_lines(lines)
    coupons = {
        c.id: c
        for c in await Coupon.filter(id__in=ids, member_id=member_id)
        .using_db(connection)
        .prefetch_related("template")
    }
    now = utcnow()
    lock = CouponLock(discount_fen=0)
    for cid in ids:
        c = coupons.get(cid)
        if c is None:
            raise NotFound(f"you have no coupon {cid}", code="COUPON_NOT_FOUND")
        t = c.template
        state = coupon_status(c, now)
        if state == "used":
            raise AlreadyUsed(f"coupon {cid} has already been used")
        if state == "locked":
            raise Conflict(f"coupon {cid} is held by another unpaid order", code="COUPON_LOCKED")
        if state == "void":
            raise Conflict(f"coupon {cid} was taken back", code="COUPON_VOID")
        if state == "expired":
            raise Conflict(f"coupon {cid} has expired", code="COUPON_EXPIRED")
        if now < c.valid_from:
            raise Conflict(f"coupon {cid} is not valid yet", code="COUPON_NOT_YET_VALID")
        if t.channel == Channel.STORE:
            raise Conflict(f"coupon {cid} is for use in stores only", code="COUPON_NOT_ONLINE")
        if t.store_ids and store_id not in t.store_ids:
            raise StoreNotAllowed(f"coupon {cid} cannot be used at this store")
        off = template_discount(t, priced, lock.discount_fen)
        lock.per_coupon[cid] = off
        lock.discount_fen += off
    return lock


async def lock_coupons_for_order(
    member_id: int,
    coupon_ids: list[int],
    lines: Iterable[Any],
    store_id: int | None,
    order_no: str,
    connection: Any,
) -> CouponLock:
    """Price and lock the member's coupons for an order about to be created (call it inside the
    order's transaction, with the order number you will pass to create_order). Each coupon
    goes unused -> locked by a conditional UPDATE, so two orders cannot take one coupon."""
    lock = await quote_coupons(member_id, coupon_ids, lines, store_id, connection)
    for cid, off in lock.per_coupon.items():
        changed = (
            await Coupon.filter(id=cid, member_id=member_id, status=CouponStatus.UNUSED)
            .using_db(connection)
            .update(status=CouponStatus.LOCKED, order_no=order_no, discount_fen=off)
        )
        if not changed:
            raise Conflict(f"coupon {cid} was just used by another order", code="COUPON_LOCKED")
    return lock


@lifecycle.on(OrderStatus.PAID)
async def mark_coupons_used_for_paid_order(move: lifecycle.Move) -> None:
    """The order was paid: its locked coupons become used (online)."""
    await (
        Coupon.filter(order_no=move.order.order_no, status=CouponStatus.LOCKED)
        .using_db(move.conn)
        .update(
            status=CouponStatus.USED,
            used_at=utcnow(),
            used_channel="online",
            used_store_id=move.order.store_id,  # type: ignore[attr-defined]
        )
    )


async def coupons_for_order(order_no: str) -> list[dict[str, Any]]:
    """Each coupon an order carries and what it took off."""
    rows = await Coupon.filter(order_no=order_no).prefetch_related("template")
    return [
        {
            "coupon_id": c.id,
            "name": c.template.name,
            "discount_fen": c.discount_fen,
            "status": c.status.value,
        }
        for c in rows
    ]


@lifecycle.on(OrderStatus.CANCELLED)
async def release_coupons_of_cancelled_order(move: lifecycle.Move) -> None:
    """In the transaction that cancels an unpaid order: its coupons come back."""
    await (
        Coupon.filter(order_no=move.order.order_no, status=CouponStatus.LOCKED)
        .using_db(move.conn)
        .update(status=CouponStatus.UNUSED, order_no=None, discount_fen=None)
    )


async def give_back_coupons_of_order(order_no: str, connection: Any) -> int:
    """The order was refunded before the shopper got anything (a store rejected it): its
    coupons are unused again, in the refund's transaction. A scenario decides when."""
    return await (
        Coupon.filter(order_no=order_no, status=CouponStatus.USED, used_channel="online")
        .using_db(connection)
        .update(
            status=CouponStatus.UNUSED,
            order_no=None,
            discount_fen=None,
            used_at=None,
            used_channel=None,
            used_store_id=None,
        )
    )
