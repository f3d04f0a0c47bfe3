"""What happens to a group as its orders move: seats counted, groups that succeed into
vouchers or fail into refunds — each exactly once, whoever gets there first.

Every decision is a compare-and-set on the group row, taken under its row lock
(`SELECT ... FOR UPDATE`) in the transaction that moves the order, so the last payment, the
deadline job, the sweep and a late payment racing each other give every group exactly one
outcome. What follows a decision — Redis seats freed, units given back, refunds, closing
unpaid orders, subscribe messages — is written to the outbox in that same transaction.
"""

from __future__ import annotations

import logging
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from server.coupons import service as coupons
from server.groupbuy import seats
from server.groupbuy.models import Group, GroupBuy, GroupSeat, GroupStatus, SeatState
from server.infra.clock import utcnow
from server.infra.errors import Conflict
from server.infra.redis import shared_scripts
from server.orders import lifecycle
from server.orders.models import Order, OrderKind, OrderStatus
from server.outbox import service as outbox
from server.share import service as share

log = logging.getLogger("haodian.groupbuy")

GB = [OrderKind.GROUPBUY]
LIVE = (GroupStatus.FORMING, GroupStatus.OPEN)


async def _locked_group(group_id: int, conn: Any) -> Group:
    return await Group.filter(id=group_id).select_for_update().using_db(conn).get()


async def _seat_of(order: Order, conn: Any) -> GroupSeat | None:
    return await GroupSeat.filter(order_no=order.order_no).using_db(conn).first()


async def _free(seat: GroupSeat, group: Group, state: SeatState, conn: Any) -> None:
    """The seat stops being live (in the database now, in Redis after the commit)."""
    was_live = seat.live_seat is not None
    await (
        GroupSeat.filter(id=seat.id)
        .using_db(conn)
        .update(state=state, live_seat=None, live_member=None, freed_at=utcnow())
    )
    if was_live:
        await seats.emit_free(
            seat.activity_id, group.group_no, seat.order_no, seat.member_id, seat.seat_no,
            seat.gen, connection=conn,
        )  # fmt: skip


async def _emit(topic: str, payload: dict[str, Any], key: str, conn: Any, **kw: Any) -> None:
    await outbox.emit(topic, payload, key=key, connection=conn, **kw)


# -- paid --------------------------------------------------------------------------------------


@lifecycle.on(OrderStatus.PAID, kinds=GB)
async def _seat_paid(move: lifecycle.Move) -> None:
    """Count the paid seat if the group can still take it (open, before its deadline, not
    full); the last one makes the group succeed here. A payment the group cannot count is
    refunded — never lost, never over the size."""
    conn = move.conn
    seat = await _seat_of(move.order, conn)
    if seat is None:
        log.error("paid group-buy order without a seat", extra={"order_no": move.order.order_no})
        await _refund_later(move.order.order_no, "no seat for this order", conn)
        return
    group = await _locked_group(seat.group_id, conn)  # type: ignore[attr-defined]
    now = utcnow()
    countable = (
        seat.state == SeatState.HELD
        and seat.live_seat is not None
        and group.status in LIVE
        and group.paid_count < group.size
        and group.expires_at > now
    )
    if not countable:
        await _free(seat, group, SeatState.VOID, conn)
        why = "its group had closed" if group.status not in LIVE else "its seat was gone"
        await _refund_later(seat.order_no, f"paid, but {why}", conn)
        return
    updates: dict[str, Any] = {"paid_count": group.paid_count + 1}
    if seat.is_leader and group.status == GroupStatus.FORMING:
        updates.update(status=GroupStatus.OPEN, opened_at=now)
    took = await (
        Group.filter(id=group.id, status=group.status, paid_count=group.paid_count)
        .using_db(conn)
        .update(**updates)
    )
    if not took:  # cannot happen under the row lock; refuse rather than over-count
        raise Conflict("the group changed while the payment was applied", code="GROUP_BUSY")
    # Who brought whom counts when the friend's payment counts, not at a seat left unpaid.
    sharer = await share.record_conversion(
        seat.scene or None, seat.member_id, "group", group.group_no, connection=conn
    )
    await (
        GroupSeat.filter(id=seat.id)
        .using_db(conn)
        .update(state=SeatState.PAID, paid_at=now, sharer_member_id=sharer)
    )
    if updates.get("status") == GroupStatus.OPEN:
        await _emit(
            "groupbuy.opened",
            {"activity": seat.activity_id, "group_no": group.group_no},
            f"gb-opened:{group.group_no}",
            conn,
        )
    group = await _locked_group(group.id, conn)
    if group.paid_count >= group.size:
        await _succeed(group, conn, virtual=0, outcome="full")


