"""WeChat Pay records: the prepay per order, every notification received, refunds."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields

from server.infra.models import TimestampedModel


class Payment(TimestampedModel):
    """A WeChat Pay transaction opened for an order (out_trade_no = order_no)."""

    order = fields.OneToOneField("orders.Order", related_name="payment", on_delete=fields.RESTRICT)
    appid = fields.CharField(max_length=32)
    openid = fields.CharField(max_length=64)
    prepay_id = fields.CharField(max_length=64)
    last_queried_at = fields.DatetimeField(null=True)

    class Meta:
        table = "payment"


class RefundStatus(StrEnum):
    REQUESTED = "requested"  # recorded, not yet accepted by WeChat (retried by the worker)
    PROCESSING = "processing"
    SUCCESS = "success"
    CLOSED = "closed"
    ABNORMAL = "abnormal"


class Refund(TimestampedModel):
    """A full refund of an order. The refund number comes from the order number, so asking
    twice can never open two refunds at WeChat.

    (No semicolons in model docstrings: Tortoise's SQLite schema editor splits on them.)"""

    out_refund_no = fields.CharField(max_length=64, unique=True)
    order = fields.ForeignKeyField(
        "orders.Order", related_name="refunds", on_delete=fields.RESTRICT
    )
    amount_fen = fields.IntField()
    status = fields.CharEnumField(RefundStatus, max_length=16, default=RefundStatus.REQUESTED)
    reason = fields.CharField(max_length=255, default="")
    requested_by = fields.CharField(max_length=32)
    refund_id = fields.CharField(max_length=64, null=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "refund"


class PaymentNotice(TimestampedModel):
    """Every verified notification and what we did with it (applied, duplicate, mismatch...)."""

    notice_id = fields.CharField(max_length=64, db_index=True)
    event_type = fields.CharField(max_length=32)
    out_trade_no = fields.CharField(max_length=32, db_index=True)
    outcome = fields.CharField(max_length=32)
    detail = fields.CharField(max_length=255, default="")

    class Meta:
        table = "payment_notice"


class TenderStatus(StrEnum):
    CAPTURED = "captured"  # taken from the shopper's balance (or paid, for WeChat)
    RETURNED = "returned"  # the order was never paid in full: given back by the cancel hook
    REFUNDED = "refunded"  # the order was refunded: given back to where it came from


class Tender(TimestampedModel):
    """One way an order was (or is being) paid: a gift card, stored value, points, WeChat Pay.

    An order is paid when its captured tenders add up to its payable. `ref` names the source
    within its kind (the card's id, the WeChat transaction id), once per order."""

    order = fields.ForeignKeyField(
        "orders.Order", related_name="tenders", on_delete=fields.RESTRICT
    )
    kind = fields.CharField(max_length=16)
    ref = fields.CharField(max_length=64)
    amount_fen = fields.IntField()
    status = fields.CharEnumField(TenderStatus, max_length=12, default=TenderStatus.CAPTURED)
    label = fields.CharField(max_length=64, default="")  # what the shopper sees, e.g. a masked card

    class Meta:
        table = "order_tender"
        unique_together = (("order", "kind", "ref"),)
