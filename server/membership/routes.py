"""Membership: operators' tiers and top-up plans; a member's tier, points and stored value."""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse, Request
from sanic_ext import openapi

from server.infra import auth
from server.infra.http import body, idempotency_key, query, respond, returns
from server.membership import birthday, cards, pos, rewards, segments, service, stored_value
from server.membership.models import StoredValuePlan
from server.membership.schemas import (
    BirthdayPackIn,
    BirthdayPackOut,
    BuyCardIn,
    CardPlanIn,
    CardPlanList,
    CardPlanOut,
    IdentifiedOut,
    IdentifyIn,
    MemberCodeOut,
    MembershipOut,
    PlanIn,
    PlanList,
    PlanOut,
    PointsPage,
    PointsQuery,
    RedeemIn,
    RedemptionOut,
    RewardIn,
    RewardList,
    RewardOut,
    SaleIn,
    SaleOut,
    SegmentIn,
    SegmentList,
    SegmentOut,
    TierList,
    TiersIn,
    TopUpIn,
)
from server.orders.idempotency import place_once, run_once
from server.orders.schemas import OrderOut

bp = Blueprint("membership", url_prefix="/api/v1")


def _plan(p: StoredValuePlan) -> dict:
    return {
        "id": p.id,
        "pay_fen": p.pay_fen,
        "credit_fen": p.credit_fen,
        "bonus_fen": p.credit_fen - p.pay_fen,
    }


@bp.get("/admin/membership/tiers")
@auth.authenticated("operator")
@returns(TierList)
async def get_tiers(request: Request) -> HTTPResponse:
    return respond({"items": [service.tier_view(t) for t in await service.tiers()]})


@bp.put("/admin/membership/tiers")
@auth.authenticated("operator", roles=["admin", "marketing"])
@body(TiersIn)
@returns(TierList)
async def put_tiers(request: Request, payload: TiersIn) -> HTTPResponse:
    """Replace the tier ladder (one tier at growth 0)."""
    items = await service.replace_tiers([i.model_dump() for i in payload.items])
    return respond({"items": [service.tier_view(t) for t in items]})


@bp.get("/admin/membership/birthday-pack")
@auth.authenticated("operator")
@returns(BirthdayPackOut)
async def get_birthday_pack(request: Request) -> HTTPResponse:
    return respond({"template_ids": await birthday.pack_templates()})


@bp.put("/admin/membership/birthday-pack")
@auth.authenticated("operator", roles=["admin", "marketing"])
@body(BirthdayPackIn)
@returns(BirthdayPackOut)
async def put_birthday_pack(request: Request, payload: BirthdayPackIn) -> HTTPResponse:
    """The coupons every member gets on their birthday (once a year)."""
    return respond({"template_ids": await birthday.set_pack(payload.template_ids)})


@bp.get("/me/membership")
@auth.authenticated("member")
@returns(MembershipOut)
async def my_membership(request: Request) -> HTTPResponse:
    return respond(await service.my_membership(request.ctx.principal.subject))


@bp.get("/me/points")
@auth.authenticated("member")
@query(PointsQuery)
@returns(PointsPage)
async def my_points(request: Request, params: PointsQuery) -> HTTPResponse:
    """The points ledger, newest first."""
    rows = await service.points_history(
        request.ctx.principal.subject, params.limit, params.before_id
    )
    items = [
        {
            "id": e.id,
            "points": e.amount,
            "balance_after": e.balance_after,
            "reason": e.reason,
            "reference": e.reference,
            "at": e.created_at,
        }
        for e in rows
    ]
    more = len(rows) == params.limit
    return respond({"items": items, "next_before_id": rows[-1].id if rows and more else None})


@bp.post("/admin/stored-value/plans")
@auth.authenticated("operator", roles=["admin", "marketing"])
@body(PlanIn)
@returns(PlanOut, status=201)
async def create_plan(request: Request, payload: PlanIn) -> HTTPResponse:
    plan = await stored_value.create_plan(
        request.ctx.principal.subject, payload.pay_fen, payload.credit_fen
    )
    return respond(_plan(plan), status=201)


@bp.get("/stored-value/plans")
@returns(PlanList)
async def list_plans(request: Request) -> HTTPResponse:
    return respond({"items": [_plan(p) for p in await stored_value.plans()]})


@bp.post("/stored-value/top-ups")
@auth.authenticated("member")
@openapi.parameter("Idempotency-Key", str, location="header", required=True)
@body(TopUpIn)
@returns(OrderOut, status=201)
async def top_up(request: Request, payload: TopUpIn) -> HTTPResponse:
    """An order of kind `topup`, paid with WeChat Pay (`/orders/{no}/pay`); the payment
    credits principal and bonus."""
    member_id = request.ctx.principal.subject
    key = idempotency_key(request)

    status, answer = await place_once(
        member_id,
        "/stored-value/top-ups",
        key,
        payload.model_dump(mode="json"),
        lambda: stored_value.top_up(member_id, payload.plan_id),
    )
    return respond(answer, status=status)


@bp.post("/admin/points/rewards")
@auth.authenticated("operator", roles=["admin", "marketing"])
@body(RewardIn)
@returns(RewardOut, status=201)
async def create_reward(request: Request, payload: RewardIn) -> HTTPResponse:
    """Put a coupon template on the points shelf (a granted-only template works best)."""
    reward = await rewards.create_reward(
        request.ctx.principal.subject, payload.template_id, payload.points_price
    )
    shown = next(r for r in await rewards.rewards() if r["id"] == reward.id)
    return respond(shown, status=201)


@bp.get("/points/rewards")
@returns(RewardList)
async def list_rewards(request: Request) -> HTTPResponse:
    return respond({"items": await rewards.rewards()})


