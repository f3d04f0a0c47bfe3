"""Coupon rules: templates, the coupon centre, live codes, store write-offs, pricing, stats.

Stock and per-member limits are taken in Redis by one Lua script (`lua/take.lua`, keys
`cp:{template}:...` sharing one hash tag) and then persisted; the database is the hard guard
behind it: `remaining` only goes down by a conditional UPDATE, and a member's n-th claim is
unique per (template, member, n). A Redis that lost its keys is re-warmed from the database
(remaining units and each member's count), never from the configured total.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.functions import Count
from tortoise.transactions import in_transaction

from server.coupons.models import (
    Channel,
    Coupon,
    CouponIssuance,
    CouponKind,
    CouponStatus,
    CouponTemplate,
    WriteOff,
)
from server.infra import livecodes
from server.infra.clock import SHANGHAI, iso_local, utcnow
from server.infra.errors import AppError, Conflict, Forbidden, NotFound, ValidationFailed
from server.orders import lifecycle
from server.orders.models import OrderStatus

LUA = Path(__file__).parent / "lua"
CODE_TTL = livecodes.TTL
CODE_PREFIX = "HD1"
DIGITS_LEN = livecodes.DIGITS_LEN
DEFAULT_REVOKE_MINUTES = 10


class SoldOut(Conflict):
    code = "COUPON_SOLD_OUT"


class LimitReached(Conflict):
    code = "LIMIT_REACHED"


CodeInvalid = livecodes.CodeInvalid
CodeExpired = livecodes.CodeExpired


class AlreadyUsed(Conflict):
    code = "COUPON_ALREADY_USED"


class StoreNotAllowed(Forbidden):
    code = "STORE_NOT_ALLOWED"


def yuan(fen: int) -> str:
    return f"¥{fen // 100}" if fen % 100 == 0 else f"¥{fen / 100:.2f}"


def value_text(t: CouponTemplate) -> str:
    if t.kind == CouponKind.AMOUNT_OFF:
        return f"{yuan(t.amount_off_fen or 0)} off"
    if t.kind == CouponKind.PERCENT_OFF:
        cap = f" (up to {yuan(t.max_off_fen)})" if t.max_off_fen else ""
        return f"{t.percent_off}% off{cap}"
    if t.kind == CouponKind.THRESHOLD:
        return f"{yuan(t.amount_off_fen or 0)} off {yuan(t.threshold_fen or 0)}"
    return f"free {t.free_item_name or 'item'}"


# -- templates -----------------------------------------------------------------------------


# Who is in an operator's segment is membership's business; coupons asks it by module name
# (membership builds on coupons, never the other way round).
AUDIENCE_MODULE = "server.membership.segments"


def _audience() -> Any:
    return importlib.import_module(AUDIENCE_MODULE)


async def create_template(data: dict[str, Any]) -> CouponTemplate:
    if data.get("audience_segment_id"):
        await _audience().get_segment(data["audience_segment_id"])
    if data.get("store_ids"):
        from server.stores.models import Store

        wanted = set(data["store_ids"])
        found = set(await Store.filter(id__in=list(wanted)).values_list("id", flat=True))
        if wanted - found:
            raise ValidationFailed(f"no such stores: {sorted(wanted - found)}")
    return await CouponTemplate.create(**data, remaining=data["total"])


async def get_template(template_id: int) -> CouponTemplate:
    t = await CouponTemplate.get_or_none(id=template_id)
    if t is None:
        raise NotFound(f"no coupon template {template_id}", code="TEMPLATE_NOT_FOUND")
    return t


async def list_templates(limit: int = 200) -> list[CouponTemplate]:
    return await CouponTemplate.all().order_by("-id").limit(limit)


async def update_template(template_id: int, changes: dict[str, Any]) -> CouponTemplate:
    t = await get_template(template_id)
    changes = {k: v for k, v in changes.items() if v is not None}
    if t.granted_only and changes.get("in_center"):
        raise Conflict(
            "this template's coupons are granted by another scenario (e.g. group-buy vouchers)"
            " and cannot be offered in the coupon centre",
            code="TEMPLATE_GRANTED_ONLY",
        )
    if changes:
        await CouponTemplate.filter(id=t.id).update(**changes)
    return await get_template(template_id)


def template_out(t: CouponTemplate) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "kind": t.kind.value,
        "value_text": value_text(t),
        "amount_off_fen": t.amount_off_fen,
        "percent_off": t.percent_off,
        "max_off_fen": t.max_off_fen,
        "threshold_fen": t.threshold_fen,
        "total": t.total,
        "remaining": t.remaining,
        "per_member_limit": t.per_member_limit,
        "valid_days": t.valid_days,
        "valid_from": iso_local(t.valid_from),
        "valid_until": iso_local(t.valid_until),
        "channel": t.channel.value,
        "store_ids": t.store_ids,
        "active": t.active,
    }


# -- Redis stock ---------------------------------------------------------------------------


def keys(template_id: int) -> list[str]:
    tag = f"cp:{{{template_id}}}"
    return [f"{tag}:stock", f"{tag}:members", f"{tag}:reqs"]


async def warm(scripts: Any, template_id: int) -> None:
    """Load the template's counters from the database (no-op if already there)."""
    t = await get_template(template_id)
    rows = (
        await Coupon.filter(template_id=template_id, claim_seq__not_isnull=True)
        .group_by("member_id")
        .annotate(n=Count("id"))
        .values_list("member_id", "n")
    )
    args: list[Any] = [t.remaining]
    for member_id, n in rows:
        args += [member_id, n]
    k = keys(template_id)
    await scripts.run(LUA / "warm.lua", k[:2], args)


