"""Write-offs at the counter: a clerk of an allowed store takes the coupon, a manager may
revoke it within minutes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tortoise.transactions import in_transaction

from server.coupons.codes import resolve_code, verify_code
from server.coupons.errors import AlreadyUsed, CodeInvalid, StoreNotAllowed
from server.coupons.models import (
    Channel,
    Coupon,
    CouponStatus,
    CouponTemplate,
    WriteOff,
)
from server.coupons.templates import value_text
from server.infra.clock import SHANGHAI, iso_local, utcnow
from server.infra.errors import Conflict, Forbidden, NotFound

DEFAULT_REVOKE_MINUTES = 10


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
    # Where first: a clerk learns nothing of a coupon their stores cannot take.
    staff = await staff_info(staff_id)
    if store_id is not None and store_id not in staff.store_ids:
        raise StoreNotAllowed("you are not staff of that store")
    if t.channel == Channel.ONLINE:
        raise Conflict("this coupon is for online orders only", code="COUPON_NOT_FOR_STORE")
    allowed = [s for s in staff.store_ids if not t.store_ids or s in t.store_ids]
    if store_id is not None:
        allowed = [store_id] if store_id in allowed else []
    if not allowed:
        raise StoreNotAllowed("this coupon cannot be used at your store")
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
    # The day's bounds in UTC, as times are stored (SQLite compares them as text).
    start = datetime(day.year, day.month, day.day, tzinfo=SHANGHAI).astimezone(UTC)
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
