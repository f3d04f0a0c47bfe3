"""Membership rules: tiers by growth, points earned and clawed back, stored value.

- **Growth** is the fen a member paid for what they consumed in the last 12 months (rolling),
  less refunds: the sum of `GrowthEvent`s, one per fact (kind, ref), never a counter. What
  counts is a rule table (`EARNS` by order kind, `TENDER_EARNS` by tender): buying a gift
  card or topping up stored value is not consumption (spending them is), paying with points
  earns nothing, flash sales earn nothing.
- **Tiers**: a member is upgraded the moment growth crosses a threshold (the tier's benefit
  coupons once per tier and year); downgraded only by the monthly review, once per member and
  month, never mid-month.
- **Points**: 1 per yuan consumed x the tier's multiplier, earned through the outbox after the
  payment commits, exactly once per order (the growth event is the marker, in the same
  transaction). A refund claws them back: what the balance holds, and the rest becomes a
  debt (`points_debt`) that later earnings pay off first — a balance never goes below zero.
  Each earning is a lot, spent first in, first out; what is left of a lot expires at the end
  of the year after it was earned.
- **Stored value** (`stored_value.py`) is two accounts, principal and bonus; a spend
  (`tenders.py`) takes from both in proportion, so a bonus is never spent ahead of its
  principal (nor kept back).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.exceptions import DoesNotExist, IntegrityError
from tortoise.functions import Sum
from tortoise.transactions import in_transaction

from server.identity import merge
from server.identity import service as identity
from server.identity.models import Member
from server.infra.clock import SHANGHAI, utcnow
from server.infra.errors import AppError, ValidationFailed
from server.ledger import service as ledger
from server.ledger.models import LedgerEntry
from server.membership import cards
from server.membership.models import (
    BenefitGrant,
    GrowthEvent,
    PointsLot,
    PointsRedemption,
    Tier,
    TierChange,
)
from server.orders import lifecycle
from server.orders.models import Order, OrderEvent, OrderKind, OrderStatus
from server.outbox import service as outbox
from server.payments import tenders

log = logging.getLogger("haodian.membership")

POINTS = "points"
DEBT = "points_debt"
PRINCIPAL = "sv_principal"
BONUS = "sv_bonus"
GROWTH_WINDOW = timedelta(days=365)
BASE_TIER = {"code": "regular", "name": "会员", "min_growth": 0, "points_pct": 100}

# What earns points and growth: consumption, not buying balances.
EARNS: dict[OrderKind, bool] = {
    OrderKind.PICKUP: True,
    OrderKind.TAKEOUT: True,
    OrderKind.GROUPBUY: True,
    OrderKind.FLASHSALE: False,  # priced to sell out, not to reward
    OrderKind.GIFTCARD: False,  # earned when the card is spent
    OrderKind.TOPUP: False,  # earned when the stored value is spent
    OrderKind.MEMBERSHIP: False,  # a fee for benefits, not goods
}
TENDER_EARNS: dict[str, bool] = {
    tenders.WECHAT: True,
    "gift_card": True,
    "stored_value": True,
    "points": False,
}


# -- tiers ----------------------------------------------------------------------------------------


async def tiers() -> list[Tier | dict[str, Any]]:
    rows = await Tier.all().order_by("min_growth")
    return list(rows) if rows else [BASE_TIER]


def tier_view(t: Tier | dict[str, Any]) -> dict[str, Any]:
    if isinstance(t, dict):
        return {**t, "benefit_template_ids": []}
    return {
        "code": t.code,
        "name": t.name,
        "min_growth": t.min_growth,
        "points_multiplier": t.points_pct / 100,
        "benefit_template_ids": list(t.benefit_template_ids),
    }


async def replace_tiers(items: list[dict[str, Any]]) -> list[Tier | dict[str, Any]]:
    """Operators set the whole ladder at once: one tier at growth 0, distinct codes and
    thresholds. Members keep their tier until growth or the review moves them."""
    codes = [i["code"] for i in items]
    thresholds = [i["min_growth"] for i in items]
    if len(set(codes)) != len(codes) or len(set(thresholds)) != len(thresholds):
        raise ValidationFailed("tier codes and thresholds must be distinct", code="TIERS_INVALID")
    if 0 not in thresholds:
        raise ValidationFailed("one tier must start at growth 0", code="TIERS_INVALID")
    from server.coupons.models import CouponTemplate

    wanted = {int(t) for i in items for t in i.get("benefit_template_ids") or []}
    known = set(await CouponTemplate.filter(id__in=list(wanted)).values_list("id", flat=True))
    if wanted - known:
        raise ValidationFailed(
            f"no coupon templates {sorted(wanted - known)}", code="TEMPLATE_NOT_FOUND"
        )
    async with in_transaction() as conn:
        await Tier.all().using_db(conn).delete()
        for i in items:
            await Tier.create(
                code=i["code"],
                name=i["name"],
                min_growth=i["min_growth"],
                points_pct=round(i["points_multiplier"] * 100),
                benefit_template_ids=list(i.get("benefit_template_ids") or []),
                using_db=conn,
            )
    return await tiers()


def _code(t: Tier | dict[str, Any]) -> str:
    return t["code"] if isinstance(t, dict) else t.code


def _min(t: Tier | dict[str, Any]) -> int:
    return int(t["min_growth"] if isinstance(t, dict) else t.min_growth)


def _pct(t: Tier | dict[str, Any]) -> int:
    return int(t["points_pct"] if isinstance(t, dict) else t.points_pct)


def tier_for(ladder: list[Tier | dict[str, Any]], growth: int) -> Tier | dict[str, Any]:
    reached = [t for t in ladder if _min(t) <= growth]
    return reached[-1] if reached else ladder[0]


def _rank(ladder: list[Tier | dict[str, Any]], code: str) -> int:
    for i, t in enumerate(ladder):
        if _code(t) == code:
            return i
    return 0  # a tier no longer configured counts as the lowest


async def growth(member_id: int, now: datetime | None = None, connection: Any = None) -> int:
    since = (now or utcnow()) - GROWTH_WINDOW
    row = (
        await GrowthEvent.filter(member_id=member_id, at__gt=since)
        .using_db(connection)
        .annotate(total=Sum("fen"))
        .values("total")
    )
    return int((row[0]["total"] if row else 0) or 0)


async def upgrade(member_id: int, ref: str, conn: Any) -> None:
    """Upgrade at once when growth crosses a threshold (never down here)."""
    ladder = await tiers()
    member = await Member.filter(id=member_id).select_for_update().using_db(conn).get()
    target = tier_for(ladder, await growth(member_id, connection=conn))
    if _rank(ladder, _code(target)) <= _rank(ladder, member.tier):
        return
    await _move_tier(member, _code(target), "upgrade", ref, conn)
    await _grant_benefits(member_id, target, conn)


async def _move_tier(member: Member, to: str, reason: str, ref: str, conn: Any) -> bool:
    try:
        async with conn._in_transaction() as sp:
            await TierChange.create(
                member_id=member.id,
                from_tier=member.tier,
                to_tier=to,
                reason=reason,
                ref=ref,
                using_db=sp,
            )
    except IntegrityError:
        return False  # this fact moved the tier already
    await Member.filter(id=member.id).using_db(conn).update(tier=to)
    log.info("tier changed", extra={"member": member.id, "to": to, "reason": reason})
    return True


async def _grant_benefits(member_id: int, tier: Tier | dict[str, Any], conn: Any) -> None:
    if isinstance(tier, dict) or not tier.benefit_template_ids:
        return
    from server.coupons import service as coupons

    year = utcnow().astimezone(SHANGHAI).year
    try:
        async with conn._in_transaction() as sp:
            await BenefitGrant.create(
                member_id=member_id, tier_code=tier.code, year=year, using_db=sp
            )
    except IntegrityError:
        return  # this tier's benefits went out this year already
    for template_id in tier.benefit_template_ids:
        # A benefit that cannot be given (sold out, template gone) is logged, never a reason
        # to hold back the member's growth and points (the earning's transaction).
        try:
            async with conn._in_transaction() as sp:
                await coupons.grant_coupon(
                    int(template_id),
                    member_id,
                    f"tier:{tier.code}:{year}:{member_id}:{template_id}",
                    sp,
                )
        except (AppError, DoesNotExist) as exc:
            log.error(
                "a tier benefit could not be granted",
                extra={
                    "member": member_id,
                    "tier": tier.code,
                    "template": template_id,
                    "error": str(exc)[:200],
                },
            )


async def monthly_review(now: datetime | None = None) -> dict[str, int]:
    """Downgrades (and any missed upgrade) once a month: each member's tier is set to what
    their rolling growth reaches; run twice in a month, the second run changes nothing."""
    now = now or utcnow()
    period = f"{now.astimezone(SHANGHAI):%Y-%m}"
    ladder = await tiers()
    base = _code(ladder[0])
    counts = {"reviewed": 0, "down": 0, "up": 0}
    ids = await Member.filter(merged_into_id=None).exclude(tier=base).values_list("id", flat=True)
    for member_id in ids:
        async with in_transaction() as conn:
            member = await Member.filter(id=member_id).select_for_update().using_db(conn).get()
            target = _code(tier_for(ladder, await growth(member_id, now, conn)))
            counts["reviewed"] += 1
            if target == member.tier:
                continue
            down = _rank(ladder, target) < _rank(ladder, member.tier)
            if await _move_tier(member, target, "review", period, conn):
                counts["down" if down else "up"] += 1
    return counts


# -- points ---------------------------------------------------------------------------------------


def lot_expiry(earned_at: datetime) -> datetime:
    """The end of the year after the one it was earned in (Asia/Shanghai)."""
    year = earned_at.astimezone(SHANGHAI).year + 2
    return datetime(year, 1, 1, tzinfo=SHANGHAI).astimezone(UTC)


async def credit_after_debt(member_id: int, points: int, reason: str, ref: str, conn: Any) -> int:
    """Points coming to the member (earned, or given back by a refund) pay any debt first;
    the rest lands on the balance. Returns what landed."""
    if points <= 0:
        return 0
    debt_account = await ledger.member_account(DEBT, member_id, connection=conn)
    debt = int((await ledger.lock(debt_account.id, conn)).balance)
    repay = min(debt, points)
    if repay:
        await ledger.post(debt_account.id, -repay, "repaid", ref, connection=conn)
    credit = points - repay
    if credit:
        await credit_points(member_id, credit, reason, ref, conn)
    return credit


async def credit_points(member_id: int, points: int, reason: str, ref: str, conn: Any) -> None:
    """Points onto the balance as a new lot (expiring at the end of next year), once."""
    account = await ledger.member_account(POINTS, member_id, connection=conn)
    posted = await ledger.post(account.id, points, reason, ref, connection=conn)
    if not posted.duplicate:
        await PointsLot.create(
            member_id=member_id,
            ref=f"{reason}:{ref}"[:64] if reason != "earn" else ref,
            earned=points,
            remaining=points,
            expires_at=lot_expiry(utcnow()),
            using_db=conn,
        )


async def _take_from_lots(
    member_id: int, points: int, conn: Any, first_ref: str | None = None
) -> None:
    """Points left the balance: take them from the lots, `first_ref`'s lot first, then the
    oldest (first in, first out), so the lots always add up to the balance."""
    lots = (
        await PointsLot.filter(member_id=member_id, remaining__gt=0)
        .using_db(conn)
        .order_by("expires_at", "id")
    )
    lots.sort(key=lambda lot: lot.ref != first_ref)
    for lot in lots:
        if points <= 0:
            break
        take = min(lot.remaining, points)
        await PointsLot.filter(id=lot.id).using_db(conn).update(remaining=lot.remaining - take)
        points -= take


async def spend_points(member_id: int, points: int, reason: str, ref: str, conn: Any) -> None:
    account = await ledger.member_account(POINTS, member_id, connection=conn)
    posted = await ledger.post(account.id, -points, reason, ref, connection=conn)
    if not posted.duplicate:
        await _take_from_lots(member_id, points, conn)


def _earning_fen(order: Order, paid_by: list[Any]) -> int:
    if not paid_by:
        return int(order.paid_fen or 0)
    return sum(t.amount_fen for t in paid_by if TENDER_EARNS.get(t.kind, False))


async def points_for(member_id: int, fen: int, conn: Any) -> int:
    """1 point a yuan x the better of the tier's and a running paid card's multiplier (the
    card's counting as a benefit used when it is the one that applies)."""
    member = await Member.get(id=member_id).using_db(conn)
    ladder = await tiers()
    tier_pct = _pct(ladder[_rank(ladder, member.tier)])
    card_pct, card = await cards.multiplier_pct(member_id, conn)
    points = fen // 100 * max(tier_pct, card_pct) // 100
    if card is not None and card_pct > tier_pct and points > fen // 100 * tier_pct // 100:
        await cards.mark_benefit_used(card, conn)
    return points


@lifecycle.on(OrderStatus.PAID)
async def _after_paid(move: lifecycle.Move) -> None:
    if EARNS.get(OrderKind(move.order.kind), False):
        await outbox.emit(
            "membership.paid",
            {"order_no": move.order.order_no},
            connection=move.conn,
            key=f"mp:{move.order.order_no}",
        )


@lifecycle.on(OrderStatus.REFUNDED)
async def _after_refunded(move: lifecycle.Move) -> None:
    if EARNS.get(OrderKind(move.order.kind), False):
        await outbox.emit(
            "membership.refunded",
            {"order_no": move.order.order_no},
            connection=move.conn,
            key=f"mr:{move.order.order_no}",
        )


@outbox.handler("membership.paid")
async def _earn(event: Any, env: outbox.Env) -> None:
    await earn_for_order(event.payload["order_no"])


@outbox.handler("membership.refunded")
async def _claw_back(event: Any, env: outbox.Env) -> None:
    await claw_back_order(event.payload["order_no"])


async def earn_for_order(order_no: str) -> int:
    """Growth and points for a paid order, once: the growth event (unique per order) and the
    points commit together, so a second delivery finds the event and does nothing."""
    order = await Order.get(order_no=order_no)
    member_id = int(order.member_id)  # type: ignore[attr-defined]
    fen = _earning_fen(order, await tenders.of_order(order.id))
    async with in_transaction() as conn:
        try:
            async with conn._in_transaction() as sp:
                await GrowthEvent.create(
                    member_id=member_id,
                    fen=fen,
                    kind="paid",
                    ref=order_no,
                    at=order.paid_at or utcnow(),
                    using_db=sp,
                )
        except IntegrityError:
            return 0
        credited = await credit_after_debt(
            member_id, await points_for(member_id, fen, conn), "earn", f"order:{order_no}", conn
        )
        await upgrade(member_id, order_no, conn)
    return credited


async def claw_back_order(order_no: str) -> None:
    """A refunded order gives back its growth and its points: what the balance holds is
    taken, the rest is a debt later earnings pay first. The tier stays until the review."""
    order = await Order.get(order_no=order_no)
    member_id = int(order.member_id)  # type: ignore[attr-defined]
    earned = await GrowthEvent.get_or_none(kind="paid", ref=order_no)
    if (
        earned is None
        and not await OrderEvent.filter(order_id=order.id, to_status=OrderStatus.PAID).exists()
    ):
        return  # paid after it was closed and refunded: it never earned
    if earned is None:
        # Its earning has not been delivered yet (events of one order may arrive out of
        # order): the outbox retries this after it, so nothing is taken back too early.
        raise RuntimeError(f"order {order_no} has not earned yet")
    ref = f"order:{order_no}"
    async with in_transaction() as conn:
        try:
            async with conn._in_transaction() as sp:
                await GrowthEvent.create(
                    member_id=member_id,
                    fen=-earned.fen,
                    kind="refunded",
                    ref=order_no,
                    at=earned.at,  # leaves the 12-month window with the payment it undoes
                    using_db=sp,
                )
        except IntegrityError:
            return
        # What this order credited: earned points, and debt it paid off (as good as points).
        given = sum(
            abs(e.amount)
            for e in await LedgerEntry.filter(
                reference=ref, reason__in=["earn", "repaid"]
            ).using_db(conn)
        )
        if given <= 0:
            return
        account = await ledger.member_account(POINTS, member_id, connection=conn)
        locked = await ledger.lock(account.id, conn)
        take = min(int(locked.balance), given)
        if take:
            await ledger.post(account.id, -take, "clawback", ref, connection=conn)
            await _take_from_lots(member_id, take, conn, first_ref=ref)
        if given - take:
            debt = await ledger.member_account(DEBT, member_id, connection=conn)
            await ledger.post(debt.id, given - take, "clawback", ref, connection=conn)


async def expire_points(now: datetime | None = None) -> int:
    """What is left of lots past their date leaves the balance, one entry per lot."""
    now = now or utcnow()
    done = 0
    lots = await PointsLot.filter(remaining__gt=0, expires_at__lte=now).limit(1000)
    for lot in lots:
        async with in_transaction() as conn:
            fresh = await PointsLot.filter(id=lot.id).select_for_update().using_db(conn).get()
            if fresh.remaining <= 0:
                continue
            account = await ledger.member_account(POINTS, fresh.member_id, connection=conn)
            await ledger.post(
                account.id, -fresh.remaining, "expire", f"lot:{fresh.id}", connection=conn
            )
            await PointsLot.filter(id=fresh.id).using_db(conn).update(remaining=0)
            done += 1
    return done


async def points_history(
    member_id: int, limit: int, before_id: int | None = None
) -> list[LedgerEntry]:
    """The member's points entries, newest first (pages: `before_id` = the last id seen)."""
    account = await ledger.find_member_account(POINTS, member_id)
    if account is None:
        return []
    return await ledger.entries(account.id, limit=limit, before_id=before_id)


# -- spending points: rewards and checkout ------------------------------------------------------

POINTS_SHARE_MAX = 0.5  # points (1 fen each: 100 points = 1 yuan) pay at most this of the goods


# -- the member's page ----------------------------------------------------------------------------


async def my_membership(member_id: int) -> dict[str, Any]:
    member = await identity.get_member(member_id)
    ladder = await tiers()
    g = await growth(member_id)
    rank = _rank(ladder, member.tier)
    nxt = ladder[rank + 1] if rank + 1 < len(ladder) else None
    return {
        "tier": member.tier,
        "growth": g,
        "next_tier": _code(nxt) if nxt else None,
        "growth_to_next": max(0, _min(nxt) - g) if nxt else None,
        "points": await ledger.member_balance(POINTS, member_id),
        "points_debt": await ledger.member_balance(DEBT, member_id),
        "stored_value_fen": await ledger.member_balance(PRINCIPAL, member_id)
        + await ledger.member_balance(BONUS, member_id),
        "birthday": member.birthday,
        "card": await cards.card_view(member_id),
    }


# Merges: growth, tier history, lots and grants follow the member (ledger accounts are
# poured together by the ledger's own mover).
merge.register_member_owned(GrowthEvent, "member_id")
merge.register_member_owned(TierChange, "member_id")
merge.register_member_owned(PointsLot, "member_id")
merge.register_member_owned(PointsRedemption, "member_id")
merge.register_member_owned("membership.PosSale", "member_id")
merge.register_member_owned(
    BenefitGrant, "member_id", mover=merge.keep_one_mover(BenefitGrant, "tier_code", "year")
)


async def _after_merge(from_id: int, into_id: int) -> None:
    """Two members' growth together may reach a higher tier at once."""
    async with in_transaction() as conn:
        await upgrade(into_id, f"merge:{from_id}", conn)


merge.on_member_merged(_after_merge)
