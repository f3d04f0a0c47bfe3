"""Coupons: templates (what a coupon is worth and where), coupons (one per member and claim),
campaign issuances, and store write-offs."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from server.infra.models import TimestampedModel


class CouponKind(StrEnum):
    AMOUNT_OFF = "amount_off"  # a fixed amount off the order
    PERCENT_OFF = "percent_off"  # a percentage off, with an optional cap (max_off_fen)
    THRESHOLD = "threshold"  # amount_off_fen off once the goods reach threshold_fen
    FREE_ITEM = "free_item"  # one unit of a product free (free_sku_id), or a gift at the till


class Channel(StrEnum):
    ONLINE = "online"
    STORE = "store"
    BOTH = "both"


class CouponStatus(StrEnum):
    UNUSED = "unused"
    LOCKED = "locked"  # held by an unpaid order; comes back if the order is cancelled
    USED = "used"
    VOID = "void"  # taken back unused (e.g. a group-buy voucher whose order was refunded)


class CouponTemplate(TimestampedModel):
    name = fields.CharField(max_length=64)
    kind = fields.CharEnumField(CouponKind, max_length=16)
    amount_off_fen = fields.IntField(null=True)
    percent_off = fields.IntField(null=True)  # 1..100: 15 means 15% off
    max_off_fen = fields.IntField(null=True)
    threshold_fen = fields.IntField(null=True)
    free_sku_id = fields.BigIntField(null=True)
    free_item_name = fields.CharField(max_length=64, default="")
    # How many coupons of this template may ever exist. Each coupon takes one unit number
    # 1..total, unique per template (Redis hands the numbers out, the database's uniqueness and
    # a `unit <= total` check guard them): so no per-claim update of this row, and no way to
    # hand out more than `total`, whatever Redis forgot. What is left is counted, not stored.
    total = fields.IntField()
    per_member_limit = fields.IntField(default=1)
    valid_days = fields.IntField(null=True)  # N days from the claim
    valid_from = fields.DatetimeField(null=True)  # or a fixed window
    valid_until = fields.DatetimeField(null=True)
    claim_from = fields.DatetimeField(null=True)
    claim_until = fields.DatetimeField(null=True)
    channel = fields.CharEnumField(Channel, max_length=8, default=Channel.BOTH)
    store_ids: list[int] = fields.JSONField(default=list)  # type: ignore[assignment]  # [] = all
    sku_ids: list[int] = fields.JSONField(default=list)  # type: ignore[assignment]  # [] = all
    category_ids: list[int] = fields.JSONField(default=list)  # type: ignore[assignment]
    audience_tiers: list[str] = fields.JSONField(default=list)  # type: ignore[assignment]
    audience_segment_id = fields.BigIntField(null=True)  # only members of this segment
    in_center = fields.BooleanField(default=True)  # listed in the coupon centre
    # Only another domain grants these (group-buy vouchers): never claimed in the centre nor
    # sent by a campaign, so their units stay for the grants they were made for.
    granted_only = fields.BooleanField(default=False, db_default=False)
    active = fields.BooleanField(default=True)

    class Meta:
        table = "coupon_template"


class CouponIssuance(TimestampedModel):
    """An operator's campaign: send a template to a list of members, in the background."""

    template = fields.ForeignKeyField(
        "coupons.CouponTemplate", related_name="issuances", on_delete=fields.RESTRICT
    )
    operator_id = fields.BigIntField(null=True)
    status = fields.CharField(
        max_length=16, default="pending"
    )  # pending|running|stopped (out of stock)|done
    total = fields.IntField(default=0)  # members listed (IssuanceMember rows)
    position = fields.IntField(default=0)  # members done so far (for progress)
    # The resume point: members are issued in id order, and every member up to this id is
    # done (given one, already had one, or unknown). Moves in the batch's own transaction.
    after_member_id = fields.BigIntField(default=0, db_default=0)
    issued = fields.IntField(default=0)
    skipped = fields.IntField(default=0)  # already had one from this issuance, or unknown
    message = fields.CharField(max_length=255, default="")
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "coupon_issuance"


