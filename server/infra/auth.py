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
from pathlib import Path
from typing import Any, Literal

import jwt
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sanic import Request
from sanic_ext import openapi

from server.infra.errors import Forbidden, Unauthorized, Unavailable
from server.infra.http import wraps_documented
from server.infra.redis import Subscription, read_keys, scripts_for
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


LUA = Path(__file__).parent / "lua"


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
    revoked_before, jti_revoked = await read_keys(redis, revocation_keys(audience, claims))
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
        jti = str(claims["jti"])
        await _revoke(redis, _jti_key(jti), "1", ttl, f"jti {jti} {int(claims['exp'])}")


async def revoke_all(redis: Redis, settings: Settings, audience: Audience, subject: int) -> None:
    """Every access token of this subject issued until now stops working."""
    before = f"{time.time():.6f}"
    await _revoke(
        redis,
        _revoked_key(audience, subject),
        before,
        settings.refresh_token_ttl,
        f"sub {audience} {subject} {before}",
    )


async def _revoke(redis: Redis, key: str, value: str, ttl: int, news: str) -> None:
    """The key (what verify_access reads) and the news (what RevocationWatch hears) in one
    script, so a revocation is never recorded without being announced."""
    await scripts_for(redis).run(
        LUA / "revoke.lua", [key], [value, ttl, revocations_channel(redis), news]
    )


def revocations_channel(redis: Any) -> str:
    """Pub/sub is not per logical database, so the channel names the database: runs that
    share a server on different databases never hear each other's revocations."""
    pool = getattr(redis, "connection_pool", None)
    db = pool.connection_kwargs.get("db", 0) if pool is not None else 0
    return f"auth:revocations:{db}"


class RevocationWatch:
    """This process's view of token revocations, so a hot path (the flash-sale grab) can
    check a token without a Redis round trip on every request.

    Every revocation is a Redis key (the truth, which `verify_access` reads on each request)
    and a message on `revocations_channel`. While subscribed, the watch keeps each message
    as a fact (this subject's tokens before t are revoked; this jti is revoked). A token
    found live by one MGET is then trusted for RECHECK_S, with the facts consulted on every
    request, so a revocation counts here as soon as its message arrives. Facts only ever
    grow, so a message that overtakes an MGET reply cannot be lost. Not subscribed
    (starting, reconnecting, or a cluster client) a token is re-read at most FALLBACK_S
    later; losing the subscription forgets every trusted token at once, since messages
    may have been missed.
    """

    RECHECK_S = 60.0
    FALLBACK_S = 1.0
    MAX_TOKENS = 100_000

    def __init__(self, scripts: Any, token_ttl_s: float) -> None:
        self.scripts = scripts  # its `read` (auto-pipelined) reads the revocation keys
        self.token_ttl_s = token_ttl_s  # a subject fact matters this long after its time
        self.subscribed = False
        self.epoch = 0
        self._live: dict[str, float] = {}  # token -> monotonic time it is trusted until
        self._before: dict[tuple[str, str], float] = {}  # (audience, subject) -> revoked before
        self._jti: dict[str, float] = {}  # jti -> its token's exp
        self._pruned = time.monotonic()
        redis = scripts.client
        self.subscription = Subscription(
            redis, revocations_channel(redis), self._heard, self._state
        )

    def start(self) -> None:
        self.subscription.start()

    async def close(self) -> None:
        await self.subscription.close()

    async def verify(self, settings: Settings, token: str, audience: Audience) -> dict[str, Any]:
        """`verify_access` for a hot path: the same checks, the claims back, and Redis read
        only for a token this process does not trust yet."""
        claims = decode_access(settings, token, audience)
        if not self.trusted(audience, token, claims):
            await self.confirm(audience, token, claims)
        return claims

    def trusted(self, audience: Audience, token: str, claims: dict[str, Any]) -> bool:
        """True: live without asking Redis. False: ask `confirm`. Raises if a fact says
        the token is revoked."""
        if self._live.get(token, 0.0) < time.monotonic():
            return False
        if self._revoked(audience, claims):
            raise Unauthorized("the token was revoked", code="TOKEN_REVOKED")
        return True

    async def confirm(self, audience: Audience, token: str, claims: dict[str, Any]) -> None:
        """One MGET (auto-pipelined) of the token's revocation keys; remembered if live."""
        epoch = self.epoch
        try:
            revoked_before, jti_revoked = await self.scripts.read(revocation_keys(audience, claims))
        except RedisError:
            raise Unavailable("cannot check the token right now; try again") from None
        if is_revoked(claims, revoked_before, jti_revoked) or self._revoked(audience, claims):
            raise Unauthorized("the token was revoked", code="TOKEN_REVOKED")
        if len(self._live) >= self.MAX_TOKENS:
            self._live.clear()
        trust = self.RECHECK_S if self.subscribed and epoch == self.epoch else self.FALLBACK_S
        self._live[token] = time.monotonic() + trust

    def _revoked(self, audience: Audience, claims: dict[str, Any]) -> bool:
        before = self._before.get((audience, claims["sub"]))
        if before is not None and float(claims["iat"]) <= before:
            return True
        return bool(self._jti) and claims.get("jti") in self._jti

    def _heard(self, news: str) -> None:
        parts = news.split(" ")
        now = time.monotonic()
        if parts[0] == "sub" and len(parts) == 4:
            key = (parts[1], parts[2])
            self._before[key] = max(float(parts[3]), self._before.get(key, 0.0))
        elif parts[0] == "jti" and len(parts) == 3:
            self._jti[parts[1]] = float(parts[2])
        if now - self._pruned > 60:
            self._prune(now)

    def _prune(self, now: float) -> None:
        """Drop facts no live token can fall under: a jti past its token's expiry; a subject
        revoked before t once every token issued by t has expired."""
        self._pruned = now
        wall = time.time()
        self._jti = {j: exp for j, exp in self._jti.items() if exp > wall}
        cutoff = wall - self.token_ttl_s
        self._before = {k: t for k, t in self._before.items() if t > cutoff}

    def _state(self, subscribed: bool) -> None:
        # Either way the trusted tokens go: on loss messages may be missed from now on; on
        # (re)subscribing, what was trusted under the fallback is re-read once.
        self.epoch += 1
        self._live.clear()
        self.subscribed = subscribed


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
