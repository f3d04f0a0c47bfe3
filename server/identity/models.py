"""Accounts: members (shoppers), staff (clerks, store managers) and operators (HQ)."""

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


class Member(TimestampedModel):
    """One person across every channel of the brand, tied together by the WeChat unionid."""

    unionid = fields.CharField(max_length=64, unique=True, null=True)
    nickname = fields.CharField(max_length=64, default="")
    tier = fields.CharField(max_length=16, default="regular")
    disabled = fields.BooleanField(default=False)

    class Meta:
        table = "member"
