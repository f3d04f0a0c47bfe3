"""Outbox rows: an event written in the transaction that made it true, and a record of each
handler that has dealt with it."""

from __future__ import annotations

from tortoise import fields

from server.infra.models import TimestampedModel


class OutboxEvent(TimestampedModel):
    topic = fields.CharField(max_length=64)
    # The same fact emitted twice (a replayed notification, a job run twice) is one event.
    key = fields.CharField(max_length=160, unique=True, null=True)
    payload: dict = fields.JSONField(default=dict)  # type: ignore[assignment]
    available_at = fields.DatetimeField()  # not before this (delays and retry back-off)
    delivered_at = fields.DatetimeField(null=True)  # every handler has dealt with it
    lease_until = fields.DatetimeField(null=True)  # a deliverer holds it until then
    attempts = fields.IntField(default=0)
    last_error = fields.CharField(max_length=255, default="")

    class Meta:
        table = "outbox_event"
        indexes = (("delivered_at", "available_at"),)


class OutboxDelivery(TimestampedModel):
    """(event, handler) done: a handler that succeeded never runs again for that event."""

    event = fields.ForeignKeyField(
        "outbox.OutboxEvent", related_name="deliveries", on_delete=fields.CASCADE
    )
    handler = fields.CharField(max_length=128)

    class Meta:
        table = "outbox_delivery"
        unique_together = (("event", "handler"),)
