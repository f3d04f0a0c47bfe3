"""How a template did: handed out (counted from its coupons), used online, written off per
store."""

from __future__ import annotations

from typing import Any

from tortoise.functions import Count

from server.coupons.models import Coupon, CouponStatus, WriteOff
from server.coupons.templates import get_template


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
    claimed = await Coupon.filter(template_id=t.id, claim_seq__not_isnull=True).count()
    handed_out = await Coupon.filter(template_id=t.id, unit__not_isnull=True).count()
    return {
        "template_id": t.id,
        "total": t.total,
        "remaining": max(0, t.total - handed_out),
        "claimed": claimed,
        "issued": handed_out - claimed,  # campaigns and grants
        "used_online": used_online,
        "written_off_in_store": written_off,
        "revoked_write_offs": revoked,
        "write_off_rate": round(written_off / handed_out, 4) if handed_out else 0.0,
        "use_rate": round((written_off + used_online) / handed_out, 4) if handed_out else 0.0,
        "by_store": [
            {"store_id": s, "written_off": n} for s, n in sorted(by_store, key=lambda r: -r[1])
        ],
    }
