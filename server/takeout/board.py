"""The store's side of takeout: the order board, the clerk's actions, the courier's callbacks.

Every action is a compare-and-set on the takeout row (`WHERE status IN allowed`), so two
clerks tapping at once, or a clerk and the accept deadline, give one outcome and the other
sees a 409 saying what happened. The live feed is one Redis stream per store
(`{takeout}:board:<store id>`, one hash tag so one XREAD follows all of a clerk's stores on
a cluster too): the outbox writes to it after each commit, and any API process's
Server-Sent Events connection reads from it, resuming from Last-Event-ID.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import orjson
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from server.identity import service as identity
from server.identity.sealing import mask_phone
from server.infra.clock import utcnow
from server.infra.errors import AppError, Conflict, Forbidden, NotFound
from server.orders import service as orders
from server.orders.models import Order, OrderKind, OrderLine, OrderStatus
from server.outbox import service as outbox
from server.payments import service as payments
from server.settings import Settings
from server.stores.models import Store
from server.takeout import addresses, courier
from server.takeout.models import Board, Courier, CourierCallback, TakeoutOrder
from server.takeout.service import (
    ACCEPT_DUE_TOPIC,
    ACTIVE,
    BOARD_TOPIC,
    MESSAGE_TOPIC,
    announce,
    board_item,
    step,
    tell_shopper,
    travel_minutes,
)

log = logging.getLogger("haodian.takeout.board")

STREAM_TAG = "{takeout}"
STREAM_MAXLEN = 1000  # per store: hours of orders; a board that was away longer reloads


def stream_key(store_id: int) -> str:
    return f"{STREAM_TAG}:board:{store_id}"


# -- reading the board -------------------------------------------------------------------------


async def clerk_stores(staff_id: int, store_id: int | None = None) -> list[int]:
    mine = sorted(await identity.staff_store_ids(staff_id))
    if store_id is None:
        return mine
    if store_id not in mine:
        raise Forbidden("you do not work at this store", code="STORE_NOT_ALLOWED")
    return [store_id]


async def cursor(redis: Any, store_ids: list[int]) -> str:
    """The newest entry id of these stores' streams: the feed resumes after it."""
    newest = "0-0"
    for sid in store_ids:
        last = await redis.xrevrange(stream_key(sid), count=1)
        if last and _later(last[0][0], newest):
            newest = last[0][0]
    return newest


def _later(a: str, b: str) -> bool:
    ams, _, aseq = a.partition("-")
    bms, _, bseq = b.partition("-")
    return (int(ams), int(aseq or 0)) > (int(bms), int(bseq or 0))


async def board(
    redis: Any, staff_id: int, status: str, store_id: int | None, limit: int
) -> dict[str, Any]:
    store_ids = await clerk_stores(staff_id, store_id)
    at = await cursor(redis, store_ids)  # read before the rows: nothing falls in between
    wanted = list(ACTIVE) if status == "active" else [Board(status)]
    rows = (
        await TakeoutOrder.filter(
            store_id__in=store_ids, status__in=wanted, order__paid_at__isnull=False
        )
        .order_by("-id")
        .limit(limit)
        .prefetch_related("order")
    )
    return {"items": [await board_item(t, t.order) for t in rows], "cursor": at}


async def _clerk_order(staff_id: int, order_no: str) -> tuple[Order, TakeoutOrder]:
    order = await Order.get_or_none(order_no=order_no) if len(order_no) <= 32 else None
    t = await TakeoutOrder.get_or_none(order_id=order.id) if order else None
    if order is None or t is None or order.kind != OrderKind.TAKEOUT:
        raise NotFound(f"no takeout order {order_no[:40]}", code="ORDER_NOT_FOUND")
    if not await identity.staff_works_at(staff_id, t.store_id):  # type: ignore[attr-defined]
        raise Forbidden("this order belongs to another store", code="STORE_NOT_ALLOWED")
    return order, t


