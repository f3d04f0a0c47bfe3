"""Membership: tiers operators configure, growth (what a member paid in the last 12 months),
the tier history, points lots (for first-in-first-out spending and expiry), stored-value plans.

Points and stored value are balances of the one ledger (server/ledger): kinds `points`,
`points_debt`, `sv_principal` and `sv_bonus`, one account each per member."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from server.infra.models import TimestampedModel


class Tier(TimestampedModel):
    """A level reached by growth: `points_pct` is the points multiplier in percent (150 = 1.5x), and
    `benefit_template_ids` are coupon templates issued once per tier and year on reaching it."""

    code = fields.CharField(max_length=16, unique=True)
    name = fields.CharField(max_length=32)
    min_growth = fields.BigIntField()
    points_pct = fields.IntField(default=100)
    benefit_template_ids = fields.JSONField(default=list)

    class Meta:
        table = "membership_tier"


class GrowthEvent(TimestampedModel):
    """Fen a member paid (+) or got back (-), once per fact: growth is the sum of the last 12
    months' events (no counter to drift, no stale read to overwrite)."""

    member_id = fields.BigIntField()
    fen = fields.BigIntField()
    kind = fields.CharField(max_length=16)  # paid | refunded | pos
    ref = fields.CharField(max_length=64)
    at = fields.DatetimeField()

    class Meta:
        table = "membership_growth"
        unique_together = (("kind", "ref"),)
        indexes = (("member_id", "at"),)


class TierChange(TimestampedModel):
    """Every change of a member's tier: upgrades at once, downgrades at the monthly review
    (`period` = "2026-12" makes a review of one member in one month happen once)."""

    member_id = fields.BigIntField(db_index=True)
    from_tier = fields.CharField(max_length=16)
    to_tier = fields.CharField(max_length=16)
    reason = fields.CharField(max_length=32)
    ref = fields.CharField(max_length=64)

    class Meta:
        table = "membership_tier_change"
        unique_together = (("member_id", "reason", "ref"),)


class BenefitGrant(TimestampedModel):
    """A tier's benefit coupons went to a member for a year: once per (member, tier, year)."""

    member_id = fields.BigIntField()
    tier_code = fields.CharField(max_length=16)
    year = fields.IntField()

    class Meta:
        table = "membership_benefit_grant"
        unique_together = (("member_id", "tier_code", "year"),)


class PointsLot(TimestampedModel):
    """Points earned by one order: spent first in, first out, and what is left of a lot
    expires at the end of the year after it was earned."""

    member_id = fields.BigIntField()
    ref = fields.CharField(max_length=64, unique=True)
    earned = fields.BigIntField()
    remaining = fields.BigIntField()
    expires_at = fields.DatetimeField()

    class Meta:
        table = "membership_points_lot"
        indexes = (("member_id", "expires_at"),)


class StoredValuePlan(TimestampedModel):
    """A top-up offer: pay `pay_fen`, get `credit_fen` (the difference is the bonus)."""

    pay_fen = fields.IntField()
    credit_fen = fields.IntField()
    active = fields.BooleanField(default=True)
    created_by = fields.BigIntField(null=True)

    class Meta:
        table = "stored_value_plan"


class PointsReward(TimestampedModel):
    """A coupon template operators put on the points shelf, at a price in points."""

    template_id = fields.BigIntField()
    points_price = fields.IntField()
    active = fields.BooleanField(default=True)
    created_by = fields.BigIntField(null=True)

    class Meta:
        table = "points_reward"


class PointsRedemption(TimestampedModel):
    """A member bought a reward with points: the coupon it gave and what it cost."""

    member_id = fields.BigIntField(db_index=True)
    reward = fields.ForeignKeyField(
        "membership.PointsReward", related_name="redemptions", on_delete=fields.RESTRICT
    )
    points = fields.IntField()
    coupon_id = fields.BigIntField(null=True)

    class Meta:
        table = "points_redemption"


