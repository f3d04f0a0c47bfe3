"""The points shelf: operators price coupon templates in points; a member redeems points for
a coupon in one transaction (the points leave, never below zero, and the coupon is granted,
or neither), once per Idempotency-Key, within the template's own per-member limit."""

from __future__ import annotations

from typing import Any

from tortoise.transactions import in_transaction

from server.infra.errors import Conflict, NotFound
from server.infra.models import is_id
from server.ledger import service as ledger
from server.membership.models import PointsRedemption, PointsReward
from server.membership.service import spend_points


async def create_reward(
    operator_id: int | None, template_id: int, points_price: int
) -> PointsReward:
    from server.coupons.models import CouponTemplate

    if not is_id(template_id) or not await CouponTemplate.exists(id=template_id):
        raise NotFound(f"no coupon template {template_id}", code="TEMPLATE_NOT_FOUND")
    return await PointsReward.create(
        template_id=template_id, points_price=points_price, created_by=operator_id
    )


async def rewards() -> list[dict[str, Any]]:
    from server.coupons.models import CouponTemplate

    rows = await PointsReward.filter(active=True).order_by("points_price", "id")
    names = {
        t.id: t.name for t in await CouponTemplate.filter(id__in=[r.template_id for r in rows])
    }
    return [
        {
            "id": r.id,
            "template_id": r.template_id,
            "title": names.get(r.template_id, ""),
            "points_price": r.points_price,
        }
        for r in rows
    ]


async def redeem(member_id: int, reward_id: int) -> PointsRedemption:
    """Points for a coupon, in one transaction: the points leave (never below zero), the
    coupon is granted (its template's stock is taken), or neither happens."""
    from server.coupons import service as coupons

    reward = await PointsReward.get_or_none(id=reward_id, active=True) if is_id(reward_id) else None
    if reward is None:
        raise NotFound(f"no reward {reward_id}", code="REWARD_NOT_FOUND")
    from server.coupons.models import Coupon, CouponTemplate

    template = await CouponTemplate.get(id=reward.template_id)
    held = await Coupon.filter(member_id=member_id, template_id=template.id).count()
    if held >= template.per_member_limit:
        raise Conflict(
            f"you may hold {template.per_member_limit} of this coupon",
            code="CLAIM_LIMIT_REACHED",
        )
    async with in_transaction() as conn:
        redemption = await PointsRedemption.create(
            member_id=member_id, reward_id=reward.id, points=reward.points_price, using_db=conn
        )
        try:
            await spend_points(
                member_id, reward.points_price, "redeem", f"redemption:{redemption.id}", conn
            )
        except ledger.BalanceTooLow:
            raise Conflict(
                f"this reward costs {reward.points_price} points",
                code="NOT_ENOUGH_POINTS",
                details={"points_price": reward.points_price},
            ) from None
        coupon_id = await coupons.grant_coupon(
            reward.template_id, member_id, f"redemption:{redemption.id}", conn
        )
        await PointsRedemption.filter(id=redemption.id).using_db(conn).update(coupon_id=coupon_id)
        redemption.coupon_id = coupon_id
    return redemption