async def _take(scripts: Any, template_id: int, member_id: int, limit: int, req: str) -> list[int]:
    k = keys(template_id)
    for _ in range(3):
        res = await scripts.run(LUA / "take.lua", k, [member_id, limit, req])
        code, n = int(res[0]), int(res[1])
        if code != -1:
            return [code, n]
        await warm(scripts, template_id)
    raise AppError("coupon stock is warming up; try again", code="TRY_AGAIN", status=503)


async def _give_back(scripts: Any, template_id: int, member_id: int, req: str, stock: bool) -> None:
    await scripts.run(
        LUA / "give_back.lua", keys(template_id), [member_id, req, "1" if stock else "0"]
    )


def _validity(t: CouponTemplate, now: datetime) -> tuple[datetime, datetime]:
    if t.valid_days:
        return now, now + timedelta(days=t.valid_days)
    assert t.valid_from and t.valid_until
    return t.valid_from, t.valid_until


def _claim_window_reason(t: CouponTemplate, now: datetime, tier: str | None) -> str | None:
    if not t.active or not t.in_center or t.granted_only:
        return "NOT_AVAILABLE"
    if t.claim_from and now < t.claim_from:
        return "NOT_STARTED"
    if t.claim_until and now >= t.claim_until:
        return "ENDED"
    if not t.valid_days and t.valid_until and now >= t.valid_until:
        return "ENDED"
    if t.audience_tiers and tier not in t.audience_tiers:
        return "NOT_FOR_YOU"
    return None


async def _member_tier(member_id: int) -> str | None:
    from server.identity.models import Member

    m = await Member.get_or_none(id=member_id)
    if m is None or m.disabled:
        raise Forbidden("this member account is not active", code="MEMBER_DISABLED")
    return m.tier


# The claim path reads a template many times a second; each worker keeps it a moment.
# Stock is not taken from this copy (Redis and the database guard do that).
_TEMPLATE_TTL = 2.0
_template_cache: dict[int, tuple[float, CouponTemplate]] = {}


async def cached_template(template_id: int) -> CouponTemplate:
    hit = _template_cache.get(template_id)
    now = time.monotonic()
    if hit is not None and hit[0] > now:
        return hit[1]
    t = await get_template(template_id)
    if len(_template_cache) > 10_000:
        _template_cache.clear()
    _template_cache[template_id] = (now + _TEMPLATE_TTL, t)
    return t


async def claim(
    scripts: Any,
    member_id: int,
    template_id: int,
    request_key: str = "",
    *,
    _retried: bool = False,
) -> tuple[Coupon, CouponTemplate, bool]:
    """Claim one coupon from the centre. Returns (coupon, template, replayed).

    A disabled member's tokens are revoked by identity, so the member row is read only when
    the template is limited to some tiers."""
    t = await cached_template(template_id)
    now = utcnow()
    tier = await _member_tier(member_id) if t.audience_tiers else None
    reason = _claim_window_reason(t, now, tier)
    if reason is None and t.audience_segment_id:
        if not await _audience().contains(t.audience_segment_id, member_id):
            reason = "NOT_FOR_YOU"
    if reason:
        messages = {
            "NOT_STARTED": "claiming this coupon has not started yet",
            "ENDED": "claiming this coupon has ended",
            "NOT_FOR_YOU": "this coupon is for other members",
            "NOT_AVAILABLE": "this coupon is not offered",
        }
        raise Conflict(messages[reason], code=f"CLAIM_{reason}")
    req = request_key[:64]
    code, seq = await _take(scripts, t.id, member_id, t.per_member_limit, req)
    if code == -2:
        raise SoldOut("this coupon is all gone")
    if code == -3:
        raise LimitReached(f"you already hold {seq} of this coupon (limit {t.per_member_limit})")
    if code == 2:  # a replayed request: answer with the first one's coupon
        existing = await Coupon.get_or_none(template_id=t.id, member_id=member_id, claim_seq=seq)
        if existing is not None:
            return existing, t, True
    valid_from, valid_until = _validity(t, now)
    try:
        async with in_transaction() as conn:
            took = (
                await CouponTemplate.filter(id=t.id, remaining__gte=1)
                .using_db(conn)
                .update(remaining=F("remaining") - 1, claimed_count=F("claimed_count") + 1)
            )
            if not took:
                raise SoldOut("this coupon is all gone")
            coupon = await Coupon.create(
                template_id=t.id,
                member_id=member_id,
                claim_seq=seq,
                valid_from=valid_from,
                valid_until=valid_until,
                using_db=conn,
            )
    except SoldOut:
        # Redis had stock the database did not (a re-warm raced a claim): keep the count,
        # drop the unit, so the next claim sees the database's truth.
        await _give_back(scripts, t.id, member_id, req, stock=False)
        raise
    except IntegrityError:
        again = await Coupon.get_or_none(template_id=t.id, member_id=member_id, claim_seq=seq)
        if again is not None and req:
            return again, t, True
        await _give_back(scripts, t.id, member_id, req, stock=True)
        # Redis counted fewer claims than the database holds (e.g. coupons moved in by a member
        # merge): set the count from the database, then decide once more.
        held = await Coupon.filter(
            template_id=t.id, member_id=member_id, claim_seq__not_isnull=True
        ).count()
        await scripts.client.hset(keys(t.id)[1], str(member_id), held)
        if held >= t.per_member_limit or _retried:
            raise LimitReached(
                f"you already hold {held} of this coupon (limit {t.per_member_limit})"
            ) from None
        return await claim(scripts, member_id, template_id, request_key, _retried=True)
    return coupon, t, code == 2


