"""Flash-sale routes: operators create and list sales; shoppers list them and grab.

The grab is the hot path and is written for it: no pydantic, no ORM, no database, one
Redis round trip (the grab script, auto-pipelined with other requests' commands on the
same connection). A verified token's claims are cached per worker until the token
expires; its revocation is answered by the worker's RevocationWatch, which reads Redis
once per token and then hears every revocation as it happens.
"""

from __future__ import annotations

from typing import Any

import orjson
from redis.exceptions import RedisError
from sanic import Blueprint, HTTPResponse, Request
from sanic_ext import openapi

from server.flashsale import service
from server.flashsale.models import FlashReservation, FlashSale
from server.flashsale.schemas import FlashSaleIn, FlashSaleOut, GrabIn, GrabOut, SaleList
from server.infra import auth
from server.infra.clock import SHANGHAI
from server.infra.errors import (
    AppError,
    NotFound,
    Unavailable,
    ValidationFailed,
)
from server.infra.http import (
    body,
    client_address,
    documents_body,
    error_answer,
    idempotency_key,
    json_object,
    respond,
    returns,
)

bp = Blueprint("flashsale", url_prefix="/api/v1")


def _out(sale: FlashSale, left: int) -> dict[str, Any]:
    return {
        "id": sale.id,
        "sku_id": sale.sku_id,  # type: ignore[attr-defined]
        "title": sale.title,
        "store_ids": sale.store_ids,
        "price_fen": sale.price_fen,
        "units": sale.units,
        "per_member_limit": sale.per_member_limit,
        "starts_at": sale.starts_at.astimezone(SHANGHAI).isoformat(),
        "ends_at": sale.ends_at.astimezone(SHANGHAI).isoformat(),
        "member_tiers": sale.member_tiers,
        "remaining": left,
        "status": service.status_of(sale, left),
    }


# -- operators -----------------------------------------------------------------------------------


@bp.post("/admin/flash-sales")
@auth.authenticated("operator", roles=["admin", "marketing"])
@body(FlashSaleIn)
@returns(FlashSaleOut, status=201)
async def create_sale(request: Request, payload: FlashSaleIn) -> HTTPResponse:
    """Create a flash sale; its stock is loaded into Redis at once."""
    app = request.app
    sale = await service.create_sale(
        app.ctx.redis,
        app.ctx.scripts,
        operator_id=request.ctx.principal.subject,
        **payload.model_dump(),
    )
    return respond(_out(sale, sale.units), status=201)


@bp.get("/admin/flash-sales")
@auth.authenticated("operator")
@returns(SaleList)
async def admin_list(request: Request) -> HTTPResponse:
    """Every sale, newest first, with units left and orders materialised."""
    app = request.app
    items = []
    for sale in await service.all_sales():
        item = _out(sale, await service.remaining(app.ctx.redis, app.ctx.scripts, sale))
        item["reservations"] = await FlashReservation.filter(sale_id=sale.id).count()
        items.append(item)
    return respond({"items": items})


# -- shoppers ------------------------------------------------------------------------------------


@bp.get("/flash-sales")
@returns(SaleList)
async def list_sales(request: Request) -> HTTPResponse:
    """Upcoming and live sales with units left."""
    app = request.app
    pairs = await service.list_sales(app.ctx.redis, app.ctx.scripts)
    return respond({"items": [_out(s, left) for s, left in pairs]})


@bp.get("/flash-sales/<sale_id:int>")
@returns(FlashSaleOut)
async def get_sale(request: Request, sale_id: int) -> HTTPResponse:
    app = request.app
    sale = await service.get_sale(sale_id)
    return respond(_out(sale, await service.remaining(app.ctx.redis, app.ctx.scripts, sale)))


@bp.post("/flash-sales/<sale_id:int>/orders")
@openapi.secured("BearerAuth")
@openapi.parameter("Idempotency-Key", str, location="header", required=True)
@returns(GrabOut, status=202)
@documents_body(GrabIn)
async def grab(request: Request, sale_id: int) -> HTTPResponse:
    """Take units of a live sale. 202 with the order number (the order appears as pending
    payment within moments); 409 SOLD_OUT / LIMIT_REACHED / NOT_STARTED / ENDED; 429 when
    the member or the address sends too many. A repeated Idempotency-Key gets the first
    answer and takes nothing more."""
    app = request.app
    settings = app.ctx.settings
    # verify_access's checks, answered by this worker's RevocationWatch: no Redis round
    # trip for a token already seen.
    claims = await app.ctx.revocations.verify(settings, auth.bearer(request), "member")

    key = idempotency_key(request)
    quantity = 1
    if request.body:
        data = json_object(request)
        quantity = data.get("quantity", 1)
        if type(quantity) is not int or not 1 <= quantity <= 100:
            raise ValidationFailed(
                "invalid body: quantity: must be a whole number from 1 to 100",
                details=[{"field": "quantity", "message": "a whole number from 1 to 100"}],
            )
    try:
        got = await service.grab(
            app.ctx.redis,
            app.ctx.scripts,
            sale_id=sale_id,
            member_id=int(claims["sub"]),
            idem_key=key,
            quantity=quantity,
            ip=client_address(request),
            member_rps=settings.flashsale_member_rps,
            ip_rps=settings.flashsale_ip_rps,
            tier=claims.get("tier"),
        )
    except RedisError:
        raise Unavailable("the sale cannot be reached right now; try again") from None
    except AppError as exc:
        # SOLD_OUT is most of a flash sale's traffic: no trip through Sanic's error handling.
        return error_answer(request, exc)
    return HTTPResponse(
        b'{"order_no":"%s","sale_id":%d,"quantity":%d,"status":"reserved","replayed":%s}'
        % (got.order_no.encode(), sale_id, got.quantity, b"true" if got.replayed else b"false"),
        status=202,
        content_type="application/json",
    )


# -- bench only ------------------------------------------------------------------------------------


@bp.post("/_bench/flash-sales/<sale_id:int>/pg-orders")
@openapi.exclude()
async def pg_baseline_grab(request: Request, sale_id: int) -> HTTPResponse:
    """The PostgreSQL-only grab that `haodian bench flashsale` compares against: a
    conditional UPDATE of one hot stock row, then the order, in one transaction. Mounted
    only with HAODIAN_BENCH_ROUTES=1; a 404 otherwise."""
    if not request.app.ctx.settings.bench_routes:
        raise NotFound(f"no such route: POST {request.path}")
    claims = auth.decode_access(request.app.ctx.settings, auth.bearer(request), "member")
    member_id = int(claims["sub"])
    order_no = await service.pg_baseline_grab(sale_id, member_id)
    return HTTPResponse(
        orjson.dumps({"order_no": order_no, "sale_id": sale_id, "quantity": 1}),
        status=202,
        content_type="application/json",
    )
