"""Store pickup: order from a store's menu in the mini-program, collect at the counter.

Placing the order holds the store's stock and locks the coupons in the same
transaction that inserts the order; cancelling an unpaid order (by the shopper or the
timeout) gives both back in the transaction that cancels it.
"""

from __future__ import annotations

from datetime import timedelta

from tortoise.transactions import in_transaction

from server.catalog import service as catalog
from server.coupons import service as coupons
from server.identity import service as identity
from server.infra.clock import utcnow
from server.infra.errors import Conflict, Forbidden, NotFound
from server.orders import lifecycle, service
from server.orders.models import Order, OrderKind, OrderLine, OrderStatus
from server.settings import Settings
from server.stores import service as stores


async def place_pickup_order(
    settings: Settings,
    member_id: int,
    store_id: int,
    quantities: dict[int, int],
    coupon_ids: list[int],
) -> Order:
    """Price the items at this store, hold its stock, lock the coupons, insert the order:
    all in one transaction, so a refusal anywhere leaves nothing behind."""
    await stores.require_store(store_id, "pickup")
    lines = await service.store_lines(store_id, quantities)
    order_no = service.new_order_no()
    async with in_transaction() as conn:
        await catalog.hold_store_stock(store_id, quantities, using_db=conn)
        lock = await coupons.lock_coupons_for_order(
            member_id, coupon_ids, lines, store_id, order_no, conn
        )
        return await service.create_order(
            kind=OrderKind.PICKUP,
            member_id=member_id,
            store_id=store_id,
            lines=lines,
            discount_fen=lock.discount_fen,
            order_no=order_no,
            pay_timeout=timedelta(seconds=settings.pay_timeout_seconds),
            actor=f"member:{member_id}",
            connection=conn,
        )


@lifecycle.on(OrderStatus.CANCELLED, kinds=[OrderKind.PICKUP])
async def _return_store_stock(move: lifecycle.Move) -> None:
    """The held units go back on the shelf, in the transaction that cancels the order."""
    order = move.order
    if order.store_id is None:  # type: ignore[attr-defined]
        return
    lines = await OrderLine.filter(order_id=order.id).using_db(move.conn)
    await catalog.release_store_stock(
        order.store_id,  # type: ignore[attr-defined]
        {ln.sku_id: ln.quantity for ln in lines if ln.sku_id is not None},  # type: ignore[attr-defined]
        using_db=move.conn,
    )


@lifecycle.on(OrderStatus.PAID, kinds=[OrderKind.PICKUP])
async def _give_pickup_code(move: lifecycle.Move) -> None:
    """A paid pickup order gets the code the shopper shows at the counter."""
    code = service.new_pickup_code()
    await Order.filter(id=move.order.id).using_db(move.conn).update(pickup_code=code)
    move.order.pickup_code = code


async def complete_pickup(order_no: str, *, staff_id: int, pickup_code: str) -> Order:
    """A clerk of the order's store hands it over; the shopper's pickup code must match."""
    order = await Order.get_or_none(order_no=order_no)
    if order is None or order.kind != OrderKind.PICKUP:
        raise NotFound(f"no pickup order {order_no}", code="ORDER_NOT_FOUND")
    if not await identity.staff_works_at(staff_id, order.store_id):  # type: ignore[attr-defined]
        raise Forbidden("this order belongs to another store", code="STORE_NOT_ALLOWED")
    if order.status != OrderStatus.PAID:
        raise Conflict(f"order {order_no} is {order.status}", code="ORDER_STATE_CONFLICT")
    if not order.pickup_code or pickup_code != order.pickup_code:
        raise Conflict("the pickup code does not match", code="PICKUP_CODE_MISMATCH")
    return await service.transition(
        order_no,
        OrderStatus.COMPLETED,
        actor=f"staff:{staff_id}",
        reason="picked up",
        updates={"completed_at": utcnow()},
    )
