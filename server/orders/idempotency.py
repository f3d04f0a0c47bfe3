"""Idempotency-Key for POSTs that move money or stock: a retry gets the first answer.

The key is claimed with an INSERT (unique scope+key) before any work, so two copies of
the same request racing each other cannot both run: the loser sees the claim and gets
409 REQUEST_IN_PROGRESS (or, once the first finished, its stored answer). A failure
that is ours (5xx, crash) releases the claim so the retry can run; a 4xx answer is
stored and replayed like a success.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from tortoise.exceptions import IntegrityError

from server.infra.errors import AppError, BadRequest, Conflict, ValidationFailed
from server.infra.models import IDEMPOTENCY_KEY_MAX
from server.orders.models import IdempotentRequest

MAX_KEY_LENGTH = IDEMPOTENCY_KEY_MAX


def request_fingerprint(payload: Any) -> str:
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def run_once(
    scope: str,
    key: str | None,
    payload: Any,
    work: Callable[[], Awaitable[tuple[int, dict[str, Any]]]],
) -> tuple[int, dict[str, Any]]:
    """Run `work` (returning status and body) at most once per (scope, key)."""
    if key is None:
        return await work()
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise BadRequest(
            f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} characters", code="IDEMPOTENCY_KEY_INVALID"
        )
    fingerprint = request_fingerprint(payload)
    try:
        claim = await IdempotentRequest.create(scope=scope, key=key, request_hash=fingerprint)
    except IntegrityError:
        first = await IdempotentRequest.get(scope=scope, key=key)
        if first.request_hash != fingerprint:
            raise ValidationFailed(
                "this Idempotency-Key was used for a different request",
                code="IDEMPOTENCY_KEY_REUSED",
            ) from None
        if first.status is None:
            raise Conflict(
                "the first request with this Idempotency-Key is still running; retry shortly",
                code="REQUEST_IN_PROGRESS",
                headers={"Retry-After": "1"},
            ) from None
        return first.status, first.response
    try:
        status, body = await work()
    except AppError as exc:
        if exc.status >= 500:
            await claim.delete()
            raise
        await IdempotentRequest.filter(id=claim.id).update(
            status=exc.status, response=exc.body(None)
        )
        raise
    except BaseException:
        await claim.delete()
        raise
    await IdempotentRequest.filter(id=claim.id).update(status=status, response=body)
    return status, body


async def place_once(
    member_id: int,
    route: str,
    key: str | None,
    payload: Any,
    place: Callable[[], Awaitable[Any]],
) -> tuple[int, dict[str, Any]]:
    """An order-placing POST (pickup, gift cards, top-ups, membership cards) run at most once
    per (member, route, key): (201, the order as its shopper sees it), replayed on a retry."""
    from server.orders.schemas import order_view

    async def work() -> tuple[int, dict[str, Any]]:
        order = await place()
        return 201, (await order_view(order)).model_dump(mode="json")

    return await run_once(f"member:{member_id}:POST {route}", key, payload, work)