async def move_member_coupons(from_id: int, into_id: int, connection: Any) -> int:
    """identity's merge mover: the merged member's coupons go to the surviving member.

    Centre claims are renumbered after the survivor's own (the unique per (template, member,
    n) must hold); a campaign coupon the survivor also got keeps its coupon but leaves the
    campaign link (unique per (issuance, member)). Nobody loses a coupon in a merge."""
    rows = await Coupon.filter(member_id=from_id).using_db(connection).order_by("claim_seq", "id")
    for tid in sorted({r.template_id for r in rows if r.claim_seq is not None}):  # type: ignore[attr-defined]
        seqs = await (
            Coupon.filter(template_id=tid, member_id=into_id, claim_seq__not_isnull=True)
            .using_db(connection)
            .values_list("claim_seq", flat=True)
        )
        top = max(seqs, default=0)
        for r in rows:
            if r.template_id == tid and r.claim_seq is not None:  # type: ignore[attr-defined]
                top += 1
                await (
                    Coupon.filter(id=r.id)
                    .using_db(connection)
                    .update(member_id=into_id, claim_seq=top)
                )
    for r in rows:
        if r.claim_seq is not None:
            continue
        changes: dict[str, Any] = {"member_id": into_id}
        if r.issuance_id is not None:  # type: ignore[attr-defined]
            clash = (
                await Coupon.filter(
                    issuance_id=r.issuance_id,  # type: ignore[attr-defined]
                    member_id=into_id,
                )
                .using_db(connection)
                .exists()
            )
            if clash:
                changes["issuance_id"] = None
        await Coupon.filter(id=r.id).using_db(connection).update(**changes)
    await WriteOff.filter(member_id=from_id).using_db(connection).update(member_id=into_id)
    return len(rows)


def _register_merge_mover() -> None:
    from server.identity import merge

    merge.register_member_owned(Coupon, "member", mover=move_member_coupons)


_register_merge_mover()


async def center(scripts: Any, member_id: int) -> list[dict[str, Any]]:
    now = utcnow()
    tier = await _member_tier(member_id)
    templates = await CouponTemplate.filter(active=True, in_center=True).order_by("-id").limit(200)
    mine = dict(
        await Coupon.filter(
            member_id=member_id,
            claim_seq__not_isnull=True,
            template_id__in=[t.id for t in templates],
        )
        .group_by("template_id")
        .annotate(n=Count("id"))
        .values_list("template_id", "n")
    )
    out = []
    for t in templates:
        reason = _claim_window_reason(t, now, tier)
        if reason in ("ENDED", "NOT_FOR_YOU", "NOT_AVAILABLE"):
            continue
        stock = await scripts.client.get(keys(t.id)[0])
        remaining = max(0, int(stock)) if stock is not None else t.remaining
        have = int(mine.get(t.id, 0))
        if reason is None and remaining <= 0:
            reason = "SOLD_OUT"
        if reason is None and have >= t.per_member_limit:
            reason = "LIMIT_REACHED"
        out.append(
            {
                "template_id": t.id,
                "name": t.name,
                "value_text": value_text(t),
                "remaining": remaining,
                "claimed_by_me": have,
                "per_member_limit": t.per_member_limit,
                "claimable": reason is None,
                "reason": reason,
            }
        )
    return out


def coupon_status(c: Coupon, now: datetime | None = None) -> str:
    now = now or utcnow()
    if c.status == CouponStatus.UNUSED and now >= c.valid_until:
        return "expired"
    return c.status.value


def coupon_out(c: Coupon, t: CouponTemplate, now: datetime | None = None) -> dict[str, Any]:
    return {
        "id": c.id,
        "template_id": t.id,
        "name": t.name,
        "kind": t.kind.value,
        "value_text": value_text(t),
        "status": coupon_status(c, now),
        "valid_from": iso_local(c.valid_from),
        "valid_until": iso_local(c.valid_until),
        "channel": t.channel.value,
        "store_ids": t.store_ids,
        "used_at": iso_local(c.used_at),
        "used_channel": c.used_channel,
    }


async def my_coupons(member_id: int, status: str = "all") -> list[dict[str, Any]]:
    now = utcnow()
    q = Coupon.filter(member_id=member_id).prefetch_related("template")
    if status == "unused":
        q = q.filter(status=CouponStatus.UNUSED, valid_until__gt=now)
    elif status == "expired":
        q = q.filter(status=CouponStatus.UNUSED, valid_until__lte=now)
    elif status in ("used", "locked", "void"):
        q = q.filter(status=status)
    coupons = await q.order_by("-id").limit(500)
    return [coupon_out(c, c.template, now) for c in coupons]


