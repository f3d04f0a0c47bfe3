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

    class Meta:
        table = "store"