def _refused(order_no: str, status: Board) -> Conflict:
    if status in (Board.CANCELLED, Board.REJECTED):
        return Conflict(
            f"order {order_no} is {status.value} and refunded",
            code="ORDER_CANCELLED",
            details={"status": status.value},
        )
    return Conflict(
        f"order {order_no} is {status.value} on the board",
        code="ORDER_STATE_CONFLICT",
        details={"status": status.value},
    )


async def _move(
    order: Order,
    t: TakeoutOrder,
    allowed: tuple[Board, ...],
    to: Board,
    actor: str,
    step_name: str,
    detail: str = "",
    *,
    updates: dict[str, Any] | None = None,
    extra: Any = None,
) -> TakeoutOrder:
    """Compare-and-set the board status, with a step and a board event, in one transaction;
    `extra(conn)` runs inside it (the order's own move)."""
    async with in_transaction() as conn:
        changed = (
            await TakeoutOrder.filter(id=t.id, status__in=list(allowed))
            .using_db(conn)
            .update(status=to, **(updates or {}))
        )
        if not changed:
            fresh = await TakeoutOrder.get(id=t.id).using_db(conn)
            raise _refused(order.order_no, fresh.status)
        if extra is not None:
            await extra(conn)
        await step(t, step_name, actor, conn, detail)
        await announce(t, order.order_no, "changed", conn)
    return await TakeoutOrder.get(id=t.id)


async def accept(staff_id: int, order_no: str, prep_minutes: int) -> TakeoutOrder:
    order, t = await _clerk_order(staff_id, order_no)
    now = utcnow()
    eta = now + timedelta(minutes=prep_minutes + travel_minutes(t.distance_m))

    async def message(conn: Any) -> None:
        await tell_shopper(order, "accepted", conn, f"{eta:%H:%M}")

    return await _move(
        order,
        t,
        (Board.NEW,),
        Board.ACCEPTED,
        f"staff:{staff_id}",
        "accepted",
        f"ready in {prep_minutes} min",
        updates={"prep_minutes": prep_minutes, "eta_at": eta},
        extra=message,
    )


async def reject(settings: Settings, staff_id: int, order_no: str, reason: str) -> TakeoutOrder:
    """The store cannot make it: every tender gets its money back (the refund's takeout hook
    checks the board state in the refund's own transaction)."""
    _, t = await _clerk_order(staff_id, order_no)
    if t.status not in (Board.NEW, Board.ACCEPTED, Board.READY):
        raise _refused(order_no, t.status)
    await payments.request_refund(
        settings, order_no, actor=f"staff:{staff_id}", reason=f"rejected by the store: {reason}"
    )
    return await TakeoutOrder.get(id=t.id)


async def ready(staff_id: int, order_no: str) -> TakeoutOrder:
    order, t = await _clerk_order(staff_id, order_no)
    return await _move(order, t, (Board.ACCEPTED,), Board.READY, f"staff:{staff_id}", "ready")


async def dispatch(
    settings: Settings, wechat: Any, staff_id: int, order_no: str, how: str
) -> TakeoutOrder:
    order, t = await _clerk_order(staff_id, order_no)
    actor = f"staff:{staff_id}"
    from_states = (Board.ACCEPTED, Board.READY)
    if how == Courier.PLATFORM and t.status == Board.DISPATCHED and t.waybill_id is None:
        return await _dispatch_to_platform(settings, wechat, order, t, actor)  # a died claim
    if t.status not in from_states:
        raise _refused(order_no, t.status)
    if how == Courier.STORE:

        async def message(conn: Any) -> None:
            await tell_shopper(order, "out_for_delivery", conn, "the store's own courier")

        return await _move(
            order,
            t,
            from_states,
            Board.DISPATCHED,
            actor,
            "out_for_delivery",
            "the store's own courier",
            updates={
                "courier": Courier.STORE,
                "courier_status": None,
                "waybill_id": None,  # an earlier platform waybill's pushes no longer apply
                "flag": None,
            },
            extra=message,
        )
    return await _dispatch_to_platform(settings, wechat, order, t, actor)


