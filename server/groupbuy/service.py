"""Group-buy activities (operators), what shoppers see of them and of a group, and stats."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from tortoise.functions import Count
from tortoise.transactions import in_transaction

from server.catalog.models import Sku
from server.coupons import service as coupons
from server.groupbuy import seats
from server.groupbuy.models import ActivityState, Group, GroupBuy, GroupSeat, GroupStatus, SeatState
from server.identity import merge
from server.identity import service as identity
from server.infra.clock import iso_local, utcnow
from server.infra.errors import Conflict, NotFound, ValidationFailed
from server.infra.models import is_id
from server.infra.redis import Scripts
from server.share import service as share

PAGE = "pages/groupbuy/group"


MAX_DAYS = 366  # an activity runs at most this long, and starts within that from now


async def create_activity(scripts: Scripts, *, operator_id: int | None, **data: Any) -> GroupBuy:
    """Check the activity, then write it and its voucher template (a store-only free item) in
    one transaction; Redis is loaded after the commit (or by the first request, if down)."""
    sku = await Sku.get_or_none(id=data["sku_id"]).select_related("product")
    if sku is None:
        raise ValidationFailed(f"no SKU {data['sku_id']}", code="SKU_NOT_FOUND")
    now = utcnow()
    starts, ends = data["starts_at"], data["ends_at"]
    if ends <= starts:
        raise ValidationFailed("ends_at must be after starts_at")
    if ends <= now:
        raise ValidationFailed("ends_at is in the past")
    if ends - starts > timedelta(days=MAX_DAYS) or abs(starts - now) > timedelta(days=MAX_DAYS):
        raise ValidationFailed(f"an activity runs at most {MAX_DAYS} days, within a year from now")
    if data["group_price_fen"] >= sku.price_fen:
        raise ValidationFailed(
            f"the group price must be below the SKU's price ({sku.price_fen} fen)",
            code="GROUP_PRICE_TOO_HIGH",
        )
    size = data["group_size"]
    if data["units"] < size:
        raise ValidationFailed(f"units must cover at least one group ({size})")
    fill = data.get("virtual_fill_min")
    if fill is not None and not 1 <= fill < size:
        raise ValidationFailed(f"virtual_fill_min must be 1..{size - 1} (or absent)")
    store_ids = sorted(set(data.get("store_ids") or []))
    title = data.get("title") or f"{sku.product.name} {sku.name}".strip()
    async with in_transaction():
        template = await coupons.create_voucher_template(
            name=f"拼团券 {title}",
            sku_id=sku.id,
            sku_name=f"{sku.product.name} {sku.name}".strip(),
            store_ids=store_ids,
            total=data["units"],
            valid_days=data.get("voucher_valid_days") or 30,
        )  # checks the stores exist
        activity = await GroupBuy.create(
            sku_id=sku.id,
            title=title[:128],
            group_price_fen=data["group_price_fen"],
            group_size=size,
            units=data["units"],
            starts_at=starts,
            ends_at=ends,
            group_minutes=data["group_minutes"],
            per_member_limit=data.get("per_member_limit") or 1,
            store_ids=store_ids,
            virtual_fill_min=fill,
            voucher_template_id=template.id,
            voucher_valid_days=data.get("voucher_valid_days") or 30,
            created_by=operator_id,
        )
    try:
        await seats.warm(scripts, activity)
    except RedisError:
        pass  # the first request that finds it cold warms it
    return activity


async def get_activity(activity_id: int) -> GroupBuy:
    a = await GroupBuy.get_or_none(id=activity_id) if is_id(activity_id) else None
    if a is None:
        raise NotFound(f"no group-buy {activity_id}", code="GROUP_BUY_NOT_FOUND")
    return a


async def list_activities(*, live_only: bool, limit: int = 100) -> list[GroupBuy]:
    q = GroupBuy.all()
    if live_only:
        q = q.filter(state=ActivityState.ON, ends_at__gt=utcnow())
    return await q.order_by("-id").limit(limit)


async def activities_out(redis: Any, scripts: Scripts, *, live_only: bool) -> list[dict[str, Any]]:
    return [
        await activity_out(redis, scripts, a) for a in await list_activities(live_only=live_only)
    ]


async def units_left(redis: Any, scripts: Scripts, activity: GroupBuy) -> int:
    k = seats.activity_keys(activity.id)
    raw = await redis.get(k["units"])
    if raw is None:
        await seats.warm(scripts, activity)
        raw = await redis.get(k["units"])
    return max(0, int(raw or 0))


def status_of(a: GroupBuy, left: int, now: datetime | None = None) -> str:
    now = now or utcnow()
    if a.state != ActivityState.ON or now >= a.ends_at:
        return "ended"
    if now < a.starts_at:
        return "upcoming"
    return "live" if left >= a.group_size else "sold_out"


async def activity_out(redis: Any, scripts: Scripts, a: GroupBuy) -> dict[str, Any]:
    left = await units_left(redis, scripts, a)
    sku = await Sku.get_or_none(id=a.sku_id)  # type: ignore[attr-defined]
    return {
        "id": a.id,
        "sku_id": a.sku_id,  # type: ignore[attr-defined]
        "title": a.title,
        "group_price_fen": a.group_price_fen,
        "price_fen": sku.price_fen if sku else None,
        "group_size": a.group_size,
        "units": a.units,
        "units_left": left,
        "starts_at": iso_local(a.starts_at),
        "ends_at": iso_local(a.ends_at),
        "group_minutes": a.group_minutes,
        "per_member_limit": a.per_member_limit,
        "store_ids": a.store_ids,
        "virtual_fill_min": a.virtual_fill_min,
        "voucher_template_id": a.voucher_template_id,
        "status": status_of(a, left),
    }


async def joinable_groups(redis: Any, activity_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """Open groups with seats left, fewest seats left first (read from Redis, no scan)."""
    now_ms = int(time.time() * 1000)
    rows = await redis.zrangebyscore(
        seats.activity_keys(activity_id)["joinable"], 1, "+inf", start=0, num=limit * 3,
        withscores=True,
    )  # fmt: skip
    out = []
    for group_no, score in rows:
        left, exp = divmod(int(score), 10**13)
        if exp > now_ms:
            out.append(
                {"group_no": group_no, "seats_left": left,
                 "expires_at": iso_local(seats.from_ms(exp))}
            )  # fmt: skip
        if len(out) >= limit:
            break
    return out


# -- a group, as its share landing page shows it ------------------------------------------------


async def get_group(group_no: str) -> Group:
    seats.activity_of(group_no)  # a malformed number is a 404, not a query
    g = await Group.get_or_none(group_no=group_no)
    if g is None:
        raise NotFound(f"no group {group_no}", code="GROUP_NOT_FOUND")
    return g


async def group_out(redis: Any, group_no: str) -> dict[str, Any]:
    activity_id = seats.activity_of(group_no)
    g = await Group.get_or_none(group_no=group_no)
    redis_g = await redis.hmget(seats.group_keys(activity_id, group_no)[0], "taken", "exp", "state")
    if g is None:  # opened a moment ago; the worker has not written it yet
        if redis_g[1] is None:
            raise NotFound(f"no group {group_no}", code="GROUP_NOT_FOUND")
        activity = await get_activity(activity_id)
        return {
            "group_no": group_no, "activity_id": activity_id, "title": activity.title,
            "group_price_fen": activity.group_price_fen, "status": "forming",
            "size": activity.group_size, "paid": 0,
            "seats_left": activity.group_size - int(redis_g[0] or 0),
            "virtual_seats": 0, "expires_at": iso_local(seats.from_ms(int(redis_g[1]))),
            "members": [],
        }  # fmt: skip
    activity = await GroupBuy.get(id=g.activity_id)  # type: ignore[attr-defined]
    members = await GroupSeat.filter(
        group_id=g.id, state__in=[SeatState.PAID, SeatState.REFUNDING, SeatState.REFUNDED],
        paid_at__not_isnull=True,
    ).order_by("-is_leader", "paid_at", "id")  # fmt: skip
    profiles = await identity.public_profiles([m.member_id for m in members])
    if g.status in (GroupStatus.FORMING, GroupStatus.OPEN) and redis_g[0] is not None:
        seats_left = g.size - int(redis_g[0])
    elif g.status in (GroupStatus.FORMING, GroupStatus.OPEN):
        seats_left = (
            g.size - await GroupSeat.filter(group_id=g.id, live_seat__not_isnull=True).count()
        )
    else:
        seats_left = 0
    status = g.status.value
    if g.status == GroupStatus.OPEN and redis_g[2] == "forming":
        status = "forming"  # the leader's payment has not reached the seat script yet
    return {
        "group_no": g.group_no,
        "activity_id": activity.id,
        "title": activity.title,
        "group_price_fen": activity.group_price_fen,
        "status": status,
        "size": g.size,
        "paid": g.paid_count,
        "seats_left": max(0, seats_left),
        "virtual_seats": g.virtual_seats,
        "expires_at": iso_local(g.expires_at),
        "members": [
            {
                **profiles.get(m.member_id, {"nickname": "微信用户", "avatar_url": ""}),
                "is_leader": m.is_leader,
                "refunded": m.state != SeatState.PAID,
            }
            for m in members
        ],
    }


# -- operators' stats --------------------------------------------------------------------------


async def stats(activity_id: int) -> dict[str, Any]:
    a = await get_activity(activity_id)
    by_status = dict(
        await Group.filter(activity_id=a.id)
        .group_by("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    by_state = dict(
        await GroupSeat.filter(activity_id=a.id)
        .group_by("state")
        .annotate(n=Count("id"))
        .values_list("state", "n")
    )
    refunded = by_state.get(SeatState.REFUNDING, 0) + by_state.get(SeatState.REFUNDED, 0)
    after_success = await GroupSeat.filter(
        activity_id=a.id,
        state__in=[SeatState.REFUNDING, SeatState.REFUNDED],
        voucher_coupon_id__not_isnull=True,
    ).count()
    members = await GroupSeat.filter(activity_id=a.id, paid_at__not_isnull=True).count()
    virtual = sum(
        await Group.filter(activity_id=a.id, virtual_seats__gt=0).values_list(
            "virtual_seats", flat=True
        )
    )
    vouchers = await coupons.stats(a.voucher_template_id)
    issued = vouchers["issued"]
    void = await coupons.count_void(a.voucher_template_id)
    written = vouchers["written_off_in_store"]
    via_share = await GroupSeat.filter(activity_id=a.id, sharer_member_id__not_isnull=True).count()
    succeeded = by_status.get(GroupStatus.SUCCEEDED, 0)
    failed = by_status.get(GroupStatus.FAILED, 0)
    return {
        "activity_id": a.id,
        "groups_opened": sum(by_status.values()),
        "groups_forming": by_status.get(GroupStatus.FORMING, 0),
        "groups_open": by_status.get(GroupStatus.OPEN, 0),
        "groups_succeeded": succeeded,
        "groups_failed": failed,
        "success_rate": round(succeeded / (succeeded + failed), 4) if succeeded + failed else 0.0,
        "members": members,
        "seats_paid_now": by_state.get(SeatState.PAID, 0),
        "seats_held_unpaid": by_state.get(SeatState.HELD, 0),
        "refunds": refunded,
        "refunded_after_success": after_success,
        "virtual_seats": virtual,
        "joins_via_share": via_share,
        "vouchers_issued": issued,
        "vouchers_void": void,
        "vouchers_written_off": written,
        "write_off_rate": round(written / (issued - void), 4) if issued - void > 0 else 0.0,
        "units": a.units,
    }


# -- share links: kind "group" -----------------------------------------------------------------


async def _shareable(target: str, sharer_id: int) -> None:
    """Any member may share a group that is still open (friends of friends bring friends)."""
    g = await get_group(target)
    if g.status not in (GroupStatus.FORMING, GroupStatus.OPEN):
        raise Conflict("this group has closed", code="GROUP_CLOSED")


share.register_kind("group", PAGE, _shareable, param="g")


# -- member merges -----------------------------------------------------------------------------


async def move_member_seats(from_id: int, into_id: int, connection: Any) -> int:
    """identity's merge mover: seats go to the surviving member; where both held a live seat
    in one group, the merged member's stays live under its old id (one live seat per member
    per group is a unique the merge must not break), so neither loses a paid seat."""
    rows = await GroupSeat.filter(member_id=from_id).using_db(connection)
    for s in rows:
        changes: dict[str, Any] = {"member_id": into_id}
        if s.live_member is not None:
            clash = (
                await GroupSeat.filter(group_id=s.group_id, live_member=into_id)  # type: ignore[attr-defined]
                .using_db(connection)
                .exists()
            )
            if not clash:
                changes["live_member"] = into_id
        await GroupSeat.filter(id=s.id).using_db(connection).update(**changes)
    await (
        GroupSeat.filter(sharer_member_id=from_id)
        .using_db(connection)
        .update(sharer_member_id=into_id)
    )
    await (
        Group.filter(leader_member_id=from_id).using_db(connection).update(leader_member_id=into_id)
    )
    return len(rows)


merge.register_member_owned(GroupSeat, "member_id", mover=move_member_seats)