async def _refund_later(order_no: str, reason: str, conn: Any) -> None:
    await _emit("groupbuy.refund", {"order_no": order_no, "reason": reason},
                f"gb-refund:{order_no}", conn)  # fmt: skip


async def _succeed(group: Group, conn: Any, *, virtual: int, outcome: str) -> None:
    activity = await GroupBuy.get(id=group.activity_id).using_db(conn)  # type: ignore[attr-defined]
    took = await (
        Group.filter(id=group.id, status__in=list(LIVE))
        .using_db(conn)
        .update(
            status=GroupStatus.SUCCEEDED, finished_at=utcnow(), virtual_seats=virtual,
            outcome=outcome,
        )
    )  # fmt: skip
    if not took:
        return
    members = await GroupSeat.filter(group_id=group.id).using_db(conn).order_by("id")
    for s in members:
        if s.state == SeatState.PAID:
            coupon_id = await coupons.grant_coupon(
                activity.voucher_template_id, s.member_id, f"gb:{s.order_no}", conn
            )
            await GroupSeat.filter(id=s.id).using_db(conn).update(voucher_coupon_id=coupon_id)
            await _message(s, group, "succeeded", conn)
        elif s.state == SeatState.HELD:  # virtual fill saved it; unpaid seats close
            await _emit("groupbuy.close_order", {"order_no": s.order_no},
                        f"gb-close:{s.order_no}", conn)  # fmt: skip
    await _settle(group, group.size - virtual, conn)


async def _fail(group: Group, conn: Any, *, outcome: str) -> bool:
    took = await (
        Group.filter(id=group.id, status__in=list(LIVE))
        .using_db(conn)
        .update(status=GroupStatus.FAILED, finished_at=utcnow(), outcome=outcome)
    )
    if not took:
        return False
    for s in await GroupSeat.filter(group_id=group.id).using_db(conn).order_by("id"):
        if s.state == SeatState.PAID:
            await _refund_later(s.order_no, "the group did not fill in time", conn)
            await _message(s, group, "failed", conn)
            await _free(s, group, SeatState.PAID, conn)  # its place in the member's limit too
        elif s.state == SeatState.HELD:
            await _emit("groupbuy.close_order", {"order_no": s.order_no},
                        f"gb-close:{s.order_no}", conn)  # fmt: skip
    await _settle(group, 0, conn)
    return True


async def _settle(group: Group, keep: int, conn: Any) -> None:
    """Close the group in Redis and give back the units it does not keep (once)."""
    await _emit(
        "groupbuy.settled",
        {"activity": group.activity_id, "group_no": group.group_no, "keep": keep},  # type: ignore[attr-defined]
        f"gb-settled:{group.group_no}",
        conn,
    )


async def _message(seat: GroupSeat, group: Group, outcome: str, conn: Any) -> None:
    await _emit(
        "groupbuy.message",
        {"member": seat.member_id, "group_no": group.group_no, "outcome": outcome,
         "activity": seat.activity_id},
        f"gb-msg:{seat.order_no}:{outcome}",
        conn,
    )  # fmt: skip


# -- cancelled, refunding, refunded, revived -----------------------------------------------------


@lifecycle.on(OrderStatus.CANCELLED, kinds=GB)
async def _seat_released(move: lifecycle.Move) -> None:
    """An unpaid order was closed: its seat is free again; a leader who never paid takes the
    group down with him (nobody could have joined it)."""
    conn = move.conn
    seat = await _seat_of(move.order, conn)
    if seat is None or seat.state != SeatState.HELD:
        return
    group = await _locked_group(seat.group_id, conn)  # type: ignore[attr-defined]
    await _free(seat, group, SeatState.RELEASED, conn)
    if seat.is_leader and group.status == GroupStatus.FORMING:
        await _fail(group, conn, outcome="the leader did not pay")


