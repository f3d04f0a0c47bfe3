"""Orders for shoppers (place, see, pay, cancel), clerks (hand over a pickup) and operators."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from server.infra import auth
from server.infra.http import body, respond, returns
from server.orders import pickup, service
from server.orders.idempotency import place_once
from server.orders.schemas import (
    CancelIn,
    CompleteIn,
    OrderListOut,
    OrderOut,
    PickupOrderIn,
    order_view,
)
from server.payments import checkout
from server.payments import service as payments
from server.payments.schemas import PayIn, PayOut

bp = Blueprint("orders", url_prefix="/api/v1")


@bp.post("/orders")
@auth.authenticated("member")
@body(PickupOrderIn)
@returns(OrderOut, status=201)
async def place_order(request: Request, payload: PickupOrderIn) -> HTTPResponse:
    """Order from a store's menu for pickup. Send an Idempotency-Key: a retry gets the
    first answer and never a second order."""
    member_id = request.ctx.principal.subject

    status, answer = await place_once(
        member_id,
        "/orders",
        request.headers.get("idempotency-key"),
        payload.model_dump(mode="json"),
        lambda: pickup.place_pickup_order(
            request.app.ctx.settings,
            member_id,
            payload.store_id,
            {i.sku_id: i.quantity for i in payload.items},
            payload.coupon_ids,
        ),
    )
    return respond(answer, status=status)


@bp.get("/orders")
@auth.authenticated("member")
@returns(OrderListOut)
async def my_orders(request: Request) -> HTTPResponse:
    orders = await service.member_orders(request.ctx.principal.subject)
    return respond(OrderListOut(items=[await order_view(o) for o in orders]))


@bp.get("/orders/<order_no:ref>")
@auth.authenticated("member")
@returns(OrderOut)
async def my_order(request: Request, order_no: str) -> HTTPResponse:
    order = await service.get_order(
        order_no, member_id=request.ctx.principal.subject, redis=request.app.ctx.redis
    )
    return respond(await order_view(order, events=True))


@bp.post("/orders/<order_no:ref>/pay")
@auth.authenticated("member")
@body(PayIn)
@returns(PayOut)
async def pay_order(request: Request, order_no: str, payload: PayIn) -> HTTPResponse:
    """Pay an unpaid order in time: with gift cards (captured now; enough of them pay the
    order at once), and/or WeChat Pay for the rest (the `wx.requestPayment` parameters)."""
    order = await service.get_order(
        order_no, member_id=request.ctx.principal.subject, redis=request.app.ctx.redis
    )
    answer = await checkout.pay(
        request.app.ctx.settings, order, appid=payload.appid, asked=payload.asked()
    )
    return respond(PayOut(**answer))


@bp.post("/orders/<order_no:ref>/cancel")
@auth.authenticated("member")
@body(CancelIn)
@returns(OrderOut)
async def cancel_order(request: Request, order_no: str, payload: CancelIn) -> HTTPResponse:
    """Cancel an unpaid order, or refund a paid pickup order not yet picked up."""
    member_id = request.ctx.principal.subject
    order = await service.get_order(order_no, member_id=member_id, redis=request.app.ctx.redis)
    order = await payments.cancel_by_shopper(
        request.app.ctx.settings,
        order,
        actor=f"member:{member_id}",
        reason=payload.reason or "cancelled by the shopper",
    )
    return respond(await order_view(order, events=True))


@bp.post("/staff/orders/<order_no:ref>/complete")
@auth.authenticated("staff")
@body(CompleteIn)
@returns(OrderOut)
async def complete_pickup(request: Request, order_no: str, payload: CompleteIn) -> HTTPResponse:
    """A clerk of the order's store hands the goods over against the shopper's pickup code."""
    order = await pickup.complete_pickup(
        order_no, staff_id=request.ctx.principal.subject, pickup_code=payload.pickup_code
    )
    return respond(await order_view(order, show_pickup_code=False))


@bp.get("/admin/orders/<order_no:ref>")
@auth.authenticated("operator")
@returns(OrderOut)
async def admin_order(request: Request, order_no: str) -> HTTPResponse:
    """An order with its full history (events) and any flag for an operator."""
    order = await service.get_order(order_no)
    return respond(await order_view(order, events=True))