async def get_member_coupon(member_id: int, coupon_id: int) -> Coupon:
    c = await Coupon.get_or_none(id=coupon_id, member_id=member_id).prefetch_related("template")
    if c is None:
        raise NotFound(f"you have no coupon {coupon_id}", code="COUPON_NOT_FOUND")
    return c


async def usable_in_store(member_id: int, store_id: int) -> list[dict[str, Any]]:
    """The member's coupons a clerk of this store could write off now (what the till shows)."""
    now = utcnow()
    rows = await (
        Coupon.filter(
            member_id=member_id,
            status=CouponStatus.UNUSED,
            valid_from__lte=now,
            valid_until__gt=now,
        )
        .exclude(template__channel=Channel.ONLINE)
        .prefetch_related("template")
        .order_by("valid_until")
        .limit(100)
    )
    return [
        coupon_out(c, c.template, now)
        for c in rows
        if not c.template.store_ids or store_id in c.template.store_ids
    ]


# -- live write-off codes ------------------------------------------------------------------


COUPON_CODE = livecodes.CodeKind(CODE_PREFIX, b"haodian/coupon-write-off-code/v1", "coupon code")


def sign_code(secret: bytes, coupon_id: int, member_id: int, issued_at: int | None = None) -> str:
    return livecodes.sign(secret, COUPON_CODE, coupon_id, member_id, issued_at)


def verify_code(secret: bytes, code: str, now: float | None = None) -> tuple[int, int, int]:
    """(coupon_id, member_id, issued_at) of a genuine, live code; CODE_INVALID / CODE_EXPIRED."""
    return livecodes.verify(secret, COUPON_CODE, code, now)


async def issue_code(redis: Any, secret: bytes, member_id: int, coupon_id: int) -> dict[str, Any]:
    c = await get_member_coupon(member_id, coupon_id)
    state = coupon_status(c)
    if state == "used":
        raise AlreadyUsed("this coupon has already been used")
    if state == "expired":
        raise Conflict("this coupon has expired", code="COUPON_EXPIRED")
    if state == "locked":
        raise Conflict("this coupon is held by an unpaid order", code="COUPON_LOCKED")
    if state == "void":
        raise Conflict("this coupon was taken back", code="COUPON_VOID")
    if c.template.channel == Channel.ONLINE:
        raise Conflict("this coupon is for online orders only", code="COUPON_NOT_FOR_STORE")
    return await livecodes.issue(redis, sign_code(secret, c.id, member_id))


async def resolve_code(redis: Any, text: str) -> str:
    return await livecodes.resolve(redis, text)


# -- staff -------------------------------------------------------------------------------


@dataclass
class StaffInfo:
    id: int
    role: str
    store_ids: list[int]


async def staff_info(staff_id: int) -> StaffInfo:
    """The clerk's role and stores, read from identity's Staff / StaffStore tables."""
    from server.identity import models as idm

    s = await idm.Staff.get_or_none(id=staff_id)  # type: ignore[attr-defined]
    if s is None or s.disabled:
        raise Forbidden("this staff account is not active", code="STAFF_DISABLED")
    stores = await idm.StaffStore.filter(staff_id=staff_id).values_list(  # type: ignore[attr-defined]
        "store_id", flat=True
    )
    role = s.role.value if hasattr(s.role, "value") else str(s.role)
    return StaffInfo(id=s.id, role=role, store_ids=sorted(stores))


async def member_display(member_id: int) -> str:
    from server.identity.models import Member

    m = await Member.get_or_none(id=member_id)
    if m is None:
        return "member"
    masked = getattr(m, "phone_masked", "")
    if masked:
        return str(masked)
    nick = m.nickname or ""
    return (nick[:1] + "**") if nick else f"member …{str(m.id)[-4:]}"


async def write_off(
    redis: Any, secret: bytes, staff_id: int, text: str, store_id: int | None = None
) -> dict[str, Any]:
    code = await resolve_code(redis, text)
    coupon_id, member_id, _issued = verify_code(secret, code)
    c = await Coupon.get_or_none(id=coupon_id).prefetch_related("template")
    if c is None or c.member_id != member_id:
        raise CodeInvalid("the code does not match a coupon")
    t = c.template
    now = utcnow()
    if c.status == CouponStatus.USED:
        raise AlreadyUsed("this coupon has already been used")
    if c.status == CouponStatus.LOCKED:
        raise Conflict("this coupon is held by an unpaid online order", code="COUPON_LOCKED")
    if c.status == CouponStatus.VOID:
        raise Conflict("this coupon was taken back (its order was refunded)", code="COUPON_VOID")
    if now >= c.valid_until:
        raise Conflict("this coupon has expired", code="COUPON_EXPIRED")
    if now < c.valid_from:
        raise Conflict("this coupon is not valid yet", code="COUPON_NOT_YET_VALID")
    if t.channel == Channel.ONLINE:
        raise Conflict("this coupon is for online orders only", code="COUPON_NOT_FOR_STORE")
    staff = await staff_info(staff_id)
    allowed = [s for s in staff.store_ids if not t.store_ids or s in t.store_ids]
    if store_id is not None:
        if store_id not in staff.store_ids:
            raise StoreNotAllowed("you are not staff of that store")
        allowed = [store_id] if store_id in allowed else []
    if not allowed:
        raise StoreNotAllowed("this coupon cannot be used at your store")
    at_store = allowed[0]
    async with in_transaction() as conn:
        changed = (
            await Coupon.filter(id=c.id, status=CouponStatus.UNUSED)
            .using_db(conn)
            .update(
                status=CouponStatus.USED,
                used_at=now,
                used_channel="store",
                used_store_id=at_store,
            )
        )
        if not changed:
            raise AlreadyUsed("this coupon has already been used")
        wo = await WriteOff.create(
            coupon_id=c.id,
            template_id=t.id,
            member_id=c.member_id,
            store_id=at_store,
            staff_id=staff_id,
            using_db=conn,
        )
    return await write_off_out(wo, t)


