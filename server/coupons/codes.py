"""Live write-off codes: what the member's page shows and the scanner reads."""

from __future__ import annotations

from typing import Any

from server.coupons.errors import AlreadyUsed
from server.coupons.models import (
    Channel,
)
from server.coupons.wallet import coupon_status, get_member_coupon
from server.infra import livecodes
from server.infra.clock import iso_local, utcnow
from server.infra.errors import Conflict

CODE_TTL = livecodes.TTL
CODE_PREFIX = "HD1"
DIGITS_LEN = livecodes.DIGITS_LEN


# -- live write-off codes ------------------------------------------------------------------


COUPON_CODE = livecodes.CodeKind(CODE_PREFIX, b"haodian/coupon-write-off-code/v1", "coupon code")


def sign_code(secret: bytes, coupon_id: int, member_id: int, issued_at: int | None = None) -> str:
    return livecodes.sign(secret, COUPON_CODE, coupon_id, member_id, issued_at)


def verify_code(secret: bytes, code: str, now: float | None = None) -> tuple[int, int, int]:
    """(coupon_id, member_id, issued_at) of a genuine, live code; CODE_INVALID / CODE_EXPIRED."""
    return livecodes.verify(secret, COUPON_CODE, code, now)


async def issue_code(redis: Any, secret: bytes, member_id: int, coupon_id: int) -> dict[str, Any]:
    c = await get_member_coupon(member_id, coupon_id)
    state = coupon_status(c)
    if state == "used":
        raise AlreadyUsed("this coupon has already been used")
    if state == "expired":
        raise Conflict("this coupon has expired", code="COUPON_EXPIRED")
    if state == "locked":
        raise Conflict("this coupon is held by an unpaid order", code="COUPON_LOCKED")
    if state == "void":
        raise Conflict("this coupon was taken back", code="COUPON_VOID")
    if c.template.channel == Channel.ONLINE:
        raise Conflict("this coupon is for online orders only", code="COUPON_NOT_FOR_STORE")
    if utcnow() < c.valid_from:
        raise Conflict(
            f"this coupon can be used from {iso_local(c.valid_from)}", code="COUPON_NOT_YET_VALID"
        )
    return await livecodes.issue(redis, sign_code(secret, c.id, member_id))


async def resolve_code(redis: Any, text: str) -> str:
    return await livecodes.resolve(redis, text)
