"""Orders for shoppers (place, see, pay, cancel), clerks (hand over a pickup) and operators."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from server.infra import auth
from server.infra.http import body, respond, returns
from server.orders import pickup, service
from server.orders.idempotency import run_once
from server.orders.models import Order
from server.orders.schemas import (
    CancelIn,
    CompleteIn,
    OrderListOut,
    OrderOut,
    PickupOrderIn,
    order_out,
)
from server.payments import service as payments
from server.payments.schemas import PayIn, PayParamsOut

bp = Blueprint("orders", url_prefix="/api/v1")


async def _view(order: Order, *, events: bool = False, show_pickup_code: bool = True) -> OrderOut:
    lines = await service.order_lines(order)
    evs = await service.order_events(order) if events else None
    return order_out(order, lines, evs, show_pickup_code=show_pickup_code)


@bp.post("/orders")
@auth.authenticated("member")
@body(PickupOrderIn)
@returns(OrderOut, status=201)
async def place_order(request: Request, payload: PickupOrderIn) -> HTTPResponse:
    """Order from a store's menu for pickup. Send an Idempotency-Key: a retry gets the
    first answer and never a second order."""
    member_id = request.ctx.principal.subject

    async def work() -> tuple[int, dict]:
        order = await pickup.place_pickup_order(
            request.app.ctx.settings,
            member_id,
            payload.store_id,
            {i.sku_id: i.quantity for i in payload.items},
            payload.coupon_ids,
        )
        return 201, (await _view(order)).model_dump(mode="json")

    status, answer = await run_once(
        f"member:{member_id}:POST /orders",
        request.headers.get("idempotency-key"),
        payload.model_dump(mode="json"),
        work,
    )
    return respond(answer, status=status)


@bp.get("/orders")
@auth.authenticated("member")
@returns(OrderListOut)
async def my_orders(request: Request) -> HTTPResponse:
    orders = await service.member_orders(request.ctx.principal.subject)
    return respond(OrderListOut(items=[await _view(o) for o in orders]))


@bp.get("/orders/<order_no:str>")
@auth.authenticated("member")
@returns(OrderOut)
async def my_order(request: Request, order_no: str) -> HTTPResponse:
    order = await service.get_order(
        order_no, member_id=request.ctx.principal.subject, redis=request.app.ctx.redis
    )
    return respond(await _view(order, events=True))


@bp.post("/orders/<order_no:str>/pay")
@auth.authenticated("member")
@body(PayIn)
@returns(PayParamsOut)
async def pay_order(request: Request, order_no: str, payload: PayIn) -> HTTPResponse:
    """The parameters for `wx.requestPayment` (the order must be unpaid and in time)."""
    order = await service.get_order(
        order_no, member_id=request.ctx.principal.subject, redis=request.app.ctx.redis
    )
    params = await payments.prepay(request.app.ctx.settings, order, payload.appid)
    return respond(params)


@bp.post("/orders/<order_no:str>/cancel")
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
    return respond(await _view(order, events=True))


@bp.post("/staff/orders/<order_no:str>/complete")
@auth.authenticated("staff")
@body(CompleteIn)
@returns(OrderOut)
async def complete_pickup(request: Request, order_no: str, payload: CompleteIn) -> HTTPResponse:
    """A clerk of the order's store hands the goods over against the shopper's pickup code."""
    order = await pickup.complete_pickup(
        order_no, staff_id=request.ctx.principal.subject, pickup_code=payload.pickup_code
    )
    return respond(await _view(order, show_pickup_code=False))


@bp.get("/admin/orders/<order_no:str>")
@auth.authenticated("operator")
@returns(OrderOut)
async def admin_order(request: Request, order_no: str) -> HTTPResponse:
    """An order with its full history (events) and any flag for an operator."""
    order = await service.get_order(order_no)
    return respond(await _view(order, events=True))