async def write_off_out(wo: WriteOff, t: CouponTemplate | None = None) -> dict[str, Any]:
    t = t or await CouponTemplate.get(id=wo.template_id)
    return {
        "id": wo.id,
        "coupon_id": wo.coupon_id,
        "coupon_name": t.name,
        "value_text": value_text(t),
        "member": await member_display(wo.member_id),
        "store_id": wo.store_id,
        "staff_id": wo.staff_id,
        "at": iso_local(wo.created_at),
        "revoked_at": iso_local(wo.revoked_at),
        "revoke_reason": wo.revoke_reason,
    }


async def revoke_write_off(
    staff_id: int, write_off_id: int, reason: str, window_minutes: int
) -> dict[str, Any]:
    staff = await staff_info(staff_id)
    wo = await WriteOff.get_or_none(id=write_off_id)
    if wo is None:
        raise NotFound(f"no write-off {write_off_id}", code="WRITE_OFF_NOT_FOUND")
    if wo.store_id not in staff.store_ids:
        raise StoreNotAllowed("this write-off was made at another store")
    if staff.role != "manager":
        raise Forbidden("only a store manager can revoke a write-off", code="MANAGER_REQUIRED")
    now = utcnow()
    if now - wo.created_at > timedelta(minutes=window_minutes):
        raise Conflict(
            f"write-offs can be revoked within {window_minutes} minutes only",
            code="REVOKE_WINDOW_PASSED",
        )
    async with in_transaction() as conn:
        changed = (
            await WriteOff.filter(id=wo.id, revoked_at__isnull=True)
            .using_db(conn)
            .update(revoked_at=now, revoked_by_staff_id=staff_id, revoke_reason=reason)
        )
        if not changed:
            raise Conflict("this write-off was already revoked", code="ALREADY_REVOKED")
        await (
            Coupon.filter(id=wo.coupon_id, status=CouponStatus.USED, used_channel="store")
            .using_db(conn)
            .update(status=CouponStatus.UNUSED, used_at=None, used_channel=None, used_store_id=None)
        )
    wo = await WriteOff.get(id=wo.id)
    return await write_off_out(wo)


async def list_write_offs(
    staff_id: int, day: date | None = None, store_id: int | None = None
) -> dict[str, Any]:
    staff = await staff_info(staff_id)
    stores = staff.store_ids
    if store_id is not None:
        if store_id not in stores:
            raise StoreNotAllowed("you are not staff of that store")
        stores = [store_id]
    day = day or utcnow().astimezone(SHANGHAI).date()
    start = datetime(day.year, day.month, day.day, tzinfo=SHANGHAI)
    rows = (
        await WriteOff.filter(
            store_id__in=stores, created_at__gte=start, created_at__lt=start + timedelta(days=1)
        )
        .order_by("-id")
        .limit(1000)
    )
    templates = {t.id: t for t in await CouponTemplate.filter(id__in={r.template_id for r in rows})}
    items = [await write_off_out(r, templates[r.template_id]) for r in rows]
    return {
        "date": day.isoformat(),
        "store_ids": stores,
        "count": sum(1 for r in rows if r.revoked_at is None),
        "items": items,
    }


# -- stats ---------------------------------------------------------------------------------


async def stats(template_id: int) -> dict[str, Any]:
    t = await get_template(template_id)
    used_online = await Coupon.filter(
        template_id=t.id, status=CouponStatus.USED, used_channel="online"
    ).count()
    by_store = (
        await WriteOff.filter(template_id=t.id, revoked_at__isnull=True)
        .group_by("store_id")
        .annotate(n=Count("id"))
        .values_list("store_id", "n")
    )
    written_off = sum(n for _, n in by_store)
    revoked = await WriteOff.filter(template_id=t.id, revoked_at__not_isnull=True).count()
    handed_out = t.claimed_count + t.issued_count
    return {
        "template_id": t.id,
        "total": t.total,
        "remaining": t.remaining,
        "claimed": t.claimed_count,
        "issued": t.issued_count,
        "used_online": used_online,
        "written_off_in_store": written_off,
        "revoked_write_offs": revoked,
        "write_off_rate": round(written_off / handed_out, 4) if handed_out else 0.0,
        "use_rate": round((written_off + used_online) / handed_out, 4) if handed_out else 0.0,
        "by_store": [
            {"store_id": s, "written_off": n} for s, n in sorted(by_store, key=lambda r: -r[1])
        ],
    }


# -- pricing: coupons on online orders -----------------------------------------------------