@bp.post("/points/redemptions")
@auth.authenticated("member")
@openapi.parameter("Idempotency-Key", str, location="header", required=True)
@body(RedeemIn)
@returns(RedemptionOut, status=201)
async def redeem(request: Request, payload: RedeemIn) -> HTTPResponse:
    """Spend points on a reward: the coupon appears in /me/coupons (a retry with the same
    key gives the same answer, never a second coupon)."""
    member_id = request.ctx.principal.subject
    key = idempotency_key(request)

    async def work() -> tuple[int, dict]:
        r = await rewards.redeem(member_id, payload.reward_id)
        return 201, {
            "id": r.id,
            "reward_id": payload.reward_id,
            "points": r.points,
            "coupon_id": r.coupon_id,
        }

    status, answer = await run_once(
        f"member:{member_id}:POST /points/redemptions", key, payload.model_dump(mode="json"), work
    )
    return respond(answer, status=status)


# -- the member at the till ----------------------------------------------------------------------


@bp.get("/me/member-code")
@auth.authenticated("member")
@returns(MemberCodeOut)
async def my_member_code(request: Request) -> HTTPResponse:
    """The live member code to show at the till (refresh it before it expires)."""
    ctx = request.app.ctx
    out = await pos.member_code(ctx.redis, ctx.settings.secret, request.ctx.principal.subject)
    return respond(out)


@bp.post("/staff/pos/identify")
@auth.authenticated("staff")
@body(IdentifyIn)
@returns(IdentifiedOut)
async def identify(request: Request, payload: IdentifyIn) -> HTTPResponse:
    """Who this member code belongs to: masked name, tier, points, stored value, and the
    coupons they can use at this store."""
    ctx = request.app.ctx
    out = await pos.identify(
        ctx.redis,
        ctx.settings.secret,
        request.ctx.principal.subject,
        payload.code,
        payload.store_id,
    )
    return respond(out)


@bp.post("/staff/pos/sales")
@auth.authenticated("staff")
@body(SaleIn)
@returns(SaleOut, status=201)
async def record_sale(request: Request, payload: SaleIn) -> HTTPResponse:
    """Record a till purchase for the identified member (once per store and receipt: the same
    receipt again answers 200 with the first sale)."""
    ctx = request.app.ctx
    sale, created = await pos.record_sale(
        ctx.redis,
        ctx.settings.secret,
        request.ctx.principal.subject,
        text=payload.code,
        store_id=payload.store_id,
        receipt_no=payload.receipt_no,
        amount_fen=payload.amount_fen,
        pay_with=payload.pay_with,
    )
    return respond(await pos.sale_view(sale), status=201 if created else 200)


# -- segments -------------------------------------------------------------------------------------


@bp.post("/admin/segments")
@auth.authenticated("operator", roles=["admin", "marketing"])
@body(SegmentIn)
@returns(SegmentOut, status=201)
async def create_segment(request: Request, payload: SegmentIn) -> HTTPResponse:
    """A rule tag, computed at once (and again by the worker every hour). Coupon templates
    and issuances target it with `audience_segment_id`."""
    segment = await segments.create_segment(
        request.ctx.principal.subject, payload.name, payload.rule
    )
    return respond(segments.segment_view(segment), status=201)


@bp.get("/admin/segments")
@auth.authenticated("operator")
@returns(SegmentList)
async def list_segments(request: Request) -> HTTPResponse:
    rows = await segments.list_segments()
    return respond({"items": [segments.segment_view(s) for s in rows]})


@bp.get("/admin/segments/<segment_id:int>")
@auth.authenticated("operator")
@returns(SegmentOut)
async def get_segment(request: Request, segment_id: int) -> HTTPResponse:
    return respond(segments.segment_view(await segments.get_segment(segment_id)))


@bp.post("/admin/segments/<segment_id:int>/refresh")
@auth.authenticated("operator", roles=["admin", "marketing"])
@returns(SegmentOut)
async def refresh_segment(request: Request, segment_id: int) -> HTTPResponse:
    """Compute it again now (rather than waiting for the worker)."""
    segment = await segments.get_segment(segment_id)
    await segments.compute_segment(segment)
    return respond(segments.segment_view(await segments.get_segment(segment_id)))


# -- the paid membership card ---------------------------------------------------------------------


@bp.post("/admin/membership/cards")
@auth.authenticated("operator", roles=["admin", "marketing"])
@body(CardPlanIn)
@returns(CardPlanOut, status=201)
async def create_card_plan(request: Request, payload: CardPlanIn) -> HTTPResponse:
    plan = await cards.create_plan(request.ctx.principal.subject, payload.model_dump())
    return respond(cards.plan_view(plan), status=201)


@bp.get("/membership/cards")
@returns(CardPlanList)
async def list_card_plans(request: Request) -> HTTPResponse:
    return respond({"items": [cards.plan_view(p) for p in await cards.plans()]})


@bp.post("/membership/cards/orders")
@auth.authenticated("member")
@openapi.parameter("Idempotency-Key", str, location="header", required=True)
@body(BuyCardIn)
@returns(OrderOut, status=201)
async def buy_card(request: Request, payload: BuyCardIn) -> HTTPResponse:
    """An order of kind `membership` (pay it with `/orders/{no}/pay`); paid, the card runs
    from now, or from the end of the one running (a renewal)."""
    member_id = request.ctx.principal.subject
    key = idempotency_key(request)

    status, answer = await place_once(
        member_id,
        "/membership/cards/orders",
        key,
        payload.model_dump(mode="json"),
        lambda: cards.buy(member_id, payload.plan_id),
    )
    return respond(answer, status=status)
