"""Takeout: an honest price from a store that delivers here, the order, and its lifecycle hooks.

The server prices every quote and every order itself (nothing the client sends is a price);
placing an order holds the store's stock and locks its coupons in the transaction that
inserts it, as pickup does. The takeout row follows its order through lifecycle hooks:

- paid: on the store's board (`new`), with an accept deadline; the outbox event that fires
  at that deadline refunds the order unless the store accepted it first;
- refunding: who asked decides whether it may happen — the shopper or the deadline only
  while the order is `new`, a clerk (a rejection) until it leaves the store, an operator at
  any time. The check is a compare-and-set on the takeout row inside the refund's own
  transaction, so an accept racing the deadline has exactly one winner;
- cancelled (never paid): its stock comes back.

Every change writes a step (the shopper's timeline) and a board event (the outbox puts it
on the store's Redis stream, which every API process's live feed reads).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tortoise.transactions import in_transaction

from server.catalog import service as catalog
from server.coupons import service as coupons
from server.infra.clock import local, utcnow
from server.infra.errors import Conflict
from server.membership import cards
from server.orders import lifecycle
from server.orders import service as orders
from server.orders.models import Order, OrderKind, OrderLine, OrderStatus
from server.outbox import service as outbox
from server.settings import Settings
from server.stores import areas
from server.stores import service as stores
from server.stores.models import Store
from server.takeout import addresses
from server.takeout.courier import LABELS
from server.takeout.models import Board, TakeoutOrder, TakeoutStep

log = logging.getLogger("haodian.takeout")

TAKEOUT = [OrderKind.TAKEOUT]
DEFAULT_PREP_MINUTES = 15  # the quote's guess until the store says how long it needs
RIDER_M_PER_MINUTE = 250  # 15 km/h through city streets

BOARD_TOPIC = "takeout.board"
ACCEPT_DUE_TOPIC = "takeout.accept_due"
MESSAGE_TOPIC = "takeout.message"
ACTIVE = (Board.NEW, Board.ACCEPTED, Board.READY, Board.DISPATCHED)
IN_STORE = (Board.NEW, Board.ACCEPTED, Board.READY)  # the goods have not left the store


def travel_minutes(distance_m: float) -> int:
    return max(1, math.ceil(distance_m / RIDER_M_PER_MINUTE))


def eta_minutes(distance_m: float, prep_minutes: int = DEFAULT_PREP_MINUTES) -> int:
    return prep_minutes + travel_minutes(distance_m)


# -- who delivers here, and the price ----------------------------------------------------------


async def stores_delivering_to(
    redis: Any, lat: float, lng: float, at: datetime | None, limit: int
) -> list[dict[str, Any]]:
    items = await stores.delivering_to(redis, lat, lng, at or utcnow(), limit)
    out = []
    for it in items:
        area = it.pop("area")
        rules = areas.fee_rules(area)
        out.append(
            {
                **it,
                "area": area.get("name", ""),
                "delivery_fee_fen": rules.fee_fen(it["distance_m"], rules.min_order_fen),
                "free_over_fen": rules.free_over_fen,
                "min_order_fen": rules.min_order_fen,
                "eta_minutes": eta_minutes(it["distance_m"]),
            }
        )
    return out


@dataclass
class Quote:
    store: Store
    area_name: str
    distance_m: float
    lines: list[orders.LineIn]
    goods_fen: int
    discount_fen: int
    packing_fee_fen: int
    delivery_fee_fen: int
    free_delivery: bool
    eta_minutes: int
    coupon_ids: list[int] = field(default_factory=list)

    @property
    def payable_fen(self) -> int:
        return self.goods_fen - self.discount_fen + self.packing_fee_fen + self.delivery_fee_fen

    def view(self) -> dict[str, Any]:
        return {
            "store_id": self.store.id,
            "goods_fen": self.goods_fen,
            "discount_fen": self.discount_fen,
            "packing_fee_fen": self.packing_fee_fen,
            "delivery_fee_fen": self.delivery_fee_fen,
            "free_delivery": self.free_delivery,
            "payable_fen": self.payable_fen,
            "lines": [
                {
                    "sku_id": ln.sku_id,
                    "name": ln.name,
                    "quantity": ln.quantity,
                    "unit_price_fen": ln.unit_price_fen,
                    "line_fen": ln.quantity * ln.unit_price_fen,
                }
                for ln in self.lines
            ],
            "distance_m": round(self.distance_m),
            "eta_minutes": self.eta_minutes,
        }


async def price(
    member_id: int,
    store_id: int,
    lat: float,
    lng: float,
    quantities: dict[int, int],
    coupon_ids: list[int],
    *,
    connection: Any = None,
) -> Quote:
    """What this cart costs delivered to (lat, lng) from this store now, or the refusal:
    TAKEOUT_NOT_OFFERED, STORE_CLOSED, OUT_OF_DELIVERY_AREA, SKU_NOT_SOLD_HERE, OUT_OF_STOCK
    (every short line), BELOW_MINIMUM (and by how much), then the coupons' own codes."""
    store = await stores.get_store(store_id)
    if not store.takeout:
        raise Conflict(f"store {store_id} does not deliver", code="TAKEOUT_NOT_OFFERED")
    state = stores.state_of(store)
    if store.closed or not state.open_now:
        raise Conflict(
            f"{store.name} is closed now",
            code="STORE_CLOSED",
            details={"next_open_at": None if store.closed else local(state.next_open_at)},
        )
    area, distance = stores.delivery_area(store, lat, lng)
    lines = await orders.store_lines(store_id, quantities)
    short = await catalog.short_lines(store_id, quantities)
    if short:
        raise Conflict(
            f"{len(short)} item(s) are short at this store",
            code="OUT_OF_STOCK",
            details={"lines": short},
        )
    goods = sum(ln.quantity * ln.unit_price_fen for ln in lines)
    rules = areas.fee_rules(area)
    if goods < rules.min_order_fen:
        missing_fen = rules.min_order_fen - goods
        raise Conflict(
            f"delivery from this store starts at {rules.min_order_fen} fen of goods; "
            f"add {missing_fen} fen more",
            code="BELOW_MINIMUM",
            details={"min_order_fen": rules.min_order_fen, "missing_fen": missing_fen},
        )
    lock = await coupons.quote_coupons(member_id, coupon_ids, lines, store_id, connection)
    card = await cards.current(member_id, conn=connection)
    free = bool(card and card.plan.free_delivery)
    return Quote(
        store=store,
        area_name=str(area.get("name", "")),
        distance_m=distance,
        lines=lines,
        goods_fen=goods,
        discount_fen=lock.discount_fen,
        packing_fee_fen=store.packing_fee_fen,
        delivery_fee_fen=0 if free else rules.fee_fen(distance, goods),
        free_delivery=free,
        eta_minutes=eta_minutes(distance),
        coupon_ids=list(coupon_ids),
    )


