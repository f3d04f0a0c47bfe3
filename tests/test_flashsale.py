"""Flash sales through the running server (2 workers) and a real `haodian worker`:
no oversell under 2,000 concurrent members, replayed keys, a worker killed between
insert and acknowledge, Redis flushed mid-sale, releases, reconcile."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from server.catalog.models import Category, Product, Sku
from server.flashsale import service
from server.flashsale.models import FlashReservation, ReservationState
from server.identity.models import Member
from server.infra.auth import (
    decode_access,
    encode_access,
    revocation_keys,
    revocations_channel,
    revoke_access,
    revoke_all,
)
from server.infra.redis import Scripts
from server.orders.models import Order, OrderStatus
from server.orders.service import transition
from server.settings import Settings
from tests.conftest import ROOT, ServerProcess, error_code, node_clients, start_worker


def _worker(env: dict[str, str], log_dir: Path, name: str, **extra: str) -> ServerProcess:
    """A real `haodian worker` subprocess (the stream consumer lives there)."""
    log_path = log_dir / f"worker-{name}-{uuid.uuid4().hex[:6]}.log"
    return start_worker(
        env, log_path, HAODIAN_WORKER_NAME=name, HAODIAN_FLASHSALE_CLAIM_IDLE_MS="1000", **extra
    )


@pytest.fixture
def workers(env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    started: list[ServerProcess] = []

    def start(name: str, **extra: str) -> ServerProcess:
        w = _worker(env, tmp_path, name, **extra)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


async def _sku() -> Sku:
    cat = await Category.create(name=f"flash-{uuid.uuid4().hex[:8]}")
    product = await Product.create(category=cat, name="Spicy duck neck")
    return await Sku.create(product=product, name="200 g", price_fen=2990)


async def _members(settings: Settings, n: int) -> list[tuple[int, str]]:
    tag = uuid.uuid4().hex[:8]
    await Member.bulk_create([Member(nickname=f"fs-{tag}-{i}") for i in range(n)])
    ids = (
        await Member.filter(nickname__startswith=f"fs-{tag}-")
        .order_by("id")
        .values_list("id", flat=True)
    )
    return [(i, encode_access(settings, "member", i)) for i in ids]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("HAODIAN_")} | env
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


_operator_token: dict[str, str] = {}


async def _operator(api: httpx.AsyncClient, env: dict[str, str]) -> dict[str, str]:
    if "t" not in _operator_token:
        out = _cli(
            env,
            "admin",
            "create-operator",
            "--username",
            "fs-ops",
            "--password",
            "flash-sale-ops-1",
        )
        assert out.returncode == 0, out.stderr
        r = await api.post(
            "/api/v1/admin/auth/login", json={"username": "fs-ops", "password": "flash-sale-ops-1"}
        )
        assert r.status_code == 200, r.text
        _operator_token["t"] = r.json()["token"]
    return {"authorization": f"Bearer {_operator_token['t']}"}


async def _create_sale(
    api: httpx.AsyncClient,
    env: dict[str, str],
    *,
    units: int,
    limit: int = 1,
    starts_in: float = -1,
    lasts: float = 3600,
    **extra: Any,
) -> dict[str, Any]:
    sku = await _sku()
    now = datetime.now(UTC)
    r = await api.post(
        "/api/v1/admin/flash-sales",
        headers=await _operator(api, env),
        json={
            "sku_id": sku.id,
            "price_fen": 990,
            "units": units,
            "per_member_limit": limit,
            "starts_at": (now + timedelta(seconds=starts_in)).isoformat(),
            "ends_at": (now + timedelta(seconds=starts_in + lasts)).isoformat(),
            **extra,
        },
    )
    assert r.status_code == 201, r.text
    return r.json()


def _grab_headers(token: str, key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", "idempotency-key": key}


async def _grab(
    api: httpx.AsyncClient, sale_id: int, token: str, key: str, quantity: int = 1
) -> httpx.Response:
    return await api.post(
        f"/api/v1/flash-sales/{sale_id}/orders",
        headers=_grab_headers(token, key),
        json={"quantity": quantity},
    )


@dataclass
class Answer:
    status_code: int
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


async def _storm(
    base_url: str, sale_id: int, members: list[tuple[int, str]], connections: int = 64
) -> list[Answer]:
    """Every member grabs once, all at once: `connections` keep-alive connections (more
    than Sanic's accept backlog would stall in SYN retries) each send their share of the
    requests back to back, so thousands of grabs contend for the stock together. A
    plain asyncio HTTP/1.1 client: httpx's pool manages a few hundred requests a second
    here, too slow to make the grabs overlap."""
    host, port = base_url.removeprefix("http://").split(":")
    path = f"/api/v1/flash-sales/{sale_id}/orders"
    body = b'{"quantity":1}'
    answers: list[Answer | None] = [None] * len(members)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(members)):
        queue.put_nowait(i)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while not queue.empty():
                i = queue.get_nowait()
                mid, token = members[i]
                writer.write(
                    (
                        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
                        f"Authorization: Bearer {token}\r\nIdempotency-Key: k-{mid}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                    ).encode()
                    + body
                )
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                status = int(lines[0].split()[1])
                length = next(
                    int(line.split(":", 1)[1])
                    for line in lines
                    if line.lower().startswith("content-length:")
                )
                answers[i] = Answer(status, await reader.readexactly(length))
        finally:
            writer.close()

    await asyncio.wait_for(asyncio.gather(*(connection() for _ in range(connections))), 120)
    assert all(a is not None for a in answers)
    return answers  # type: ignore[return-value]


async def _wait_orders(sale_id: int, expected: int, within: float = 60) -> int:
    count = -1
    for _ in range(int(within / 0.2)):
        count = await Order.filter(source=f"fs:{sale_id}").count()
        if count >= expected:
            await asyncio.sleep(0.5)  # and no more after that
            return await Order.filter(source=f"fs:{sale_id}").count()
        await asyncio.sleep(0.2)
    return count


async def _eventually(probe: Any, within: float = 20) -> Any:
    """Poll an async probe until it returns something truthy (or time runs out)."""
    value = None
    for _ in range(int(within / 0.2)):
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.2)
    return value


async def _all_drained(redis: aioredis.Redis) -> bool:
    """Every sale stream's consumer group has read and acknowledged everything."""
    async for key in redis.scan_iter(match="fs:*:stream"):
        groups = await redis.xinfo_groups(key)
        if not groups or any(g["pending"] or g.get("lag") for g in groups):
            return False
    return True


async def _stock(redis: aioredis.Redis, sale_id: int) -> int | None:
    v = await redis.get(service.sale_keys(sale_id)["stock"])
    return None if v is None else int(v)


# -- sales ----------------------------------------------------------------------------------------


async def test_operator_creates_a_sale_and_shoppers_see_it(
    api: httpx.AsyncClient, env: dict[str, str], settings: Settings
) -> None:
    sale = await _create_sale(api, env, units=30, limit=2)
    assert sale["units"] == 30 and sale["remaining"] == 30 and sale["status"] == "live"
    assert sale["starts_at"].endswith("+08:00")
    upcoming = await _create_sale(api, env, units=5, starts_in=600)

    r = await api.get(f"/api/v1/flash-sales/{sale['id']}")
    assert r.status_code == 200
    assert r.json()["remaining"] == 30 and r.json()["status"] == "live"
    listed = {s["id"]: s for s in (await api.get("/api/v1/flash-sales")).json()["items"]}
    assert listed[sale["id"]]["status"] == "live"
    assert listed[upcoming["id"]]["status"] == "upcoming"

    ((_mid, token),) = await _members(settings, 1)
    r = await _grab(api, sale["id"], token, "two", quantity=2)
    assert r.status_code == 202, r.text
    assert (await api.get(f"/api/v1/flash-sales/{sale['id']}")).json()["remaining"] == 28
    doc = (await api.get("/docs/openapi.json")).json()
    grab_doc = doc["paths"]["/api/v1/flash-sales/{sale_id}/orders"]["post"]
    ref = grab_doc["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert "quantity" in doc["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]
    assert "202" in grab_doc["responses"]
    assert not any("_bench" in path for path in doc["paths"])  # bench route not documented
    admin = await api.get("/api/v1/admin/flash-sales", headers=await _operator(api, env))
    assert {s["id"] for s in admin.json()["items"]} >= {sale["id"], upcoming["id"]}


async def test_sale_input_is_checked(
    api: httpx.AsyncClient, env: dict[str, str], settings: Settings
) -> None:
    ops = await _operator(api, env)
    sku = await _sku()
    now = datetime.now(UTC)
    good = {
        "sku_id": sku.id,
        "price_fen": 100,
        "units": 10,
        "per_member_limit": 1,
        "starts_at": now.isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
    }
    url = "/api/v1/admin/flash-sales"
    r = await api.post(
        url,
        headers=ops,
        json=good
        | {"ends_at": now.isoformat(), "starts_at": (now + timedelta(hours=1)).isoformat()},
    )
    assert r.status_code == 422 and error_code(r) == "VALIDATION_ERROR"
    r = await api.post(url, headers=ops, json=good | {"units": 0})
    assert r.status_code == 422
    r = await api.post(url, headers=ops, json=good | {"sku_id": 10**9})
    assert r.status_code == 404 and error_code(r) == "SKU_NOT_FOUND"
    ((_, member_token),) = await _members(settings, 1)
    r = await api.post(url, headers={"authorization": f"Bearer {member_token}"}, json=good)
    assert r.status_code == 401 and error_code(r) == "TOKEN_WRONG_AUDIENCE"
    r = await api.get("/api/v1/flash-sales/999999999")
    assert r.status_code == 404 and error_code(r) == "SALE_NOT_FOUND"


# -- the grab -------------------------------------------------------------------------------------


async def test_2000_members_stock_100_no_oversell(
    api: httpx.AsyncClient,
    server: Any,
    env: dict[str, str],
    settings: Settings,
    redis: aioredis.Redis,
    workers: Any,
) -> None:
    """The issue's first 'must show': exactly 100 successes, 0 oversell, limits hold, and
    after the worker drains exactly 100 orders in PostgreSQL."""
    sale = await _create_sale(api, env, units=100, limit=1)
    members = await _members(settings, 2000)
    worker = workers("drain-1")

    responses = await _storm(server.base_url, sale["id"], members)
    statuses = [r.status_code for r in responses]
    assert statuses.count(202) == 100, {s: statuses.count(s) for s in set(statuses)}
    assert statuses.count(409) == 1900
    assert {error_code(r) for r in responses if r.status_code == 409} == {"SOLD_OUT"}
    winners = {mid for (mid, _), r in zip(members, responses, strict=True) if r.status_code == 202}
    order_nos = {r.json()["order_no"] for r in responses if r.status_code == 202}
    assert len(winners) == 100 and len(order_nos) == 100

    assert await _stock(redis, sale["id"]) == 0
    buyers = await redis.hgetall(service.sale_keys(sale["id"])["buyers"])
    assert {int(m) for m in buyers} == winners and set(buyers.values()) == {"1"}

    assert await _wait_orders(sale["id"], 100) == 100, worker.logs()[-3000:]
    orders = await Order.filter(source=f"fs:{sale['id']}").values(
        "order_no", "member_id", "status", "payable_fen"
    )
    assert {o["order_no"] for o in orders} == order_nos
    assert {o["member_id"] for o in orders} == winners  # one each: no member over the limit
    assert {o["status"] for o in orders} == {OrderStatus.PENDING_PAYMENT}
    assert {o["payable_fen"] for o in orders} == {990}
    for name in ("meta", "stock", "buyers", "reqs", "stream"):  # nothing lives forever
        assert await redis.pttl(service.sale_keys(sale["id"])[name]) > 0, name
    r = await api.get(f"/api/v1/flash-sales/{sale['id']}")
    assert r.json()["remaining"] == 0 and r.json()["status"] == "sold_out"
    # A winner trying again hits the limit (stock aside), a loser still sees sold out.
    _, tok = next(m for m in members if m[0] in winners)
    r = await _grab(api, sale["id"], tok, "again")
    assert r.status_code == 409 and error_code(r) in {"LIMIT_REACHED", "SOLD_OUT"}


async def test_replayed_idempotency_key_gets_the_first_answer(
    api: httpx.AsyncClient, env: dict[str, str], settings: Settings, redis: aioredis.Redis
) -> None:
    sale = await _create_sale(api, env, units=10, limit=3)
    ((_, token),) = await _members(settings, 1)
    first = await _grab(api, sale["id"], token, "same-key")
    assert first.status_code == 202 and first.json()["replayed"] is False
    for _ in range(3):
        again = await _grab(api, sale["id"], token, "same-key")
        assert again.status_code == 202
        assert again.json()["order_no"] == first.json()["order_no"]
        assert again.json()["replayed"] is True
    assert await _stock(redis, sale["id"]) == 9  # took one unit, once
    assert await redis.xlen(service.sale_keys(sale["id"])["stream"]) == 1
    r = await _grab(api, sale["id"], token, "same-key", quantity=2)
    assert r.status_code == 409 and error_code(r) == "IDEMPOTENCY_KEY_REUSED"
    r = await _grab(api, sale["id"], token, "other-key", quantity=2)
    assert r.status_code == 202 and r.json()["order_no"] != first.json()["order_no"]
    r = await _grab(api, sale["id"], token, "third-key")
    assert r.status_code == 409 and error_code(r) == "LIMIT_REACHED"
    r = await api.post(
        f"/api/v1/flash-sales/{sale['id']}/orders",
        headers={"authorization": f"Bearer {token}"},
        json={"quantity": 1},
    )
    assert r.status_code == 400 and error_code(r) == "IDEMPOTENCY_KEY_REQUIRED"
    r = await _grab(api, sale["id"], token, "bad-qty", quantity=0)
    assert r.status_code == 422
    r = await api.post(
        f"/api/v1/flash-sales/{sale['id']}/orders",
        headers=_grab_headers("not-a-token", "x"),
        json={"quantity": 1},
    )
    assert r.status_code == 401 and error_code(r) == "TOKEN_INVALID"


async def test_revoked_token_stops_grabbing_at_once(
    api: httpx.AsyncClient, env: dict[str, str], settings: Settings, redis: aioredis.Redis
) -> None:
    """Each worker hears revocations (RevocationWatch), so a token it already trusts stops
    as soon as the news arrives, not at its next re-check a minute later."""
    sale = await _create_sale(api, env, units=20, limit=10)
    (mid, token), (_, other) = await _members(settings, 2)
    for i in range(4):  # both workers see and trust both tokens
        assert (await _grab(api, sale["id"], token, f"before-{i}")).status_code == 202
        assert (await _grab(api, sale["id"], other, f"other-{i}")).status_code == 202
    await revoke_all(redis, settings, "member", mid)  # logout everywhere / account disabled
    await asyncio.sleep(0.2)
    for i in range(4):  # whichever worker answers
        r = await _grab(api, sale["id"], token, f"after-{i}")
        assert r.status_code == 401 and error_code(r) == "TOKEN_REVOKED", r.text
    # One device's logout (its jti) stops that token only.
    await revoke_access(redis, decode_access(settings, other, "member"))
    await asyncio.sleep(0.2)
    for i in range(4):
        r = await _grab(api, sale["id"], other, f"other-after-{i}")
        assert r.status_code == 401 and error_code(r) == "TOKEN_REVOKED", r.text
    assert await _stock(redis, sale["id"]) == 12


async def _watch_clients(redis: Any) -> list[tuple[aioredis.Redis, dict[str, Any]]]:
    """Each revocation subscription with the server (the master, on a cluster) it is on."""
    name = f"haodian-sub-{revocations_channel(redis)}"
    found = []
    for node in node_clients(redis):
        found += [
            (node, c) for c in await node.client_list(_type="pubsub") if c.get("name") == name
        ]
    return found


async def test_a_revocation_missed_while_the_watch_was_down_still_counts(
    api: httpx.AsyncClient, env: dict[str, str], settings: Settings, redis: aioredis.Redis
) -> None:
    """Messages sent while a worker's subscription is down are lost; the worker forgets
    every token it trusted the moment it notices, and reads Redis for them again."""
    sale = await _create_sale(api, env, units=10, limit=10)
    ((_, token),) = await _members(settings, 1)
    for i in range(4):
        assert (await _grab(api, sale["id"], token, f"before-{i}")).status_code == 202
    watchers = await _watch_clients(redis)
    assert len(watchers) == 2  # one per server worker
    for node, c in watchers:
        await node.client_kill_filter(_id=c["id"])
    # The revocation lands while nobody listens: the key only, no news.
    subject_key, _ = revocation_keys("member", decode_access(settings, token, "member"))
    await redis.set(subject_key, f"{time.time():.6f}", ex=3600)

    async def resubscribed() -> bool:
        now = await _watch_clients(redis)
        before = {(n.connection_pool.connection_kwargs["port"], c["id"]) for n, c in watchers}
        return (
            len(now) == 2
            and not {(n.connection_pool.connection_kwargs["port"], c["id"]) for n, c in now}
            & before
        )

    assert await _eventually(resubscribed, within=10)
    for i in range(4):
        r = await _grab(api, sale["id"], token, f"after-{i}")
        assert r.status_code == 401 and error_code(r) == "TOKEN_REVOKED", r.text


async def test_a_trusted_token_costs_the_grab_no_extra_round_trip(
    api: httpx.AsyncClient, env: dict[str, str], settings: Settings, redis: aioredis.Redis
) -> None:
    """The grab is one script call: a token's revocation keys are read once per worker,
    not on every request."""
    sale = await _create_sale(api, env, units=100, limit=100)
    members = await _members(settings, 4)  # 5 grabs each: within the 5-a-second limit

    async def calls(command: str) -> int:
        stats = await redis.info("commandstats")
        return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))

    mget, evalsha = await calls("mget"), await calls("evalsha")
    for i in range(5):
        for _, token in members:
            assert (await _grab(api, sale["id"], token, f"g{i}")).status_code == 202
    assert await calls("mget") - mget <= 2 * len(members)  # once per token and server worker
    assert await calls("evalsha") - evalsha == 20


