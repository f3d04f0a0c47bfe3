"""Group-buy activities, the groups shoppers open in them, and the seats in each group."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields

from server.infra.models import TimestampedModel


class ActivityState(StrEnum):
    ON = "on"
    STOPPED = "stopped"


class GroupStatus(StrEnum):
    FORMING = "forming"  # opened, the leader has not paid yet: nobody can join
    OPEN = "open"  # the leader paid: joinable until full or the deadline
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class SeatState(StrEnum):
    HELD = "held"  # taken, its order not paid yet
    PAID = "paid"  # counts toward the group
    VOID = "void"  # paid, but the group could not count it (failed, full, past its deadline)
    RELEASED = "released"  # its unpaid order was cancelled: the seat is free again
    REJECTED = "rejected"  # the database refused it (never became an order)
    REFUNDING = "refunding"
    REFUNDED = "refunded"


class GroupBuy(TimestampedModel):
    """An operator's activity: a SKU at the group price for groups of `group_size`."""

    sku = fields.ForeignKeyField("catalog.Sku", related_name=False, on_delete=fields.RESTRICT)
    title = fields.CharField(max_length=128)
    group_price_fen = fields.IntField()
    group_size = fields.IntField()
    units = fields.IntField()  # never more paid seats than this, over every group
    starts_at = fields.DatetimeField()
    ends_at = fields.DatetimeField()
    group_minutes = fields.IntField()  # a group's lifetime from opening (capped at ends_at)
    per_member_limit = fields.IntField(default=1)  # live seats per member in the activity
    store_ids: list[int] = fields.JSONField(default=list)  # type: ignore[assignment]  # [] = all
    virtual_fill_min = fields.IntField(null=True)  # at the deadline, this many paid succeed
    voucher_template_id = fields.BigIntField()  # coupons.CouponTemplate of the vouchers
    voucher_valid_days = fields.IntField(default=30)
    state = fields.CharEnumField(ActivityState, max_length=8, default=ActivityState.ON)
    created_by = fields.BigIntField(null=True)

    class Meta:
        table = "group_buy"


class Group(TimestampedModel):
    group_no = fields.CharField(max_length=16, unique=True)  # random: groups cannot be walked
    activity = fields.ForeignKeyField(
        "groupbuy.GroupBuy", related_name="groups", on_delete=fields.RESTRICT
    )
    leader_member_id = fields.BigIntField()
    size = fields.IntField()
    status = fields.CharEnumField(GroupStatus, max_length=12, default=GroupStatus.FORMING)
    # Paid seats that count: only a conditional UPDATE (... AND paid_count < size) raises it.
    paid_count = fields.IntField(default=0)
    virtual_seats = fields.IntField(default=0)  # filled at the deadline by virtual fill
    expires_at = fields.DatetimeField()
    opened_at = fields.DatetimeField(null=True)  # the leader paid
    finished_at = fields.DatetimeField(null=True)
    outcome = fields.CharField(max_length=64, default="")  # why it ended as it did

    class Meta:
        table = "group_buy_group"
        indexes = (("status", "expires_at"),)


class GroupSeat(TimestampedModel):
    """One member's seat in a group and the order that pays for it.

    `live_seat` (the seat number) and `live_member` are set while the seat is held or paid
    and cleared when it is freed: unique per group, they make the database refuse more live
    seats than the group has, or a second live seat of one member in one group, whatever
    Redis said."""

    group = fields.ForeignKeyField(
        "groupbuy.Group", related_name="seats", on_delete=fields.RESTRICT
    )
    activity_id = fields.BigIntField(db_index=True)
    order_no = fields.CharField(max_length=32, unique=True)
    member_id = fields.BigIntField(db_index=True)
    seat_no = fields.IntField()
    live_seat = fields.IntField(null=True)
    live_member = fields.BigIntField(null=True)
    gen = fields.IntField(default=0)  # bumped each time a freed seat is taken back (revive)
    is_leader = fields.BooleanField(default=False)
    state = fields.CharEnumField(SeatState, max_length=12, default=SeatState.HELD)
    idem_key = fields.CharField(max_length=128, default="")
    scene = fields.CharField(max_length=32, default="")  # the share scene it came through
    sharer_member_id = fields.BigIntField(null=True)
    voucher_coupon_id = fields.BigIntField(null=True)
    paid_at = fields.DatetimeField(null=True)
    freed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "group_buy_seat"
        unique_together = (("group", "live_seat"), ("group", "live_member"))
