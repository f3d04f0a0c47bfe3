"""Share links: one scene code per (what is shared, who shares it), reused by every scenario.

Rules only; no Sanic here. Other domains call:

- `register_kind(kind, page, validate, param=)` from their own service module (and list that
  module in `KIND_MODULES`), so a POST of that kind knows its page and who may share what;
- `record_conversion(scene, member_id, kind, target, connection=)` when a member acts
  through a scene (joins the group, claims the gift), inside their own transaction.

A scene is 10 random characters of [0-9A-Za-z]: within WeChat's scene alphabet and limit
(32), safe unescaped in a URL path and a query, and ~59 bits so it cannot be guessed.
"""

from __future__ import annotations

import importlib
import logging
import re
import secrets
import string
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from redis.exceptions import RedisError
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q
from tortoise.functions import Count, Sum
from tortoise.transactions import in_transaction

from server.identity import merge
from server.identity import service as identity
from server.infra.clock import iso_local, utcnow
from server.infra.errors import AppError, NotFound, Unavailable, ValidationFailed
from server.share.models import Share, ShareCode, ShareConversion, ShareOpen
from server.wechat.client import WeChatClient
from server.wechat.errors import WeChatError

log = logging.getLogger("haodian.share")

SCENE_ALPHABET = string.digits + string.ascii_letters
SCENE_LENGTH = 10
SCENE_RE = re.compile(r"^[0-9A-Za-z]{1,32}$")
KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,15}$")
PAGE_RE = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$")
URL_LINK_DAYS = 30  # WeChat's longest
# A link this close to its end is renewed: one handed out must still open when tapped.
URL_LINK_MARGIN = timedelta(days=1)
STATS_LIMIT = 50
MY_SHARES_LIMIT = 100


class ShareNotFound(NotFound):
    code = "SHARE_NOT_FOUND"


class ShareKindUnknown(ValidationFailed):
    code = "SHARE_KIND_UNKNOWN"


# -- the kind registry ---------------------------------------------------------------------

Validate = Callable[[str, int], Awaitable[None]]


@dataclass(frozen=True)
class Kind:
    name: str
    page: str  # without the leading slash
    validate: Validate  # (target, sharer id); raises an AppError when it may not be shared
    param: str  # the query parameter naming the target on the page


_KINDS: dict[str, Kind] = {}

# Modules that register kinds; imported before the first look-up, so the API workers, the
# job worker and the CLI all know the same kinds whatever they imported so far.
KIND_MODULES: list[str] = [
    "server.share.invite",
    "server.groupbuy.service",
    "server.giftcards.gifts",
]


def register_kind(kind: str, page: str, validate: Validate, *, param: str = "id") -> None:
    """Declare what `kind` opens (`page`, target in `?<param>=`) and who may share what.
    Idempotent; a second, different page for one kind is a programming error."""
    page = page.lstrip("/")
    if not KIND_RE.match(kind):
        raise ValueError(f"bad share kind {kind!r}")
    if not PAGE_RE.match(page) or len(page) > 128:
        raise ValueError(f"bad page {page!r} for share kind {kind!r}")
    if not re.match(r"^[A-Za-z][A-Za-z0-9_]{0,15}$", param) or param == "scene":
        raise ValueError(f"bad target parameter {param!r} for share kind {kind!r}")
    known = _KINDS.get(kind)
    if known is not None and (known.page, known.param) != (page, param):
        raise RuntimeError(f"share kind {kind!r} is registered already with {known.page}")
    _KINDS[kind] = Kind(kind, page, validate, param)


def _load() -> None:
    for name in KIND_MODULES:
        importlib.import_module(name)


def get_kind(kind: str) -> Kind:
    _load()
    found = _KINDS.get(kind)
    if found is None:
        raise ShareKindUnknown(
            f"nothing of kind {kind!r} can be shared; known kinds: {', '.join(kinds())}",
            details={"known": kinds()},
        )
    return found


def kinds() -> list[str]:
    _load()
    return sorted(_KINDS)


