"""Coupons at campaign scale, the must-shows of the claim without a hot row: 1,000 members
tapping twice against 200 units while Redis is flushed, or while an API worker is killed;
a claimed coupon usable at once; an issuance killed with SIGKILL and resumed from the CLI.
Real server processes, PostgreSQL and Redis; clients retry the way the mini-program does
(same Idempotency-Key, on a connection error or a 503)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.coupons import issuance
from server.coupons.models import Coupon, CouponIssuance
from server.identity.models import Member
from server.infra.auth import encode_access
from server.settings import Settings
from tests.conftest import ROOT, ServerProcess
from tests.test_coupons import bearer, live_code, make_template, new_staff, new_store, op

__all__ = ["op"]  # the module-scoped operator fixture of test_coupons

TOTAL = 200
MEMBERS = 1000
ALLOWED = {(201, None), (200, None), (409, "COUPON_SOLD_OUT"), (409, "LIMIT_REACHED")}


async def many_members(settings: Settings, n: int, nick: str) -> list[str]:
    await Member.bulk_create([Member(nickname=nick) for _ in range(n)])
    ids = await Member.filter(nickname=nick).order_by("id").values_list("id", flat=True)
    assert len(ids) == n
    return [encode_access(settings, "member", int(i)) for i in ids]


async def tap_twice(
    base_url: str,
    template_id: int,
    tokens: list[str],
    during: Callable[[Counter[Any]], Awaitable[None]],
) -> tuple[Counter[Any], list[int]]:
    """Every member taps twice at once (50 on the wire); `during` runs beside them and may
    break things. Each tap is retried with its own Idempotency-Key until it has an answer
    that is not a connection error or a 503. Returns the answers and the coupon ids of 2xx."""
    statuses: Counter[Any] = Counter()
    answered: list[int] = []
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=base_url, timeout=20, limits=limits) as c:
        gate = asyncio.Semaphore(50)

        async def tap(token: str) -> None:
            headers = {**bearer(token), "Idempotency-Key": uuid.uuid4().hex}
            for _ in range(30):
                try:
                    async with gate:
                        r = await c.post(
                            f"/api/v1/coupon-center/{template_id}/claim", headers=headers
                        )
                except httpx.TransportError:
                    statuses["retried: connection"] += 1
                    await asyncio.sleep(0.1)
                    continue
                if r.status_code == 503:
                    statuses["retried: 503"] += 1
                    await asyncio.sleep(0.1)
                    continue
                code = r.json().get("error", {}).get("code") if r.status_code >= 400 else None
                statuses[(r.status_code, code)] += 1
                if r.status_code in (200, 201):
                    answered.append(r.json()["coupon"]["id"])
                return
            raise AssertionError("a tap never got an answer")

        taps = asyncio.gather(*(tap(tok) for tok in tokens * 2))
        await asyncio.gather(taps, during(statuses))
    return statuses, answered


async def assert_exactly_total(template_id: int, answered: list[int]) -> None:
    rows = await Coupon.filter(template_id=template_id).values_list("id", "member_id", "unit")
    assert len(rows) == TOTAL, len(rows)
    assert max(Counter(m for _, m, _ in rows).values()) == 1  # nobody over the limit of one
    assert sorted(u for _, _, u in rows) == list(range(1, TOTAL + 1))
    assert set(answered) <= {i for i, _, _ in rows}  # every coupon answered exists


async def wait_for(statuses: Counter[Any], successes: int, within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while statuses[(201, None)] < successes:
        assert time.monotonic() < deadline, dict(statuses)
        await asyncio.sleep(0.005)


async def test_redis_flushed_mid_campaign_never_issues_more_than_the_total(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings, redis: Any, server: Any
) -> None:
    """FLUSHDB while claims are landing: stock and limits come back from the database (the
    units already out, each member's claims), and the 200 stay 200."""
    t = await make_template(api, op, name="Flushed ¥10", amount_off_fen=1000, total=TOTAL)
    tokens = await many_members(database, MEMBERS, f"flush-{uuid.uuid4().hex[:6]}")

    async def flush(statuses: Counter[Any]) -> None:
        await wait_for(statuses, 60)
        await redis.flushdb()
        statuses["flushed"] += 1

    statuses, answered = await tap_twice(server.base_url, t["id"], tokens, flush)
    print(dict(statuses))
    assert statuses["flushed"] == 1
    assert {k for k in statuses if isinstance(k, tuple)} <= ALLOWED
    await assert_exactly_total(t["id"], answered)
    assert statuses[(201, None)] + statuses[(200, None)] <= TOTAL
    s = (await api.get(f"/api/v1/admin/coupon-templates/{t['id']}/stats", headers=op)).json()
    assert (s["remaining"], s["claimed"]) == (0, TOTAL)


@pytest.fixture
def killable_server(env: dict[str, str], tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of its own with two API workers, so one can be killed without harming the
    session's server."""
    # A small pool: beside the session's server, two more pools of 20 can run PostgreSQL
    # out of connection slots (then a 503 the taps retry, but not what this test is about).
    small = env | {"HAODIAN_DATABASE_URL": env["HAODIAN_DATABASE_URL"] + "?maxsize=5"}
    proc = ServerProcess(["serve", "--workers", "2"], small, tmp_path / "serve.log", tmp_path)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def api_workers(server: ServerProcess) -> list[int]:
    """Pids of the Sanic worker processes serving requests: children of the main process
    running `spawn_main`, less the first of them (the multiprocessing manager Sanic keeps
    its workers' states in, started before the workers)."""
    out = subprocess.run(
        ["ps", "-ww", "-o", "pid=,args=", "--ppid", str(server.proc.pid)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    spawned = sorted(int(line.split()[0]) for line in out.splitlines() if "spawn_main" in line)
    return spawned[1:]


async def test_an_api_worker_killed_mid_campaign_loses_no_coupon_and_gives_no_extra(
    op: dict[str, str], database: Settings, killable_server: ServerProcess
) -> None:
    """SIGKILL one of the two API workers while claims are landing: its in-flight taps fail
    as connection errors and are retried with the same Idempotency-Key on the other; every
    coupon answered exists, no unit is given twice, nobody holds two."""
    async with httpx.AsyncClient(base_url=killable_server.base_url, timeout=30) as c:
        t = await make_template(c, op, name="Killed ¥10", amount_off_fen=1000, total=TOTAL)
    tokens = await many_members(database, MEMBERS, f"kill-{uuid.uuid4().hex[:6]}")
    workers = api_workers(killable_server)
    assert len(workers) >= 2, workers

    async def kill(statuses: Counter[Any]) -> None:
        await wait_for(statuses, 60)
        os.kill(workers[-1], signal.SIGKILL)
        statuses["killed"] += 1

    statuses, answered = await tap_twice(killable_server.base_url, t["id"], tokens, kill)
    print(dict(statuses))
    assert statuses["killed"] == 1
    assert {k for k in statuses if isinstance(k, tuple)} <= ALLOWED
    await assert_exactly_total(t["id"], answered)


async def test_a_claimed_coupon_is_listed_shown_and_written_off_within_a_second(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings
) -> None:
    """No materialising lag: the 201's coupon is in the wallet, has a live code, and a clerk
    writes it off, one request after another with no waiting in between."""
    store = await new_store()
    _, clerk = await new_staff(database, [store])
    t = await make_template(api, op, name="Now ¥3", amount_off_fen=300, total=50)
    m = await Member.create(nickname="quick")
    me = bearer(encode_access(database, "member", m.id))
    started = time.monotonic()
    r = await api.post(f"/api/v1/coupon-center/{t['id']}/claim", headers=me)
    assert r.status_code == 201, r.text
    coupon = r.json()["coupon"]
    mine = (await api.get("/api/v1/me/coupons", params={"status": "unused"}, headers=me)).json()
    assert coupon["id"] in [c["id"] for c in mine["items"]]
    code = await live_code(api, me, coupon["id"])
    w = await api.post(
        "/api/v1/staff/write-offs",
        json={"code": code["code"], "store_id": store.id},
        headers=clerk,
    )
    elapsed = time.monotonic() - started
    assert w.status_code == 201, w.text
    assert (await Coupon.get(id=coupon["id"])).status == "used"
    assert elapsed < 1.0, f"claim to write-off took {elapsed:.2f}s"


def issue_cli(env: dict[str, str], issuance_id: int, log: Path, *extra: str) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if not k.startswith("HAODIAN_")} | env
    return subprocess.Popen(
        [sys.executable, "-m", "server", "coupons", "issue", str(issuance_id), *extra],
        cwd=ROOT,
        env=full,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )


async def test_issuance_killed_with_sigkill_resumes_with_one_coupon_per_member(
    api: httpx.AsyncClient,
    op: dict[str, str],
    database: Settings,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    """`haodian coupons issue` killed -9 mid-run, then run again: exactly one coupon for
    each of the 60,000 members, no unit twice, the progress shown on the way."""
    from tortoise import connections

    n = 60_000
    nick = f"sigkill-{uuid.uuid4().hex[:6]}"
    await connections.get("default").execute_query(
        "INSERT INTO member (nickname, avatar_url, gender, phone_masked, points, tier,"
        " disabled, created_at, updated_at)"
        " SELECT $1, '', 0, '', 0, 'regular', false, now(), now() FROM generate_series(1, $2)",
        [nick, n],
    )
    ids = list(await Member.filter(nickname=nick).values_list("id", flat=True))
    t = await make_template(api, op, name="Kill -9 campaign", total=n, in_center=False)
    i = await issuance.create_issuance(t["id"], ids, None)

    first = issue_cli(env, i.id, tmp_path / "first.log", "--batch", "1000")
    deadline = time.monotonic() + 120
    while True:  # kill it once a few batches are in, well before the end
        now = await CouponIssuance.get(id=i.id)
        if now.position >= 5000 or first.poll() is not None:
            break
        assert time.monotonic() < deadline, (tmp_path / "first.log").read_text()
        await asyncio.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed = await CouponIssuance.get(id=i.id)
    assert first.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()
    assert 0 < killed.position < n and killed.status == "running"
    assert await Coupon.filter(issuance_id=i.id).count() == killed.issued == killed.position

    second = issue_cli(env, i.id, tmp_path / "second.log")
    assert second.wait(timeout=300) == 0, (tmp_path / "second.log").read_text()
    out = (tmp_path / "second.log").read_text()
    assert f"issuance {i.id}: done, {n:,} issued" in out, out
    assert "member" in out  # the progress bar's unit

    rows = await connections.get("default").execute_query_dict(
        "SELECT count(*) AS n, count(DISTINCT member_id) AS members,"
        " count(DISTINCT unit) AS units, min(unit) AS lo, max(unit) AS hi"
        " FROM coupon WHERE issuance_id = $1",
        [i.id],
    )
    assert rows[0] == {"n": n, "members": n, "units": n, "lo": 1, "hi": n}, rows
    got = (await api.get(f"/api/v1/admin/coupon-issuances/{i.id}", headers=op)).json()
    assert (got["status"], got["issued"], got["progress"]) == ("done", n, 1.0)


async def test_a_resumed_issuance_with_bigger_batches_goes_on_past_a_killed_batchs_units(
    api: httpx.AsyncClient, op: dict[str, str], redis: Any
) -> None:
    """A run killed mid-batch had taken units for its batch (here 3) under the batch's request
    key; the resumed run, in batches of 10, replays those 3 for its first batch. That is not
    the template running out: the run goes on and every member gets one coupon."""
    from server.coupons import stock, templates
    from server.infra.redis import Scripts

    scripts = Scripts(redis)
    nick = f"resume-{uuid.uuid4().hex[:6]}"
    await Member.bulk_create([Member(nickname=nick) for _ in range(20)])
    ids = sorted(
        await Member.filter(nickname=nick).order_by("-id").limit(20).values_list("id", flat=True)
    )
    assert len(ids) == 20
    t = await make_template(api, op, name="Resume with bigger batches", total=20, in_center=False)
    i = await issuance.create_issuance(t["id"], ids, None)
    template = await templates.get_template(t["id"])
    killed = await stock.take_units(scripts, template, 3, f"iss:{i.id}:0")  # then kill -9
    assert len(killed) == 3
    done = await issuance.run_issuance(scripts, i.id, batch=10)
    assert (done.status, done.issued, done.position) == ("done", 20, 20), done.message
    coupons = await Coupon.filter(issuance_id=i.id).values_list("member_id", "unit")
    assert sorted(m for m, _ in coupons) == ids and len({u for _, u in coupons}) == 20