async def test_grab_survives_redis_losing_its_scripts(
    api: httpx.AsyncClient, env: dict[str, str], settings: Settings, redis: aioredis.Redis
) -> None:
    """A Redis restart empties the script cache: the pipelined EVALSHA gets NOSCRIPT, one
    EVAL runs the grab and loads it again."""
    sale = await _create_sale(api, env, units=10, limit=5)
    ((_, token),) = await _members(settings, 1)
    assert (await _grab(api, sale["id"], token, "s0")).status_code == 202
    nodes = node_clients(redis)
    for node in nodes:
        await node.script_flush()
    for i in range(1, 4):
        r = await _grab(api, sale["id"], token, f"s{i}")
        assert r.status_code == 202, r.text
    sha = Scripts(redis).get(service.GRAB).sha
    loaded = [await node.script_exists(sha) == [True] for node in nodes]
    assert loaded.count(True) == 1  # on the server (the master) that holds the sale
    assert await _stock(redis, sale["id"]) == 6


async def test_window_and_rate_limit(
    api: httpx.AsyncClient, env: dict[str, str], settings: Settings
) -> None:
    later = await _create_sale(api, env, units=10, starts_in=3600)
    ((_, token),) = await _members(settings, 1)
    r = await _grab(api, later["id"], token, "w-first")
    assert r.status_code == 409 and error_code(r) == "NOT_STARTED"
    # The counters are per wall-clock second: start just after a second begins and send 8
    # at once, so all of them fall in one second (5 grabs a second per member,
    # HAODIAN_FLASHSALE_MEMBER_RPS).
    await asyncio.sleep(1.02 - time.time() % 1)
    answers = await asyncio.gather(*(_grab(api, later["id"], token, f"w{i}") for i in range(8)))
    codes = sorted(error_code(a) for a in answers)
    assert codes == ["NOT_STARTED"] * 5 + ["RATE_LIMITED"] * 3, codes
    limited = [a for a in answers if a.status_code == 429]
    assert all(a.headers["retry-after"] == "1" for a in limited)

    ending = await _create_sale(api, env, units=10, lasts=1.5)
    await asyncio.sleep(1.6)
    r = await _grab(api, ending["id"], token, "late")
    assert r.status_code == 409 and error_code(r) == "ENDED"
    r = await _grab(api, 999999999, token, "nope")
    assert r.status_code == 404 and error_code(r) == "SALE_NOT_FOUND"