@dataclass
class PricedLine:
    sku_id: int | None
    quantity: int
    unit_price_fen: int
    category_id: int | None = None

    @property
    def line_fen(self) -> int:
        return self.quantity * self.unit_price_fen


@dataclass
class CouponLock:
    """What lock_coupons_for_order took: the total and each coupon's share."""

    discount_fen: int
    per_coupon: dict[int, int] = field(default_factory=dict)  # coupon id -> fen


def _field(line: Any, name: str, default: Any = None) -> Any:
    if isinstance(line, dict):
        return line.get(name, default)
    return getattr(line, name, default)


def template_discount(t: CouponTemplate, lines: list[PricedLine], already_fen: int = 0) -> int:
    """What one coupon of `t` takes off these lines (after `already_fen` from other coupons).

    Raises COUPON_NOT_APPLICABLE when the order does not qualify (threshold not met, no
    eligible item)."""

    def eligible(line: PricedLine) -> bool:
        if t.sku_ids and line.sku_id in t.sku_ids:
            return True
        if t.category_ids and line.category_id in t.category_ids:
            return True
        return not t.sku_ids and not t.category_ids

    base = sum(line.line_fen for line in lines if eligible(line))
    goods = sum(line.line_fen for line in lines)
    room = max(0, goods - already_fen)
    if base <= 0:
        raise Conflict(f"“{t.name}” applies to none of these items", code="COUPON_NOT_APPLICABLE")
    if t.kind == CouponKind.AMOUNT_OFF:
        off = min(t.amount_off_fen or 0, base)
    elif t.kind == CouponKind.PERCENT_OFF:
        off = base * (t.percent_off or 0) // 100
        if t.max_off_fen:
            off = min(off, t.max_off_fen)
    elif t.kind == CouponKind.THRESHOLD:
        if base < (t.threshold_fen or 0):
            raise Conflict(
                f"“{t.name}” needs {yuan(t.threshold_fen or 0)} of eligible items "
                f"(this order has {yuan(base)})",
                code="COUPON_NOT_APPLICABLE",
            )
        off = t.amount_off_fen or 0
    else:
        prices = [line.unit_price_fen for line in lines if line.sku_id == t.free_sku_id]
        if not prices:
            raise Conflict(
                f"“{t.name}” needs its free item in the order", code="COUPON_NOT_APPLICABLE"
            )
        off = max(prices)
    return max(0, min(off, room))


async def _priced_lines(lines: Iterable[Any]) -> list[PricedLine]:
    out = [
        PricedLine(
            sku_id=_field(line, "sku_id"),
            quantity=int(_field(line, "quantity", 1)),
            unit_price_fen=int(_field(line, "unit_price_fen", 0)),
            category_id=_field(line, "category_id"),
        )
        for line in lines
    ]
    missing = {pl.sku_id for pl in out if pl.sku_id and pl.category_id is None}
    if missing:
        from server.catalog.models import Sku

        cats = dict(
            await Sku.filter(id__in=list(missing)).values_list("id", "product__category_id")
        )
        for pl in out:
            if pl.category_id is None and pl.sku_id in cats:
                pl.category_id = cats[pl.sku_id]
    return out


async def quote_coupons(
    member_id: int,
    coupon_ids: list[int],
    lines: Iterable[Any],
    store_id: int | None,
    connection: Any = None,
) -> CouponLock:
    """Check the coupons fit this order and price them, writing nothing."""
    ids = list(dict.fromkeys(coupon_ids))
    if not ids:
        return CouponLock(discount_fen=0)
    priced = await _priced_lines(lines)
    coupons = {
        c.id: c
        for c in await Coupon.filter(id__in=ids, member_id=member_id)
        .using_db(connection)
        .prefetch_related("template")
    }
    now = utcnow()
    lock = CouponLock(discount_fen=0)
    for cid in ids:
        c = coupons.get(cid)
        if c is None:
            raise NotFound(f"you have no coupon {cid}", code="COUPON_NOT_FOUND")
        t = c.template
        state = coupon_status(c, now)
        if state == "used":
            raise AlreadyUsed(f"coupon {cid} has already been used")
        if state == "locked":
            raise Conflict(f"coupon {cid} is held by another unpaid order", code="COUPON_LOCKED")
        if state == "void":
            raise Conflict(f"coupon {cid} was taken back", code="COUPON_VOID")
        if state == "expired":
            raise Conflict(f"coupon {cid} has expired", code="COUPON_EXPIRED")
        if now < c.valid_from:
            raise Conflict(f"coupon {cid} is not valid yet", code="COUPON_NOT_YET_VALID")
        if t.channel == Channel.STORE:
            raise Conflict(f"coupon {cid} is for use in stores only", code="COUPON_NOT_ONLINE")
        if t.store_ids and store_id not in t.store_ids:
            raise StoreNotAllowed(f"coupon {cid} cannot be used at this store")
        off = template_discount(t, priced, lock.discount_fen)
        lock.per_coupon[cid] = off
        lock.discount_fen += off
    return lock