async def quote(
    member_id: int,
    store_id: int,
    address_id: int,
    quantities: dict[int, int],
    coupon_ids: list[int],
) -> Quote:
    a = await addresses.get_address(member_id, address_id)
    return await price(member_id, store_id, a.lat, a.lng, quantities, coupon_ids)


async def place_order(
    settings: Settings,
    member_id: int,
    store_id: int,
    address_id: int,
    quantities: dict[int, int],
    coupon_ids: list[int],
    note: str = "",
) -> Order:
    """Price it again here, then hold the stock, lock the coupons, insert the order and its
    takeout row in one transaction: a refusal anywhere leaves nothing behind."""
    a = await addresses.get_address(member_id, address_id)
    q = await price(member_id, store_id, a.lat, a.lng, quantities, coupon_ids)
    order_no = orders.new_order_no()
    async with in_transaction() as conn:
        await catalog.hold_store_stock(store_id, quantities, using_db=conn)
        lock = await coupons.lock_coupons_for_order(
            member_id, coupon_ids, q.lines, store_id, order_no, conn
        )
        order = await orders.create_order(
            kind=OrderKind.TAKEOUT,
            member_id=member_id,
            store_id=store_id,
            lines=q.lines,
            discount_fen=lock.discount_fen,
            fee_fen=q.packing_fee_fen + q.delivery_fee_fen,
            order_no=order_no,
            pay_timeout=timedelta(seconds=settings.pay_timeout_seconds),
            actor=f"member:{member_id}",
            connection=conn,
        )
        t = await TakeoutOrder.create(
            order_id=order.id,
            store_id=store_id,
            contact=a.contact,
            phone_sealed=a.phone_sealed,
            phone_masked=a.phone_masked,
            address_text=a.text,
            lat=a.lat,
            lng=a.lng,
            distance_m=round(q.distance_m),
            area_name=q.area_name,
            delivery_fee_fen=q.delivery_fee_fen,
            packing_fee_fen=q.packing_fee_fen,
            note=note,
            using_db=conn,
        )
        await step(t, "placed", f"member:{member_id}", conn)
    return order


