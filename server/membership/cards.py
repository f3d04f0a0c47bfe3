"""The paid membership card (付费会员): operators sell a card (price, days, benefits: a coupon
pack every 30 days, a points multiplier, free takeout delivery); buying it is an order of
kind `membership` whose payment starts a period — a renewal starts where the member's last
period ends, so renewals extend. Refund rule: in full within 7 days of payment while no
benefit was used (no pack coupon used, the multiplier never earned a point) and only for the
member's latest period; otherwise 409. A refund voids the period's unused pack coupons.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from tortoise.exceptions import DoesNotExist, IntegrityError
from tortoise.transactions import in_transaction

from server.identity import merge
from server.infra.clock import local, utcnow
from server.infra.errors import AppError, Conflict, NotFound, ValidationFailed
from server.infra.models import is_id
from server.membership.models import CardPack, CardPlan, MemberCard
from server.orders import lifecycle
from server.orders import service as orders
from server.orders.models import Order, OrderKind, OrderStatus

log = logging.getLogger("haodian.membership")

SLOT = timedelta(days=30)
REFUND_WINDOW = timedelta(days=7)


async def create_plan(operator_id: int | None, data: dict[str, Any]) -> CardPlan:
    from server.coupons.models import CouponTemplate

    wanted = set(data.get("monthly_template_ids") or [])
    known = set(await CouponTemplate.filter(id__in=list(wanted)).values_list("id", flat=True))
    if wanted - known:
        raise ValidationFailed(
            f"no coupon templates {sorted(wanted - known)}", code="TEMPLATE_NOT_FOUND"
        )
    return await CardPlan.create(
        name=data["name"],
        price_fen=data["price_fen"],
        days=data["days"],
        monthly_template_ids=list(data.get("monthly_template_ids") or []),
        points_pct=round(data.get("points_multiplier", 1) * 100),
        free_delivery=data.get("free_delivery", False),
        created_by=operator_id,
    )


def plan_view(p: CardPlan) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "price_fen": p.price_fen,
        "days": p.days,
        "monthly_template_ids": list(p.monthly_template_ids),
        "points_multiplier": p.points_pct / 100,
        "free_delivery": p.free_delivery,
    }


async def plans() -> list[CardPlan]:
    return await CardPlan.filter(active=True).order_by("price_fen")


async def buy(member_id: int, plan_id: int) -> Order:
    plan = await CardPlan.get_or_none(id=plan_id, active=True) if is_id(plan_id) else None
    if plan is None:
        raise NotFound(f"no membership card {plan_id}", code="CARD_PLAN_NOT_FOUND")
    return await orders.create_order(
        kind=OrderKind.MEMBERSHIP,
        member_id=member_id,
        lines=[orders.LineIn(None, f"{plan.name} {plan.days} 天", 1, plan.price_fen)],
        source=f"mcp:{plan.id}",
        actor=f"member:{member_id}",
    )


async def current(
    member_id: int, now: datetime | None = None, conn: Any = None
) -> MemberCard | None:
    now = now or utcnow()
    return (
        await MemberCard.filter(
            member_id=member_id, status="active", starts_at__lte=now, ends_at__gt=now
        )
        .using_db(conn)
        .prefetch_related("plan")
        .first()
    )


async def card_view(member_id: int) -> dict[str, Any] | None:
    card = await current(member_id)
    if card is None:
        return None
    last = (
        await MemberCard.filter(member_id=member_id, status="active").order_by("-ends_at").first()
    )
    return {
        "name": card.plan.name,
        "ends_at": local(last.ends_at if last else card.ends_at),  # shown in Asia/Shanghai
        "points_multiplier": card.plan.points_pct / 100,
        "free_delivery": card.plan.free_delivery,
    }


@lifecycle.on(OrderStatus.PAID, kinds=[OrderKind.MEMBERSHIP])
async def _start_period(move: lifecycle.Move) -> None:
    order = move.order
    member_id = int(order.member_id)  # type: ignore[attr-defined]
    plan = await CardPlan.get(id=int(str(order.source).removeprefix("mcp:"))).using_db(move.conn)
    now = utcnow()
    last = (
        await MemberCard.filter(member_id=member_id, status="active", ends_at__gt=now)
        .using_db(move.conn)
        .order_by("-ends_at")
        .first()
    )
    starts = last.ends_at if last else now
    card = await MemberCard.create(
        member_id=member_id,
        plan_id=plan.id,
        order_no=order.order_no,
        starts_at=starts,
        ends_at=starts + timedelta(days=plan.days),
        using_db=move.conn,
    )
    if starts <= now:
        await _give_pack(card, plan, 0, move.conn)


async def _give_pack(card: MemberCard, plan: CardPlan, slot: int, conn: Any) -> bool:
    from server.coupons import service as coupons

    try:
        async with conn._in_transaction() as sp:
            await CardPack.create(card_id=card.id, slot=slot, using_db=sp)
    except IntegrityError:
        return False
    for template_id in plan.monthly_template_ids:
        try:
            async with conn._in_transaction() as sp:
                await coupons.grant_coupon(
                    int(template_id), card.member_id, f"mcard:{card.id}:{slot}:{template_id}", sp
                )
        except (AppError, DoesNotExist) as exc:
            log.error(
                "a card pack coupon could not be granted",
                extra={"card": card.id, "template": template_id, "error": str(exc)[:200]},
            )
    return True


async def give_due_packs(now: datetime | None = None) -> int:
    """The daily job: each running card's pack for the 30-day slot it is in, once."""
    now = now or utcnow()
    given = 0
    running = await MemberCard.filter(
        status="active", starts_at__lte=now, ends_at__gt=now
    ).prefetch_related("plan")
    for card in running:
        slot = int((now - card.starts_at) / SLOT)
        async with in_transaction() as conn:
            if await _give_pack(card, card.plan, slot, conn):
                given += 1
    return given