async def _platform_order(settings: Settings, order: Order, t: TakeoutOrder) -> dict[str, Any]:
    store = await Store.get(id=t.store_id)  # type: ignore[attr-defined]
    lines = await OrderLine.filter(order_id=order.id).order_by("id")
    return {
        "order_no": order.order_no,
        "store": {
            "code": store.code,
            "name": store.name,
            "city": store.city,
            "address": store.address,
            "phone": store.phone,
            "lat": store.lat,
            "lng": store.lng,
        },
        "contact": t.contact,
        "phone": addresses.open_phone(settings, t.phone_sealed) or "",
        "address_text": t.address_text,
        "lat": t.lat,
        "lng": t.lng,
        "goods_fen": order.goods_fen,
        "note": t.note,
        "lines": [{"name": ln.name, "quantity": ln.quantity} for ln in lines],
        "openid": (
            who[0] if (who := await identity.member_wechat_identity(order.member_id)) else ""
        ),  # type: ignore[attr-defined]
    }


STALE_DISPATCH = timedelta(seconds=60)  # a dispatch claimed this long ago with no waybill died


async def _dispatch_to_platform(
    settings: Settings, wechat: Any, order: Order, t: TakeoutOrder, actor: str
) -> TakeoutOrder:
    """Claim the dispatch on the row (dispatched, no waybill yet: two taps at once give one
    dispatch and a 409), place the waybill, then record it. A refusal puts the order back
    where it was, flagged. A claim whose process died is taken over after STALE_DISPATCH
    with the same shop_order_id, which the platform answers with the same waybill."""
    platform = courier.CourierPlatform(settings, wechat)
    stuck = (
        t.status == Board.DISPATCHED
        and t.courier == Courier.PLATFORM
        and t.waybill_id is None
        and utcnow() - t.updated_at > STALE_DISPATCH
    )
    back_to = Board.READY if stuck else t.status
    n = t.dispatch_no if stuck else t.dispatch_no + 1
    claimed = await TakeoutOrder.filter(
        id=t.id,
        dispatch_no=t.dispatch_no,
        status__in=[Board.DISPATCHED] if stuck else [Board.ACCEPTED, Board.READY],
        **({"waybill_id__isnull": True} if stuck else {}),
    ).update(status=Board.DISPATCHED, courier=Courier.PLATFORM, dispatch_no=n, courier_status=None)
    if not claimed:
        fresh = await TakeoutOrder.get(id=t.id)
        raise _refused(order.order_no, fresh.status)
    oid = courier.shop_order_id(order.order_no, n)
    mine = TakeoutOrder.filter(
        id=t.id, dispatch_no=n, status=Board.DISPATCHED, waybill_id__isnull=True
    )
    try:
        answer = await platform.add(oid, await _platform_order(settings, order, t))
    except AppError as exc:
        await mine.update(status=back_to, courier=None)
        await _flag(t, order, f"courier platform: {exc.message}"[:255], actor)
        raise
    waybill = str(answer.get("waybill_id") or "")
    async with in_transaction() as conn:
        recorded = await mine.using_db(conn).update(
            waybill_id=waybill,
            courier_status=int(answer.get("order_status") or courier.WAITING),
            rider_name=None,
            rider_phone_masked=None,
            flag=None,
        )
        if recorded:
            await step(t, "dispatched", actor, conn, "the courier platform is finding a rider")
            await announce(t, order.order_no, "changed", conn)
            await tell_shopper(order, "dispatched", conn, "waiting for a rider")
    if not recorded:  # refunded meanwhile (an operator): this waybill is ours alone to cancel
        await _cancel_waybill(settings, wechat, order.order_no, waybill, n)
        fresh = await TakeoutOrder.get(id=t.id)
        raise _refused(order.order_no, fresh.status)
    return await TakeoutOrder.get(id=t.id)


async def _flag(t: TakeoutOrder, order: Order, why: str, actor: str) -> None:
    """The board sees why; the shopper's timeline says only that another courier is sought."""
    async with in_transaction() as conn:
        await TakeoutOrder.filter(id=t.id).using_db(conn).update(flag=why)
        await step(t, "dispatch_failed", actor, conn, "the store is finding another courier")
        await announce(t, order.order_no, "changed", conn)