async def test_member_tier_restriction(
    api: httpx.AsyncClient, env: dict[str, str], settings: Settings
) -> None:
    sale = await _create_sale(api, env, units=5, member_tiers=["gold"])
    assert sale["member_tiers"] == ["gold"]
    (_, regular), (gold_id, gold) = await _members(settings, 2)
    await Member.filter(id=gold_id).update(tier="gold")
    r = await _grab(api, sale["id"], regular, "t1")
    assert r.status_code == 409 and error_code(r) == "TIER_NOT_ELIGIBLE"
    r = await _grab(api, sale["id"], gold, "t2")
    assert r.status_code == 202, r.text


# -- crash safety ---------------------------------------------------------------------------------


async def test_worker_killed_between_insert_and_ack(
    api: httpx.AsyncClient,
    env: dict[str, str],
    settings: Settings,
    redis: aioredis.Redis,
    workers: Any,
) -> None:
    """The worker dies (like kill -9) right after committing an order, before XACK. On
    restart it re-reads its own pending entries, and another consumer claims what a dead
    one left (XAUTOCLAIM): still exactly one order per reservation."""
    # Earlier tests left reservations in other sales' streams: drain them first, so the
    # crashing worker's first insert is one of ours.
    pre = workers("crash-pre")
    assert await _eventually(lambda: _all_drained(redis), within=60), pre.logs()[-3000:]
    pre.stop()

    sale = await _create_sale(api, env, units=20, limit=1)
    members = await _members(settings, 6)
    answers = [await _grab(api, sale["id"], tok, f"c{mid}") for mid, tok in members[:3]]
    assert [a.status_code for a in answers] == [202, 202, 202]

    crashing = workers("crash-a", HAODIAN_FAULT="after_insert_before_ack")
    assert crashing.wait_exit(60) == 137, crashing.logs()[-3000:]
    key = service.sale_keys(sale["id"])["stream"]
    assert await Order.filter(source=f"fs:{sale['id']}").count() == 1
    pending = await redis.xpending(key, service.GROUP)
    # It had read all three; one was committed, none acknowledged.
    assert pending["pending"] == 3 and pending["consumers"][0]["name"] == "crash-a"

    # The same consumer comes back: its own pending entries are re-read first; the one
    # already committed is acknowledged without a second order, the other two become orders.
    again = workers("crash-a")
    assert await _wait_orders(sale["id"], 3) == 3, again.logs()[-3000:]
    again.stop()

    # A consumer dies holding entries; a different one claims them after the idle time.
    more = [await _grab(api, sale["id"], tok, f"c{mid}") for mid, tok in members[3:]]
    assert [a.status_code for a in more] == [202, 202, 202]
    dead = workers("crash-b", HAODIAN_FAULT="after_insert_before_ack")
    assert dead.wait_exit(60) == 137
    other = workers("crash-c")
    assert await _wait_orders(sale["id"], 6) == 6, other.logs()[-3000:]

    async def drained() -> bool:
        return (await redis.xpending(key, service.GROUP))["pending"] == 0

    await _eventually(drained)
    assert (await redis.xpending(key, service.GROUP))["pending"] == 0

    nos = [a.json()["order_no"] for a in answers + more]
    rows = await Order.filter(source=f"fs:{sale['id']}").values_list("order_no", flat=True)
    assert sorted(rows) == sorted(nos)  # one order per reservation, none twice
    assert await FlashReservation.filter(sale_id=sale["id"]).count() == 6