@lifecycle.on(OrderStatus.REFUNDING, kinds=GB)
async def _seat_refunding(move: lifecycle.Move) -> None:
    """Before the group formed, a refund frees the seat (and hands the lead on); after it
    succeeded, the group stays succeeded and only this member's voucher is taken back — which
    is refused once the voucher was used at a store."""
    if move.previous == OrderStatus.CANCELLED:
        return  # paid after it was closed: it held nothing any more
    conn = move.conn
    seat = await _seat_of(move.order, conn)
    if seat is None:
        return
    group = await _locked_group(seat.group_id, conn)  # type: ignore[attr-defined]
    if seat.state == SeatState.PAID and seat.voucher_coupon_id is not None:
        await coupons.void_coupon(seat.voucher_coupon_id, conn)  # refused once it was used
    if seat.state not in (SeatState.PAID, SeatState.VOID):
        return
    # The seat, and its place in the member's limit, are free again.
    await _free(seat, group, SeatState.REFUNDING, conn)
    if seat.state == SeatState.PAID and group.status in LIVE:
        await Group.filter(id=group.id).using_db(conn).update(paid_count=group.paid_count - 1)
        if seat.is_leader and not await _hand_on_the_lead(seat, group, conn):
            await _fail(group, conn, outcome="the leader left and nobody had paid")


async def _hand_on_the_lead(seat: GroupSeat, group: Group, conn: Any) -> bool:
    """The earliest paid member leads now; share links carry the group number, not the leader,
    so they keep working. False when nobody else has paid."""
    heir = (
        await GroupSeat.filter(group_id=group.id, state=SeatState.PAID)
        .exclude(id=seat.id)
        .using_db(conn)
        .order_by("paid_at", "id")
        .first()
    )
    await GroupSeat.filter(id=seat.id).using_db(conn).update(is_leader=False)
    if heir is None:
        return False
    await GroupSeat.filter(id=heir.id).using_db(conn).update(is_leader=True)
    await Group.filter(id=group.id).using_db(conn).update(leader_member_id=heir.member_id)
    return True


@lifecycle.on(OrderStatus.REFUNDED, kinds=GB)
async def _seat_refunded(move: lifecycle.Move) -> None:
    await (
        GroupSeat.filter(order_no=move.order.order_no, state=SeatState.REFUNDING)
        .using_db(move.conn)
        .update(state=SeatState.REFUNDED)
    )


@lifecycle.revive(OrderKind.GROUPBUY)
async def _take_back(order: Order, conn: Any) -> bool:
    """A payment for an order whose seat was freed: seat it again if its group is open, before
    its deadline, and has a free seat (Redis decides, as for any seat); else it is refunded."""
    # Two copies of the payment at once: the order row lock lets one decide; the other then
    # finds the order paid (so it takes no second seat that a rollback would leave in Redis).
    fresh = await Order.filter(id=order.id).select_for_update().using_db(conn).first()
    if fresh is None or fresh.status != OrderStatus.CANCELLED or fresh.transaction_id:
        return False
    seat = await _seat_of(order, conn)
    if seat is None or seat.state != SeatState.RELEASED:
        return False
    group = await _locked_group(seat.group_id, conn)  # type: ignore[attr-defined]
    if group.status != GroupStatus.OPEN or group.expires_at <= utcnow():
        return False
    got = await seats.reseat(shared_scripts(), seat, group.group_no)
    if got is None:
        return False
    number, gen = got
    try:
        await GroupSeat.filter(id=seat.id).using_db(conn).update(
            state=SeatState.HELD, live_seat=number, live_member=seat.member_id, seat_no=number,
            gen=gen, freed_at=None,
        )  # fmt: skip
    except IntegrityError:
        raise Conflict("the seat was taken meanwhile", code="GROUP_FULL") from None
    return True


# -- deadlines ---------------------------------------------------------------------------------


