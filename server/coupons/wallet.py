"""The member's coupons: how each one reads, and which a store's clerk could take now."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from server.coupons.models import (
    Channel,
    Coupon,
    CouponStatus,
    CouponTemplate,
    WriteOff,
)
from server.coupons.templates import value_text
from server.infra.clock import iso_local, utcnow
from server.infra.errors import NotFound


def coupon_status(c: Coupon, now: datetime | None = None) -> str:
    now = now or utcnow()
    if c.status == CouponStatus.UNUSED and now >= c.valid_until:
        return "expired"
    return c.status.value


def template_part(t: CouponTemplate) -> dict[str, Any]:
    """What a coupon's answer shows of its template."""
    return {
        "template_id": t.id,
        "name": t.name,
        "kind": t.kind.value,
        "value_text": value_text(t),
        "channel": t.channel.value,
        "store_ids": t.store_ids,
    }


def coupon_out(c: Coupon, t: CouponTemplate, now: datetime | None = None) -> dict[str, Any]:
    return {
        "id": c.id,
        **template_part(t),
        "status": coupon_status(c, now),
        "valid_from": iso_local(c.valid_from),
        "valid_until": iso_local(c.valid_until),
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