async def test_redis_flushed_mid_sale_rewarms_from_the_database(
    api: httpx.AsyncClient,
    server: Any,
    env: dict[str, str],
    settings: Settings,
    redis: aioredis.Redis,
    workers: Any,
) -> None:
    sale = await _create_sale(api, env, units=50, limit=1)
    members = await _members(settings, 300)
    worker = workers("flush-1")
    first = await _storm(server.base_url, sale["id"], members[:30])
    assert [r.status_code for r in first].count(202) == 30
    assert await _wait_orders(sale["id"], 30) == 30, worker.logs()[-3000:]

    await redis.flushdb()  # Redis restarted without persistence
    assert await _stock(redis, sale["id"]) is None

    # The earlier buyers are remembered (from PostgreSQL), replays still answer the same.
    mid0, tok0 = members[0]
    r = await _grab(api, sale["id"], tok0, f"k-{mid0}")
    assert r.status_code == 202 and r.json()["order_no"] == first[0].json()["order_no"]
    assert r.json()["replayed"] is True
    assert await _stock(redis, sale["id"]) == 20  # units - sold, never the configured 50
    r = await _grab(api, sale["id"], tok0, "new-key")
    assert r.status_code == 409 and error_code(r) == "LIMIT_REACHED"

    rest = await _storm(server.base_url, sale["id"], members[30:])
    assert [r.status_code for r in rest].count(202) == 20
    assert await _wait_orders(sale["id"], 50) == 50, worker.logs()[-3000:]
    assert await _stock(redis, sale["id"]) == 0
    members_with_orders = await Order.filter(source=f"fs:{sale['id']}").values_list(
        "member_id", flat=True
    )
    assert len(members_with_orders) == len(set(members_with_orders)) == 50