async def lock_coupons_for_order(
    member_id: int,
    coupon_ids: list[int],
    lines: Iterable[Any],
    store_id: int | None,
    order_no: str,
    connection: Any,
) -> CouponLock:
    """Price and lock the member's coupons for an order about to be created (call it inside the
    order's transaction, with the order number you will pass to create_order). Each coupon
    goes unused -> locked by a conditional UPDATE, so two orders cannot take one coupon."""
    lock = await quote_coupons(member_id, coupon_ids, lines, store_id, connection)
    for cid, off in lock.per_coupon.items():
        changed = (
            await Coupon.filter(id=cid, member_id=member_id, status=CouponStatus.UNUSED)
            .using_db(connection)
            .update(status=CouponStatus.LOCKED, order_no=order_no, discount_fen=off)
        )
        if not changed:
            raise Conflict(f"coupon {cid} was just used by another order", code="COUPON_LOCKED")
    return lock


@lifecycle.on(OrderStatus.PAID)
async def mark_coupons_used_for_paid_order(move: lifecycle.Move) -> None:
    """The order was paid: its locked coupons become used (online)."""
    await (
        Coupon.filter(order_no=move.order.order_no, status=CouponStatus.LOCKED)
        .using_db(move.conn)
        .update(
            status=CouponStatus.USED,
            used_at=utcnow(),
            used_channel="online",
            used_store_id=move.order.store_id,  # type: ignore[attr-defined]
        )
    )


async def coupons_for_order(order_no: str) -> list[dict[str, Any]]:
    """Each coupon an order carries and what it took off."""
    rows = await Coupon.filter(order_no=order_no).prefetch_related("template")
    return [
        {
            "coupon_id": c.id,
            "name": c.template.name,
            "discount_fen": c.discount_fen,
            "status": c.status.value,
        }
        for c in rows
    ]


@lifecycle.on(OrderStatus.CANCELLED)
async def release_coupons_of_cancelled_order(move: lifecycle.Move) -> None:
    """In the transaction that cancels an unpaid order: its coupons come back."""
    await (
        Coupon.filter(order_no=move.order.order_no, status=CouponStatus.LOCKED)
        .using_db(move.conn)
        .update(status=CouponStatus.UNUSED, order_no=None, discount_fen=None)
    )


async def give_back_coupons_of_order(order_no: str, connection: Any) -> int:
    """The order was refunded before the shopper got anything (a store rejected it): its
    coupons are unused again, in the refund's transaction. A scenario decides when."""
    return await (
        Coupon.filter(order_no=order_no, status=CouponStatus.USED, used_channel="online")
        .using_db(connection)
        .update(
            status=CouponStatus.UNUSED,
            order_no=None,
            discount_fen=None,
            used_at=None,
            used_channel=None,
            used_store_id=None,
        )
    )


# -- vouchers: coupons another domain grants for one fact ---------------------------------


async def create_voucher_template(
    *, name: str, sku_id: int, sku_name: str, store_ids: list[int], total: int, valid_days: int
) -> CouponTemplate:
    """A store-only "one free item" template that is never offered in the coupon centre:
    what a group-buy voucher is, so live codes, store-scoped write-off and stats apply."""
    return await create_template(
        {
            "name": name[:64],
            "kind": CouponKind.FREE_ITEM,
            "free_sku_id": sku_id,
            "free_item_name": sku_name[:64],
            "total": total,
            "per_member_limit": total,
            "valid_days": valid_days,
            "channel": Channel.STORE,
            "store_ids": store_ids,
            "in_center": False,
            "granted_only": True,
        }
    )


async def grant_coupon(template_id: int, member_id: int, ref: str, connection: Any) -> int:
    """Give a member one coupon of the template for the fact `ref`, inside the caller's
    transaction; granting the same `ref` again returns the first coupon's id."""
    existing = await Coupon.filter(grant_ref=ref).using_db(connection).first()
    if existing is not None:
        return existing.id
    t = await CouponTemplate.get(id=template_id).using_db(connection)
    took = (
        await CouponTemplate.filter(id=template_id, remaining__gte=1)
        .using_db(connection)
        .update(remaining=F("remaining") - 1, issued_count=F("issued_count") + 1)
    )
    if not took:
        raise SoldOut(f"voucher template {template_id} has no units left")
    valid_from, valid_until = _validity(t, utcnow())
    coupon = await Coupon.create(
        template_id=template_id,
        member_id=member_id,
        grant_ref=ref,
        valid_from=valid_from,
        valid_until=valid_until,
        using_db=connection,
    )
    return coupon.id


async def void_coupon(coupon_id: int, connection: Any) -> None:
    """Take back an unused coupon (its reason went away, e.g. the order was refunded); a coupon
    already used cannot be taken back: COUPON_ALREADY_USED."""
    changed = (
        await Coupon.filter(id=coupon_id, status__in=[CouponStatus.UNUSED, CouponStatus.LOCKED])
        .using_db(connection)
        .update(status=CouponStatus.VOID)
    )
    if changed:
        return
    c = await Coupon.filter(id=coupon_id).using_db(connection).first()
    if c is not None and c.status == CouponStatus.USED:
        raise AlreadyUsed("the voucher of this order has already been used")


async def count_void(template_id: int) -> int:
    return await Coupon.filter(template_id=template_id, status=CouponStatus.VOID).count()


# -- campaign issuance ---------------------------------------------------------------------

ISSUE_BATCH = 1000


