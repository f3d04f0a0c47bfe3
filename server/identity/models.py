"""Accounts: operators (HQ). Members and staff join them as identity grows."""

from __future__ import annotations

from tortoise import fields

from server.infra.models import TimestampedModel


class Operator(TimestampedModel):
    """An HQ account that runs campaigns and manages stores and the catalog."""

    username = fields.CharField(max_length=64, unique=True)
    password_hash = fields.CharField(max_length=255)
    roles: list[str] = fields.JSONField(default=list)  # type: ignore[assignment]
    disabled = fields.BooleanField(default=False)

    class Meta:
        table = "operator"
