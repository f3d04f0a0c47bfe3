"""Shared model bits: every table has a big-int id and UTC created/updated stamps."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from tortoise import fields
from tortoise.models import Model

MAX_ID = 2**63 - 1  # a BIGINT id; larger numbers in paths or bodies name nothing
IDEMPOTENCY_KEY_MAX = 128  # characters: the longest Idempotency-Key any POST keeps
Id = Annotated[int, Field(ge=1, le=MAX_ID)]  # a row id in a request body


def is_id(value: int) -> bool:
    """Whether `value` could be a row id (positive, fits a BIGINT): larger ones are 404s."""
    return 0 < value <= MAX_ID


class TimestampedModel(Model):
    id = fields.BigIntField(primary_key=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        abstract = True