async def delivered(staff_id: int, order_no: str) -> TakeoutOrder:
    order, t = await _clerk_order(staff_id, order_no)
    if t.courier != Courier.STORE:
        raise Conflict(
            "the courier platform reports this delivery itself", code="COURIER_PLATFORM_ORDER"
        )
    return await _finish(order, t, f"staff:{staff_id}", "the store's courier")


async def _finish(order: Order, t: TakeoutOrder, actor: str, detail: str) -> TakeoutOrder:
    async def complete(conn: Any) -> None:
        await orders.transition(
            order.order_no,
            OrderStatus.COMPLETED,
            actor=actor,
            reason="delivered",
            updates={"completed_at": utcnow()},
            connection=conn,
        )
        await tell_shopper(order, "delivered", conn)

    return await _move(
        order, t, (Board.DISPATCHED,), Board.DELIVERED, actor, "delivered", detail, extra=complete
    )


# -- the courier platform's callbacks ----------------------------------------------------------

_STEP_OF = {
    courier.ASSIGNED: "rider_assigned",
    courier.AT_STORE: "rider_at_store",
    courier.PICKED_UP: "picked_up",
    courier.DELIVERING: "out_for_delivery",
    303: "returning",
    304: "returning",
    305: "returning",
}


async def apply_callback(event: dict[str, Any]) -> str:
    """Follow one update_waybill_status event: applied, or why not (unknown, repeated,
    stale — a late or out-of-order status never moves a waybill backwards)."""
    waybill = str(event.get("waybill_id") or "")
    try:
        status = int(event.get("order_status"))  # type: ignore[arg-type]
        action_time = int(event.get("action_time") or 0)
    except (TypeError, ValueError):
        return "malformed"
    parsed = courier.parse_shop_order_id(str(event.get("shop_order_id") or ""))
    try:
        return await _apply_callback(event, waybill, status, action_time, parsed)
    except IntegrityError:  # the same callback, twice at once
        return "repeated"


async def _apply_callback(
    event: dict[str, Any],
    waybill: str,
    status: int,
    action_time: int,
    parsed: tuple[str, int] | None,
) -> str:
    async with in_transaction() as conn:
        seen = (
            await CourierCallback.filter(
                waybill_id=waybill, order_status=status, action_time=action_time
            )
            .using_db(conn)
            .exists()
        )
        if seen:
            return "repeated"
        record = await CourierCallback.create(
            waybill_id=waybill,
            order_status=status,
            action_time=action_time,
            payload=event,
            using_db=conn,
        )
        t = await TakeoutOrder.filter(waybill_id=waybill).select_for_update().using_db(conn).first()
        if (
            t is None
            or t.courier != Courier.PLATFORM
            or parsed is None
            or parsed[1] != t.dispatch_no
        ):
            return "unknown"
        if t.status != Board.DISPATCHED or courier.rank(status) <= courier.rank(t.courier_status):
            return "stale"
        order = await Order.get(id=t.order_id).using_db(conn)  # type: ignore[attr-defined]
        agent = event.get("agent") if isinstance(event.get("agent"), dict) else {}
        updates: dict[str, Any] = {"courier_status": status}
        if agent.get("name"):
            updates["rider_name"] = str(agent["name"])[:32]
        if agent.get("phone"):
            updates["rider_phone_masked"] = mask_phone(str(agent["phone"]))[:16]
        label = courier.LABELS.get(status, str(status))
        picked_up = courier.rank(t.courier_status) >= courier.rank(courier.PICKED_UP)
        if status in courier.FAILED and picked_up and status != courier.RETURNED:
            # The goods are with the rider: the order stays out, for an operator to settle.
            updates["flag"] = f"{label} after pickup: call the courier platform"[:255]
            name = "courier_problem"
        elif status in courier.FAILED:
            updates.update(
                status=Board.READY,
                flag=f"{label}: dispatch again or deliver yourselves"[:255],
                courier=None,
            )
            name = "dispatch_failed"
        elif status == courier.DELIVERED:
            updates["status"] = Board.DELIVERED
            name = "delivered"
        else:
            name = _STEP_OF.get(status, "courier")
        await TakeoutOrder.filter(id=t.id).using_db(conn).update(**updates)
        rider = updates.get("rider_name") or t.rider_name
        phone = updates.get("rider_phone_masked") or t.rider_phone_masked
        detail = label + (f" · {rider} {phone or ''}".rstrip() if rider else "")
        await step(t, name, "courier", conn, detail)
        if status == courier.DELIVERED:
            await orders.transition(
                order.order_no,
                OrderStatus.COMPLETED,
                actor="courier",
                reason="delivered",
                updates={"completed_at": utcnow()},
                connection=conn,
            )
            await tell_shopper(order, "delivered", conn)
        elif status in (courier.PICKED_UP, courier.DELIVERING):
            await tell_shopper(order, "out_for_delivery", conn, detail)
        await announce(t, order.order_no, "changed", conn)
        await CourierCallback.filter(id=record.id).using_db(conn).update(applied=True)
    return "applied"