# -- steps, views and events -------------------------------------------------------------------


async def step(t: TakeoutOrder, name: str, actor: str, conn: Any, detail: str = "") -> None:
    await TakeoutStep.create(
        takeout_id=t.id, step=name, detail=detail[:255], actor=actor, using_db=conn
    )


async def announce(t: TakeoutOrder, order_no: str, kind: str, conn: Any) -> None:
    """After the commit, every live board of the store hears of this order (`kind`: new or
    changed) and the shopper gets a message where the step warrants one."""
    await outbox.emit(
        BOARD_TOPIC,
        {"order_no": order_no, "store_id": t.store_id, "type": kind},  # type: ignore[attr-defined]
        connection=conn,
    )


async def tell_shopper(order: Order, what: str, conn: Any, detail: str = "") -> None:
    await outbox.emit(
        MESSAGE_TOPIC,
        {"order_no": order.order_no, "member": order.member_id, "what": what, "detail": detail},  # type: ignore[attr-defined]
        connection=conn,
        key=f"takeout-msg:{order.order_no}:{what}",
    )


def courier_label(t: TakeoutOrder) -> str | None:
    if t.courier_status is None:
        return None
    return LABELS.get(t.courier_status, str(t.courier_status))


async def board_item(t: TakeoutOrder, order: Order | None = None) -> dict[str, Any]:
    order = order or await Order.get(id=t.order_id)  # type: ignore[attr-defined]
    lines = await OrderLine.filter(order_id=order.id).order_by("id")
    return {
        "order_no": order.order_no,
        "store_id": t.store_id,  # type: ignore[attr-defined]
        "status": t.status.value,
        "paid_fen": order.paid_fen,
        "contact": t.contact,
        "phone": t.phone_masked,
        "address": t.address_text,
        "distance_m": t.distance_m,
        "note": t.note,
        "lines": [{"name": ln.name, "quantity": ln.quantity} for ln in lines],
        "paid_at": local(order.paid_at),
        "accept_by": local(t.accept_by),
        "eta_at": local(t.eta_at),
        "courier": t.courier.value if t.courier else None,
        "courier_status": courier_label(t),
        "rider_name": t.rider_name,
        "flag": t.flag,
    }


async def track(order: Order) -> dict[str, Any] | None:
    """The shopper's view of a takeout order (shown in GET /orders/{no})."""
    t = await TakeoutOrder.get_or_none(order_id=order.id).prefetch_related("store")
    if t is None:
        return None
    steps = await TakeoutStep.filter(takeout_id=t.id).order_by("id")
    return {
        "status": t.status.value,
        "store_name": t.store.name,
        "contact": t.contact,
        "phone": t.phone_masked,
        "address": t.address_text,
        "note": t.note,
        "delivery_fee_fen": t.delivery_fee_fen,
        "packing_fee_fen": t.packing_fee_fen,
        "accept_by": local(t.accept_by),
        "eta_at": local(t.eta_at),
        "courier": t.courier.value if t.courier else None,
        "courier_status": courier_label(t),
        "rider_name": t.rider_name,
        "rider_phone": t.rider_phone_masked,
        "timeline": [
            {"step": s.step, "detail": s.detail, "at": local(s.created_at)} for s in steps
        ],
    }


lifecycle.view(OrderKind.TAKEOUT, "takeout")(track)


# -- lifecycle hooks ---------------------------------------------------------------------------


async def _row(order: Order, conn: Any) -> TakeoutOrder | None:
    return await TakeoutOrder.filter(order_id=order.id).select_for_update().using_db(conn).first()