# -- scenes and shares ---------------------------------------------------------------------


def new_scene() -> str:
    return "".join(secrets.choice(SCENE_ALPHABET) for _ in range(SCENE_LENGTH))


def valid_scene(scene: str | None) -> bool:
    return bool(scene) and SCENE_RE.match(scene or "") is not None


def share_query(share: Share) -> str:
    return share.path.partition("?")[2]


async def get_share(scene: str) -> Share:
    """The share behind a scene; anything malformed is as unknown as a scene never made."""
    share = await Share.get_or_none(scene=scene) if valid_scene(scene) else None
    if share is None:
        raise ShareNotFound("no such share link")
    return share


async def share_for(kind: str, target: str, sharer_id: int) -> tuple[Share, bool]:
    """The sharer's one share of this target, made on the first call: (share, created).

    Simultaneous first calls race on the unique (kind, target, sharer, slot): the losers read
    the winner's row. A scene collision (never in practice) just draws again."""
    k = get_kind(kind)
    await k.validate(target, sharer_id)
    key = {"kind": kind, "target": target, "sharer_id": sharer_id, "slot": 0}
    found = await Share.get_or_none(**key)
    if found is not None:
        return found, False
    for _ in range(5):
        scene = new_scene()
        path = "/" + k.page + "?" + urlencode({k.param: target, "scene": scene})
        try:
            share = await Share.create(scene=scene, page=k.page, path=path, **key)
            log.info("share created", extra={"kind": kind, "sharer": sharer_id, "scene": scene})
            return share, True
        except IntegrityError:
            found = await Share.get_or_none(**key)
            if found is not None:
                return found, False
    raise Unavailable("could not make a share link; try again", code="SHARE_CONTENDED")


async def ensure_url_link(client: WeChatClient, share: Share) -> Share:
    """Give the share a live URL link (kept 30 days, renewed near its end). WeChat failing
    leaves it as it was (null at first): sharing must not depend on WeChat being up."""
    now = utcnow()
    expires = share.url_link_expires_at
    if share.url_link and expires is not None and expires - URL_LINK_MARGIN > now:
        return share
    try:
        link = await client.generate_urllink(
            share.page, share_query(share), expire_interval_days=URL_LINK_DAYS
        )
    except (AppError, RedisError) as exc:
        log.warning(
            "no URL link for a share this time",
            extra={"scene": share.scene, "error": getattr(exc, "code", type(exc).__name__)},
        )
        return share
    # Compare-and-set: racing first calls all end up showing the one link that was stored.
    stale = Q(url_link__isnull=True) | Q(url_link_expires_at__isnull=True)
    stale |= Q(url_link_expires_at__lte=now + URL_LINK_MARGIN)
    await Share.filter(stale, id=share.id).update(
        url_link=link, url_link_expires_at=now + timedelta(days=URL_LINK_DAYS)
    )
    await share.refresh_from_db(fields=["url_link", "url_link_expires_at"])
    return share


def share_out(share: Share) -> dict[str, Any]:
    return {
        "scene": share.scene,
        "kind": share.kind,
        "target": share.target,
        "path": share.path,
        "url_link": share.url_link,
    }


async def create_share(
    client: WeChatClient, kind: str, target: str, sharer_id: int
) -> tuple[dict[str, Any], bool]:
    """POST /shares: the sharer's share of the target (the same on every call), with its
    URL link when WeChat can give one. Returns (share, created)."""
    share, created = await share_for(kind, target, sharer_id)
    share = await ensure_url_link(client, share)
    return share_out(share), created


