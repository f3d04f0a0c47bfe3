"""The local WeChat sandbox, mounted under /_sandbox/wechat (demo mode or HAODIAN_SANDBOX=1).

Here, the **mini-program server API** as WeChat serves it (errors are HTTP 200 with
`{"errcode", "errmsg"}`): stable_token, token, jscode2session, getuserphonenumber,
getwxacodeunlimit (real PNG bytes), generate_urllink, generatescheme, subscribe/send,
msg_sec_check v2. The phone side a test or a demo user drives, and the controls for tests,
are in `phone_routes`; WeChat Pay in `pay_routes`, delivery in `delivery_routes`.

State is in Redis under `sandbox:` so every worker of a multi-worker server agrees.
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import segno
from redis.asyncio import Redis
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, raw

from server.infra.errors import NotFound
from server.infra.http import respond
from server.settings import Settings
from server.wechat.sandbox import state
from server.wechat.sandbox.state import (
    CONF,
    DEFAULT_TOKEN_TTL,
    FAILURES,
    MSGSEC,
    get_user,
    put_user,
    redis_of,
    stat,
)

bp = Blueprint("wechat_sandbox", url_prefix="/_sandbox/wechat")

_TAKE_FAILURE = (Path(__file__).parent / "lua" / "take_failure.lua").read_text()
_SCENE_RE = re.compile(r"^[0-9A-Za-z!#$&'()*+,/:;=?@\-._~]{1,32}$")
_PAGE_RE = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$")


def _settings(request: Request) -> Settings:
    return request.app.ctx.settings


def _wx(errcode: int, errmsg: str) -> HTTPResponse:
    """WeChat's way of failing: HTTP 200 with an errcode."""
    return respond({"errcode": errcode, "errmsg": errmsg})


def _ok(**data: Any) -> HTTPResponse:
    return respond({"errcode": 0, "errmsg": "ok", **data})


_ERRMSG = {
    -1: "system error",
    45011: "api minute-quota reach limit  mustslower  retry next minute",
    40226: "invalid user, high risk user",
    45009: "reach max api daily quota limit",
    43101: "user refuse to accept the msg",
}


async def _failure(request: Request, api: str, openid: str | None = None) -> HTTPResponse | None:
    """The switched-on failure for this call, as WeChat would answer it."""
    fields = [f"{api}|{openid}"] if openid else []
    fields += [api, "*"]
    script = redis_of(request).register_script(_TAKE_FAILURE)
    errcode = await script(keys=[FAILURES], args=fields)
    if errcode is None or errcode is False:
        return None
    errcode = int(errcode)
    return _wx(errcode, _ERRMSG.get(errcode, "sandbox: switched-on failure"))


def _json(request: Request) -> dict[str, Any] | None:
    try:
        data = orjson.loads(request.body or b"{}")
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


# -- access tokens --------------------------------------------------------------------------------


async def _token_ttl(redis: Redis) -> int:
    return int(await redis.hget(CONF, "token_ttl") or DEFAULT_TOKEN_TTL)


async def _issue_token(redis: Redis, appid: str) -> tuple[str, int]:
    ttl = await _token_ttl(redis)
    token = f"sbx.{appid}.{state.rand_id(48)}"
    async with redis.pipeline(transaction=True) as p:
        p.set(state.token_key(token), appid, ex=ttl)
        p.set(state.issued_key(token), appid, ex=max(ttl * 2, 86400))
        p.set(state.current_token_key(appid), token, ex=ttl)
        await p.execute()
    return token, ttl


def _check_app(request: Request, appid: str | None, secret: str | None) -> HTTPResponse | None:
    app = next((a for a in _settings(request).apps if a.appid == appid), None)
    if app is None:
        return _wx(40013, "invalid appid")
    if secret != app.secret:
        return _wx(40125, "invalid appsecret")
    return None


