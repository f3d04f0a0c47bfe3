"""Shared model bits: every table has a big-int id and UTC created/updated stamps."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

MAX_ID = 2**63 - 1  # a BIGINT id; larger numbers in paths or bodies name nothing


def is_id(value: int) -> bool:
    """Whether `value` could be a row id (positive, fits a BIGINT): larger ones are 404s."""
    return 0 < value <= MAX_ID


class TimestampedModel(Model):
    id = fields.BigIntField(primary_key=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        abstract = True
