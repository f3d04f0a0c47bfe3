"""Takeout over HTTP: the shopper's addresses, stores and quotes and orders; the store's board,
its live feed and actions; the courier platform's callbacks; the board page /staff/orders."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import orjson
from redis.exceptions import RedisError
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, html, json
from sanic_ext import openapi

from server.infra import auth
from server.infra.errors import AppError, ValidationFailed
from server.infra.http import body, json_object, query, respond, returns
from server.infra.models import is_id
from server.orders.idempotency import place_once
from server.orders.schemas import OrderOut
from server.takeout import addresses, board, courier, service
from server.takeout import schemas as s
from server.wechat.client import client_for

log = logging.getLogger("haodian.takeout")

api = Blueprint("takeout", url_prefix="/api/v1")
page_bp = Blueprint("takeout_pages")
BOARD_PAGE = Path(__file__).parent / "static" / "board.html"
FEED_BLOCK_MS = 15_000  # a keep-alive comment at least this often
FEED_LIFETIME_S = 300  # then the feed ends and the client resumes (spreads load on deploys)


# -- the shopper: addresses --------------------------------------------------------------------


@api.get("/me/addresses")
@auth.authenticated("member")
@returns(s.AddressListOut)
async def my_addresses(request: Request) -> HTTPResponse:
    rows = await addresses.list_addresses(request.ctx.principal.subject)
    return respond({"items": [addresses.address_view(a) for a in rows]})


@api.post("/me/addresses")
@auth.authenticated("member")
@body(s.AddressIn)
@returns(s.AddressOut, status=201)
async def add_address(request: Request, payload: s.AddressIn) -> HTTPResponse:
    """At most 20 addresses; the phone is sealed at rest and answered masked."""
    a = await addresses.add_address(
        request.app.ctx.settings, request.ctx.principal.subject, payload.model_dump()
    )
    return respond(addresses.address_view(a), status=201)


@api.route("/me/addresses/<address_id:int>", methods=["PATCH", "PUT"])  # wx.request: no PATCH
@auth.authenticated("member")
@body(s.AddressPatch)
@returns(s.AddressOut)
async def edit_address(request: Request, address_id: int, payload: s.AddressPatch) -> HTTPResponse:
    """Change an address (the fields given). PUT takes the same partial body: WeChat's
    wx.request cannot send PATCH."""
    a = await addresses.update_address(
        request.app.ctx.settings,
        request.ctx.principal.subject,
        address_id,
        payload.model_dump(exclude_unset=True),
    )
    return respond(addresses.address_view(a))


@api.delete("/me/addresses/<address_id:int>")
@auth.authenticated("member")
@openapi.response(204, description="the address is gone")
async def delete_address(request: Request, address_id: int) -> HTTPResponse:
    await addresses.delete_address(request.ctx.principal.subject, address_id)
    return HTTPResponse(status=204)


# -- the shopper: who delivers, the price, the order -------------------------------------------


@api.get("/takeout/stores")
@auth.authenticated("member")
@query(s.TakeoutStoresQuery)
@returns(s.TakeoutStoresOut)
async def takeout_stores(request: Request, params: s.TakeoutStoresQuery) -> HTTPResponse:
    """Stores open now (or at `at`) whose delivery area holds the address, nearest first,
    with the fee, the minimum order and an ETA: from the locator index."""
    lat, lng = params.lat, params.lng
    if params.address_id is not None:
        a = await addresses.get_address(request.ctx.principal.subject, params.address_id)
        lat, lng = a.lat, a.lng
    assert lat is not None and lng is not None
    items = await service.stores_delivering_to(
        request.app.ctx.redis, lat, lng, params.at, params.limit
    )
    return respond({"items": items})


@api.post("/takeout/quote")
@auth.authenticated("member")
@body(s.QuoteIn)
@returns(s.QuoteOut)
async def takeout_quote(request: Request, payload: s.QuoteIn) -> HTTPResponse:
    """What this cart costs delivered to the address; the order prices it again itself."""
    q = await service.quote(
        request.ctx.principal.subject,
        payload.store_id,
        payload.address_id,
        {i.sku_id: i.quantity for i in payload.items},
        payload.coupon_ids,
    )
    return respond(q.view())


@api.post("/takeout/orders")
@auth.authenticated("member")
@body(s.TakeoutOrderIn)
@returns(OrderOut, status=201)
async def takeout_order(request: Request, payload: s.TakeoutOrderIn) -> HTTPResponse:
    """Order takeout (pending payment; pay with POST /orders/{no}/pay). Send an
    Idempotency-Key: a retry gets the first answer and never a second order."""
    member_id = request.ctx.principal.subject
    status, answer = await place_once(
        member_id,
        "/takeout/orders",
        request.headers.get("idempotency-key"),
        payload.model_dump(mode="json"),
        lambda: service.place_order(
            request.app.ctx.settings,
            member_id,
            payload.store_id,
            payload.address_id,
            {i.sku_id: i.quantity for i in payload.items},
            payload.coupon_ids,
            payload.note,
        ),
    )
    return respond(answer, status=status)


# -- the store: the board ----------------------------------------------------------------------


@api.get("/staff/takeout/orders")
@auth.authenticated("staff")
@query(s.BoardQuery)
@returns(s.BoardOut)
async def board_orders(request: Request, params: s.BoardQuery) -> HTTPResponse:
    """Takeout orders of the clerk's stores; `cursor` resumes the live feed right after."""
    out = await board.board(
        request.app.ctx.redis,
        request.ctx.principal.subject,
        params.status,
        params.store_id,
        params.limit,
    )
    return respond(out)