@bp.post("/cgi-bin/stable_token")
async def stable_token(request: Request) -> HTTPResponse:
    """Stable access token: the same one until it nears expiry; force_refresh makes a new one
    and leaves the old one 5 more minutes at most."""
    data = _json(request)
    if data is None:
        return _wx(47001, "data format error")
    redis = redis_of(request)
    await stat(redis, "stable_token")
    if data.get("grant_type") != "client_credential":
        return _wx(40002, "invalid grant_type")
    bad = _check_app(request, data.get("appid"), data.get("secret"))
    if bad:
        return bad
    if fail := await _failure(request, "stable_token"):
        return fail
    appid = data["appid"]
    current = await redis.get(state.current_token_key(appid))
    if current and not data.get("force_refresh"):
        left = await redis.ttl(state.token_key(current))
        if left > 300:  # the platform rotates ~5 minutes early
            return respond({"access_token": current, "expires_in": left})
    if current:
        left = await redis.ttl(state.token_key(current))
        if left > 300:
            await redis.expire(state.token_key(current), 300)
    token, ttl = await _issue_token(redis, appid)
    return respond({"access_token": token, "expires_in": ttl})


@bp.get("/cgi-bin/token")
async def classic_token(request: Request) -> HTTPResponse:
    """The classic token: every call makes a new one and ends the previous one."""
    redis = redis_of(request)
    await stat(redis, "token")
    appid, secret = request.args.get("appid"), request.args.get("secret")
    if request.args.get("grant_type") != "client_credential":
        return _wx(40002, "invalid grant_type")
    bad = _check_app(request, appid, secret)
    if bad:
        return bad
    current = await redis.get(state.current_token_key(appid or ""))
    if current:  # "not latest": 40001, not 42001
        await redis.delete(state.token_key(current), state.issued_key(current))
    token, ttl = await _issue_token(redis, appid or "")
    return respond({"access_token": token, "expires_in": ttl})


async def _open_call(
    request: Request, api: str
) -> tuple[str, dict[str, Any], None] | tuple[None, None, HTTPResponse]:
    """The start every access-token API shares: count the call, check the token, read the
    JSON body. Returns (appid, body, None), or (None, None, the WeChat error answer)."""
    await stat(redis_of(request), api)
    appid, bad = await _token_app(request)
    if bad is not None:
        return None, None, bad
    data = _json(request)
    if data is None:
        return None, None, _wx(47001, "data format error")
    return appid, data, None  # type: ignore[return-value]


async def _token_app(request: Request) -> tuple[str | None, HTTPResponse | None]:
    token = request.args.get("access_token") or ""
    redis = redis_of(request)
    if not token:
        return None, _wx(41001, "access_token missing")
    appid = await redis.get(state.token_key(token))
    if appid:
        return appid, None
    if await redis.exists(state.issued_key(token)):
        return None, _wx(42001, "access_token expired")
    if not token.startswith("sbx."):
        return None, _wx(40014, "invalid access_token")
    return None, _wx(40001, "invalid credential, access_token is invalid or not latest")


# -- login and phone ------------------------------------------------------------------------------


@bp.get("/sns/jscode2session")
async def jscode2session(request: Request) -> HTTPResponse:
    redis = redis_of(request)
    await stat(redis, "jscode2session")
    appid = request.args.get("appid")
    bad = _check_app(request, appid, request.args.get("secret"))
    if bad:
        return bad
    if request.args.get("grant_type") != "authorization_code":
        return _wx(40002, "invalid grant_type")
    code = request.args.get("js_code") or ""
    openid = await redis.get(state.code_key(code)) if code else None
    if fail := await _failure(request, "jscode2session", openid):
        return fail
    openid = await redis.getdel(state.code_key(code)) if code else None
    user = await get_user(redis, openid) if openid else None
    if user is None or user["appid"] != appid:
        return _wx(40029, "invalid code")
    user["session_key"] = state.new_session_key()
    await put_user(redis, user)
    out = {"openid": user["openid"], "session_key": user["session_key"]}
    if user.get("unionid"):
        out["unionid"] = user["unionid"]
    return respond(out)


