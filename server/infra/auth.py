"""Bearer tokens for the three kinds of caller: members, staff (clerks) and operators.

Access tokens are short-lived JWTs (HS256) whose audience names the kind of
caller, so a member token never opens a staff or admin route. Verifying one
needs no database query: the signature and expiry are checked locally and one
Redis GET tells whether the subject's tokens were revoked (logout, disabled
account). Refresh tokens are opaque, kept in Redis, and rotate on every use.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import jwt
import orjson
from redis.asyncio import Redis
from sanic import Request
from sanic_ext import openapi

from server.infra.errors import Forbidden, Unauthorized
from server.infra.http import wraps_documented
from server.settings import Settings

Audience = Literal["member", "staff", "operator"]
AUDIENCES: tuple[Audience, ...] = ("member", "staff", "operator")
ISSUER = "haodian"


@dataclass(frozen=True)
class Principal:
    audience: Audience
    subject: int
    roles: tuple[str, ...] = ()
    claims: dict[str, Any] = field(default_factory=dict)


def _revoked_key(audience: str, subject: int | str) -> str:
    return f"auth:revoked:{audience}:{subject}"


def _jti_key(jti: str) -> str:
    return f"auth:revoked-jti:{jti}"


def _refresh_key(token: str) -> str:
    return "auth:refresh:" + hashlib.sha256(token.encode()).hexdigest()


def encode_access(
    settings: Settings,
    audience: Audience,
    subject: int,
    roles: Iterable[str] = (),
    extra: dict[str, Any] | None = None,
) -> str:
    now = time.time()
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": audience,
        "sub": str(subject),
        "iat": now,
        "exp": int(now) + settings.access_token_ttl,
        "jti": uuid.uuid4().hex,
        "roles": list(roles),
    }
    if extra:
        claims.update(extra)
    return jwt.encode(claims, settings.secret, algorithm="HS256")


async def issue_tokens(
    redis: Redis,
    settings: Settings,
    audience: Audience,
    subject: int,
    roles: Iterable[str] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    roles = list(roles)
    refresh = secrets.token_urlsafe(32)
    await redis.set(
        _refresh_key(refresh),
        orjson.dumps(
            {
                "aud": audience,
                "sub": subject,
                "roles": roles,
                "extra": extra or {},
                "iat": time.time(),
            }
        ),
        ex=settings.refresh_token_ttl,
    )
    return {
        "token": encode_access(settings, audience, subject, roles, extra),
        "refresh_token": refresh,
        "expires_in": settings.access_token_ttl,
        "token_type": "Bearer",
    }


# Verified claims per token, kept until the token expires: the signature check is the
# costly part of every authenticated request (the flash-sale grab's hot path above all).
# Revocation is still asked of Redis by the caller; this only skips re-decoding.
_decoded: dict[tuple[str, str], dict[str, Any]] = {}
_DECODED_MAX = 100_000


def decode_access(settings: Settings, token: str, audience: Audience) -> dict[str, Any]:
    """The claims of a valid, unexpired access token of `audience` (401 otherwise)."""
    cache_key = (audience, token)
    claims = _decoded.get(cache_key)
    if claims is not None and claims["exp"] > time.time():
        return claims
    try:
        claims = jwt.decode(
            token,
            settings.secret,
            algorithms=["HS256"],
            audience=audience,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired; refresh it", code="TOKEN_EXPIRED") from None
    except jwt.InvalidAudienceError:
        raise Unauthorized("this token is not for this API", code="TOKEN_WRONG_AUDIENCE") from None
    except jwt.PyJWTError:
        raise Unauthorized("the token is invalid", code="TOKEN_INVALID") from None
    if len(_decoded) >= _DECODED_MAX:
        _decoded.clear()
    _decoded[cache_key] = claims
    return claims


def revocation_keys(audience: Audience, claims: dict[str, Any]) -> tuple[str, str]:
    """The two Redis keys that say whether this token was revoked (read them with MGET)."""
    return _revoked_key(audience, claims["sub"]), _jti_key(str(claims.get("jti", "")))


def is_revoked(claims: dict[str, Any], revoked_before: Any, jti_revoked: Any) -> bool:
    return (revoked_before is not None and float(claims["iat"]) <= float(revoked_before)) or (
        jti_revoked is not None
    )


async def verify_access(
    redis: Redis, settings: Settings, token: str, audience: Audience
) -> Principal:
    claims = decode_access(settings, token, audience)
    # One round trip: "all tokens of this subject before t" and "this one token" revocations.
    revoked_before, jti_revoked = await redis.mget(*revocation_keys(audience, claims))
    if is_revoked(claims, revoked_before, jti_revoked):
        raise Unauthorized("the token was revoked", code="TOKEN_REVOKED")
    return Principal(
        audience=audience,
        subject=int(claims["sub"]),
        roles=tuple(claims.get("roles") or ()),
        claims=claims,
    )


async def rotate_refresh(
    redis: Redis, settings: Settings, refresh_token: str, audience: Audience
) -> dict[str, Any]:
    """Trade a refresh token for a new pair; the old one works exactly once."""
    raw = await redis.getdel(_refresh_key(refresh_token))
    if raw is None:
        raise Unauthorized("the refresh token is invalid or used", code="TOKEN_INVALID")
    data = orjson.loads(raw)
    if data["aud"] != audience:
        raise Unauthorized("this token is not for this API", code="TOKEN_WRONG_AUDIENCE")
    revoked_before = await redis.get(_revoked_key(audience, data["sub"]))
    if revoked_before is not None and float(data.get("iat", 0)) <= float(revoked_before):
        raise Unauthorized("the token was revoked", code="TOKEN_REVOKED")
    return await issue_tokens(
        redis, settings, audience, int(data["sub"]), data.get("roles", []), data.get("extra")
    )


async def revoke_refresh(redis: Redis, refresh_token: str) -> None:
    await redis.delete(_refresh_key(refresh_token))


async def revoke_access(redis: Redis, claims: dict[str, Any]) -> None:
    """This one access token stops working (logout on one device); kept until it expires."""
    ttl = int(claims.get("exp", 0) - time.time()) + 1
    if claims.get("jti") and ttl > 0:
        await redis.set(_jti_key(str(claims["jti"])), "1", ex=ttl)


async def revoke_all(redis: Redis, settings: Settings, audience: Audience, subject: int) -> None:
    """Every access token of this subject issued until now stops working."""
    await redis.set(
        _revoked_key(audience, subject), f"{time.time():.6f}", ex=settings.refresh_token_ttl
    )


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("sign in first: Authorization: Bearer <token>", code="UNAUTHORIZED")
    return token.strip()


def authenticated(
    audience: Audience, roles: Iterable[str] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Route decorator: the caller must hold a live token of this audience (and a role)."""
    wanted = set(roles or ())

    def wrap(handler: Callable[..., Any]) -> Callable[..., Any]:
        @wraps_documented(handler)
        async def inner(request: Request, *args: Any, **kwargs: Any) -> Any:
            principal = await verify_access(
                request.app.ctx.redis, request.app.ctx.settings, bearer(request), audience
            )
            if wanted and not wanted.intersection(principal.roles):
                raise Forbidden(
                    f"this needs one of the roles: {', '.join(sorted(wanted))}",
                    code="ROLE_REQUIRED",
                )
            request.ctx.principal = principal
            return await handler(request, *args, **kwargs)

        return openapi.secured("BearerAuth")(inner)

    return wrap