async def wxacode(client: WeChatClient, scene: str) -> bytes:
    """The share's mini-program code (PNG): asked of WeChat once, then kept in the database.
    The image opens the page with only the scene; the page resolves it with GET /shares."""
    share = await get_share(scene)
    cached = await ShareCode.filter(share_id=share.id).values_list("png", flat=True)
    if cached:
        return bytes(cached[0])
    try:
        png = await client.wxacode_unlimit(share.scene, share.page)
    except WeChatError as exc:
        if exc.status < 500 or exc.status == 503:
            raise
        raise Unavailable(exc.message, code=exc.code, headers={"Retry-After": "5"}) from None
    except RedisError:  # the access-token cache
        raise Unavailable("cannot reach WeChat right now", headers={"Retry-After": "5"}) from None
    try:
        await ShareCode.create(share_id=share.id, png=png)
    except IntegrityError:
        pass  # a simultaneous first fetch stored its image; both are valid codes
    return png


async def open_share(scene: str, opener_id: int | None, *, counted: bool = True) -> dict[str, Any]:
    """The landing page of a share: what it is and who shared it; the open is recorded
    (unless `counted` is False: the caller found it was one reload too many)."""
    share = await get_share(scene)
    opens = await _record_open(share.id, opener_id) if counted else share.opens
    profile = (await identity.public_profiles([share.sharer_id]))[share.sharer_id]
    return {
        "scene": share.scene,
        "kind": share.kind,
        "target": share.target,
        "path": share.path,
        "sharer": profile,
        "opens": opens,
    }


async def _record_open(share_id: int, opener_id: int | None) -> int:
    try:
        async with in_transaction() as conn:
            await ShareOpen.create(share_id=share_id, opener_id=opener_id, using_db=conn)
            await Share.filter(id=share_id).using_db(conn).update(opens=F("opens") + 1)
            opens = await Share.filter(id=share_id).using_db(conn).values_list("opens", flat=True)
    except IntegrityError:
        if opener_id is None:
            raise
        # A signed token of a member row that is gone: count the open as anonymous.
        return await _record_open(share_id, None)
    return int(opens[0])


# -- attribution ---------------------------------------------------------------------------


async def record_conversion(
    scene: str | None, member_id: int, kind: str, target: str, connection: Any = None
) -> int | None:
    """A member acted on `target` through `scene`: remember who brought them, once per
    (share, joiner, target). Returns the sharer's member id, or None when the scene is
    empty, unknown, for another kind or target, or the member's own.

    Pass the caller's transaction as `connection`: the row commits or rolls back with the
    action. A duplicate is absorbed by a savepoint, so the caller's transaction survives."""
    if not scene or not valid_scene(scene):
        return None
    share = await Share.filter(scene=scene).using_db(connection).first()
    if share is None or share.kind != kind or share.target != target:
        return None
    sharer_id = int(share.sharer_id)  # type: ignore[attr-defined]
    if sharer_id == member_id:
        return None
    seen = ShareConversion.filter(share_id=share.id, joiner_id=member_id, target=target)
    if await seen.using_db(connection).exists():
        return sharer_id
    # On a transaction `_in_transaction()` opens a savepoint; without one, a transaction.
    scope = connection._in_transaction() if connection is not None else in_transaction()
    try:
        async with scope as conn:
            await ShareConversion.create(
                share_id=share.id,
                sharer_id=sharer_id,
                joiner_id=member_id,
                kind=kind,
                target=target,
                using_db=conn,
            )
    except IntegrityError:
        pass  # a simultaneous copy of this conversion was recorded first
    return sharer_id


# -- stats ---------------------------------------------------------------------------------


def _scope(kind: str | None, target: str | None) -> dict[str, str]:
    scope: dict[str, str] = {}
    if kind:
        scope["kind"] = kind
    if target:
        scope["target"] = target
    return scope


async def _conversions_by_share(share_ids: Iterable[int]) -> dict[int, int]:
    ids = list(share_ids)
    if not ids:
        return {}
    rows = (
        await ShareConversion.filter(share_id__in=ids)
        .annotate(n=Count("id"))
        .group_by("share_id")
        .values_list("share_id", "n")
    )
    return {int(sid): int(n) for sid, n in rows}


