"""Who may act: operators (HQ). Rules only; no Sanic here."""

from __future__ import annotations

import asyncio

from server.identity.models import Operator
from server.infra.errors import NotFound, Unauthorized, ValidationFailed
from server.infra.passwords import check_password, hash_password

OPERATOR_ROLES = ("admin", "marketing", "store_ops")


async def create_or_reset_operator(
    username: str, password: str, roles: list[str] | None = None
) -> tuple[Operator, bool]:
    """Create the operator, or reset its password (and roles when given). Returns (op, created)."""
    username = username.strip()
    if not username or len(username) > 64:
        raise ValidationFailed("username must be 1-64 characters")
    if len(password) < 8:
        raise ValidationFailed("password must be at least 8 characters")
    bad = [r for r in roles or [] if r not in OPERATOR_ROLES]
    if bad:
        raise ValidationFailed(f"unknown roles {bad}; choose from {list(OPERATOR_ROLES)}")
    pw_hash = await asyncio.to_thread(hash_password, password)
    op = await Operator.get_or_none(username=username)
    if op is None:
        op = await Operator.create(
            username=username, password_hash=pw_hash, roles=roles or ["admin"]
        )
        return op, True
    op.password_hash = pw_hash
    op.disabled = False
    if roles:
        op.roles = roles
    await op.save()
    return op, False


async def authenticate_operator(username: str, password: str) -> Operator:
    op = await Operator.get_or_none(username=username.strip())
    ok = await asyncio.to_thread(check_password, op.password_hash if op else None, password)
    if op is None or not ok or op.disabled:
        raise Unauthorized("wrong username or password", code="LOGIN_FAILED")
    return op


async def get_operator(operator_id: int) -> Operator:
    op = await Operator.get_or_none(id=operator_id, disabled=False)
    if op is None:
        raise NotFound("operator not found")
    return op
