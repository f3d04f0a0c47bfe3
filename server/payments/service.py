"""Paying for orders with WeChat Pay, applying what WeChat tells us exactly once, refunds.

Opening a payment (balances captured, WeChat Pay for the rest) is `checkout.py`. Three
ways learn that an order was paid: the notification, the worker's query of orders
whose notification never came, and the close of an expired order that WeChat answers
with "already paid". All three go through `apply_transaction`, whose only write to the
order is the compare-and-set `pending_payment -> paid`: whichever arrives first applies
it, the rest find it applied. A payment that lands on an order we already cancelled is
recorded and refunded, never lost and never turned back into a live order.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from server.infra.clock import utcnow
from server.infra.errors import AppError, Conflict
from server.orders import lifecycle
from server.orders import service as orders
from server.orders.models import Order, OrderStatus
from server.payments import tenders
from server.payments.models import Payment, PaymentNotice, Refund, RefundStatus
from server.settings import Settings
from server.wechat.pay import PayNotFound, PayOrderPaid, get_wechatpay, pay_config

log = logging.getLogger("haodian.payments")
S = OrderStatus

NOTIFY_PATH = "/api/v1/payments/wechat/notify"


def notify_url(settings: Settings) -> str:
    return settings.public_base() + NOTIFY_PATH


# -- applying what WeChat says ------------------------------------------------------------------


async def handle_notification(settings: Settings, headers: Any, body: bytes) -> None:
    """Verify a WeChat Pay notification (PayNotificationRejected when it does not verify),
    then apply it: a payment or a refund result, each at most once."""
    event = get_wechatpay(settings).parse_notification(headers, body)
    event_type = str(event.get("event_type", ""))
    resource = event["resource"]
    notice_id = str(event.get("id", ""))
    if event_type.startswith("TRANSACTION."):
        await apply_transaction(settings, resource, source="notify", notice_id=notice_id)
    elif event_type.startswith("REFUND."):
        await apply_refund_notification(resource, notice_id)


async def _notice(
    notice_id: str,
    event_type: str,
    out_trade_no: str,
    outcome: str,
    detail: str = "",
    connection: Any = None,
) -> None:
    await PaymentNotice.create(
        notice_id=notice_id[:64],
        event_type=event_type[:32],
        out_trade_no=out_trade_no[:32],
        outcome=outcome,
        detail=detail[:255],
        using_db=connection,
    )


async def apply_transaction(
    settings: Settings, tx: dict[str, Any], *, source: str, notice_id: str = ""
) -> str:
    """Apply a transaction resource (from a notification or a query). Returns the outcome:
    applied | duplicate | not_success | unknown_order | mismatch | revived | refused |
    refund_after_close."""
    out_trade_no = str(tx.get("out_trade_no", ""))
    event = f"TRANSACTION.{tx.get('trade_state', '')}"
    order = await Order.get_or_none(order_no=out_trade_no)
    if order is None:
        await _notice(notice_id or source, event, out_trade_no, "unknown_order")
        log.warning("payment for an unknown order", extra={"out_trade_no": out_trade_no})
        return "unknown_order"
    if tx.get("trade_state") != "SUCCESS":
        await _notice(notice_id or source, event, out_trade_no, "not_success")
        return "not_success"

    problem = await _mismatch(settings, order, tx)
    if problem:
        # Not marked paid: an operator must look (the money is real but does not fit).
        await Order.filter(id=order.id).update(flag=f"payment mismatch: {problem}"[:255])
        await _notice(notice_id or source, event, out_trade_no, "mismatch", problem)
        log.error(
            "payment does not match its order",
            extra={"out_trade_no": out_trade_no, "problem": problem},
        )
        return "mismatch"

    transaction_id = str(tx.get("transaction_id", ""))
    paid_fen = int(tx["amount"]["total"])
    paid = {"paid_fen": paid_fen, "paid_at": utcnow(), "transaction_id": transaction_id}
    try:
        # The scenario's `paid` hooks (orders.lifecycle) run in this transaction.
        async with in_transaction() as conn:
            held = await tenders.captured_fen(order.id, conn)
            await orders.transition(
                out_trade_no,
                S.PAID,
                actor="wechat",
                reason=f"paid ({source})",
                only_from=[S.PENDING_PAYMENT],
                updates={**paid, "paid_fen": paid_fen + held},
                connection=conn,
            )
            await tenders.record_wechat(order, transaction_id, paid_fen, conn)
            await _notice(notice_id or source, event, out_trade_no, "applied", connection=conn)
        return "applied"
    except AppError as exc:
        if exc.code != "ORDER_STATE_CONFLICT":
            # A `paid` hook refused the payment (a scenario rule, a voucher it cannot give):
            # the money is real, so the order is closed and the money goes back, flagged.
            if await _refuse(order, exc):
                await _refund_payment_after_close(settings, order, transaction_id, paid_fen)
                await _notice(
                    notice_id or source, event, out_trade_no, "refused", f"{exc.code}: {exc}"
                )
                return "refused"

    order = await Order.get(id=order.id)
    if order.transaction_id == transaction_id:
        await _notice(notice_id or source, event, out_trade_no, "duplicate")
        return "duplicate"
    if order.status == S.CANCELLED and order.transaction_id is None:
        if await _revive(order, paid, source):
            await _notice(notice_id or source, event, out_trade_no, "revived")
            return "revived"
        await _refund_payment_after_close(settings, order, transaction_id, paid_fen)
        await _notice(notice_id or source, event, out_trade_no, "refund_after_close")
        return "refund_after_close"
    await _notice(notice_id or source, event, out_trade_no, "duplicate", f"order is {order.status}")
    return "duplicate"


async def _refuse(order: Order, exc: AppError) -> bool:
    log.error(
        "a paid hook refused the payment; closing and refunding the order",
        extra={"out_trade_no": order.order_no, "code": exc.code},
    )
    try:
        await orders.transition(
            order.order_no,
            S.CANCELLED,
            actor="system",
            reason=f"payment refused: {exc.code}"[:255],
            only_from=[S.PENDING_PAYMENT],
            updates={"flag": f"payment refused ({exc.code}) and refunded: {exc}"[:255]},
        )
    except Conflict:
        return False  # it moved meanwhile (another copy of this payment): handled there
    return True


class _NotRevived(Exception):
    pass


async def _revive(order: Order, paid: dict[str, Any], source: str) -> bool:
    """A payment landed on an order we cancelled: its kind's revive hook may take back what
    the order needs (a group-buy seat that is still free); then the payment counts as for any
    order, `paid` hooks included. Otherwise nothing changes and the money goes back."""
    if await tenders.of_order(order.id):
        return False  # its balances went back at the close: the WeChat part alone is not enough
    try:
        async with in_transaction() as conn:
            if not await lifecycle.try_revive(order, conn):
                raise _NotRevived
            await tenders.record_wechat(order, str(paid["transaction_id"]), paid["paid_fen"], conn)
            await orders.transition(
                order.order_no,
                S.PAID,
                actor="wechat",
                reason=f"paid after it was closed, taken back ({source})",
                only_from=[S.CANCELLED],
                updates=paid,
                connection=conn,
            )
    except (_NotRevived, Conflict):
        return False
    return True


async def _mismatch(settings: Settings, order: Order, tx: dict[str, Any]) -> str:
    config = pay_config(settings)
    if tx.get("mchid") != config.mchid:
        return f"mchid {tx.get('mchid')!r} is not ours"
    payment = await Payment.get_or_none(order_id=order.id)
    expected_appid = payment.appid if payment else None
    if tx.get("appid") not in {a.appid for a in settings.apps} or (
        expected_appid and tx.get("appid") != expected_appid
    ):
        return f"appid {tx.get('appid')!r} is not the order's"
    amount = tx.get("amount") or {}
    if amount.get("currency", "CNY") != "CNY":
        return f"currency {amount.get('currency')!r}"
    due = await tenders.wechat_due(order)
    if amount.get("total") != due:
        return f"paid {amount.get('total')} fen, order asks {due} fen"
    return ""


async def _refund_payment_after_close(
    settings: Settings, order: Order, transaction_id: str, paid_fen: int
) -> None:
    """The shopper paid an order we had already closed: keep the record, give the money back."""
    try:
        async with in_transaction() as conn:
            await orders.transition(
                order.order_no,
                S.REFUNDING,
                actor="system",
                reason="paid after the order was closed",
                only_from=[S.CANCELLED],
                updates={
                    "paid_fen": paid_fen,
                    "transaction_id": transaction_id,
                    "paid_at": utcnow(),
                },
                connection=conn,
            )
            refund = await Refund.create(
                out_refund_no=refund_no(order),
                order_id=order.id,
                amount_fen=paid_fen,
                reason="paid after the order was closed",
                requested_by="system",
                using_db=conn,
            )
    except Conflict as exc:
        if exc.code == "ORDER_STATE_CONFLICT":
            return  # another copy of this notification got here first
        # A hook refused (it must not: nothing was delivered). Keep the money visible.
        log.error(
            "refund of a payment after close was refused",
            extra={"out_trade_no": order.order_no, "code": exc.code},
        )
        await Order.filter(id=order.id).update(
            flag=f"paid after close, refund refused ({exc.code}): an operator must act"[:255]
        )
        return
    await submit_refund(settings, refund.id)


# -- closing expired orders and finding lost notifications ---------------------------------------


async def close_unpaid(settings: Settings, order_no: str, *, actor: str, reason: str) -> str:
    """Close an unpaid order: ask WeChat to close its transaction first (so it cannot be
    paid any more; WeChat may answer that it was paid meanwhile), then cancel it here,
    which releases what it held. Returns cancelled | skipped | raced | applied | ..."""
    order = await Order.get_or_none(order_no=order_no)
    if order is None or order.status != S.PENDING_PAYMENT:
        return "skipped"
    payment = await Payment.get_or_none(order_id=order.id)
    if payment is not None:
        pay = get_wechatpay(settings)
        try:
            await pay.close(order_no)
        except PayOrderPaid:
            tx = await pay.query(order_no)
            return await apply_transaction(settings, tx, source="close")
        except PayNotFound:
            pass
    try:
        await orders.transition(
            order_no, S.CANCELLED, actor=actor, reason=reason, only_from=[S.PENDING_PAYMENT]
        )
    except Conflict:
        return "raced"
    return "cancelled"


async def cancel_by_shopper(settings: Settings, order: Order, *, actor: str, reason: str) -> Order:
    """Unpaid: close it. Paid pickup not yet handed over: refund it. Otherwise: 409."""
    if order.status == S.PENDING_PAYMENT:
        outcome = await close_unpaid(settings, order.order_no, actor=actor, reason=reason)
        if outcome == "applied":
            raise Conflict("the order was paid meanwhile", code="ORDER_ALREADY_PAID")
    elif order.status == S.PAID and order.completed_at is None:
        await request_refund(settings, order.order_no, actor=actor, reason=reason)
    else:
        raise Conflict(
            f"order {order.order_no} is {order.status}; it can no longer be cancelled",
            code="ORDER_NOT_CANCELLABLE",
        )
    return await Order.get(id=order.id)


async def sweep(settings: Settings, *, limit: int = 200) -> dict[str, int]:
    """One pass of the worker: close expired unpaid orders, query quiet prepaid ones,
    push refunds WeChat has not accepted yet. Safe to run in several workers at once."""
    counts = {"closed": 0, "queried": 0, "refunds": 0}
    now = utcnow()
    expired = (
        await Order.filter(status=S.PENDING_PAYMENT, pay_deadline__lte=now)
        .order_by("pay_deadline")
        .limit(limit)
        .values_list("order_no", flat=True)
    )
    for order_no in expired:
        try:
            outcome = await close_unpaid(
                settings, str(order_no), actor="system", reason="not paid in time"
            )
            if outcome == "cancelled":
                counts["closed"] += 1
        except AppError as exc:
            log.warning(
                "close failed; retried next sweep", extra={"order_no": order_no, "code": exc.code}
            )

    quiet_since = now - timedelta(seconds=settings.payment_query_after_seconds)
    # Prepaid, still unpaid, and not asked about for a while (never, or long enough ago).
    quiet = (
        await Payment.filter(order__status=S.PENDING_PAYMENT)
        .filter(
            Q(last_queried_at__isnull=True, created_at__lte=quiet_since)
            | Q(last_queried_at__lte=quiet_since)
        )
        .limit(limit)
        .prefetch_related("order")
    )
    pay = get_wechatpay(settings) if quiet else None
    for payment in quiet:
        order_no = payment.order.order_no
        await Payment.filter(id=payment.id).update(last_queried_at=utcnow())
        try:
            assert pay is not None
            tx = await pay.query(order_no)
        except PayNotFound:
            continue
        except AppError as exc:
            log.warning("query failed", extra={"order_no": order_no, "code": exc.code})
            continue
        counts["queried"] += 1
        if tx.get("trade_state") == "SUCCESS":
            await apply_transaction(settings, tx, source="query")

    stuck = (
        await Refund.filter(status=RefundStatus.REQUESTED).limit(limit).values_list("id", flat=True)
    )
    for refund_id in stuck:
        await submit_refund(settings, int(refund_id))
        counts["refunds"] += 1
    pending_refunds = await Refund.filter(
        status=RefundStatus.PROCESSING, updated_at__lte=quiet_since
    ).limit(limit)
    for refund in pending_refunds:
        await follow_up_refund(settings, refund)
    return counts


# -- refunds --------------------------------------------------------------------------------------


def refund_no(order: Order) -> str:
    return f"R{order.order_no}"


async def request_refund(settings: Settings, order_no: str, *, actor: str, reason: str) -> Refund:
    """Refund a paid (or completed) order in full: every balance tender gets back what it
    paid in this transaction, WeChat's part goes to a WeChat refund (none: the order is
    refunded at once). Two requests at once: one refund; the other gets ORDER_STATE_CONFLICT."""
    order = await orders.get_order(order_no)
    async with in_transaction() as conn:
        order = await orders.transition(
            order_no,
            S.REFUNDING,
            actor=actor,
            reason=reason or "refund requested",
            only_from=[S.PAID, S.COMPLETED],
            connection=conn,
        )
        wechat_fen = await tenders.give_back_all(order, "refund", conn)
        if not await tenders.of_order(order.id, conn):
            wechat_fen = order.paid_fen or order.payable_fen  # paid before tenders were kept
        refund = await Refund.create(
            out_refund_no=refund_no(order),
            order_id=order.id,
            amount_fen=wechat_fen,
            reason=reason[:255],
            requested_by=actor,
            status=RefundStatus.REQUESTED if wechat_fen else RefundStatus.SUCCESS,
            finished_at=None if wechat_fen else utcnow(),
            using_db=conn,
        )
        if not wechat_fen:
            await orders.transition(
                order_no,
                S.REFUNDED,
                actor=actor,
                reason="refunded to its balances",
                updates={"refunded_fen": order.paid_fen or 0},
                connection=conn,
            )
    await submit_refund(settings, refund.id)
    return await Refund.get(id=refund.id)


async def submit_refund(settings: Settings, refund_id: int) -> None:
    """Hand a recorded refund to WeChat (idempotent: the same out_refund_no is one refund)."""
    refund = await Refund.get(id=refund_id).prefetch_related("order")
    if refund.status != RefundStatus.REQUESTED:
        return
    pay = get_wechatpay(settings)
    try:
        answer = await pay.refund(
            out_trade_no=refund.order.order_no,
            out_refund_no=refund.out_refund_no,
            refund_fen=refund.amount_fen,
            total_fen=await tenders.wechat_total(refund.order.id)
            or refund.order.paid_fen
            or refund.amount_fen,
            reason=refund.reason or None,
            notify_url=notify_url(settings),
        )
    except AppError as exc:
        log.warning(
            "refund not accepted yet; the worker retries",
            extra={"out_refund_no": refund.out_refund_no, "code": exc.code},
        )
        return
    await _apply_refund_state(refund, answer)


async def follow_up_refund(settings: Settings, refund: Refund) -> None:
    try:
        answer = await get_wechatpay(settings).query_refund(refund.out_refund_no)
    except AppError:
        return
    await _apply_refund_state(refund, answer)


async def apply_refund_notification(resource: dict[str, Any], notice_id: str) -> str:
    out_refund_no = str(resource.get("out_refund_no", ""))
    refund = await Refund.get_or_none(out_refund_no=out_refund_no)
    if refund is None:
        await _notice(notice_id, "REFUND", str(resource.get("out_trade_no", "")), "unknown_refund")
        return "unknown_refund"
    answer = {"status": resource.get("refund_status"), "refund_id": resource.get("refund_id")}
    outcome = await _apply_refund_state(refund, answer)
    await _notice(
        notice_id, f"REFUND.{answer['status']}", str(resource.get("out_trade_no", "")), outcome
    )
    return outcome


async def _apply_refund_state(refund: Refund, answer: dict[str, Any]) -> str:
    status = str(answer.get("status", "")).upper()
    new = {
        "PROCESSING": RefundStatus.PROCESSING,
        "SUCCESS": RefundStatus.SUCCESS,
        "CLOSED": RefundStatus.CLOSED,
        "ABNORMAL": RefundStatus.ABNORMAL,
    }.get(status)
    if new is None:
        return "ignored"
    finished = new in (RefundStatus.SUCCESS, RefundStatus.CLOSED, RefundStatus.ABNORMAL)
    async with in_transaction() as conn:
        changed = (
            await Refund.filter(
                id=refund.id,
                status__in=[RefundStatus.REQUESTED, RefundStatus.PROCESSING],
            )
            .using_db(conn)
            .update(
                status=new,
                refund_id=answer.get("refund_id") or refund.refund_id,
                finished_at=utcnow() if finished else None,
            )
        )
        if not changed:
            return "duplicate"
        if new == RefundStatus.SUCCESS:
            order = await Order.get(id=refund.order_id).using_db(conn)
            await orders.transition(
                order.order_no,
                S.REFUNDED,
                actor="wechat",
                reason="refund succeeded",
                updates={"refunded_fen": order.paid_fen or refund.amount_fen},
                connection=conn,
            )
        elif finished:
            order = await Order.get(id=refund.order_id).using_db(conn)
            await (
                Order.filter(id=order.id)
                .using_db(conn)
                .update(flag=f"refund {status.lower()}: an operator must act")
            )
    return "applied"