# -- outbox handlers (the worker) --------------------------------------------------------------


@outbox.handler(BOARD_TOPIC)
async def _to_the_board(event: Any, env: outbox.Env) -> None:
    """Put the order, as it is now, on its store's stream (every live board reads it)."""
    p = event.payload
    t = await TakeoutOrder.get_or_none(order__order_no=p["order_no"])
    if t is None:
        return
    item = await board_item(t)
    await env.redis.xadd(
        stream_key(int(p["store_id"])),
        {"type": p["type"], "order": orjson.dumps(item, default=str).decode()},
        maxlen=STREAM_MAXLEN,
        approximate=True,
    )


@outbox.handler(ACCEPT_DUE_TOPIC)
async def _accept_deadline(event: Any, env: outbox.Env) -> None:
    """Not accepted in time: refunded, unless a clerk accepted first (then nothing)."""
    order_no = event.payload["order_no"]
    t = await TakeoutOrder.get_or_none(order__order_no=order_no)
    if t is None or t.status != Board.NEW:
        return
    try:
        await payments.request_refund(
            env.settings, order_no, actor="system", reason="the store did not accept in time"
        )
    except Conflict as exc:
        log.info("accept deadline passed an order that moved on", extra={"code": exc.code})


async def _cancel_waybill(
    settings: Settings, wechat: Any, order_no: str, waybill: str, n: int
) -> None:
    t = await TakeoutOrder.get_or_none(order__order_no=order_no).prefetch_related("store")
    if t is None:
        return
    await courier.CourierPlatform(settings, wechat).cancel(
        courier.shop_order_id(order_no, n), t.store.code, waybill, "order cancelled"
    )


@outbox.handler("takeout.cancel_waybill")
async def _cancel_waybill_after_refund(event: Any, env: outbox.Env) -> None:
    p = event.payload
    await _cancel_waybill(env.settings, env.wechat, p["order_no"], p["waybill_id"], int(p["n"]))


MESSAGE_TEMPLATE = "takeout_status"
_WORDS = {
    "accepted": "商家已接单",
    "dispatched": "等待骑手接单",
    "out_for_delivery": "配送中",
    "delivered": "已送达",
    "cancelled": "订单已取消, 款项原路退回",
}


@outbox.handler(MESSAGE_TOPIC)
async def _tell(event: Any, env: outbox.Env) -> None:
    p = event.payload
    data = {
        "character_string1": p["order_no"],
        "phrase2": _WORDS.get(p["what"], p["what"])[:5],
        "thing3": (p.get("detail") or _WORDS.get(p["what"], ""))[:20] or "-",
    }
    await identity.send_member_message(
        env.settings,
        env.wechat,
        int(p["member"]),
        MESSAGE_TEMPLATE,
        data,
        page=f"pages/takeout/track?no={p['order_no']}",
    )
