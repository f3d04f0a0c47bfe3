"""Takeout: the shopper's address book, and what a takeout order carries beside its order."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields

from server.infra.models import TimestampedModel


class Address(TimestampedModel):
    """A delivery address in a member's book: the phone is sealed, only its mask is kept."""

    member = fields.ForeignKeyField(
        "identity.Member", related_name="addresses", on_delete=fields.CASCADE
    )
    contact = fields.CharField(max_length=32)
    phone_sealed = fields.CharField(max_length=255)
    phone_masked = fields.CharField(max_length=16)
    text = fields.CharField(max_length=255)
    lat = fields.FloatField()  # GCJ-02
    lng = fields.FloatField()

    class Meta:
        table = "member_address"


class Board(StrEnum):
    """Where a takeout order stands on its store's board."""

    UNPAID = "unpaid"
    NEW = "new"  # paid, waiting for the store to accept
    ACCEPTED = "accepted"
    READY = "ready"
    DISPATCHED = "dispatched"  # with a courier (the store's own, or the platform's)
    DELIVERED = "delivered"
    REJECTED = "rejected"
    CANCELLED = "cancelled"  # by the shopper, not accepted in time, or unpaid


class Courier(StrEnum):
    STORE = "store"
    PLATFORM = "platform"


class TakeoutOrder(TimestampedModel):
    """One per takeout order: the address as it was when ordered, the fees, and the board."""

    order = fields.OneToOneField("orders.Order", related_name="takeout", on_delete=fields.CASCADE)
    store = fields.ForeignKeyField(
        "stores.Store", related_name="takeout_orders", on_delete=fields.RESTRICT
    )
    status = fields.CharEnumField(Board, max_length=12, default=Board.UNPAID)
    contact = fields.CharField(max_length=32)
    phone_sealed = fields.CharField(max_length=255)
    phone_masked = fields.CharField(max_length=16)
    address_text = fields.CharField(max_length=255)
    lat = fields.FloatField()
    lng = fields.FloatField()
    distance_m = fields.IntField()
    area_name = fields.CharField(max_length=32, default="")
    delivery_fee_fen = fields.IntField()
    packing_fee_fen = fields.IntField()
    note = fields.CharField(max_length=140, default="")
    accept_by = fields.DatetimeField(null=True)  # not accepted by then: cancelled and refunded
    prep_minutes = fields.IntField(null=True)
    eta_at = fields.DatetimeField(null=True)
    courier = fields.CharEnumField(Courier, max_length=8, null=True)
    # The courier platform's waybill and its latest status (WeChat 即时配送 codes 101-502).
    waybill_id = fields.CharField(max_length=64, null=True, unique=True)
    courier_status = fields.IntField(null=True)
    rider_name = fields.CharField(max_length=32, null=True)
    rider_phone_masked = fields.CharField(max_length=16, null=True)
    dispatch_no = fields.IntField(default=0)  # numbers each dispatch: shop_order_id suffix
    flag = fields.CharField(max_length=255, null=True)  # the board must look at this again

    class Meta:
        table = "takeout_order"
        indexes = (("store_id", "status"),)


class TakeoutStep(TimestampedModel):
    """The shopper's timeline and the board's history: one row per step."""

    takeout = fields.ForeignKeyField("takeout.TakeoutOrder", related_name="steps")
    step = fields.CharField(max_length=24)
    detail = fields.CharField(max_length=255, default="")
    actor = fields.CharField(max_length=32)

    class Meta:
        table = "takeout_step"


class CourierCallback(TimestampedModel):
    """Every callback the courier platform sent, kept once: a repeat is recognised here."""

    waybill_id = fields.CharField(max_length=64)
    order_status = fields.IntField()
    action_time = fields.BigIntField()
    applied = fields.BooleanField(default=False)  # False: late, repeated or after the end
    payload = fields.JSONField()

    class Meta:
        table = "courier_callback"
        unique_together = (("waybill_id", "order_status", "action_time"),)