@lifecycle.on(OrderStatus.PAID, kinds=TAKEOUT)
async def _on_the_board(move: lifecycle.Move) -> None:
    """Paid: the store sees it now and has HAODIAN_TAKEOUT_ACCEPT_MINUTES to accept it."""
    t = await _row(move.order, move.conn)
    if t is None:
        return
    minutes = Settings().takeout_accept_minutes
    accept_by = utcnow() + timedelta(minutes=minutes)
    await (
        TakeoutOrder.filter(id=t.id)
        .using_db(move.conn)
        .update(status=Board.NEW, accept_by=accept_by)
    )
    await step(t, "paid", move.actor, move.conn)
    await announce(t, move.order.order_no, "new", move.conn)
    await outbox.emit(
        ACCEPT_DUE_TOPIC,
        {"order_no": move.order.order_no},
        connection=move.conn,
        key=f"takeout-accept-due:{move.order.order_no}",
        delay=timedelta(minutes=minutes),
    )


@lifecycle.on(OrderStatus.CANCELLED, kinds=TAKEOUT)
async def _unpaid_closed(move: lifecycle.Move) -> None:
    """Never paid: the held units go back on the shelf (coupons and tenders come back
    through their own hooks)."""
    t = await _row(move.order, move.conn)
    if t is None or t.status != Board.UNPAID:
        return
    await TakeoutOrder.filter(id=t.id).using_db(move.conn).update(status=Board.CANCELLED)
    await _stock_back(move.order, move.conn)
    await step(t, "cancelled", move.actor, move.conn, move.reason)


# Who may have a paid takeout order refunded, from which board states.
_MAY_REFUND: dict[str, tuple[Board, ...]] = {
    "member": (Board.NEW,),
    "system": (Board.NEW,),
    "staff": IN_STORE,
    "operator": (*ACTIVE, Board.DELIVERED),
}


@lifecycle.on(OrderStatus.REFUNDING, kinds=TAKEOUT)
async def _refund_allowed(move: lifecycle.Move) -> None:
    """A refund of a paid takeout order happens only from the board states its asker may
    refund from; the takeout row moves in the same compare-and-set (see the module doc)."""
    if move.previous == OrderStatus.CANCELLED:
        return  # paid after it was closed: it holds nothing any more
    conn = move.conn
    t = await _row(move.order, conn)
    if t is None:
        return
    who = move.actor.split(":", 1)[0]
    allowed = _MAY_REFUND.get(who, ())
    if t.status not in allowed:
        if t.status in (Board.ACCEPTED, Board.READY, Board.DISPATCHED, Board.DELIVERED):
            raise Conflict(
                f"the store has accepted order {move.order.order_no}; ask the store to cancel",
                code="ORDER_ACCEPTED",
                details={"status": t.status.value},
            )
        raise Conflict(
            f"order {move.order.order_no} is {t.status.value} on the board",
            code="ORDER_STATE_CONFLICT",
            details={"status": t.status.value},
        )
    if t.status == Board.DELIVERED:
        await step(t, "refunded", move.actor, conn, move.reason)
        return
    to = Board.REJECTED if who == "staff" else Board.CANCELLED
    changed = (
        await TakeoutOrder.filter(id=t.id, status=t.status)
        .using_db(conn)
        .update(status=to, flag=None)
    )
    if not changed:  # pragma: no cover - the row is locked above
        raise Conflict("the order changed meanwhile", code="ORDER_STATE_CONFLICT")
    if t.status in IN_STORE:
        await _stock_back(move.order, conn)
    # Refused or not served in time: the shopper did nothing wrong, their coupons come back.
    await coupons.give_back_coupons_of_order(move.order.order_no, conn)
    if t.status == Board.DISPATCHED and t.waybill_id:
        await outbox.emit(
            "takeout.cancel_waybill",
            {"order_no": move.order.order_no, "waybill_id": t.waybill_id, "n": t.dispatch_no},
            connection=conn,
        )
    await step(t, to.value, move.actor, conn, move.reason)
    await announce(t, move.order.order_no, "changed", conn)
    await tell_shopper(move.order, "cancelled", conn, move.reason)


async def _stock_back(order: Order, conn: Any) -> None:
    lines = await OrderLine.filter(order_id=order.id).using_db(conn)
    await catalog.release_store_stock(
        order.store_id,  # type: ignore[attr-defined]
        {ln.sku_id: ln.quantity for ln in lines if ln.sku_id is not None},  # type: ignore[attr-defined]
        using_db=conn,
    )
