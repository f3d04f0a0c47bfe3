"""Flash sales and the reservations the grab script hands out."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields

from server.infra.models import TimestampedModel


class SaleState(StrEnum):
    ON = "on"
    CANCELLED = "cancelled"


class ReservationState(StrEnum):
    HELD = "held"  # counts as sold
    RELEASED = "released"  # unpaid order cancelled: units and quota given back
    REJECTED = "rejected"  # could not become an order (e.g. duplicate member): given back


class FlashSale(TimestampedModel):
    sku = fields.ForeignKeyField("catalog.Sku", related_name=False, on_delete=fields.RESTRICT)
    title = fields.CharField(max_length=128)
    # Empty: online (delivery); otherwise picked up at one of these stores.
    store_ids: list[int] = fields.JSONField(default=list)  # type: ignore[assignment]
    price_fen = fields.IntField()
    units = fields.IntField()
    per_member_limit = fields.IntField(default=1)
    starts_at = fields.DatetimeField()
    ends_at = fields.DatetimeField()
    member_tiers: list[str] = fields.JSONField(default=list)  # type: ignore[assignment]
    state = fields.CharEnumField(SaleState, max_length=16, default=SaleState.ON)
    created_by = fields.BigIntField(null=True)  # operator id

    class Meta:
        table = "flash_sale"


class FlashReservation(TimestampedModel):
    """One taken reservation, written by the stream consumer together with its order.

    `member_slot` is the member id while the reservation holds units of a sale whose
    limit is 1 (NULL otherwise, and once released), so (sale, member_slot) being unique
    makes the database refuse a second live order of that member for that sale.
    """

    sale = fields.ForeignKeyField(
        "flashsale.FlashSale", related_name="reservations", on_delete=fields.RESTRICT
    )
    order_no = fields.CharField(max_length=32, unique=True)
    member_id = fields.BigIntField(db_index=True)
    quantity = fields.IntField()
    idem_key = fields.CharField(max_length=128)
    member_slot = fields.BigIntField(null=True)
    state = fields.CharEnumField(ReservationState, max_length=16, default=ReservationState.HELD)
    released_at = fields.DatetimeField(null=True)
    # The Redis side of a release (stock and quota back) was applied; the sweeper retries
    # releases whose Redis side a crash cut off.
    redis_released = fields.BooleanField(default=False)

    class Meta:
        table = "flash_reservation"
        unique_together = (("sale", "member_slot"),)
        indexes = (("state", "redis_released"),)


class BaselineStock(TimestampedModel):
    """Bench only: the stock row of the PostgreSQL-only grab that `haodian bench flashsale`
    compares against (a conditional UPDATE on one hot row, as peer malls do)."""

    sale = fields.OneToOneField(
        "flashsale.FlashSale", related_name="baseline", on_delete=fields.CASCADE
    )
    stock = fields.IntField()

    class Meta:
        table = "flash_baseline_stock"
