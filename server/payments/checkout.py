"""Paying an order: `/orders/{no}/pay` captures the balances asked for (tenders.py) and opens
WeChat Pay for what is left, returning the `wx.requestPayment` parameters. What WeChat then
says is applied by `service.py`."""

from __future__ import annotations

from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from server.identity import service as identity
from server.infra.clock import utcnow
from server.infra.errors import AppError, Conflict
from server.orders import service as orders
from server.orders.models import Order, OrderStatus
from server.payments import tenders
from server.payments.models import Payment
from server.payments.service import notify_url
from server.settings import Settings
from server.wechat.pay import get_wechatpay

S = OrderStatus


def _default_appid(settings: Settings) -> str:
    if not settings.apps:
        raise AppError("no mini-program is configured", code="WECHAT_NOT_CONFIGURED", status=503)
    return settings.apps[0].appid


async def _payer(settings: Settings, order: Order, appid: str | None) -> tuple[str, str | None]:
    """The app WeChat Pay is opened in (UNKNOWN_APPID if not ours) and the payer's openid
    there (None: they never signed in with it)."""
    appid = appid or _default_appid(settings)
    if appid not in {a.appid for a in settings.apps}:
        raise AppError(f"unknown appid {appid}", code="UNKNOWN_APPID", status=422)
    return appid, await identity.member_openid(order.member_id, appid)  # type: ignore[attr-defined]


def _no_identity() -> Conflict:
    return Conflict("sign in with this mini-program before paying", code="NO_WECHAT_IDENTITY")


def _require_payable(order: Order) -> None:
    if order.status != S.PENDING_PAYMENT:
        raise Conflict(
            f"order {order.order_no} is {order.status}",
            code="ORDER_NOT_PAYABLE",
            details={"status": str(order.status)},
        )
    if order.pay_deadline <= utcnow():
        raise Conflict("the time to pay this order is over", code="ORDER_EXPIRED")


async def pay(
    settings: Settings, order: Order, *, appid: str | None, asked: dict[str, Any]
) -> dict[str, Any]:
    """`/orders/{no}/pay`: capture the balances the shopper asked for (tenders), in one
    transaction with the order locked; a fully covered order is paid there and then, else
    WeChat Pay is opened for the rest. Returns {paid, wechat_fen, tenders, + requestPayment}.
    If WeChat itself fails after the capture (down), the balances stay captured on the
    order (it shows them): paying again opens WeChat for the same rest, cancelling (or the
    timeout) gives them back."""
    asked = {kind: value for kind, value in asked.items() if value}
    if asked:
        # What can refuse the WeChat part is checked before any balance is taken, and inside
        # the capture's transaction, so a refusal never leaves balances captured.
        _, openid = await _payer(settings, order, appid)
        async with in_transaction() as conn:
            locked = await Order.filter(id=order.id).select_for_update().using_db(conn).get()
            _require_payable(locked)
            held = await tenders.captured_fen(order.id, conn)
            if not held and await Payment.filter(order_id=order.id).using_db(conn).exists():
                raise Conflict(
                    "WeChat Pay was opened for the whole amount; pay there, or cancel and "
                    "order again to use a balance",
                    code="WECHAT_PAY_OPENED",
                )
            left = await tenders.capture(locked, asked, conn)
            if left > 0 and openid is None:
                raise _no_identity()
            if left == 0:
                await orders.transition(
                    order.order_no,
                    S.PAID,
                    actor=f"member:{order.member_id}",  # type: ignore[attr-defined]
                    reason="paid with balances",
                    only_from=[S.PENDING_PAYMENT],
                    updates={"paid_fen": locked.payable_fen, "paid_at": utcnow()},
                    connection=conn,
                )
        order = await Order.get(id=order.id)
    captured = await tenders.of_order(order.id)
    answer: dict[str, Any] = {"tenders": tenders.tenders_out(captured)}
    if order.status == S.PAID and not any(t.kind == tenders.WECHAT for t in captured):
        return {**answer, "paid": True, "wechat_fen": 0}
    params = await prepay(settings, order, appid)
    left = order.payable_fen - await tenders.captured_fen(order.id)
    return {**answer, **params, "paid": False, "wechat_fen": left}


async def prepay(settings: Settings, order: Order, appid: str | None = None) -> dict[str, str]:
    """Open (or reopen) the WeChat Pay transaction of an unpaid order, for what its tenders
    left unpaid, and return the parameters of `wx.requestPayment`."""
    _require_payable(order)
    total_fen = order.payable_fen - await tenders.captured_fen(order.id)
    if total_fen <= 0:
        raise Conflict("nothing to pay for this order", code="ORDER_NOT_PAYABLE")
    appid, openid = await _payer(settings, order, appid)
    if openid is None:
        raise _no_identity()
    pay = get_wechatpay(settings)
    prepay_id = await pay.create_jsapi(
        out_trade_no=order.order_no,
        description=f"好店+ order {order.order_no}",
        total_fen=total_fen,
        openid=openid,
        appid=appid,
        notify_url=notify_url(settings),
        time_expire=order.pay_deadline,
    )
    # A double tap pays once: the second request finds the first one's row and updates it.
    changed = await Payment.filter(order_id=order.id).update(
        appid=appid, openid=openid, prepay_id=prepay_id
    )
    if not changed:
        try:
            await Payment.create(order_id=order.id, appid=appid, openid=openid, prepay_id=prepay_id)
        except IntegrityError:
            await Payment.filter(order_id=order.id).update(
                appid=appid, openid=openid, prepay_id=prepay_id
            )
    return pay.request_payment_params(appid, prepay_id)
