"""Stores: every store is an operating unit (pickup, takeout, write-off happen at one)."""

from __future__ import annotations

from tortoise import fields

from server.infra.models import TimestampedModel


class Store(TimestampedModel):
    code = fields.CharField(max_length=32, unique=True)
    name = fields.CharField(max_length=128)
    city = fields.CharField(max_length=32, db_index=True)
    district = fields.CharField(max_length=32, default="")
    address = fields.CharField(max_length=255, default="")
    lat = fields.FloatField()  # GCJ-02, as wx.getLocation({type: 'gcj02'}) gives
    lng = fields.FloatField()
    phone = fields.CharField(max_length=32, default="")
    closed = fields.BooleanField(default=False)  # closed for good (or until reopened)
    # Weekly hours in Asia/Shanghai: {"mon": ["08:00-22:00"], "sat": ["10:00-02:00"], ...}.
    # A day that is missing or empty is a closed day; a close time at or before the open
    # time runs past midnight into the next day.
    hours = fields.JSONField(default=dict)
    # Temporary closure (renovation, holiday): closed from `closed_from` (None: now) until
    # `closed_until` (None: until reopened). The store stays on the map, shown closed.
    closed_from = fields.DatetimeField(null=True)
    closed_until = fields.DatetimeField(null=True)
    closure_reason = fields.CharField(max_length=255, default="")
    # Services offered here.
    takeout = fields.BooleanField(default=False)
    pickup = fields.BooleanField(default=True)
    write_off = fields.BooleanField(default=True)
    # Takeout: how far the store delivers, and what it charges (see stores.hours.FeeRules).
    delivery_radius_m = fields.IntField(default=3000)
    delivery_fee_rules = fields.JSONField(default=dict)
    # Radius or polygon areas, each with its own fee rules (stores.areas.DeliveryArea); none:
    # the radius and fee rules above are the one area.
    delivery_areas = fields.JSONField(default=list)
    packing_fee_fen = fields.IntField(default=0)  # per takeout order
    # Bumped on every change; the locator index keeps the newest version it was given.
    version = fields.IntField(default=1)

    class Meta:
        table = "store"
