"""Order rules shared by every scenario: numbers, creation, the state machine, events.

Every status change is a compare-and-set UPDATE (`WHERE status IN allowed-from`) plus an
event row in one transaction, so two racing actors (a payment notification and the
timeout close, two refund clicks) produce exactly one outcome and an illegal change is
an error, never a silent overwrite. The scenario's lifecycle hooks run in that same
transaction (`server.orders.lifecycle`).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.transactions import in_transaction

from server.infra.clock import utcnow
from server.infra.errors import Conflict, NotFound, ValidationFailed
from server.orders import lifecycle
from server.orders.models import Order, OrderEvent, OrderKind, OrderLine, OrderStatus

S = OrderStatus

# to-status -> the statuses it may come from.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    # Paid from cancelled only when the kind's revive hook took back what the order needs
    # (payments asks it; see lifecycle.try_revive).
    S.PAID: frozenset({S.PENDING_PAYMENT, S.CANCELLED}),
    S.CANCELLED: frozenset({S.PENDING_PAYMENT}),
    S.COMPLETED: frozenset({S.PAID}),
    # A refund starts from a paid or completed order, or from a cancelled one that was
    # paid after it was closed (the money must go back).
    S.REFUNDING: frozenset({S.PAID, S.COMPLETED, S.CANCELLED}),
    S.REFUNDED: frozenset({S.REFUNDING}),
}

DEFAULT_PAY_TIMEOUT = timedelta(minutes=15)
ORDER_NO_MAX = 32  # the column, and WeChat Pay's out_trade_no


def new_order_no(now: datetime | None = None) -> str:
    """Time-ordered, unique with overwhelming odds (the DB enforces it), valid out_trade_no."""
    now = now or utcnow()
    return f"{now:%y%m%d%H%M%S}{now.microsecond // 1000:03d}{secrets.randbelow(10**8):08d}"


def new_pickup_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


@dataclass(frozen=True)
class LineIn:
    sku_id: int | None
    name: str
    quantity: int
    unit_price_fen: int


async def store_lines(store_id: int, quantities: dict[int, int]) -> list[LineIn]:
    """The lines of a cart priced at this store now (its override or the list price); a SKU
    the store does not sell now refuses the cart (409 SKU_NOT_SOLD_HERE)."""
    from server.catalog import service as catalog

    prices = await catalog.store_menu_prices(store_id, quantities)
    missing = sorted(set(quantities) - set(prices))
    if missing:
        raise Conflict(
            f"this store does not sell SKU {missing[0]} now",
            code="SKU_NOT_SOLD_HERE",
            details={"sku_ids": missing},
        )
    return [
        LineIn(sku_id=s, name=prices[s][0], quantity=q, unit_price_fen=prices[s][1])
        for s, q in quantities.items()
    ]


async def create_order(
    *,
    kind: OrderKind,
    member_id: int,
    lines: Iterable[LineIn],
    store_id: int | None = None,
    discount_fen: int = 0,
    fee_fen: int = 0,
    order_no: str | None = None,
    source: str | None = None,
    pay_timeout: timedelta = DEFAULT_PAY_TIMEOUT,
    pay_deadline: datetime | None = None,
    actor: str = "system",
    connection: Any = None,
) -> Order:
    """Insert an order with its lines and a 'created' event (in the caller's transaction
    when `connection` is given). The pay deadline is `pay_deadline`, else now + pay_timeout."""
    lines = list(lines)
    if not lines:
        raise ValidationFailed("an order needs at least one item")
    for line in lines:
        if line.quantity <= 0 or line.unit_price_fen < 0:
            raise ValidationFailed("quantities must be positive and prices not negative")
    goods = sum(line.quantity * line.unit_price_fen for line in lines)
    if discount_fen < 0 or fee_fen < 0 or discount_fen > goods + fee_fen:
        raise ValidationFailed("the discount cannot exceed what the order costs")
    payable = goods - discount_fen + fee_fen

    async def _insert(conn: Any) -> Order:
        order = await Order.create(
            order_no=order_no or new_order_no(),
            kind=kind,
            member_id=member_id,
            store_id=store_id,
            goods_fen=goods,
            discount_fen=discount_fen,
            fee_fen=fee_fen,
            payable_fen=payable,
            pay_deadline=pay_deadline or utcnow() + pay_timeout,
            source=source,
            using_db=conn,
        )
        await OrderLine.bulk_create(
            [
                OrderLine(
                    order=order,
                    sku_id=line.sku_id,
                    name=line.name,
                    quantity=line.quantity,
                    unit_price_fen=line.unit_price_fen,
                    line_fen=line.quantity * line.unit_price_fen,
                )
                for line in lines
            ],
            using_db=conn,
        )
        await OrderEvent.create(
            order=order,
            from_status=None,
            to_status=S.PENDING_PAYMENT,
            actor=actor,
            reason="created",
            using_db=conn,
        )
        return order

    if connection is not None:
        return await _insert(connection)
    async with in_transaction() as conn:
        return await _insert(conn)


async def get_order(order_no: str, member_id: int | None = None, *, redis: Any = None) -> Order:
    """The order; with `redis`, one its scenario has promised but not written yet is written
    now (lifecycle.pending_orders), so a shopper can pay right after the answer."""
    if not 0 < len(order_no) <= ORDER_NO_MAX:
        raise NotFound(f"no order {order_no[:40]}", code="ORDER_NOT_FOUND")
    query = Order.filter(order_no=order_no)
    if member_id is not None:
        query = query.filter(member_id=member_id)
    order = await query.first()
    if order is None and redis is not None and await lifecycle.write_pending(order_no, redis):
        order = await query.first()
    if order is None:
        raise NotFound(f"no order {order_no}", code="ORDER_NOT_FOUND")
    return order


async def transition(
    order_no: str,
    to: OrderStatus,
    *,
    actor: str,
    reason: str = "",
    only_from: Iterable[OrderStatus] | None = None,
    updates: dict[str, Any] | None = None,
    connection: Any = None,
) -> Order:
    """Move an order to `to` if its current status allows it; raise ORDER_STATE_CONFLICT if not.

    `only_from` narrows the allowed sources further (e.g. a refund of a cancelled order).
    """
    allowed = set(TRANSITIONS[to])
    if only_from is not None:
        allowed &= set(only_from)

    async def _apply(conn: Any) -> Order:
        current = await Order.filter(order_no=order_no).using_db(conn).first()
        if current is None:
            raise NotFound(f"no order {order_no}", code="ORDER_NOT_FOUND")
        changed = (
            await Order.filter(id=current.id, status__in=list(allowed))
            .using_db(conn)
            .update(status=to, **(updates or {}))
        )
        if not changed:
            fresh = await Order.filter(id=current.id).using_db(conn).first()
            status = fresh.status if fresh else current.status
            raise Conflict(
                f"order {order_no} is {status}; it cannot become {to.value}",
                code="ORDER_STATE_CONFLICT",
                details={"status": str(status), "wanted": to.value},
            )
        await OrderEvent.create(
            order_id=current.id,
            from_status=current.status,
            to_status=to,
            actor=actor,
            reason=reason,
            using_db=conn,
        )
        order = await Order.filter(id=current.id).using_db(conn).first()
        assert order is not None
        await lifecycle.run(
            lifecycle.Move(
                order=order,
                previous=OrderStatus(current.status),
                to=to,
                actor=actor,
                reason=reason,
                conn=conn,
            )
        )
        return order

    if connection is not None:
        return await _apply(connection)
    async with in_transaction() as conn:
        return await _apply(conn)


async def member_orders(member_id: int, limit: int = 50) -> list[Order]:
    """A shopper's latest orders, newest first."""
    return await Order.filter(member_id=member_id).order_by("-id").limit(limit)


async def order_lines(order: Order) -> list[OrderLine]:
    return await OrderLine.filter(order_id=order.id).order_by("id")


async def order_events(order: Order) -> list[OrderEvent]:
    # Events never precede their order; the bound (a day of clock skew spared) keeps the read
    # to the order's month partitions.
    return await OrderEvent.filter(
        order_id=order.id, created_at__gte=order.created_at - timedelta(days=1)
    ).order_by("id")