async def test_cancelled_unpaid_order_gives_units_and_quota_back_once(
    api: httpx.AsyncClient,
    env: dict[str, str],
    settings: Settings,
    redis: aioredis.Redis,
    workers: Any,
) -> None:
    sale = await _create_sale(api, env, units=2, limit=1)
    (mid, token), (_, other) = await _members(settings, 2)
    worker = workers("release-1")
    got = await _grab(api, sale["id"], token, "r1")
    assert (await _grab(api, sale["id"], other, "r2")).status_code == 202
    assert await _wait_orders(sale["id"], 2) == 2, worker.logs()[-3000:]
    assert await _stock(redis, sale["id"]) == 0

    order_no = got.json()["order_no"]
    await transition(order_no, OrderStatus.CANCELLED, actor="system", reason="payment timeout")
    with pytest.raises(Exception, match="cancelled"):
        await transition(order_no, OrderStatus.CANCELLED, actor="system", reason="again")
    res = await FlashReservation.get(order_no=order_no)
    assert res.state == ReservationState.RELEASED and res.member_slot is None

    async def back() -> bool:
        return await _stock(redis, sale["id"]) == 1

    await _eventually(back)
    assert await _stock(redis, sale["id"]) == 1
    # applied exactly once, even when the sweeper runs again
    await service.sweep_releases(redis, Scripts(redis))
    await asyncio.sleep(1.5)
    assert await _stock(redis, sale["id"]) == 1
    again = await _grab(api, sale["id"], token, "r3")  # the quota came back too
    assert again.status_code == 202, again.text
    assert await _wait_orders(sale["id"], 3) == 3
    held = await FlashReservation.filter(sale_id=sale["id"], state=ReservationState.HELD).count()
    assert held == 2 and await _stock(redis, sale["id"]) == 0
    assert mid in await Order.filter(
        source=f"fs:{sale['id']}", status=OrderStatus.PENDING_PAYMENT
    ).values_list("member_id", flat=True)