async def settle_at_deadline(scripts: Any, group_id: int) -> str:
    """At its deadline a group that is not full fails (all paid members refunded), unless
    virtual fill saves it. Safe to run any number of times, from anywhere, at once."""
    group = await Group.get_or_none(id=group_id)
    if group is None or group.status not in LIVE:
        return "settled"
    if group.expires_at > utcnow():
        return "not_due"
    # No more seats first, so nobody joins a group whose fate is being decided.
    g, _ = seats.group_keys(group.activity_id, group.group_no)  # type: ignore[attr-defined]
    k = seats.activity_keys(group.activity_id)  # type: ignore[attr-defined]
    await scripts.run(seats.CLOSE, [g, k["joinable"], k["units"]], [group.group_no, ""])
    async with in_transaction() as conn:
        group = await _locked_group(group_id, conn)
        if group.status not in LIVE:
            return "settled"
        activity = await GroupBuy.get(id=group.activity_id).using_db(conn)  # type: ignore[attr-defined]
        if group.paid_count >= group.size:
            await _succeed(group, conn, virtual=0, outcome="full")
            return "succeeded"
        fill = activity.virtual_fill_min
        if fill and group.paid_count >= fill and group.status == GroupStatus.OPEN:
            await _succeed(
                group, conn, virtual=group.size - group.paid_count, outcome="virtual fill"
            )
            return "succeeded"
        await _fail(group, conn, outcome="not full at its deadline")
        return "failed"


async def settle_due(scripts: Any, limit: int = 200) -> int:
    """The sweep: every group past its deadline and not yet settled."""
    due = (
        await Group.filter(status__in=list(LIVE), expires_at__lte=utcnow())
        .order_by("expires_at")
        .limit(limit)
        .values_list("id", flat=True)
    )
    done = 0
    for group_id in due:
        if await settle_at_deadline(scripts, int(group_id)) != "not_due":
            done += 1
    return done


# -- outbox handlers ---------------------------------------------------------------------------


@outbox.handler(seats.DEADLINE_TOPIC)
async def _deadline(event: Any, env: outbox.Env) -> None:
    outcome = await settle_at_deadline(env.scripts, int(event.payload["group_id"]))
    if outcome == "not_due":
        raise RuntimeError("the deadline event came early; retried")


@outbox.handler("groupbuy.opened")
async def _opened(event: Any, env: outbox.Env) -> None:
    p = event.payload
    g, _ = seats.group_keys(p["activity"], p["group_no"])
    await env.scripts.run(seats.OPEN, [g, seats.activity_keys(p["activity"])["joinable"]],
                          [p["group_no"]])  # fmt: skip


@outbox.handler("groupbuy.settled")
async def _settled(event: Any, env: outbox.Env) -> None:
    p = event.payload
    g, _ = seats.group_keys(p["activity"], p["group_no"])
    k = seats.activity_keys(p["activity"])
    await env.scripts.run(seats.CLOSE, [g, k["joinable"], k["units"]], [p["group_no"], p["keep"]])


@outbox.handler("groupbuy.refund")
async def _refund(event: Any, env: outbox.Env) -> None:
    from server.payments import service as payments

    try:
        await payments.request_refund(
            env.settings, event.payload["order_no"], actor="system", reason=event.payload["reason"]
        )
    except Conflict as exc:
        if exc.code != "ORDER_STATE_CONFLICT":
            raise
        # Already refunding or refunded: the refund machinery has it (one out_refund_no).


@outbox.handler("groupbuy.close_order")
async def _close_order(event: Any, env: outbox.Env) -> None:
    from server.payments import service as payments

    await payments.close_unpaid(
        env.settings, event.payload["order_no"], actor="system", reason="its group has closed"
    )


RESULT_TEMPLATE = "group_result"


@outbox.handler("groupbuy.message")
async def _tell_member(event: Any, env: outbox.Env) -> None:
    from server.identity import service as identity

    p = event.payload
    activity = await GroupBuy.get_or_none(id=p["activity"])
    ok = p["outcome"] == "succeeded"
    data = {
        "thing1": (activity.title if activity else "拼团")[:20],
        "phrase2": "拼团成功" if ok else "拼团失败",
        "thing3": "券已发放, 到店出示核销" if ok else "款项将原路退回",
    }
    await identity.send_member_message(
        env.settings,
        env.wechat,
        int(p["member"]),
        RESULT_TEMPLATE,
        data,
        page=f"pages/groupbuy/group?g={p['group_no']}",
    )