async def create_issuance(
    template_id: int, member_ids: list[int], operator_id: int | None, segment_id: int | None = None
) -> CouponIssuance:
    """A campaign to a member list, or to a segment's members as they are now."""
    t = await get_template(template_id)
    if t.granted_only:
        raise Conflict(
            "this template's coupons are granted by another scenario (e.g. group-buy vouchers)",
            code="TEMPLATE_GRANTED_ONLY",
        )
    if segment_id is not None:
        member_ids = await _audience().members(segment_id)
    members = list(dict.fromkeys(member_ids))  # a member listed twice gets one coupon
    return await CouponIssuance.create(
        template_id=t.id, member_ids=members, total=len(members), operator_id=operator_id
    )


def issuance_out(i: CouponIssuance) -> dict[str, Any]:
    return {
        "id": i.id,
        "template_id": i.template_id,  # type: ignore[attr-defined]
        "status": i.status,
        "total": i.total,
        "position": i.position,
        "issued": i.issued,
        "skipped": i.skipped,
        "progress": round(i.position / i.total, 4) if i.total else 1.0,
        "message": i.message,
    }


async def get_issuance(issuance_id: int) -> CouponIssuance:
    i = await CouponIssuance.get_or_none(id=issuance_id)
    if i is None:
        raise NotFound(f"no issuance {issuance_id}", code="ISSUANCE_NOT_FOUND")
    return i


async def run_issuance(
    scripts: Any, issuance_id: int, batch: int = ISSUE_BATCH, max_batches: int | None = None
) -> CouponIssuance:
    """Issue from the saved position on, batch by batch; safe to run again after a crash.

    Each batch: skip members who already hold a coupon of this issuance, take that many units
    from the Redis counter, then in one transaction take them from the database's `remaining`,
    bulk-insert the coupons and move the saved position. The unique (issuance, member) makes
    a second coupon for one member impossible even if two runs overlap."""
    from server.identity.models import Member

    i = await get_issuance(issuance_id)
    if i.status == "done":
        return i
    t = await get_template(i.template_id)  # type: ignore[attr-defined]
    await CouponIssuance.filter(id=i.id).update(status="running", message="")
    stock_key = keys(t.id)[:1]
    batches = 0
    while i.position < i.total:
        if max_batches is not None and batches >= max_batches:
            break
        batches += 1
        chunk = i.member_ids[i.position : i.position + batch]
        have = set(
            await Coupon.filter(issuance_id=i.id, member_id__in=chunk).values_list(
                "member_id", flat=True
            )
        )
        known = set(await Member.filter(id__in=chunk).values_list("id", flat=True))
        todo = [m for m in chunk if m not in have and m in known]
        taken = 0
        if todo:
            taken = int(await scripts.run(LUA / "take_many.lua", stock_key, [len(todo)]))
            if taken == -1:
                await warm(scripts, t.id)
                taken = int(await scripts.run(LUA / "take_many.lua", stock_key, [len(todo)]))
            taken = max(taken, 0)
        try:
            inserted = await _issue_batch(i, t, chunk, have, known, todo[:taken])
        except IntegrityError:
            # Another run of this issuance inserted some of these members meanwhile: give
            # the units back and redo the batch (the next pass skips whoever has one now).
            if taken:
                await scripts.run(LUA / "put_back.lua", stock_key, [taken])
            i = await get_issuance(i.id)
            continue
        if taken > inserted:
            await scripts.run(LUA / "put_back.lua", stock_key, [taken - inserted])
        i = await get_issuance(i.id)
        if inserted < len(todo):
            return i  # out of stock: stopped at the first member left without a coupon
    if i.position >= i.total:
        await CouponIssuance.filter(id=i.id).update(status="done", finished_at=utcnow())
        i = await get_issuance(i.id)
    return i


async def _issue_batch(
    i: CouponIssuance,
    t: CouponTemplate,
    chunk: list[int],
    have: set[int],
    known: set[int],
    give: list[int],
) -> int:
    valid_from, valid_until = _validity(t, utcnow())
    inserted = 0
    async with in_transaction() as conn:
        if give:
            took = (
                await CouponTemplate.filter(id=t.id, remaining__gte=len(give))
                .using_db(conn)
                .update(
                    remaining=F("remaining") - len(give),
                    issued_count=F("issued_count") + len(give),
                )
            )
            if took:
                await Coupon.bulk_create(
                    [
                        Coupon(
                            template_id=t.id,
                            member_id=m,
                            issuance_id=i.id,
                            valid_from=valid_from,
                            valid_until=valid_until,
                        )
                        for m in give
                    ],
                    using_db=conn,
                )
                inserted = len(give)
        given = set(give[:inserted])
        todo = [m for m in chunk if m not in have and m in known]
        sold_out = inserted < len(todo)
        done = 0
        for m in chunk:  # the finished prefix: had one, unknown member, or just given one
            if m in have or m not in known or m in given:
                done += 1
            else:
                break
        await (
            CouponIssuance.filter(id=i.id)
            .using_db(conn)
            .update(
                position=i.position + done,
                issued=F("issued") + inserted,
                skipped=F("skipped") + sum(1 for m in chunk[:done] if m not in given),
                status="stopped" if sold_out else "running",
                message="the template ran out of stock; add stock and run it again"
                if sold_out
                else "",
            )
        )
    return inserted