@api.get("/staff/takeout/events")
@auth.authenticated("staff")
@openapi.response(200, {"text/event-stream": str}, "one `order` event per new or changed order")
async def board_events(request: Request) -> HTTPResponse | None:
    """Server-Sent Events: `event: order`, `data: {"type": "new"|"changed", "order": {...}}`,
    `id:` to send back as Last-Event-ID (or `?after=`, e.g. the board's `cursor`). Any API
    process serves it: the events come through Redis."""
    staff_id = request.ctx.principal.subject
    raw_store = request.args.get("store_id")
    if raw_store is not None and not (raw_store.isdigit() and is_id(int(raw_store))):
        raise ValidationFailed("store_id must be a store id", code="VALIDATION_ERROR")
    store_ids = await board.clerk_stores(staff_id, int(raw_store) if raw_store else None)
    after = request.headers.get("last-event-id") or request.args.get("after") or "$"
    if after != "$" and not _entry_id(after):
        after = "$"
    redis = request.app.ctx.redis
    if after == "$":
        after = await board.cursor(redis, store_ids)
    response = await request.respond(
        content_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    await response.send(f"retry: 2000\n: following stores {store_ids}\n\n")
    streams = {board.stream_key(sid): after for sid in store_ids}
    loop = asyncio.get_running_loop()
    ends = loop.time() + FEED_LIFETIME_S
    while loop.time() < ends and streams:
        try:
            got = await redis.xread(streams, block=FEED_BLOCK_MS, count=50)
        except RedisError:
            await response.send(": the feed is reconnecting\n\n")
            break
        if not got:
            await response.send(": keep-alive\n\n")
            continue
        for key, entries in got:
            for entry_id, fields in entries:
                streams[key] = entry_id
                data = orjson.dumps(
                    {"type": fields.get("type"), "order": orjson.loads(fields.get("order", "{}"))}
                ).decode()
                await response.send(f"id: {entry_id}\nevent: order\ndata: {data}\n\n")
    await response.eof()
    return None


def _entry_id(value: str) -> bool:
    ms, _, seq = value.partition("-")
    return ms.isdigit() and (seq == "" or seq.isdigit()) and len(value) < 40


@api.post("/staff/takeout/orders/<order_no:ref>/accept")
@auth.authenticated("staff")
@body(s.AcceptIn)
@returns(s.BoardItem)
async def accept(request: Request, order_no: str, payload: s.AcceptIn) -> HTTPResponse:
    """Accept a new order and say how long it takes to make; the shopper sees an ETA."""
    t = await board.accept(request.ctx.principal.subject, order_no, payload.prep_minutes)
    return respond(await service.board_item(t))


@api.post("/staff/takeout/orders/<order_no:ref>/reject")
@auth.authenticated("staff")
@body(s.RejectIn)
@returns(s.BoardItem)
async def reject(request: Request, order_no: str, payload: s.RejectIn) -> HTTPResponse:
    """Reject an order the store cannot make: every tender is refunded, the stock returns."""
    t = await board.reject(
        request.app.ctx.settings, request.ctx.principal.subject, order_no, payload.reason
    )
    return respond(await service.board_item(t))


@api.post("/staff/takeout/orders/<order_no:ref>/ready")
@auth.authenticated("staff")
@returns(s.BoardItem)
async def ready(request: Request, order_no: str) -> HTTPResponse:
    t = await board.ready(request.ctx.principal.subject, order_no)
    return respond(await service.board_item(t))


@api.post("/staff/takeout/orders/<order_no:ref>/dispatch")
@auth.authenticated("staff")
@body(s.DispatchIn)
@returns(s.BoardItem)
async def dispatch(request: Request, order_no: str, payload: s.DispatchIn) -> HTTPResponse:
    """Hand it to the store's own courier, or to the courier platform (a refusal: 409
    COURIER_REFUSED, and the order stays on the board flagged)."""
    t = await board.dispatch(
        request.app.ctx.settings,
        client_for(request.app.ctx),
        request.ctx.principal.subject,
        order_no,
        payload.courier,
    )
    return respond(await service.board_item(t))


@api.post("/staff/takeout/orders/<order_no:ref>/delivered")
@auth.authenticated("staff")
@returns(s.BoardItem)
async def delivered(request: Request, order_no: str) -> HTTPResponse:
    """The store's own courier delivered it (the platform reports its own deliveries)."""
    t = await board.delivered(request.ctx.principal.subject, order_no)
    return respond(await service.board_item(t))


# -- the courier platform ----------------------------------------------------------------------


@api.post("/takeout/courier/notify")
@returns(s.PushAnswer)
async def courier_notify(request: Request) -> HTTPResponse:
    """WeChat's message push (safe mode) for update_waybill_status: the signature is checked
    and the body decrypted before anything in it is read; a repeated, late or out-of-order
    callback is acknowledged and changes nothing."""
    try:
        event = courier.open_push(request.app.ctx.settings, request.args, json_object(request))
    except AppError as exc:
        log.warning("courier push refused", extra={"code": exc.code})
        raise
    if event.get("Event") != "update_waybill_status":
        return json({"resultcode": 0, "resultmsg": "ignored"})
    outcome = await board.apply_callback(event)
    log.info("courier callback", extra={"outcome": outcome, "status": event.get("order_status")})
    return json({"resultcode": 0, "resultmsg": outcome})


# -- the board page ----------------------------------------------------------------------------


@page_bp.get("/staff/orders")
@openapi.response(200, {"text/html": str}, "the store's takeout board")
async def board_page(request: Request) -> HTTPResponse:
    """The store's takeout board (plain HTML + JS, no build step)."""
    return html(
        BOARD_PAGE.read_text(encoding="utf-8"),
        headers={"Cache-Control": "no-cache", "X-Frame-Options": "DENY"},
    )


bp = Blueprint.group(api, page_bp)
