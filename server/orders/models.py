"""One order model for every scenario: pickup, flash sale, group-buy, takeout, gift card."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields

from server.infra.models import TimestampedModel


class OrderKind(StrEnum):
    PICKUP = "pickup"
    FLASHSALE = "flashsale"
    GROUPBUY = "groupbuy"
    TAKEOUT = "takeout"
    GIFTCARD = "giftcard"
    TOPUP = "topup"  # stored value bought with WeChat Pay
    MEMBERSHIP = "membership"  # a paid membership card


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    REFUNDING = "refunding"
    REFUNDED = "refunded"


class Order(TimestampedModel):
    order_no = fields.CharField(max_length=32, unique=True)  # also WeChat Pay out_trade_no
    kind = fields.CharEnumField(OrderKind, max_length=16)
    status = fields.CharEnumField(OrderStatus, max_length=20, default=OrderStatus.PENDING_PAYMENT)
    # Money records outlive accounts: an order never disappears with its member or store.
    member = fields.ForeignKeyField(
        "identity.Member", related_name="orders", on_delete=fields.RESTRICT
    )
    store = fields.ForeignKeyField(
        "stores.Store", related_name="orders", null=True, on_delete=fields.RESTRICT
    )
    # Amounts in fen: payable = goods - discount + fee.
    goods_fen = fields.IntField()
    discount_fen = fields.IntField(default=0)
    fee_fen = fields.IntField(default=0)
    payable_fen = fields.IntField()
    paid_fen = fields.IntField(null=True)
    refunded_fen = fields.IntField(default=0)
    pay_deadline = fields.DatetimeField()  # unpaid after this: closed, stock released
    paid_at = fields.DatetimeField(null=True)
    completed_at = fields.DatetimeField(null=True)
    transaction_id = fields.CharField(max_length=64, null=True)
    pickup_code = fields.CharField(max_length=12, null=True)
    # Where the order came from, for scenario-specific release (e.g. "fs:42"); unique per
    # member and source where a scenario needs it (flash-sale limit 1) is enforced by the
    # scenario's own table.
    source = fields.CharField(max_length=64, null=True, db_index=True)
    flag = fields.CharField(max_length=255, null=True)  # something an operator must look at

    class Meta:
        table = "order"
        indexes = (("status", "pay_deadline"),)


class OrderLine(TimestampedModel):
    order = fields.ForeignKeyField("orders.Order", related_name="lines")
    sku = fields.ForeignKeyField(
        "catalog.Sku", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    name = fields.CharField(max_length=128)
    quantity = fields.IntField()
    unit_price_fen = fields.IntField()  # the price paid per unit, after scenario pricing
    line_fen = fields.IntField()

    class Meta:
        table = "order_line"


class OrderEvent(TimestampedModel):
    """Every state change, who made it and why: the order's history."""

    order = fields.ForeignKeyField("orders.Order", related_name="events")
    from_status = fields.CharField(max_length=20, null=True)
    to_status = fields.CharField(max_length=20)
    actor = fields.CharField(max_length=32)  # member:1 | staff:7 | operator:3 | wechat | system
    reason = fields.CharField(max_length=255, default="")

    class Meta:
        table = "order_event"


class IdempotentRequest(TimestampedModel):
    """The first answer to a POST with an Idempotency-Key, replayed on a retry."""

    scope = fields.CharField(max_length=64)  # e.g. "member:12:POST /api/v1/orders"
    key = fields.CharField(max_length=128)
    request_hash = fields.CharField(max_length=64)
    status = fields.IntField(null=True)  # null while the first request is still running
    response = fields.JSONField(null=True)

    class Meta:
        table = "idempotent_request"
        unique_together = (("scope", "key"),)
