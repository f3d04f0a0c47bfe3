"""The transactional outbox.

A domain that changes state and wants something to happen after the commit — a Redis
counter given back, a refund asked of WeChat Pay, a subscribe message — writes an event
with `emit(...)` inside the same transaction. The event exists exactly when the change
does: nothing is lost on a crash between commit and delivery, and nothing is delivered
for a change that rolled back. `haodian worker` delivers due events (`deliver_due`) to the
handlers registered for their topic; a handler that succeeded is recorded per
(event, handler) and never runs again for that event. A handler that fails is retried
with back-off, the others are not run again. Handlers must be idempotent in their effect
(a crash after the effect and before the record runs it once more).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tortoise.expressions import Q

from server.infra.clock import utcnow
from server.infra.metrics import metrics
from server.outbox.models import OutboxDelivery, OutboxEvent
from server.settings import Settings

log = logging.getLogger("haodian.outbox")

LEASE = timedelta(seconds=60)  # a deliverer that died gives the event up after this
MAX_BACKOFF_S = 300


@dataclass
class Env:
    """What a handler may use: settings, Redis and the script runner of the delivering process."""

    settings: Settings
    redis: Any
    scripts: Any
    _wechat: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from server.infra.redis import share_scripts

        try:
            share_scripts(self.scripts)  # hooks run by this delivery use this Redis
        except RuntimeError:
            pass  # made outside an event loop: the hooks fall back to the settings' Redis

    @property
    def wechat(self) -> Any:
        if self._wechat is None:
            from server.wechat.client import WeChatClient

            self._wechat = WeChatClient(self.settings, self.redis)
        return self._wechat

    async def aclose(self) -> None:
        if self._wechat is not None:
            await self._wechat.aclose()
            self._wechat = None


Handler = Callable[[OutboxEvent, Env], Awaitable[None]]
_handlers: dict[str, list[tuple[str, Handler]]] = {}

# Modules that register handlers; imported before the first delivery, so every worker knows
# every topic whatever it imported so far.
HANDLER_MODULES: list[str] = [
    "server.flashsale.service",
    "server.groupbuy.outcomes",
    "server.giftcards.gifts",
    "server.giftcards.printed",
    "server.membership.service",
    "server.membership.birthday",
    "server.takeout.board",
]


def handler(topic: str, name: str | None = None) -> Callable[[Handler], Handler]:
    """Register `fn` for events of `topic`; its name (module.function by default) is what the
    delivery record keeps, so renaming a handler re-runs it for undelivered events only."""

    def wrap(fn: Handler) -> Handler:
        label = name or f"{fn.__module__}.{fn.__qualname__}"
        entries = _handlers.setdefault(topic, [])
        if all(label != existing for existing, _ in entries):
            entries.append((label, fn))
        return fn

    return wrap


def handlers_for(topic: str) -> list[tuple[str, Handler]]:
    for module in HANDLER_MODULES:
        importlib.import_module(module)
    return list(_handlers.get(topic, []))


async def emit(
    topic: str,
    payload: dict[str, Any],
    *,
    connection: Any,
    key: str | None = None,
    delay: timedelta | None = None,
) -> None:
    """Write an event in the caller's transaction. With a `key`, emitting the same fact again
    is a no-op (INSERT ... ON CONFLICT DO NOTHING: a conflict must not abort the caller's
    PostgreSQL transaction)."""
    event = OutboxEvent(
        topic=topic,
        key=key[:160] if key else None,
        payload=payload,
        available_at=utcnow() + (delay or timedelta()),
    )
    if key is None:
        await event.save(using_db=connection)
    else:
        await OutboxEvent.bulk_create([event], ignore_conflicts=True, using_db=connection)


async def _claim(event_id: int, now: datetime) -> bool:
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    took = (
        await OutboxEvent.filter(id=event_id, delivered_at__isnull=True)
        .filter(free)
        .update(lease_until=now + LEASE)
    )
    return bool(took)


async def deliver(event: OutboxEvent, env: Env) -> bool:
    """Run the event's handlers that have not yet succeeded; True when all have."""
    done = set(await OutboxDelivery.filter(event_id=event.id).values_list("handler", flat=True))
    for label, fn in handlers_for(event.topic):
        if label in done:
            continue
        try:
            await fn(event, env)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            attempts = event.attempts + 1
            backoff = min(MAX_BACKOFF_S, 2 ** min(attempts, 9))
            log.warning(
                "outbox handler failed; retried later",
                extra={"topic": event.topic, "event": event.id, "handler": label,
                       "attempts": attempts, "error": f"{type(exc).__name__}: {exc}"[:200]},
            )  # fmt: skip
            await OutboxEvent.filter(id=event.id).update(
                attempts=attempts,
                available_at=utcnow() + timedelta(seconds=backoff),
                lease_until=None,
                last_error=f"{label}: {type(exc).__name__}: {exc}"[:255],
            )
            return False
        await OutboxDelivery.bulk_create(
            [OutboxDelivery(event_id=event.id, handler=label)], ignore_conflicts=True
        )
    await OutboxEvent.filter(id=event.id).update(delivered_at=utcnow(), lease_until=None)
    return True


async def deliver_due(env: Env, *, limit: int = 100, parallel: int = 8) -> int:
    """One pass: claim due events (a lease, so several workers share the work) and deliver
    them, a few at a time. Returns how many were delivered."""
    now = utcnow()
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    due = (
        await OutboxEvent.filter(delivered_at__isnull=True, available_at__lte=now)
        .filter(free)
        .order_by("id")
        .limit(limit)
    )
    oldest = min((e.available_at for e in due), default=now)
    metrics().outbox_lag.set(max(0.0, (now - oldest).total_seconds()))
    gate = asyncio.Semaphore(parallel)

    async def one(event: OutboxEvent) -> bool:
        async with gate:
            if not await _claim(event.id, now):
                return False  # another worker has it
            try:
                return await deliver(event, env)
            except asyncio.CancelledError:
                # The worker is stopping: give the event up now, not when the lease runs out
                # (a restarted worker would otherwise wait a minute for it).
                await asyncio.shield(
                    OutboxEvent.filter(id=event.id, delivered_at__isnull=True).update(
                        lease_until=None
                    )
                )
                raise

    results = await asyncio.gather(*(one(e) for e in due))
    return sum(1 for ok in results if ok)


async def pending(topic: str | None = None) -> int:
    q = OutboxEvent.filter(delivered_at__isnull=True)
    if topic:
        q = q.filter(topic=topic)
    return await q.count()