@bp.post("/wxa/business/getuserphonenumber")
async def getuserphonenumber(request: Request) -> HTTPResponse:
    redis = redis_of(request)
    appid, data, bad = await _open_call(request, "getuserphonenumber")
    if bad:
        return bad
    if not isinstance(data.get("code"), str):
        return _wx(47001, "data format error")
    openid = await redis.get(state.phone_code_key(data["code"]))
    if fail := await _failure(request, "getuserphonenumber", openid):
        return fail
    openid = await redis.getdel(state.phone_code_key(data["code"]))
    user = await get_user(redis, openid) if openid else None
    if user is None or user["appid"] != appid:
        return _wx(40029, "invalid code")
    phone = user["phone"]
    return _ok(
        phone_info={
            "phoneNumber": phone,
            "purePhoneNumber": phone,
            "countryCode": "86",
            "watermark": {"timestamp": int(time.time()), "appid": appid},
        }
    )


# -- share codes and links ------------------------------------------------------------------------


@bp.post("/wxa/getwxacodeunlimit")
async def getwxacodeunlimit(request: Request) -> HTTPResponse:
    """A real PNG (a QR code standing in for WeChat's round code) on success, JSON on failure."""
    redis = redis_of(request)
    appid, data, bad = await _open_call(request, "getwxacodeunlimit")
    if bad:
        return bad
    if fail := await _failure(request, "getwxacodeunlimit"):
        return fail
    scene = data.get("scene")
    if not isinstance(scene, str) or not _SCENE_RE.match(scene):
        return _wx(40169, "invalid length for scene, or the data is not json string")
    page = data.get("page") or "pages/index/index"
    env = data.get("env_version", "release")
    if env not in ("release", "trial", "develop"):
        return _wx(40097, "invalid args: env_version")
    if not isinstance(page, str) or not _PAGE_RE.match(page):
        return _wx(41030, "invalid page rule, page not exist or page has not been published")
    if data.get("check_path", True) and env == "release":
        pages = await redis.smembers("sandbox:wx:pages")
        if pages and page not in pages:
            return _wx(41030, "invalid page rule, page not exist or page has not been published")
    width = data.get("width", 430)
    if not isinstance(width, int):
        return _wx(40097, "invalid args: width")
    width = min(max(width, 280), 1280)
    content = f"https://sandbox.weixin.qq.com/a/{appid}/{page}?scene={quote(scene, safe='')}"
    qr = segno.make(content, error="m")
    scale = max(1, width // qr.symbol_size(border=2)[0])
    buf = io.BytesIO()
    qr.save(buf, kind="png", scale=scale, border=2)
    return raw(buf.getvalue(), content_type="image/png")


def _link_key(link_id: str) -> str:
    return f"sandbox:wx:link:{link_id}"


async def _make_link(request: Request, api: str, kind: str) -> HTTPResponse:
    redis = redis_of(request)
    appid, data, bad = await _open_call(request, api)
    if bad:
        return bad
    if fail := await _failure(request, api):
        return fail
    spec = data.get("jump_wxa", data) if kind == "scheme" else data
    path = spec.get("path") or ""
    query = spec.get("query") or ""
    if not isinstance(path, str) or path.startswith("/") or len(path) > 1024:
        return _wx(40165, "invalid weapp pagepath")
    if not isinstance(query, str) or len(query) > 1024:
        return _wx(40212, "invalid query")
    now = int(time.time())
    month = 30 * 86400
    if data.get("expire_type", 0) == 1:
        interval = data.get("expire_interval")
        if not isinstance(interval, int) or not 1 <= interval <= 30:
            return _wx(40097, "invalid args: expire_interval must be 1..30 days")
        expires_at = now + interval * 86400
    else:
        expires_at = data.get("expire_time") or now + month
        if not isinstance(expires_at, int) or not now < expires_at <= now + month:
            return _wx(40097, "invalid args: expire_time must be within 30 days")
    link_id = state.rand_id(12, "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789")
    await redis.set(
        _link_key(link_id),
        orjson.dumps({"appid": appid, "path": path, "query": query, "expires_at": expires_at}),
        ex=expires_at - now,
    )
    if kind == "scheme":
        return _ok(openlink=f"weixin://dl/business/?t={link_id}")
    return _ok(url_link=f"https://wxaurl.cn/{link_id}")


@bp.post("/wxa/generate_urllink")
async def generate_urllink(request: Request) -> HTTPResponse:
    return await _make_link(request, "generate_urllink", "urllink")


@bp.post("/wxa/generatescheme")
async def generatescheme(request: Request) -> HTTPResponse:
    return await _make_link(request, "generatescheme", "scheme")


@bp.get("/links/<link_id:str>")
async def open_link(request: Request, link_id: str) -> HTTPResponse:
    """Phone side: what opening a URL link or scheme does (which app, page and query)."""
    raw_link = await redis_of(request).get(_link_key(link_id))
    if raw_link is None:
        raise NotFound("no such link, or it expired")
    return respond(orjson.loads(raw_link))


# -- subscribe messages and moderation ------------------------------------------------------------


@bp.post("/cgi-bin/message/subscribe/send")
async def subscribe_send(request: Request) -> HTTPResponse:
    """One send per accepted subscription; none left (or refused) → 43101."""
    redis = redis_of(request)
    appid, data, bad = await _open_call(request, "subscribe_send")
    if bad:
        return bad
    openid = data.get("touser")
    if fail := await _failure(request, "subscribe_send", openid):
        return fail
    user = await get_user(redis, openid) if isinstance(openid, str) else None
    if user is None or user["appid"] != appid:
        return _wx(40003, "invalid openid")
    template = data.get("template_id")
    if not isinstance(template, str) or not template:
        return _wx(40037, "invalid template_id")
    fields = data.get("data")
    if not isinstance(fields, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("value"), str) for v in fields.values()
    ):
        return _wx(47003, "argument invalid! data.value invalid")
    left = await redis.hincrby(state.subs_key(openid), template, -1)
    if left < 0:
        await redis.hincrby(state.subs_key(openid), template, 1)
        return _wx(43101, _ERRMSG[43101])
    message = {
        "template_id": template,
        "page": data.get("page"),
        "data": {k: v["value"] for k, v in fields.items()},
        "miniprogram_state": data.get("miniprogram_state", "formal"),
        "sent_at": int(time.time()),
    }
    await redis.lpush(state.msgs_key(openid), orjson.dumps(message))
    await redis.ltrim(state.msgs_key(openid), 0, 99)
    return _ok(msgid=int(time.time() * 1000))