class IssuanceMember(Model):
    """One member an issuance sends to (a list or a segment, as it was when the issuance was
    made): a table, so a million-member campaign reads its next batch by index."""

    id = fields.BigIntField(primary_key=True)
    issuance_id = fields.BigIntField()
    member_id = fields.BigIntField()

    class Meta:
        table = "coupon_issuance_member"
        unique_together = (("issuance_id", "member_id"),)


class Coupon(TimestampedModel):
    # No foreign-key constraints on the relations: PostgreSQL checks each with a row lock
    # (FOR KEY SHARE) on the member, the template and the issuance for every coupon inserted,
    # which was two thirds of a campaign batch's time and put every claim of a template on
    # its row again. The writers check instead: a claim's member is its verified token and
    # its template is joined in the INSERT; an issuance joins its members. None of the three
    # is ever deleted.
    template = fields.ForeignKeyField(
        "coupons.CouponTemplate",
        related_name="coupons",
        on_delete=fields.RESTRICT,
        db_constraint=False,
    )
    member = fields.ForeignKeyField(
        "identity.Member", related_name="coupons", on_delete=fields.RESTRICT, db_constraint=False
    )
    status = fields.CharEnumField(CouponStatus, max_length=8, default=CouponStatus.UNUSED)
    valid_from = fields.DatetimeField()
    valid_until = fields.DatetimeField()
    # From the coupon centre: the member's n-th claim of this template (1..limit). Unique with
    # (template, member), so a replayed or raced claim can never make a second row.
    claim_seq = fields.IntField(null=True)
    # Its unit of the template's total (1..total), whoever handed it out: unique per template.
    unit = fields.IntField(null=True)
    # The claim's Idempotency-Key: a retry after Redis forgot its answers (a restart, a
    # refusal checked before Redis) still finds this coupon. Not indexed: it is read by
    # (template, member), or by the warm-up of a template.
    request_key = fields.CharField(max_length=128, null=True)
    issuance = fields.ForeignKeyField(
        "coupons.CouponIssuance",
        related_name="coupons",
        null=True,
        on_delete=fields.RESTRICT,
        db_constraint=False,
    )
    # Granted by another domain for one fact (e.g. "gb:<order_no>": a group-buy voucher), so a
    # replayed grant can never make a second coupon.
    grant_ref = fields.CharField(max_length=64, null=True, unique=True)
    order_no = fields.CharField(max_length=32, null=True, db_index=True)  # locking/used order
    discount_fen = fields.IntField(null=True)  # what it took off that order
    used_at = fields.DatetimeField(null=True)
    used_channel = fields.CharField(max_length=8, null=True)  # online | store
    used_store_id = fields.BigIntField(null=True)

    class Meta:
        table = "coupon"
        unique_together = (
            ("template", "member", "claim_seq"),
            ("issuance", "member"),
            ("template", "unit"),
        )
        indexes = (("member_id", "status"),)


class WriteOff(TimestampedModel):
    """A coupon redeemed at a store's counter: which store, which clerk, when."""

    coupon = fields.ForeignKeyField(
        "coupons.Coupon", related_name="write_offs", on_delete=fields.RESTRICT
    )
    template_id = fields.BigIntField(db_index=True)
    member_id = fields.BigIntField()
    store = fields.ForeignKeyField(
        "stores.Store", related_name="coupon_write_offs", on_delete=fields.RESTRICT
    )
    staff_id = fields.BigIntField()
    revoked_at = fields.DatetimeField(null=True)
    revoked_by_staff_id = fields.BigIntField(null=True)
    revoke_reason = fields.CharField(max_length=255, default="")

    class Meta:
        table = "coupon_write_off"
        indexes = (("store_id", "created_at"),)


class BaselineStock(Model):
    """Bench only: the hot stock row the claim used to update, kept so `haodian bench coupons`
    can measure today's claim against the claim as it was."""

    id = fields.BigIntField(primary_key=True)
    template_id = fields.BigIntField(unique=True)
    remaining = fields.IntField()

    class Meta:
        table = "coupon_baseline_stock"