async def my_shares(member_id: int) -> list[dict[str, Any]]:
    shares = await Share.filter(sharer_id=member_id).order_by("-id").limit(MY_SHARES_LIMIT)
    conversions = await _conversions_by_share(s.id for s in shares)
    return [
        {
            **share_out(s),
            "opens": s.opens,
            "conversions": conversions.get(s.id, 0),
            "created_at": iso_local(s.created_at),
        }
        for s in shares
    ]


async def sharer_stats(kind: str | None, target: str | None) -> list[dict[str, Any]]:
    """Fission per sharer (shares, opens, conversions), the best 50 by conversions. Bounded
    work at any size: the top converting sharers first, topped up by the most opened."""
    scope = _scope(kind, target)
    top = (
        await ShareConversion.filter(**scope)
        .annotate(n=Count("id"))
        .group_by("sharer_id")
        .order_by("-n", "sharer_id")
        .limit(STATS_LIMIT)
        .values_list("sharer_id", "n")
    )
    conversions = {int(sid): int(n) for sid, n in top}
    if len(conversions) < STATS_LIMIT:
        rest = Share.filter(**scope)
        if conversions:
            rest = rest.exclude(sharer_id__in=list(conversions))
        more = (
            await rest.annotate(o=Sum("opens"))
            .group_by("sharer_id")
            .order_by("-o", "sharer_id")
            .limit(STATS_LIMIT - len(conversions))
            .values_list("sharer_id", flat=True)
        )
        conversions.update({int(sid): 0 for sid in more})
    if not conversions:
        return []
    rows = (
        await Share.filter(sharer_id__in=list(conversions), **scope)
        .annotate(shares=Count("id"), opens=Sum("opens"))
        .group_by("sharer_id")
        .values_list("sharer_id", "shares", "opens")
    )
    profiles = await identity.public_profiles(conversions)
    items = [
        {
            "sharer_id": int(sid),
            "nickname": profiles[int(sid)]["nickname"],
            "shares": int(shares),
            "opens": int(opens or 0),
            "conversions": conversions[int(sid)],
        }
        for sid, shares, opens in rows
    ]
    items.sort(key=lambda i: (-i["conversions"], -i["opens"], i["sharer_id"]))
    return items


# -- member merges -------------------------------------------------------------------------


async def move_member_shares(from_id: int, into_id: int, connection: Any) -> int:
    """A merged member's shares go to the member it became. Where both shared one target,
    the old share keeps resolving (its code is out there) as a second slot of the new owner."""
    rows = await Share.filter(sharer_id=from_id).using_db(connection).values("id", "kind", "target")
    if not rows:
        return 0
    mine = set(
        await Share.filter(sharer_id=into_id, slot=0)
        .using_db(connection)
        .values_list("kind", "target")
    )
    for r in rows:
        if (r["kind"], r["target"]) in mine:
            await (
                Share.filter(id=r["id"])
                .using_db(connection)
                .update(sharer_id=into_id, slot=r["id"])
            )
    await Share.filter(sharer_id=from_id).using_db(connection).update(sharer_id=into_id)
    return len(rows)


async def move_member_conversions(from_id: int, into_id: int, connection: Any) -> int:
    """Conversions the merged member made move too; one that the other member also made
    through the same share and target is the same person counted twice: dropped."""
    rows = (
        await ShareConversion.filter(joiner_id=from_id)
        .using_db(connection)
        .values("id", "share_id", "target")
    )
    if not rows:
        return 0
    theirs = set(
        await ShareConversion.filter(joiner_id=into_id, share_id__in=[r["share_id"] for r in rows])
        .using_db(connection)
        .values_list("share_id", "target")
    )
    twice = [r["id"] for r in rows if (r["share_id"], r["target"]) in theirs]
    if twice:
        await ShareConversion.filter(id__in=twice).using_db(connection).delete()
    await ShareConversion.filter(joiner_id=from_id).using_db(connection).update(joiner_id=into_id)
    return len(rows)


def _register_merge_movers() -> None:
    merge.register_member_owned(Share, "sharer", mover=move_member_shares)
    merge.register_member_owned(ShareConversion, "joiner", mover=move_member_conversions)


_register_merge_movers()
