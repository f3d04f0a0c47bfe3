"""Coupon templates: what a coupon is worth, where and for whom, and how many there are.

The operators' side of the domain; every other module reads templates through here."""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta
from typing import Any

from server.coupons import stock
from server.coupons.models import (
    CouponKind,
    CouponTemplate,
)
from server.infra.clock import iso_local, utcnow
from server.infra.errors import Conflict, Forbidden, NotFound, ValidationFailed
from server.infra.memo import Recent


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


def audience() -> Any:
    return importlib.import_module(AUDIENCE_MODULE)


async def create_template(data: dict[str, Any]) -> CouponTemplate:
    if data.get("audience_segment_id"):
        await audience().get_segment(data["audience_segment_id"])
    if data.get("audience_tiers"):
        known = set(await audience().tier_codes())
        if unknown := sorted(set(data["audience_tiers"]) - known):
            raise ValidationFailed(f"no such member tiers: {unknown} (the tiers: {sorted(known)})")
    if data.get("valid_until") and data["valid_until"] <= utcnow():
        raise ValidationFailed("valid_until has passed: every coupon of this template is expired")
    if data.get("free_sku_id"):
        from server.catalog.models import Sku

        if not await Sku.exists(id=data["free_sku_id"]):
            raise ValidationFailed(f"no such SKU: {data['free_sku_id']}")
    if data.get("store_ids"):
        from server.stores.models import Store

        wanted = set(data["store_ids"])
        found = set(await Store.filter(id__in=list(wanted)).values_list("id", flat=True))
        if wanted - found:
            raise ValidationFailed(f"no such stores: {sorted(wanted - found)}")
    return await CouponTemplate.create(**data)


async def get_template(template_id: int) -> CouponTemplate:
    t = await CouponTemplate.get_or_none(id=template_id)
    if t is None:
        raise NotFound(f"no coupon template {template_id}", code="TEMPLATE_NOT_FOUND")
    return t


async def list_templates(limit: int = 200) -> list[CouponTemplate]:
    return await CouponTemplate.all().order_by("-id").limit(limit)


async def update_template(template_id: int, changes: dict[str, Any]) -> CouponTemplate:
    t = await get_template(template_id)
    # Sent as null: only the end of the claim window means something (no end).
    changes = {k: v for k, v in changes.items() if v is not None or k == "claim_until"}
    if changes.get("claim_until") and t.claim_from and changes["claim_until"] <= t.claim_from:
        raise ValidationFailed("claim_until must be after claim_from")
    if t.granted_only and changes.get("in_center"):
        raise Conflict(
            "this template's coupons are granted by another scenario (e.g. group-buy vouchers)"
            " and cannot be offered in the coupon centre",
            code="TEMPLATE_GRANTED_ONLY",
        )
    if changes.get("total") is not None and changes["total"] < t.total:
        # Units above a smaller total may be out already (the database would hold them).
        raise Conflict(
            f"the total can grow, not shrink (it is {t.total}); pause the template instead",
            code="TOTAL_CANNOT_SHRINK",
        )
    if changes:
        await CouponTemplate.filter(id=t.id).update(**changes)
        _templates.forget(t.id)
    return await get_template(template_id)


async def template_view(scripts: Any, t: CouponTemplate) -> dict[str, Any]:
    """What operators see of a template, with what is left of it now."""
    return template_out(t, await stock.units_left(scripts, t))


def template_out(t: CouponTemplate, left: int) -> dict[str, Any]:
    """`left`: `stock.units_left` (what is left is counted, not stored)."""
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
        "remaining": left,
        "per_member_limit": t.per_member_limit,
        "valid_days": t.valid_days,
        "valid_from": iso_local(t.valid_from),
        "valid_until": iso_local(t.valid_until),
        "channel": t.channel.value,
        "store_ids": t.store_ids,
        "sku_ids": t.sku_ids,
        "category_ids": t.category_ids,
        "free_sku_id": t.free_sku_id,
        "free_item_name": t.free_item_name,
        "claim_from": iso_local(t.claim_from),
        "claim_until": iso_local(t.claim_until),
        "in_center": t.in_center,
        "audience_tiers": t.audience_tiers,
        "audience_segment_id": t.audience_segment_id,
        "active": t.active,
    }


# -- Redis stock ---------------------------------------------------------------------------


def validity(t: CouponTemplate, now: datetime) -> tuple[datetime, datetime]:
    if t.valid_days:
        return now, now + timedelta(days=t.valid_days)
    assert t.valid_from and t.valid_until
    return t.valid_from, t.valid_until


def claim_window_reason(t: CouponTemplate, now: datetime, tier: str | None) -> str | None:
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


async def member_tier(member_id: int) -> str | None:
    from server.identity.models import Member

    m = await Member.get_or_none(id=member_id)
    if m is None or m.disabled:
        raise Forbidden("this member account is not active", code="MEMBER_DISABLED")
    return m.tier


# The claim path reads a template many times a second; each worker keeps it a moment.
# Stock is not taken from this copy (Redis and the database guard do that).
TEMPLATE_KEPT_S = 2.0
_templates: Recent[int, CouponTemplate] = Recent(ttl=TEMPLATE_KEPT_S)


async def cached_template(template_id: int) -> CouponTemplate:
    return await _templates.get(template_id, lambda: get_template(template_id))
