"""WeChat Pay notifications (payments and refunds) and the operator's refund button."""

from __future__ import annotations

import logging

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty
from sanic_ext import openapi

from server.infra import auth
from server.infra.http import body, component, respond, returns
from server.payments import service, tenders
from server.payments.schemas import RefundIn, RefundOut, WeChatAnswer
from server.wechat.pay import PayNotificationRejected

log = logging.getLogger("haodian.payments")

bp = Blueprint("payments", url_prefix="/api/v1")


@bp.post(service.NOTIFY_PATH.removeprefix("/api/v1"))
@openapi.response(204, description="accepted (applied now or before)")
@openapi.response(401, {"application/json": component(WeChatAnswer)}, "signature refused")
async def wechat_notify(request: Request) -> HTTPResponse:
    """WeChat Pay's notification: verified before anything is read, applied at most once.

    204 accepts it; only a failure on our side answers 5xx so that WeChat retries."""
    try:
        await service.handle_notification(request.app.ctx.settings, request.headers, request.body)
    except PayNotificationRejected as exc:
        log.warning("notification rejected", extra={"reason": exc.message})
        return respond({"code": "FAIL", "message": "rejected"}, status=401)
    return empty(status=204)


@bp.post("/admin/orders/<order_no:ref>/refunds")
@auth.authenticated("operator", roles=["admin", "store_ops"])
@body(RefundIn)
@returns(RefundOut, 201)
async def admin_refund(request: Request, order_no: str, payload: RefundIn) -> HTTPResponse:
    """Refund a paid or completed order in full (two clicks at once: one refund)."""
    refund = await service.request_refund(
        request.app.ctx.settings,
        order_no,
        actor=f"operator:{request.ctx.principal.subject}",
        reason=payload.reason,
    )
    shown = tenders.tenders_out(await tenders.of_order(refund.order_id))  # type: ignore[attr-defined]
    return respond(RefundOut.of(refund, shown), status=201)
