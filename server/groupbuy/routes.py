"""Group-buy routes: operators create activities and read their stats; shoppers open and join
groups; anyone opens a group's landing page (it is what a share link shows).

Opening and joining are the hot path and written like the flash-sale grab: no pydantic, no
ORM, no database, one Redis round trip; the order is written by the worker a moment later
(or at once, if the shopper pays first: `orders.lifecycle.pending_orders`).
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from redis.exceptions import RedisError
from sanic import Blueprint, HTTPResponse, Request
from sanic_ext import openapi

from server.groupbuy import seats, service
from server.groupbuy.schemas import (
    ActivityDetailOut,
    ActivityIn,
    ActivityList,
    ActivityOut,
    AdminActivityOut,
    GroupBuyStatsOut,
    GroupOut,
    JoinIn,
    SeatOut,
)
from server.infra import auth
from server.infra.clock import SHANGHAI
from server.infra.errors import AppError, Unavailable, ValidationFailed
from server.infra.http import (
    body,
    documents_body,
    error_answer,
    idempotency_key,
    json_object,
    respond,
    returns,
)
from server.share import service as share

bp = Blueprint("groupbuy", url_prefix="/api/v1")

# -- operators -----------------------------------------------------------------------------------


@bp.post("/admin/group-buys")
@auth.authenticated("operator", roles=["admin", "marketing"])
@body(ActivityIn)
@returns(ActivityOut, status=201)
async def create_activity(request: Request, payload: ActivityIn) -> HTTPResponse:
    """Create a group-buy activity (and its store voucher template); Redis is loaded at once."""
    ctx = request.app.ctx
    activity = await service.create_activity(
        ctx.scripts, operator_id=request.ctx.principal.subject, **payload.model_dump()
    )
    return respond(await service.activity_out(ctx.redis, ctx.scripts, activity), status=201)


@bp.get("/admin/group-buys")
@auth.authenticated("operator")
@returns(ActivityList)
async def admin_list(request: Request) -> HTTPResponse:
    ctx = request.app.ctx
    items = await service.activities_out(ctx.redis, ctx.scripts, live_only=False)
    return respond({"items": items})


@bp.get("/admin/group-buys/<activity_id:int>")
@auth.authenticated("operator")
@returns(AdminActivityOut)
async def admin_detail(request: Request, activity_id: int) -> HTTPResponse:
    ctx = request.app.ctx
    a = await service.get_activity(activity_id)
    out = await service.activity_out(ctx.redis, ctx.scripts, a)
    return respond({**out, "stats": await service.stats(a.id)})


@bp.get("/admin/group-buys/<activity_id:int>/stats")
@auth.authenticated("operator")
@returns(GroupBuyStatsOut)
async def admin_stats(request: Request, activity_id: int) -> HTTPResponse:
    """Groups opened / succeeded / failed, members, refunds (after success too), vouchers
    issued / written off and the write-off rate."""
    return respond(await service.stats(activity_id))


# -- shoppers ------------------------------------------------------------------------------------


@bp.get("/group-buys")
@returns(ActivityList)
async def list_activities(request: Request) -> HTTPResponse:
    """Live and upcoming group-buys."""
    ctx = request.app.ctx
    items = await service.activities_out(ctx.redis, ctx.scripts, live_only=True)
    return respond({"items": items})


@bp.get("/group-buys/<activity_id:int>")
@returns(ActivityDetailOut)
async def activity_detail(request: Request, activity_id: int) -> HTTPResponse:
    """An activity and its joinable groups, fewest seats left first."""
    ctx = request.app.ctx
    a = await service.get_activity(activity_id)
    out = await service.activity_out(ctx.redis, ctx.scripts, a)
    return respond({**out, "joinable_groups": await service.joinable_groups(ctx.redis, a.id)})


@bp.get("/groups/<group_no:ref>")
@returns(GroupOut)
async def group_landing(request: Request, group_no: str) -> HTTPResponse:
    """A group as its share landing page shows it (no token needed): status, seats left,
    deadline, members with masked nicknames."""
    return respond(await service.group_out(request.app.ctx.redis, group_no))


def _scene(request: Request) -> str:
    data = json_object(request)
    scene = data.get("scene") or ""
    if not isinstance(scene, str) or len(scene) > 32:
        raise ValidationFailed(
            "invalid body: scene: a share scene of at most 32 characters",
            details=[{"field": "scene", "message": "a string of at most 32 characters"}],
        )
    # Not one of our scenes (a hand-made link): the join still counts, unattributed.
    return scene if share.valid_scene(scene) else ""


# Shanghai time of whole seconds as isoformat() writes it, split where a fraction goes:
# a seat's two deadlines are formatted without a datetime per call (the join's hot path).
_second_text: dict[int, tuple[str, str]] = {}


def _iso_ms(ms: int) -> str:
    """`seats.from_ms(ms).astimezone(SHANGHAI).isoformat()`, the same text, made faster."""
    # Seconds and microseconds split as datetime.fromtimestamp splits ms / 1000.
    fraction, whole = math.modf(ms / 1000)
    micros, second = round(fraction * 1e6), int(whole)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    elif micros < 0:
        second, micros = second - 1, micros + 1_000_000
    parts = _second_text.get(second)
    if parts is None:
        if len(_second_text) >= 10_000:
            _second_text.clear()
        text = seats.from_ms(second * 1000).astimezone(SHANGHAI).isoformat()
        parts = _second_text[second] = (text[:19], text[19:])  # ...T12:34:56 | +08:00
    if micros:
        return f"{parts[0]}.{micros:06d}{parts[1]}"
    return parts[0] + parts[1]


def _seated(activity_id: int, got: seats.Seated, status: str = "held") -> HTTPResponse:
    answer: dict[str, Any] = {
        "group_no": got.group_no,
        "order_no": got.order_no,
        "activity_id": activity_id,
        "seat": got.seat,
        "status": status,
        "pay_deadline": _iso_ms(got.pay_deadline_ms),
        "expires_at": _iso_ms(got.expires_ms),
        "replayed": got.replayed,
    }
    return HTTPResponse(orjson.dumps(answer), status=201, content_type="application/json")


async def _take(request: Request, mode: str, activity_id: int, group_no: str) -> HTTPResponse:
    app = request.app
    try:
        claims = await app.ctx.revocations.verify(app.ctx.settings, auth.bearer(request), "member")
        key = idempotency_key(request)
        got = await seats.take_seat(
            app.ctx.redis,
            app.ctx.scripts,
            mode=mode,
            activity_id=activity_id,
            group_no=group_no,
            member_id=int(claims["sub"]),
            idem_key=key,
            scene=_scene(request),
        )
    except RedisError:
        return error_answer(request, Unavailable("group-buy is unreachable right now; try again"))
    except AppError as exc:
        return error_answer(request, exc)
    if got.replayed:
        return _seated(activity_id, got, await seats.seat_status(got.order_no))
    return _seated(activity_id, got)


@bp.post("/group-buys/<activity_id:int>/groups")
@openapi.secured("BearerAuth")
@openapi.parameter("Idempotency-Key", str, location="header", required=True)
@returns(SeatOut, status=201)
async def open_group(request: Request, activity_id: int) -> HTTPResponse:
    """Open a group as its leader: 201 with the group and an order (kind groupbuy) to pay
    through /orders/{no}/pay; friends can join once it is paid. 409 SOLD_OUT /
    LIMIT_REACHED / NOT_STARTED / ENDED. A repeated Idempotency-Key gets the first answer."""
    return await _take(request, "open", activity_id, seats.new_group_no(activity_id))


@bp.post("/groups/<group_no:ref>/join")
@openapi.secured("BearerAuth")
@openapi.parameter("Idempotency-Key", str, location="header", required=True)
@returns(SeatOut, status=201)
@documents_body(JoinIn)
async def join_group(request: Request, group_no: str) -> HTTPResponse:
    """Take a seat in a friend's group (pass the share `scene` you came through): 201 with an
    order to pay; 409 GROUP_FULL (with other joinable groups in `details`), GROUP_CLOSED,
    GROUP_NOT_OPEN, ALREADY_IN_GROUP, LIMIT_REACHED, ENDED; 404 GROUP_NOT_FOUND."""
    try:
        activity_id = seats.activity_of(group_no)
    except AppError as exc:
        return error_answer(request, exc)
    return await _take(request, "join", activity_id, group_no)
