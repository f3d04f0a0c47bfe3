"""Share API: members make share links, anyone opens one, operators see fission stats."""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, raw
from sanic_ext import openapi
from sanic_ext.extensions.openapi.types import Binary

from server.infra import auth
from server.infra.errors import RateLimited, Unauthorized
from server.infra.http import body, client_address, query, respond, returns
from server.share import schemas as s
from server.share import service
from server.wechat.client import client_for

bp = Blueprint("share", url_prefix="/api/v1")

PREFIX = "/api/v1"


def _with_code_url(share: dict[str, Any]) -> dict[str, Any]:
    return {**share, "wxacode_url": f"{PREFIX}/shares/{share['scene']}/wxacode"}


OPENS_PER_ADDRESS = "30/hour"


async def _opener(request: Request) -> int | None:
    """The member opening a landing page when they sent a live token; no token, a bad one or
    Redis down all count as an anonymous open (the page must open anyway)."""
    if not request.headers.get("authorization"):
        return None
    ctx = request.app.ctx
    try:
        principal = await auth.verify_access(
            ctx.redis, ctx.settings, auth.bearer(request), "member"
        )
    except (Unauthorized, RedisError):
        return None
    return principal.subject


@bp.post("/shares")
@auth.authenticated("member")
@body(s.ShareIn)
@returns(s.ShareOut, 201)
@returns(s.ShareOut, 200)
async def create_share(request: Request, payload: s.ShareIn) -> HTTPResponse:
    """The caller's share link for a target: 201 the first time, 200 with the same body
    afterwards. url_link is null while WeChat cannot make one (asked again next time)."""
    out, created = await service.create_share(
        client_for(request.app.ctx), payload.kind, payload.target, request.ctx.principal.subject
    )
    return respond(_with_code_url(out), status=201 if created else 200)


@bp.get("/shares/<scene:ref>")
@returns(s.LandingOut)
async def open_share(request: Request, scene: str) -> HTTPResponse:
    """A share's landing page (no token needed; send one to be counted as the opener). One
    address counts at most OPENS_PER_ADDRESS opens of a scene an hour: past that the page
    still opens, uncounted, so opens cannot be inflated by reloading."""
    counted = True
    try:
        ip = client_address(request)
        await request.app.ctx.limits.hit(OPENS_PER_ADDRESS, "share-open", scene, ip)
    except (RateLimited, RedisError):
        counted = False
    out = await service.open_share(scene, await _opener(request), counted=counted)
    return respond(out, headers={"Cache-Control": "no-store"})


@bp.get("/shares/<scene:ref>/wxacode")
@openapi.response(200, {"image/png": Binary()}, "the mini-program code opening the share")
async def share_wxacode(request: Request, scene: str) -> HTTPResponse:
    """The share's mini-program code image (PNG), drawn by WeChat once and then cached."""
    png = await service.wxacode(client_for(request.app.ctx), scene)
    return raw(png, content_type="image/png", headers={"Cache-Control": "public, max-age=86400"})


@bp.get("/me/shares")
@auth.authenticated("member")
@returns(s.MySharesOut)
async def my_shares(request: Request) -> HTTPResponse:
    """The caller's share links, newest first (the latest 100), with opens and conversions."""
    items = await service.my_shares(request.ctx.principal.subject)
    return respond({"items": [_with_code_url(i) for i in items]})


@bp.get("/admin/shares/stats")
@auth.authenticated("operator")
@query(s.StatsQuery)
@returns(s.ShareStatsOut)
async def share_stats(request: Request, params: s.StatsQuery) -> HTTPResponse:
    """Fission per sharer for a kind (and target): shares, opens, conversions; top 50."""
    items = await service.sharer_stats(params.kind, params.target)
    return respond({"kind": params.kind, "target": params.target, "items": items})