@bp.post("/wxa/msg_sec_check")
async def msg_sec_check(request: Request) -> HTTPResponse:
    """Text moderation v2; the verdict is what the control endpoint set (default pass)."""
    redis = redis_of(request)
    appid, data, bad = await _open_call(request, "msg_sec_check")
    if bad:
        return bad
    content, scene, openid = data.get("content"), data.get("scene"), data.get("openid")
    if fail := await _failure(
        request, "msg_sec_check", openid if isinstance(openid, str) else None
    ):
        return fail
    if data.get("version") != 2 or scene not in (1, 2, 3, 4) or not isinstance(openid, str):
        return _wx(40097, "invalid args: version 2, scene 1-4 and openid are required")
    if not isinstance(content, str) or len(content) > 2500:
        return _wx(40097, "invalid args: content must be a string of at most 2500 characters")
    user = await get_user(redis, openid)
    if user is None or user["appid"] != appid:
        return _wx(40003, "invalid openid")
    conf = await redis.hgetall(MSGSEC)
    suggest, label = "pass", 100
    if conf.get("suggest", "pass") != "pass":
        words = orjson.loads(conf.get("keywords") or "[]")
        if not words or any(w in content for w in words):
            suggest, label = conf["suggest"], int(conf.get("label", 20001))
    result = {"suggest": suggest, "label": label}
    return _ok(
        result=result,
        detail=[{"strategy": "content_model", "errcode": 0, **result, "prob": 90}],
        trace_id=state.rand_id(24),
    )
