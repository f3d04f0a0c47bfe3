"""Async client of the mini-program server API (httpx), with a configurable base URL.

One access token per app lives in Redis (`wx:{appid}:at`), shared by every worker and
every server. A refresh is single-flight: the worker that takes the Redis lock
`wx:{appid}:at:lock` asks WeChat (stable_token) while the others wait for the cached
value. When WeChat refuses a token (40001 / 40014 / 42001) the client refreshes once
and retries once. WeChat errcodes become typed exceptions (`server.wechat.errors`).

Nothing here logs a URL, a secret, a session_key or a phone number.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from redis.asyncio import Redis

from server.infra.errors import ValidationFailed
from server.settings import Settings, WeChatApp
from server.wechat.errors import (
    WeChatTokenInvalid,
    WeChatUnavailable,
    raise_for_errcode,
)

_LUA = Path(__file__).with_name("lua")
LOCK_MS = 10_000
WAIT_S = 12.0


@dataclass(frozen=True)
class Session:
    """What jscode2session answers. The session_key stays out of repr and logs."""

    openid: str
    session_key: str = field(repr=False)
    unionid: str | None = None


def token_key(appid: str) -> str:
    return f"wx:{{{appid}}}:at"


def _lock_key(appid: str) -> str:
    return f"wx:{{{appid}}}:at:lock"


class WeChatClient:
    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        *,
        base_url: str | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = (base_url or settings.wechat_api_base_url).rstrip("/")
        self.redis = redis
        self._apps = {a.appid: a for a in settings.apps}
        self._default = settings.apps[0].appid if settings.apps else None
        self.http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(6.0, connect=3.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
        self._compare_del = redis.register_script((_LUA / "compare_del.lua").read_text())

    # -- apps ------------------------------------------------------------------------------------

    def app(self, appid: str | None = None) -> WeChatApp:
        """The configured app `appid`, or the default (first) one."""
        appid = appid or self._default
        if appid is None:
            raise ValidationFailed("no WeChat app is configured", code="WECHAT_NOT_CONFIGURED")
        app = self._apps.get(appid)
        if app is None:
            raise ValidationFailed(f"unknown appid {appid!r}", code="UNKNOWN_APPID")
        return app

    @property
    def appids(self) -> list[str]:
        return list(self._apps)

    # -- transport -------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        api: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        image: bool = False,
    ) -> Any:
        try:
            resp = await self.http.request(
                method,
                self.base_url + path,
                params=params,
                content=orjson.dumps(body) if body is not None else None,
                headers={"content-type": "application/json"} if body is not None else None,
            )
        except httpx.HTTPError as exc:
            raise WeChatUnavailable(
                f"WeChat {api} unreachable: {type(exc).__name__}", headers={"Retry-After": "5"}
            ) from None
        ctype = resp.headers.get("content-type", "")
        if image and resp.status_code == 200 and ctype.startswith("image/"):
            return resp.content
        if resp.status_code >= 500:
            raise WeChatUnavailable(
                f"WeChat {api} answered HTTP {resp.status_code}", headers={"Retry-After": "5"}
            )
        try:
            data = resp.json()
        except ValueError:
            raise WeChatUnavailable(f"WeChat {api} answered something not JSON") from None
        if not isinstance(data, dict):
            raise WeChatUnavailable(f"WeChat {api} answered something not an object")
        raise_for_errcode(data, api)
        return data

    # -- access token ----------------------------------------------------------------------------

    async def _stable_token(self, app: WeChatApp, force: bool) -> tuple[str, int]:
        body: dict[str, Any] = {
            "grant_type": "client_credential",
            "appid": app.appid,
            "secret": app.secret,
        }
        if force:
            body["force_refresh"] = True
        data = await self._request("POST", "/cgi-bin/stable_token", "stable_token", body=body)
        return str(data["access_token"]), int(data.get("expires_in", 7200))

    async def access_token(self, appid: str | None = None) -> str:
        app = self.app(appid)
        token = await self.redis.get(token_key(app.appid))
        return token or await self._refresh(app, bad=None)

    async def _refresh(self, app: WeChatApp, bad: str | None) -> str:
        """Single flight across workers: one holder of the lock asks WeChat; the rest wait."""
        key, lock = token_key(app.appid), _lock_key(app.appid)
        deadline = time.monotonic() + WAIT_S
        if bad is not None:
            await self._compare_del(keys=[key], args=[bad])
        while True:
            token = await self.redis.get(key)
            if token and token != bad:
                return token
            mine = secrets.token_hex(8)
            if await self.redis.set(lock, mine, nx=True, px=LOCK_MS):
                try:
                    token = await self.redis.get(key)
                    if token and token != bad:
                        return token
                    token, expires_in = await self._stable_token(app, force=False)
                    if token == bad:  # WeChat still hands out the one it refused: force a new one
                        token, expires_in = await self._stable_token(app, force=True)
                    # Refresh 5 minutes before WeChat would (it rotates ~5 min early itself).
                    ttl = expires_in - 300 if expires_in > 600 else max(1, expires_in // 2)
                    await self.redis.set(key, token, ex=ttl)
                    return token
                finally:
                    await self._compare_del(keys=[lock], args=[mine])
            if time.monotonic() > deadline:
                raise WeChatUnavailable(
                    "timed out waiting for the WeChat access token", headers={"Retry-After": "2"}
                )
            await asyncio.sleep(0.05)

    async def _with_token(
        self, appid: str | None, method: str, path: str, api: str, **kw: Any
    ) -> Any:
        app = self.app(appid)
        token = await self.access_token(app.appid)
        try:
            return await self._request(method, path, api, params={"access_token": token}, **kw)
        except WeChatTokenInvalid:
            token = await self._refresh(app, bad=token)
            return await self._request(method, path, api, params={"access_token": token}, **kw)

    # -- APIs ------------------------------------------------------------------------------------

    async def code2session(self, code: str, appid: str | None = None) -> Session:
        """Exchange a wx.login() code (5 minutes, single use) for openid/session_key/unionid."""
        app = self.app(appid)
        data = await self._request(
            "GET",
            "/sns/jscode2session",
            "jscode2session",
            params={
                "appid": app.appid,
                "secret": app.secret,
                "js_code": code,
                "grant_type": "authorization_code",
            },
        )
        if not data.get("openid") or not data.get("session_key"):
            raise WeChatUnavailable("WeChat jscode2session answered without openid")
        return Session(
            openid=str(data["openid"]),
            session_key=str(data["session_key"]),
            unionid=data.get("unionid") or None,
        )

    async def phone_number(self, code: str, appid: str | None = None) -> dict[str, Any]:
        """The phone behind a getPhoneNumber code: {phoneNumber, purePhoneNumber, countryCode}."""
        app = self.app(appid)
        data = await self._with_token(
            app.appid,
            "POST",
            "/wxa/business/getuserphonenumber",
            "getuserphonenumber",
            body={"code": code},
        )
        info = data.get("phone_info") or {}
        if (info.get("watermark") or {}).get("appid") != app.appid:
            raise WeChatUnavailable("WeChat answered a phone number made for another app")
        return info

    async def wxacode_unlimit(
        self,
        scene: str,
        page: str,
        *,
        appid: str | None = None,
        check_path: bool = True,
        env_version: str = "release",
        width: int = 430,
    ) -> bytes:
        """A mini-program code (PNG bytes) that opens `page` with `scene`."""
        return await self._with_token(
            appid,
            "POST",
            "/wxa/getwxacodeunlimit",
            "getwxacodeunlimit",
            body={
                "scene": scene,
                "page": page,
                "check_path": check_path,
                "env_version": env_version,
                "width": width,
            },
            image=True,
        )

    async def generate_urllink(
        self,
        path: str,
        query: str = "",
        *,
        appid: str | None = None,
        expire_interval_days: int = 30,
        env_version: str = "release",
    ) -> str:
        data = await self._with_token(
            appid,
            "POST",
            "/wxa/generate_urllink",
            "generate_urllink",
            body={
                "path": path,
                "query": query,
                "expire_type": 1,
                "expire_interval": expire_interval_days,
                "env_version": env_version,
            },
        )
        return str(data["url_link"])

    async def send_subscribe(
        self,
        openid: str,
        template_id: str,
        data: dict[str, str],
        *,
        appid: str | None = None,
        page: str | None = None,
        state: str = "formal",
    ) -> None:
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": {k: {"value": v} for k, v in data.items()},
            "miniprogram_state": state,
            "lang": "zh_CN",
        }
        if page:
            body["page"] = page
        await self._with_token(
            appid, "POST", "/cgi-bin/message/subscribe/send", "subscribe_send", body=body
        )

    async def msg_sec_check(
        self, openid: str, content: str, *, scene: int = 2, appid: str | None = None
    ) -> dict[str, Any]:
        """Text moderation v2: {"suggest": "pass"|"review"|"risky", "label": int}."""
        data = await self._with_token(
            appid,
            "POST",
            "/wxa/msg_sec_check",
            "msg_sec_check",
            body={"version": 2, "openid": openid, "scene": scene, "content": content},
        )
        return dict(data.get("result") or {"suggest": "pass", "label": 100})

    async def local_delivery(
        self, action: str, body: dict[str, Any], appid: str | None = None
    ) -> dict[str, Any]:
        """即时配送 business/order/{add,cancel,get}: the courier company's answer, whose own
        refusal is `resultcode` != 0 (the caller decides; errcode failures raise here)."""
        return dict(
            await self._with_token(
                appid,
                "POST",
                f"/cgi-bin/express/local/business/order/{action}",
                f"local_delivery_{action}",
                body=body,
            )
        )

    async def aclose(self) -> None:
        await self.http.aclose()


_registered_close = False


def client_for(ctx: Any) -> WeChatClient:
    """The per-process client kept on `app.ctx` (needs `ctx.settings` and `ctx.redis`)."""
    global _registered_close
    client = getattr(ctx, "wechat", None)
    if client is None:
        client = WeChatClient(ctx.settings, ctx.redis)
        ctx.wechat = client
        if not _registered_close:
            from server.app import on_shutdown

            async def _close(app: Any) -> None:
                wc = getattr(app.ctx, "wechat", None)
                if wc is not None:
                    await wc.aclose()

            on_shutdown(_close)
            _registered_close = True
    return client