async def multiplier_pct(member_id: int, conn: Any) -> tuple[int, MemberCard | None]:
    card = await current(member_id, conn=conn)
    return (card.plan.points_pct, card) if card else (100, None)


async def mark_benefit_used(card: MemberCard, conn: Any) -> None:
    await MemberCard.filter(id=card.id).using_db(conn).update(benefit_used=True)


@lifecycle.on(OrderStatus.REFUNDING, kinds=[OrderKind.MEMBERSHIP])
async def _end_period(move: lifecycle.Move) -> None:
    """Refund in full within 7 days while nothing of it was used, and only the latest period."""
    from server.coupons import service as coupons
    from server.coupons.models import Coupon, CouponStatus

    order = move.order
    card = await MemberCard.filter(order_no=order.order_no).using_db(move.conn).first()
    if card is None:
        return  # paid after it was closed: nothing started
    if order.paid_at and utcnow() - order.paid_at > REFUND_WINDOW:
        raise Conflict(
            "a membership card is refunded within 7 days of payment", code="REFUND_WINDOW_PASSED"
        )
    later = (
        await MemberCard.filter(
            member_id=card.member_id, status="active", starts_at__gte=card.ends_at
        )
        .using_db(move.conn)
        .exists()
    )
    if later:
        raise Conflict("a later renewal exists: refund that one first", code="RENEWED_SINCE")
    pack = Coupon.filter(grant_ref__startswith=f"mcard:{card.id}:").using_db(move.conn)
    # A pack coupon held by an unpaid order counts as used: voiding it would not take its
    # discount back from that order.
    used = [CouponStatus.USED, CouponStatus.LOCKED]
    if card.benefit_used or await pack.filter(status__in=used).exists():
        raise Conflict("this card's benefits have been used", code="CARD_BENEFITS_USED")
    for coupon_id in await pack.values_list("id", flat=True):
        await coupons.void_coupon(int(coupon_id), move.conn)
    await MemberCard.filter(id=card.id).using_db(move.conn).update(status="refunded")


merge.register_member_owned(MemberCard, "member_id")
