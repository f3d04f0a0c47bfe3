from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from server.infra.models import MAX_ID


class TierIn(BaseModel):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,15}$")
    name: str = Field(min_length=1, max_length=32)
    min_growth: int = Field(ge=0, le=10**12, description="fen paid in the last 12 months")
    points_multiplier: float = Field(ge=0, le=10)
    benefit_template_ids: list[int] = Field(default_factory=list, max_length=10)


class TiersIn(BaseModel):
    items: list[TierIn] = Field(min_length=1, max_length=12)


class TierOut(BaseModel):
    code: str
    name: str
    min_growth: int
    points_multiplier: float
    benefit_template_ids: list[int]


class TierList(BaseModel):
    items: list[TierOut]


class PaidCardOut(BaseModel):
    name: str
    ends_at: datetime = Field(description="renewals included")
    points_multiplier: float
    free_delivery: bool


class CardPlanIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    price_fen: int = Field(ge=1, le=1_000_000)
    days: int = Field(ge=1, le=3660)
    monthly_template_ids: list[int] = Field(default_factory=list, max_length=10)
    points_multiplier: float = Field(default=1, ge=1, le=10)
    free_delivery: bool = False


class CardPlanOut(BaseModel):
    id: int
    name: str
    price_fen: int
    days: int
    monthly_template_ids: list[int]
    points_multiplier: float
    free_delivery: bool


class CardPlanList(BaseModel):
    items: list[CardPlanOut]


class BuyCardIn(BaseModel):
    plan_id: int = Field(ge=1, le=MAX_ID)


class MembershipOut(BaseModel):
    tier: str
    growth: int = Field(description="fen paid for what you bought in the last 12 months")
    next_tier: str | None
    growth_to_next: int | None
    points: int
    points_debt: int = Field(description="points owed after a refund; later earnings pay it first")
    stored_value_fen: int
    birthday: date | None
    card: PaidCardOut | None = Field(description="the paid membership card running now")


class PointsEntryOut(BaseModel):
    id: int
    points: int
    balance_after: int
    reason: str = Field(description="earn | clawback | expire | spend | spend_return | ...")
    reference: str
    at: datetime


class PointsPage(BaseModel):
    items: list[PointsEntryOut]
    next_before_id: int | None = Field(description="pass as before_id for the next page")


class PointsQuery(BaseModel):
    limit: int = Field(default=20, ge=1, le=100)
    before_id: int | None = Field(default=None, ge=1, le=MAX_ID)


class PlanIn(BaseModel):
    pay_fen: int = Field(ge=100, le=500_000)
    credit_fen: int = Field(ge=100, le=1_000_000)


class PlanOut(BaseModel):
    id: int
    pay_fen: int
    credit_fen: int
    bonus_fen: int


class PlanList(BaseModel):
    items: list[PlanOut]


class TopUpIn(BaseModel):
    plan_id: int = Field(ge=1, le=MAX_ID)


class RewardIn(BaseModel):
    template_id: int = Field(ge=1, le=MAX_ID)
    points_price: int = Field(ge=1, le=10_000_000)


class RewardOut(BaseModel):
    id: int
    template_id: int
    title: str
    points_price: int


class RewardList(BaseModel):
    items: list[RewardOut]


class RedeemIn(BaseModel):
    reward_id: int = Field(ge=1, le=MAX_ID)


class RedemptionOut(BaseModel):
    id: int
    reward_id: int
    points: int
    coupon_id: int | None


class BirthdayPackIn(BaseModel):
    template_ids: list[int] = Field(max_length=10, description="coupon templates in the pack")


class BirthdayPackOut(BaseModel):
    template_ids: list[int]


class MemberCodeOut(BaseModel):
    code: str = Field(description="show as a QR code; lives 60 s")
    digits: str = Field(description="12 digits a clerk can type instead")
    expires_in: int


class IdentifyIn(BaseModel):
    code: str = Field(min_length=1, max_length=80, description="scanned code or its 12 digits")
    store_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="when at several")


class TillCouponOut(BaseModel):
    id: int
    template_id: int
    name: str


class IdentifiedOut(BaseModel):
    member_id: int
    name: str = Field(description="masked")
    tier: str
    points: int
    stored_value_fen: int
    store_id: int
    coupons: list[TillCouponOut] = Field(description="usable at this store now")


class SaleIn(BaseModel):
    code: str = Field(min_length=1, max_length=80)
    store_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    receipt_no: str = Field(pattern=r"^[0-9A-Za-z_-]{1,40}$")
    amount_fen: int = Field(ge=1, le=100_000_000)
    pay_with: Literal["cash", "stored_value"]


class SaleOut(BaseModel):
    id: int
    store_id: int
    receipt_no: str
    member_id: int
    amount_fen: int
    pay_with: str
    points: int = Field(description="points the sale earned")
    stored_value_fen: int = Field(description="the member's stored value after it")


class SegmentIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    rule: dict[str, Any] = Field(
        description='one of: {"type": "bought_category", "category_id", "min_times", "days"}, '
        '{"type": "spent", "min_fen", "days"}, {"type": "store_regular", "store_id", '
        '"min_orders", "days"}, {"type": "tier_in", "tiers": [...]}, {"type": '
        '"birthday_month", "month"}, {"type": "rfm", "r": [1-5...], "f": [...], "m": [...]}'
    )


class SegmentOut(BaseModel):
    id: int
    name: str
    rule: dict
    size: int = Field(description="members the last computation found")
    computed_at: datetime | None


class SegmentList(BaseModel):
    items: list[SegmentOut]
