"""The sandbox's WeChat users, kept in Redis (keys `sandbox:wx:*`) so every worker shares them.

Other sandbox modules (WeChat Pay) read users through `get_user`.
"""

from __future__ import annotations

import base64
import secrets
import string
from typing import Any

import orjson
from redis.asyncio import Redis

CODE_TTL = 300  # a wx.login() / getPhoneNumber code lives 5 minutes and works once
DEFAULT_TOKEN_TTL = 7200
_ALNUM = string.ascii_letters + string.digits + "-_"


def user_key(openid: str) -> str:
    return f"sandbox:wx:user:{openid}"


def union_key(appid: str, unionid: str) -> str:
    return f"sandbox:wx:union:{appid}:{unionid}"


def code_key(code: str) -> str:
    return f"sandbox:wx:code:{code}"


def phone_code_key(code: str) -> str:
    return f"sandbox:wx:phonecode:{code}"


def token_key(token: str) -> str:
    return f"sandbox:wx:tok:{token}"


def issued_key(token: str) -> str:
    return f"sandbox:wx:issued:{token}"


def current_token_key(appid: str) -> str:
    return f"sandbox:wx:at:{appid}"


def subs_key(openid: str) -> str:
    return f"sandbox:wx:subs:{openid}"


def msgs_key(openid: str) -> str:
    return f"sandbox:wx:msgs:{openid}"


CONF = "sandbox:wx:conf"
STATS = "sandbox:wx:stats"
FAILURES = "sandbox:wx:fail"
MSGSEC = "sandbox:wx:msgsec"


def rand_id(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def new_openid() -> str:
    return "o" + rand_id(27)


def new_unionid() -> str:
    return "u" + rand_id(27)


def new_session_key() -> str:
    return base64.b64encode(secrets.token_bytes(16)).decode()


def new_phone() -> str:
    return "13" + "".join(secrets.choice(string.digits) for _ in range(9))


def redis_of(request: Any) -> Redis:
    """The sandbox's Redis: one node, even where the app's Redis is a cluster."""
    return request.app.ctx.sandbox_redis


async def get_user(redis: Redis, openid: str) -> dict[str, Any] | None:
    raw = await redis.get(user_key(openid))
    return orjson.loads(raw) if raw else None


async def put_user(redis: Redis, user: dict[str, Any]) -> None:
    await redis.set(user_key(user["openid"]), orjson.dumps(user))


async def stat(redis: Redis, api: str) -> None:
    await redis.hincrby(STATS, api, 1)