class PosSale(TimestampedModel):
    """A purchase at a store's till by an identified member: once per (store, receipt)."""

    store_id = fields.BigIntField()
    receipt_no = fields.CharField(max_length=40)
    member_id = fields.BigIntField(db_index=True)
    staff_id = fields.BigIntField()
    amount_fen = fields.IntField()
    pay_with = fields.CharField(max_length=16)  # cash | stored_value
    points = fields.IntField(default=0)

    class Meta:
        table = "membership_pos_sale"
        unique_together = (("store_id", "receipt_no"),)


class MembershipSetting(TimestampedModel):
    """Operators' membership settings that are not tiers (e.g. "birthday_pack")."""

    key = fields.CharField(max_length=32, unique=True)
    value = fields.JSONField(default=dict)

    class Meta:
        table = "membership_setting"


class BirthdayGrant(TimestampedModel):
    """The birthday pack went to a member for a year: once per (member, year)."""

    member_id = fields.BigIntField()
    year = fields.IntField()

    class Meta:
        table = "membership_birthday_grant"
        unique_together = (("member_id", "year"),)


class Segment(TimestampedModel):
    """An operator's rule tag: the members a rule holds, recomputed by the job."""

    name = fields.CharField(max_length=64)
    rule = fields.JSONField()
    size = fields.IntField(default=0)
    computed_at = fields.DatetimeField(null=True)
    created_by = fields.BigIntField(null=True)

    class Meta:
        table = "membership_segment"


class SegmentMember(Model):
    """One member in one segment (what the last computation found)."""

    id = fields.BigIntField(primary_key=True)
    segment_id = fields.BigIntField()
    member_id = fields.BigIntField(db_index=True)

    class Meta:
        table = "membership_segment_member"
        unique_together = (("segment_id", "member_id"),)


class MemberRfm(Model):
    """A member's last 12 months: recency, frequency, monetary, and their quintile scores
    (1-5, 5 best) among all members with a purchase in that time."""

    id = fields.BigIntField(primary_key=True)
    member_id = fields.BigIntField(unique=True)
    last_at = fields.DatetimeField()
    frequency = fields.IntField()
    monetary_fen = fields.BigIntField()
    r = fields.IntField(default=0)
    f = fields.IntField(default=0)
    m = fields.IntField(default=0)

    class Meta:
        table = "membership_rfm"


class CardPlan(TimestampedModel):
    """A paid membership card on sale (付费会员): its price, how long it runs, its benefits."""

    name = fields.CharField(max_length=64)
    price_fen = fields.IntField()
    days = fields.IntField()
    monthly_template_ids = fields.JSONField(default=list)  # a pack every 30 days of the card
    points_pct = fields.IntField(default=100)  # points multiplier while it runs, in percent
    free_delivery = fields.BooleanField(default=False)  # takeout delivery fee waived
    active = fields.BooleanField(default=True)
    created_by = fields.BigIntField(null=True)

    class Meta:
        table = "membership_card_plan"


class MemberCard(TimestampedModel):
    """One bought period of a card: a renewal starts where the member's last one ends."""

    member_id = fields.BigIntField(db_index=True)
    plan = fields.ForeignKeyField(
        "membership.CardPlan", related_name="cards", on_delete=fields.RESTRICT
    )
    order_no = fields.CharField(max_length=32, unique=True)
    starts_at = fields.DatetimeField()
    ends_at = fields.DatetimeField()
    status = fields.CharField(max_length=12, default="active")  # active | refunded
    benefit_used = fields.BooleanField(default=False)  # its points multiplier earned something

    class Meta:
        table = "membership_card"


class CardPack(TimestampedModel):
    """A card's pack for one 30-day slot went out: once per (card, slot)."""

    card_id = fields.BigIntField()
    slot = fields.IntField()

    class Meta:
        table = "membership_card_pack"
        unique_together = (("card_id", "slot"),)
