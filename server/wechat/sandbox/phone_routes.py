"""The sandbox's phone side and its controls, mounted under /_sandbox/wechat.

- the **phone side** a test or a demo user drives: create a WeChat user, get the code
  wx.login() / getPhoneNumber would give, bind the app to the Open Platform later
  (a unionid appears), accept a subscription, read the messages sent;
- **controls** for tests: switch failures on (45011, 40226, -1, any errcode, per API and
  optionally per user), set the moderation verdict, expire an access token, set the
  token lifetime, read call counters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field
from redis.asyncio import Redis
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from server.infra.errors import Conflict, NotFound, ValidationFailed
from server.infra.http import body, respond
from server.wechat.sandbox import state
from server.wechat.sandbox.state import (
    CODE_TTL,
    CONF,
    FAILURES,
    MSGSEC,
    STATS,
    get_user,
    put_user,
    redis_of,
)

bp = Blueprint("wechat_sandbox_phone", url_prefix="/_sandbox/wechat")

_PHONE_RE = re.compile(r"^1[3-9]\d{9}$")


# -- phone side -----------------------------------------------------------------------------------


class NewUser(BaseModel):
    appid: str | None = Field(default=None, max_length=32)
    openid: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_\-]{6,64}$")
    unionid: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_\-]{6,64}$")
    phone: str | None = None


class UserPatch(BaseModel):
    unionid: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_\-]{6,64}$")
    phone: str | None = None


class Subscription(BaseModel):
    template_id: str = Field(min_length=1, max_length=64)
    count: int = Field(default=1, ge=1, le=1000)


def _public(user: dict[str, Any]) -> dict[str, Any]:
    return {"appid": user["appid"], "openid": user["openid"], "unionid": user.get("unionid")}


async def _claim_unionid(redis: Redis, appid: str, unionid: str, openid: str) -> None:
    """One unionid is one person: within one app it belongs to one openid."""
    key = state.union_key(appid, unionid)
    if not await redis.set(key, openid, nx=True):
        holder = await redis.get(key)
        if holder != openid:
            raise Conflict(
                f"unionid {unionid} already belongs to {holder} in {appid}",
                code="SANDBOX_UNIONID_TAKEN",
            )


def _check_phone(phone: str | None) -> None:
    if phone is not None and not _PHONE_RE.match(phone):
        raise ValidationFailed("phone must be a mainland mobile number (11 digits)")


@bp.post("/users")
@body(NewUser)
async def create_user(request: Request, payload: NewUser) -> HTTPResponse:
    """A WeChat user of one app (the default app when appid is absent). A given unionid ties
    users of different apps together (one person, one Open Platform account)."""
    redis = redis_of(request)
    apps = [a.appid for a in request.app.ctx.settings.apps]
    appid = payload.appid or (apps[0] if apps else None)
    if appid not in apps:
        raise ValidationFailed(f"unknown appid {payload.appid!r}; GET /_sandbox/wechat/apps")
    _check_phone(payload.phone)
    openid = payload.openid or state.new_openid()
    user = {
        "appid": appid,
        "openid": openid,
        "unionid": payload.unionid,
        "phone": payload.phone or state.new_phone(),
        "session_key": None,
    }
    if not await redis.set(state.user_key(openid), orjson.dumps(user), nx=True):
        raise Conflict(f"openid {openid} exists already", code="SANDBOX_USER_EXISTS")
    if payload.unionid:
        try:
            await _claim_unionid(redis, appid, payload.unionid, openid)
        except Conflict:
            await redis.delete(state.user_key(openid))
            raise
    return respond(_public(user), status=201)


async def _user_or_404(request: Request, openid: str) -> dict[str, Any]:
    user = await get_user(redis_of(request), openid)
    if user is None:
        raise NotFound(f"no sandbox user {openid}")
    return user


@bp.get("/users/<openid:str>")
async def show_user(request: Request, openid: str) -> HTTPResponse:
    return respond(_public(await _user_or_404(request, openid)))


@bp.patch("/users/<openid:str>")
@body(UserPatch)
async def patch_user(request: Request, openid: str, payload: UserPatch) -> HTTPResponse:
    """The app got bound to the Open Platform account: from now on logins carry a unionid."""
    redis = redis_of(request)
    user = await _user_or_404(request, openid)
    _check_phone(payload.phone)
    if payload.unionid and payload.unionid != user.get("unionid"):
        await _claim_unionid(redis, user["appid"], payload.unionid, openid)
        if user.get("unionid"):
            await redis.delete(state.union_key(user["appid"], user["unionid"]))
        user["unionid"] = payload.unionid
    if payload.phone:
        user["phone"] = payload.phone
    await put_user(redis, user)
    return respond(_public(user))


async def _one_time_code(request: Request, openid: str, key: Callable[[str], str]) -> HTTPResponse:
    await _user_or_404(request, openid)
    code = state.rand_id(32)
    await redis_of(request).set(key(code), openid, ex=CODE_TTL)
    return respond({"code": code, "expires_in": CODE_TTL})


@bp.post("/users/<openid:str>/login-code")
async def login_code(request: Request, openid: str) -> HTTPResponse:
    """What wx.login() returns on this user's phone: a code good for 5 minutes, once."""
    return await _one_time_code(request, openid, state.code_key)


