"""The mechanisms scenarios share: payments imports no scenario; the outbox delivers each
event to each handler once, retries a failing handler alone, and holds only what committed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from tortoise.transactions import in_transaction

from server.infra.clock import utcnow
from server.infra.redis import Scripts
from server.outbox import service as outbox
from server.outbox.models import OutboxDelivery, OutboxEvent
from server.settings import Settings
from tests.conftest import ROOT

SCENARIOS = ("coupons", "flashsale", "groupbuy", "giftcards", "takeout", "membership", "share")


def test_payments_imports_no_scenario() -> None:
    """Importing payments (service, routes, jobs) loads no scenario package: scenarios plug in
    through orders.lifecycle, loaded lazily by the process that moves orders."""
    probe = (
        "import sys, json\n"
        "import server.payments.service, server.payments.routes, server.payments.jobs\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('server.'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    loaded = json.loads(out)
    assert "server.payments.service" in loaded and "server.orders.lifecycle" in loaded
    leaked = [m for m in loaded if m.split(".")[1] in SCENARIOS]
    assert leaked == [], leaked


calls: dict[str, int] = {}
flaky_left = {"n": 0}


@outbox.handler("test.shared", name="test.counter")
async def _counter(event: Any, env: outbox.Env) -> None:
    await asyncio.sleep(0.05)  # long enough for a second deliverer to try the same event
    calls[event.payload["tag"]] = calls.get(event.payload["tag"], 0) + 1


@outbox.handler("test.shared", name="test.flaky")
async def _flaky(event: Any, env: outbox.Env) -> None:
    if flaky_left["n"] > 0:
        flaky_left["n"] -= 1
        raise RuntimeError("downstream is down")
    calls["flaky:" + event.payload["tag"]] = calls.get("flaky:" + event.payload["tag"], 0) + 1


@pytest.fixture
async def deliverer(database: Settings, redis: aioredis.Redis) -> Any:
    e = outbox.Env(database, redis, Scripts(redis))
    yield e
    await e.aclose()


async def _emit(tag: str, *, key: str | None = None, fail: bool = False) -> None:
    async with in_transaction() as conn:
        await outbox.emit("test.shared", {"tag": tag}, key=key, connection=conn)
        if fail:
            raise RuntimeError("the change rolls back")


async def test_outbox_delivers_once_per_handler_and_retries_only_the_failing_one(
    deliverer: outbox.Env,
) -> None:
    tag = uuid.uuid4().hex
    flaky_left["n"] = 1
    await _emit(tag)
    (event,) = [e for e in await OutboxEvent.filter(topic="test.shared") if e.payload["tag"] == tag]
    # Two deliverers at once: the lease gives the event to one of them.
    await asyncio.gather(outbox.deliver_due(deliverer), outbox.deliver_due(deliverer))
    assert calls.get(tag) == 1 and calls.get("flaky:" + tag) is None
    event = await OutboxEvent.get(id=event.id)
    assert event.delivered_at is None and event.attempts == 1 and "downstream" in event.last_error
    assert event.available_at > utcnow()  # backed off
    await OutboxEvent.filter(id=event.id).update(available_at=utcnow() - timedelta(seconds=1))
    await outbox.deliver_due(deliverer)
    assert calls.get(tag) == 1 and calls.get("flaky:" + tag) == 1  # the counter did not rerun
    event = await OutboxEvent.get(id=event.id)
    assert event.delivered_at is not None
    done = await OutboxDelivery.filter(event_id=event.id).values_list("handler", flat=True)
    assert sorted(done) == ["test.counter", "test.flaky"]
    await outbox.deliver(event, deliverer)  # delivered again by hand: nothing runs twice
    assert calls.get(tag) == 1 and calls.get("flaky:" + tag) == 1


async def test_outbox_keeps_only_committed_events_and_one_per_key(deliverer: outbox.Env) -> None:
    tag, key = uuid.uuid4().hex, f"test:{uuid.uuid4().hex}"
    with pytest.raises(RuntimeError):
        await _emit(tag, fail=True)
    await _emit(tag, key=key)
    await _emit(tag, key=key)  # the same fact again, e.g. a replayed notification
    mine = [e for e in await OutboxEvent.filter(topic="test.shared") if e.payload["tag"] == tag]
    assert len(mine) == 1 and mine[0].key == key
    await outbox.deliver_due(deliverer)
    assert calls.get(tag) == 1