async def test_reconcile_repairs_redis_and_says_what_it_changed(
    api: httpx.AsyncClient,
    env: dict[str, str],
    settings: Settings,
    redis: aioredis.Redis,
    workers: Any,
) -> None:
    sale = await _create_sale(api, env, units=10, limit=2)
    ((mid, token),) = await _members(settings, 1)
    worker = workers("reconcile-1")
    assert (await _grab(api, sale["id"], token, "a", quantity=2)).status_code == 202
    assert await _wait_orders(sale["id"], 1) == 1, worker.logs()[-3000:]
    worker.stop()

    keys = service.sale_keys(sale["id"])
    await redis.set(keys["stock"], 10)  # as if the units came back
    await redis.hdel(keys["buyers"], str(mid))
    out = _cli(env, "flashsale", "reconcile", str(sale["id"]))
    assert out.returncode == 0, out.stderr
    assert "stock: 10 -> 8" in out.stdout
    assert f"member {mid}: units held in Redis 0 -> 2" in out.stdout
    assert await _stock(redis, sale["id"]) == 8
    assert await redis.hget(keys["buyers"], str(mid)) == "2"

    out = _cli(env, "flashsale", "reconcile", str(sale["id"]))
    assert out.returncode == 0 and "in step, nothing changed" in out.stdout

    await redis.delete(keys["stock"])
    out = _cli(env, "flashsale", "reconcile", str(sale["id"]))
    assert "warmed from the database to 8" in out.stdout
    out = _cli(env, "flashsale", "reconcile", "999999999")
    assert out.returncode == 2 and "no flash sale" in out.stderr


def test_grab_is_503_when_redis_is_down(
    env: dict[str, str], database: Settings, tmp_path: Path
) -> None:
    broken = env | {"HAODIAN_REDIS_URL": "redis://127.0.0.1:1/0"}
    proc = ServerProcess(["serve", "--no-seed"], broken, tmp_path / "down.log", ROOT)
    try:
        proc.wait_ready(path="/healthz")
        token = encode_access(database, "member", 1)
        r = httpx.post(
            f"{proc.base_url}/api/v1/flash-sales/1/orders",
            headers=_grab_headers(token, "down"),
            json={"quantity": 1},
        )
        assert r.status_code == 503, r.text
        assert error_code(r) == "SERVICE_UNAVAILABLE"
    finally:
        proc.stop()