@bp.post("/users/<openid:str>/phone-code")
async def phone_code(request: Request, openid: str) -> HTTPResponse:
    """What the getPhoneNumber button hands the app after the user agrees."""
    return await _one_time_code(request, openid, state.phone_code_key)


@bp.post("/users/<openid:str>/subscriptions")
@body(Subscription)
async def accept_subscription(request: Request, openid: str, payload: Subscription) -> HTTPResponse:
    """The user taps "allow" on wx.requestSubscribeMessage: `count` sends of that template."""
    await _user_or_404(request, openid)
    redis = redis_of(request)
    left = await redis.hincrby(state.subs_key(openid), payload.template_id, payload.count)
    return respond({"template_id": payload.template_id, "remaining": left})


@bp.get("/users/<openid:str>/messages")
async def list_messages(request: Request, openid: str) -> HTTPResponse:
    """The subscribe messages this user received, newest first."""
    await _user_or_404(request, openid)
    items = await redis_of(request).lrange(state.msgs_key(openid), 0, 99)
    return respond({"items": [orjson.loads(i) for i in items]})


@bp.get("/apps")
async def list_apps(request: Request) -> HTTPResponse:
    """The configured appids, the default first."""
    apps = request.app.ctx.settings.apps
    return respond(
        {
            "items": [a.appid for a in apps],
            "default": apps[0].appid if apps else None,
            "apps": [{"appid": a.appid, "name": a.name} for a in apps],
        }
    )


# -- controls (tests, demo) -----------------------------------------------------------------------


class FailureRule(BaseModel):
    api: str = Field(
        description="jscode2session | getuserphonenumber | stable_token | getwxacodeunlimit | "
        "generate_urllink | generatescheme | subscribe_send | msg_sec_check | *",
        pattern=r"^[a-z0-9_]+$|^\*$",
    )
    errcode: int = Field(description="e.g. 45011 rate limit, 40226 high-risk user, -1 busy")
    times: int = Field(default=1, ge=-1, description="how many calls fail; -1 until cleared")
    openid: str | None = Field(default=None, description="only this user's calls")


class MsgSecVerdict(BaseModel):
    suggest: Literal["pass", "review", "risky"] = "pass"
    label: int = 100
    keywords: list[str] = Field(default_factory=list, description="empty: every text")


class TokenTtl(BaseModel):
    seconds: int = Field(ge=1, le=7200)


class AppRef(BaseModel):
    appid: str


class Pages(BaseModel):
    pages: list[str] = Field(default_factory=list, description="published pages; empty: any")


@bp.post("/control/failures")
@body(FailureRule)
async def switch_failure(request: Request, payload: FailureRule) -> HTTPResponse:
    if payload.times == 0:
        raise ValidationFailed("times must be -1 or at least 1")
    field = f"{payload.api}|{payload.openid}" if payload.openid else payload.api
    rule = {"errcode": payload.errcode, "times": payload.times}
    await redis_of(request).hset(FAILURES, field, orjson.dumps(rule))
    return respond({"field": field, **rule}, status=201)


@bp.delete("/control/failures")
async def clear_failures(request: Request) -> HTTPResponse:
    await redis_of(request).delete(FAILURES)
    return respond({"cleared": True})


@bp.put("/control/msg-sec")
@body(MsgSecVerdict)
async def set_msgsec(request: Request, payload: MsgSecVerdict) -> HTTPResponse:
    redis = redis_of(request)
    await redis.delete(MSGSEC)
    await redis.hset(
        MSGSEC,
        mapping={
            "suggest": payload.suggest,
            "label": payload.label,
            "keywords": orjson.dumps(payload.keywords).decode(),
        },
    )
    return respond(payload)


@bp.post("/control/expire-token")
@body(AppRef)
async def expire_token(request: Request, payload: AppRef) -> HTTPResponse:
    """The app's current access token expires now: the next call with it gets 42001."""
    redis = redis_of(request)
    current = await redis.get(state.current_token_key(payload.appid))
    if current:
        await redis.delete(state.token_key(current), state.current_token_key(payload.appid))
    return respond({"expired": bool(current)})


@bp.put("/control/token-ttl")
@body(TokenTtl)
async def set_token_ttl(request: Request, payload: TokenTtl) -> HTTPResponse:
    await redis_of(request).hset(CONF, "token_ttl", payload.seconds)
    return respond({"seconds": payload.seconds})


@bp.put("/control/pages")
@body(Pages)
async def set_pages(request: Request, payload: Pages) -> HTTPResponse:
    """Which pages are published (getwxacodeunlimit with check_path answers 41030 for others)."""
    redis = redis_of(request)
    await redis.delete("sandbox:wx:pages")
    if payload.pages:
        await redis.sadd("sandbox:wx:pages", *payload.pages)
    return respond({"pages": payload.pages})


@bp.get("/control/stats")
async def stats(request: Request) -> HTTPResponse:
    """How many times each API was called (tests check single-flight token refresh with it)."""
    counts = await redis_of(request).hgetall(STATS)
    return respond(
        {
            "calls": {k: int(v) for k, v in counts.items()},
            "at": datetime.now(UTC).isoformat(),
        }
    )
