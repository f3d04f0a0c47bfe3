"""The foundation: health, the error envelope, operator accounts, migrations in step with models."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.infra import db
from server.settings import Settings
from tests.conftest import ROOT, ServerProcess, error_code


async def test_health_and_ready(api: httpx.AsyncClient) -> None:
    r = await api.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = await api.get("/readyz")
    assert r.status_code == 200
    assert r.json()["database"] == "ok" and r.json()["redis"] == "ok"
    assert r.headers["x-request-id"]


@pytest.mark.parametrize(
    ("method", "path", "content", "status", "code"),
    [
        ("POST", "/api/v1/admin/auth/login", b"{not json", 400, "MALFORMED_JSON"),
        ("POST", "/api/v1/admin/auth/login", b"[1, 2]", 400, "MALFORMED_JSON"),
        (
            "POST",
            "/api/v1/admin/auth/login",
            b'{"username": 5, "password": "x"}',
            422,
            "VALIDATION_ERROR",
        ),
        ("POST", "/api/v1/admin/auth/login", b'{"username": "a"}', 422, "VALIDATION_ERROR"),
        ("POST", "/api/v1/admin/auth/login", b"", 422, "VALIDATION_ERROR"),
        ("GET", "/api/v1/no-such-thing", None, 404, "NOT_FOUND"),
        ("DELETE", "/healthz", None, 405, "METHOD_NOT_ALLOWED"),
        ("GET", "/api/v1/admin/me", None, 401, "UNAUTHORIZED"),
    ],
)
async def test_bad_input_gets_a_4xx_in_the_envelope(
    api: httpx.AsyncClient, method: str, path: str, content: bytes | None, status: int, code: str
) -> None:
    r = await api.request(
        method,
        path,
        content=content,
        headers={"content-type": "application/json", "x-request-id": "rid-42"},
    )
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code
    assert err["message"]
    assert err["request_id"] == "rid-42"
    assert r.headers["x-request-id"] == "rid-42"


async def test_validation_error_names_each_field(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/v1/admin/auth/login", json={"username": 5})
    fields = {d["field"] for d in r.json()["error"]["details"]}
    assert fields == {"username", "password"}


async def test_openapi_document_is_served(api: httpx.AsyncClient) -> None:
    r = await api.get("/docs/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    login = doc["paths"]["/api/v1/admin/auth/login"]["post"]
    ref = login["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert "username" in doc["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]
    assert "200" in login["responses"]


def _cli(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith("HAODIAN_")} | env
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        env=full,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


async def test_create_operator_then_log_in(api: httpx.AsyncClient, env: dict[str, str]) -> None:
    out = _cli(env, "admin", "create-operator", "--username", "ops1", "--password", "first-pass-1")
    assert out.returncode == 0, out.stderr
    assert "created" in out.stdout
    r = await api.post(
        "/api/v1/admin/auth/login", json={"username": "ops1", "password": "first-pass-1"}
    )
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    me = await api.get("/api/v1/admin/me", headers={"authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["username"] == "ops1"
    assert me.json()["roles"] == ["admin"]

    # Reset through stdin (what a script does); the old password stops working.
    out = _cli(env, "admin", "create-operator", "--username", "ops1", stdin="second-pass-2\n")
    assert out.returncode == 0 and "reset" in out.stdout, out.stderr
    r = await api.post(
        "/api/v1/admin/auth/login", json={"username": "ops1", "password": "first-pass-1"}
    )
    assert r.status_code == 401 and error_code(r) == "LOGIN_FAILED"
    r = await api.post(
        "/api/v1/admin/auth/login", json={"username": "ops1", "password": "second-pass-2"}
    )
    assert r.status_code == 200


async def test_create_operator_rejects_a_short_password(env: dict[str, str]) -> None:
    out = _cli(env, "admin", "create-operator", "--username", "ops2", "--password", "short")
    assert out.returncode == 2
    assert "at least 8" in out.stderr


async def test_operator_login_is_rate_limited(api: httpx.AsyncClient) -> None:
    codes = []
    for _ in range(12):
        r = await api.post(
            "/api/v1/admin/auth/login",
            json={"username": "nobody-here", "password": "wrong-password"},
        )
        codes.append(r.status_code)
    assert codes[:10] == [401] * 10
    assert codes[10:] == [429, 429]
    assert int(r.headers["retry-after"]) >= 1


async def test_tampered_token_is_rejected(api: httpx.AsyncClient, env: dict[str, str]) -> None:
    _cli(env, "admin", "create-operator", "--username", "ops3", "--password", "pass-word-3")
    r = await api.post(
        "/api/v1/admin/auth/login", json={"username": "ops3", "password": "pass-word-3"}
    )
    token = r.json()["token"]
    head, payload, sig = token.split(".")
    bad = f"{head}.{payload}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}"
    r = await api.get("/api/v1/admin/me", headers={"authorization": f"Bearer {bad}"})
    assert r.status_code == 401 and error_code(r) == "TOKEN_INVALID"


async def test_models_and_migrations_are_in_step(database: Settings) -> None:
    pending = await db.pending_model_changes(database)
    await db.init_db(database)  # the check closed the test process's connections
    assert pending == [], f"models changed without a migration (haodian makemigrations): {pending}"


async def test_a_connection_left_in_a_transaction_comes_back_clean(database: Settings) -> None:
    """The pool skips asyncpg's reset query (RESET ALL, UNLISTEN...): a request cancelled
    inside a transaction must still hand the next borrower a connection outside it, with
    nothing of the abandoned work kept."""
    from tortoise import connections

    client = connections.get("default")
    assert client.capabilities.dialect == "postgres"  # the suite runs on PostgreSQL
    async with client.acquire_connection() as raw:
        await raw.execute("BEGIN")
        await raw.execute("CREATE TEMP TABLE abandoned (x int)")
        assert raw.is_in_transaction()
        first = raw._con
    async with client.acquire_connection() as again:
        assert again._con is first  # idle connections come back last-in first-out
        assert not again.is_in_transaction()
        assert await again.fetchval("SELECT to_regclass('pg_temp.abandoned')") is None


async def test_a_hot_row_copy_is_loaded_once_by_a_burst_and_not_kept_when_missing() -> None:
    """`infra.memo.Recent`: 32 requests finding the copy expired make one load, not 32; a
    load that fails reaches every waiter and is not kept; an expired copy is loaded again."""
    from server.infra.memo import Recent

    loads: list[int] = []
    fail = False

    async def load() -> str:
        loads.append(1)
        await asyncio.sleep(0.02)  # a database round trip
        if fail:
            raise LookupError("gone")
        return f"row v{len(loads)}"

    recent: Recent[int, str] = Recent(ttl=0.1)
    got = await asyncio.gather(*(recent.get(7, load) for _ in range(32)))
    assert got == ["row v1"] * 32 and len(loads) == 1
    assert await recent.get(7, load) == "row v1" and len(loads) == 1  # still fresh
    await asyncio.sleep(0.12)
    fail = True
    errors = await asyncio.gather(*(recent.get(7, load) for _ in range(8)), return_exceptions=True)
    assert all(isinstance(e, LookupError) for e in errors) and len(loads) == 2
    fail = False
    assert await recent.get(7, load) == "row v3"  # the failure was not kept


async def test_optional_coupon_keys_are_indexed_only_where_set(database: Settings) -> None:
    """Migration 0007: a claim's NULL grant, issuance and order take no index entries."""
    from tortoise import connections

    client = connections.get("default")
    assert client.capabilities.dialect == "postgres"  # SQLite (the demo) keeps full indexes
    rows = await client.execute_query_dict(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'coupon'"
    )
    defs = {r["indexname"]: r["indexdef"] for r in rows}
    for name, where in [
        ("coupon_grant_ref_key", "grant_ref IS NOT NULL"),
        ("uid_coupon_issuanc_a422b9", "issuance_id IS NOT NULL"),
        ("uid_coupon_templat_12d25f", "claim_seq IS NOT NULL"),
        ("uid_coupon_templat_167b22", "unit IS NOT NULL"),
        ("idx_coupon_order_n_30ec42", "order_no IS NOT NULL"),
    ]:
        assert where in defs[name], defs[name]


async def test_no_table_description_would_break_the_sqlite_schema_editor(
    database: Settings,
) -> None:
    """Tortoise's SQLite schema editor splits CREATE TABLE on ';', and a model's docstring is
    its table comment: one semicolon there and the zero-config demo cannot migrate."""
    from tortoise import Tortoise

    bad = [
        f"{app}.{name}"
        for app, models in Tortoise.apps.items()
        for name, model in models.items()
        if ";" in (model._meta.table_description or "")
        or any(";" in (f.description or "") for f in model._meta.fields_map.values())
    ]
    assert bad == [], f"semicolons in table or field descriptions: {bad}"


def test_readyz_is_503_when_redis_is_down(
    env: dict[str, str], database: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    broken = env | {"HAODIAN_REDIS_URL": "redis://127.0.0.1:1/0"}
    proc = ServerProcess(
        ["serve", "--no-seed"], broken, tmp_path_factory.mktemp("logs") / "down.log", ROOT
    )
    try:
        proc.wait_ready(path="/healthz")
        r = httpx.get(proc.base_url + "/readyz")
        assert r.status_code == 503
        assert r.json()["database"] == "ok"
        assert r.json()["redis"].startswith("down")
    finally:
        proc.stop()


def test_a_database_that_cannot_take_a_query_is_a_503_not_a_500(
    env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """PostgreSQL out of connection slots under a running server (its connections dropped,
    no new one allowed): a request answers 503 DATABASE_UNAVAILABLE with Retry-After, not a
    500; nothing listening at all is classed the same way."""
    import asyncpg

    from server.infra.db import database_unreachable
    from tests.conftest import own_database

    async def refused() -> BaseException:
        try:
            await asyncpg.connect("postgres://haodian:haodian@127.0.0.1:1/nowhere", timeout=5)
        except OSError as exc:
            return exc
        raise AssertionError("something listens on port 1")

    async def cut_off(url: str, limit: int) -> None:
        admin = await asyncpg.connect(url.rsplit("/", 1)[0] + "/postgres")
        name = url.rsplit("/", 1)[1]
        await admin.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT {limit}')
        if limit == 0:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
        await admin.close()

    assert database_unreachable(asyncio.run(refused()))
    assert not database_unreachable(ValueError("a bug is still a 500"))
    with own_database() as url:
        proc = ServerProcess(
            ["serve", "--no-seed"],
            env | {"HAODIAN_DATABASE_URL": url},
            tmp_path_factory.mktemp("logs") / "nodb.log",
            ROOT,
        )
        try:
            proc.wait_ready()
            asyncio.run(cut_off(url, 0))
            r = httpx.get(proc.base_url + "/api/v1/products/1", timeout=30)
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "DATABASE_UNAVAILABLE"
            assert r.headers["Retry-After"] == "1"
        finally:
            asyncio.run(cut_off(url, -1))
            proc.stop()


def test_a_stop_signal_during_start_up_stops_the_server(
    env: dict[str, str], database: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """SIGTERM while the workers are still starting (a deploy stopping a fresh instance,
    Ctrl-C right after `haodian serve`): the server stops, rather than spinning on a core
    until something sends SIGKILL."""
    proc = ServerProcess(
        ["serve", "--no-seed", "--workers", "2"],
        env,
        tmp_path_factory.mktemp("logs") / "early-stop.log",
        ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        # A worker logs "Starting worker" before its start-up listeners (database, Redis)
        # run, and acknowledges only after them: the signal lands inside that window.
        while "Starting worker" not in proc.logs():
            assert proc.proc.poll() is None, proc.logs()[-3000:]
            assert time.monotonic() < deadline, proc.logs()[-3000:]
            time.sleep(0.005)
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait_exit(timeout=20) == 0
        # Nothing of it stays behind: workers, Sanic's state manager, the resource tracker.
        group = proc.proc.pid  # its own session and process group
        for _ in range(100):
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"processes of the stopped server remain in group {group}")
    finally:
        proc.stop()


def test_demo_runs_with_no_configuration(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`haodian serve` on a bare directory: SQLite, embedded Redis, seeded, ready in 60 s."""
    cwd = tmp_path_factory.mktemp("demo")
    proc = ServerProcess(["serve"], {}, cwd / "serve.log", cwd)
    try:
        took = proc.wait_ready(timeout=60)
        r = httpx.get(proc.base_url + "/readyz").json()
        assert r == {"status": "ok", "database": "ok", "redis": "ok"}, r
        assert (cwd / ".haodian" / "haodian.sqlite3").exists()
        login = httpx.post(
            proc.base_url + "/api/v1/admin/auth/login",
            json={"username": "admin", "password": "haodian-demo"},
        )
        assert login.status_code == 200, login.text
        assert took < 60
        _demo_pickup_walkthrough(proc.base_url)
        activity = _demo_group_buy_walkthrough(proc.base_url)
    finally:
        proc.stop()
    assert _processes_in(cwd / ".haodian") == [], "the embedded Redis outlived `haodian serve`"

    # A later start seeds again: still one live demo group-buy, the same one, its group kept.
    again = ServerProcess(["serve"], {}, cwd / "serve-again.log", cwd)
    try:
        again.wait_ready(timeout=60)
        live = httpx.get(again.base_url + "/api/v1/group-buys").json()["items"]
        assert [(a["id"], a["units_left"]) for a in live] == [(activity["id"], 2997)], live
    finally:
        again.stop()
    assert _processes_in(cwd / ".haodian") == []


def test_a_stop_signal_during_the_first_seeding_leaves_nothing_running(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The demo's first start seeds for a few seconds; SIGTERM then stops the embedded
    Redis too (it used to outlive us, owned by no one), and the next start finishes the
    seeding and serves."""
    cwd = tmp_path_factory.mktemp("demo-stopped")
    proc = ServerProcess(["serve"], {}, cwd / "first.log", cwd)
    try:
        deadline = time.monotonic() + 60
        while not _processes_in(cwd / ".haodian"):  # the embedded Redis is up: seeding next
            assert proc.proc.poll() is None, proc.logs()[-3000:]
            assert time.monotonic() < deadline, proc.logs()[-3000:]
            time.sleep(0.01)
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait_exit(timeout=30) == 128 + signal.SIGTERM
        assert "haodian (demo) on" not in proc.logs(), "the signal came too late to test this"
    finally:
        proc.stop()
    assert _processes_in(cwd / ".haodian") == [], "the embedded Redis outlived `haodian serve`"

    again = ServerProcess(["serve"], {}, cwd / "second.log", cwd)
    try:
        again.wait_ready(timeout=90)
        stores = httpx.get(again.base_url + "/api/v1/stores", params={"q": "WH0001"}).json()
        assert [s["code"] for s in stores["items"]] == ["WH0001"], stores
        login = httpx.post(
            again.base_url + "/api/v1/admin/auth/login",
            json={"username": "admin", "password": "haodian-demo"},
        )
        assert login.status_code == 200, login.text
    finally:
        again.stop()
    assert _processes_in(cwd / ".haodian") == []


def _processes_in(directory: Path) -> list[int]:
    """Pids of processes whose working directory is `directory` (the embedded Redis runs there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == directory.resolve():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _demo_pickup_walkthrough(base: str) -> None:
    """What the README walks through: a shopper orders from the demo store and pays
    through the sandbox; the demo clerk hands the order over."""
    with httpx.Client(base_url=base, timeout=30) as c:
        user = c.post("/_sandbox/wechat/users", json={}).json()
        code = c.post(f"/_sandbox/wechat/users/{user['openid']}/login-code").json()["code"]
        token = c.post("/api/v1/auth/login", json={"code": code}).json()["token"]
        me = {"authorization": f"Bearer {token}"}
        nearby = c.get(
            "/api/v1/stores/nearby",
            params={"lat": 30.5928, "lng": 114.3055, "radius_m": 5000, "limit": 20},
        ).json()
        assert nearby["items"], nearby
        demo = next(
            s
            for s in c.get("/api/v1/stores", params={"q": "WH0001"}).json()["items"]
            if s["code"] == "WH0001"
        )
        menu = c.get(f"/api/v1/stores/{demo['id']}/menu").json()["items"]
        item = next(i for i in menu if i["stock"] > 0)
        r = c.post(
            "/api/v1/orders",
            headers=me,
            json={"store_id": demo["id"], "items": [{"sku_id": item["sku_id"], "quantity": 1}]},
        )
        assert r.status_code == 201, r.text
        order_no = r.json()["order_no"]
        assert r.json()["payable_fen"] == item["price_fen"]
        assert c.post(f"/api/v1/orders/{order_no}/pay", headers=me, json={}).status_code == 200
        paid = c.post(f"/_sandbox/wechat/pay/{order_no}/complete?wait=1").json()
        assert paid["notify_status"] == 204, paid
        order = c.get(f"/api/v1/orders/{order_no}", headers=me).json()
        assert order["status"] == "paid"
        clerk = c.post(
            "/api/v1/staff/auth/login", json={"username": "clerk", "password": "haodian-clerk"}
        ).json()["token"]
        r = c.post(
            f"/api/v1/staff/orders/{order_no}/complete",
            headers={"authorization": f"Bearer {clerk}"},
            json={"pickup_code": order["pickup_code"]},
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "completed"
        _demo_flash_sale_walkthrough(c, me, item["sku_id"])
        _demo_coupon_walkthrough(c, me)


def _demo_coupon_walkthrough(c: httpx.Client, me: dict[str, str]) -> None:
    """Coupons on SQLite and the embedded Redis: a claim's grouped insert (a VALUES list
    there), its replay, and a campaign issuance run by the embedded worker."""
    centre = c.get("/api/v1/coupon-center", headers=me).json()["items"]
    offer = next(i for i in centre if i["claimable"])
    path = f"/api/v1/coupon-center/{offer['template_id']}/claim"
    key = {**me, "Idempotency-Key": "demo-claim-1"}
    first = c.post(path, headers=key)
    assert first.status_code == 201, first.text
    again = c.post(path, headers=key)
    assert again.status_code == 200 and again.json()["coupon"]["id"] == first.json()["coupon"]["id"]
    mine = c.get("/api/v1/me/coupons", headers=me).json()["items"]
    assert first.json()["coupon"]["id"] in [m["id"] for m in mine]

    admin = c.post(
        "/api/v1/admin/auth/login", json={"username": "admin", "password": "haodian-demo"}
    ).json()["token"]
    op = {"authorization": f"Bearer {admin}"}
    t = c.post(
        "/api/v1/admin/coupon-templates",
        headers=op,
        json={"name": "demo campaign", "kind": "amount_off", "amount_off_fen": 200,
              "total": 10, "valid_days": 7, "in_center": False},
    ).json()  # fmt: skip
    member_id = c.get("/api/v1/me", headers=me).json()["id"]
    r = c.post(
        "/api/v1/admin/coupon-issuances",
        headers=op,
        json={"template_id": t["id"], "member_ids": [member_id, 10**9]},
    )
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 30
    while (got := c.get(f"/api/v1/admin/coupon-issuances/{r.json()['id']}", headers=op).json())[
        "status"
    ] != "done":
        assert time.monotonic() < deadline, got
        time.sleep(0.2)
    assert (got["issued"], got["skipped"]) == (1, 1)


def _demo_flash_sale_walkthrough(c: httpx.Client, me: dict[str, str], sku_id: int) -> None:
    """The README's flash sale on the demo's SQLite and embedded Redis: grab, replay,
    limit, and the order materialised by the embedded worker."""
    admin = c.post(
        "/api/v1/admin/auth/login", json={"username": "admin", "password": "haodian-demo"}
    ).json()["token"]
    now = datetime.now(UTC)
    r = c.post(
        "/api/v1/admin/flash-sales",
        headers={"authorization": f"Bearer {admin}"},
        json={
            "sku_id": sku_id,
            "price_fen": 990,
            "units": 3,
            "per_member_limit": 1,
            "starts_at": now.isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat(),
        },
    )
    assert r.status_code == 201, r.text
    sale = r.json()["id"]
    key = {"idempotency-key": uuid.uuid4().hex}
    first = c.post(f"/api/v1/flash-sales/{sale}/orders", headers=me | key, json={"quantity": 1})
    assert first.status_code == 202, first.text
    again = c.post(f"/api/v1/flash-sales/{sale}/orders", headers=me | key, json={"quantity": 1})
    assert again.status_code == 202
    assert again.json()["order_no"] == first.json()["order_no"]
    assert again.json()["replayed"] is True
    other = {"idempotency-key": uuid.uuid4().hex}
    limit = c.post(f"/api/v1/flash-sales/{sale}/orders", headers=me | other, json={})
    assert limit.status_code == 409
    assert error_code(limit) == "LIMIT_REACHED"
    shown = c.get(f"/api/v1/flash-sales/{sale}").json()
    assert (shown["remaining"], shown["status"]) == (2, "live")
    order_no = first.json()["order_no"]
    for _ in range(100):
        order = c.get(f"/api/v1/orders/{order_no}", headers=me)
        if order.status_code == 200:
            break
        time.sleep(0.1)
    assert order.status_code == 200, order.text
    assert order.json()["status"] == "pending_payment"


def _demo_user(c: httpx.Client) -> dict[str, str]:
    """A new WeChat user signed in to the mini-program (the README's first lines)."""
    openid = c.post("/_sandbox/wechat/users", json={}).json()["openid"]
    code = c.post(f"/_sandbox/wechat/users/{openid}/login-code").json()["code"]
    r = c.post("/api/v1/auth/login", json={"code": code})
    assert r.status_code == 200, r.text
    return {"authorization": f"Bearer {r.json()['token']}"}


def _demo_pay(c: httpx.Client, who: dict[str, str], order_no: str) -> None:
    r = c.post(f"/api/v1/orders/{order_no}/pay", headers=who, json={})
    assert r.status_code == 200, r.text
    paid = c.post(f"/_sandbox/wechat/pay/{order_no}/complete?wait=1").json()
    assert paid["notify_status"] == 204, paid


def _demo_group_buy_walkthrough(base: str) -> dict[str, Any]:
    """The README's group-buy on the demo's SQLite, embedded Redis and embedded worker: the
    seeded activity; a leader opens a group and pays, shares it, two friends join through the
    scene and pay; vouchers, a write-off by the demo clerk at WH0001, the operator's stats."""
    with httpx.Client(base_url=base, timeout=30) as c:
        live = c.get("/api/v1/group-buys").json()["items"]
        assert len(live) == 1, live
        activity = live[0]
        assert activity["status"] == "live" and activity["group_size"] == 3
        assert activity["group_price_fen"] < activity["price_fen"]
        wh0001 = c.get("/api/v1/stores", params={"q": "WH0001"}).json()["items"][0]
        assert activity["store_ids"] == [wh0001["id"]]
        leader = _demo_user(c)
        r = c.post(
            f"/api/v1/group-buys/{activity['id']}/groups",
            headers=leader | {"idempotency-key": uuid.uuid4().hex},
        )
        assert r.status_code == 201, r.text
        group_no = r.json()["group_no"]
        _demo_pay(c, leader, r.json()["order_no"])
        for _ in range(100):
            view = c.get(f"/api/v1/groups/{group_no}").json()
            if view["status"] == "open":
                break
            time.sleep(0.1)
        assert view["status"] == "open" and view["paid"] == 1, view
        r = c.post("/api/v1/shares", headers=leader, json={"kind": "group", "target": group_no})
        assert r.status_code == 201, r.text
        scene = r.json()["scene"]
        members = [leader]
        for _ in range(2):
            friend = _demo_user(c)
            members.append(friend)
            landing = c.get(f"/api/v1/shares/{scene}", headers=friend).json()
            assert (landing["kind"], landing["target"]) == ("group", group_no), landing
            r = c.post(
                f"/api/v1/groups/{group_no}/join",
                headers=friend | {"idempotency-key": uuid.uuid4().hex},
                json={"scene": scene},
            )
            assert r.status_code == 201, r.text
            _demo_pay(c, friend, r.json()["order_no"])
        view = c.get(f"/api/v1/groups/{group_no}").json()
        assert (view["status"], view["paid"], view["seats_left"]) == ("succeeded", 3, 0), view
        template = c.get(f"/api/v1/group-buys/{activity['id']}").json()["voucher_template_id"]
        codes = []
        for who in members:
            mine = c.get("/api/v1/me/coupons", params={"status": "unused"}, headers=who).json()
            ids = [v["id"] for v in mine["items"] if v["template_id"] == template]
            assert len(ids) == 1, mine
            r = c.get(f"/api/v1/me/coupons/{ids[0]}/code", headers=who)
            assert r.status_code == 200, r.text
            codes.append(r.json()["code"])
        clerk = c.post(
            "/api/v1/staff/auth/login", json={"username": "clerk", "password": "haodian-clerk"}
        ).json()["token"]
        r = c.post(
            "/api/v1/staff/write-offs",
            headers={"authorization": f"Bearer {clerk}"},
            json={"code": codes[-1]},
        )
        assert r.status_code == 201, r.text
        admin = c.post(
            "/api/v1/admin/auth/login", json={"username": "admin", "password": "haodian-demo"}
        ).json()["token"]
        stats = c.get(
            f"/api/v1/admin/group-buys/{activity['id']}/stats",
            headers={"authorization": f"Bearer {admin}"},
        ).json()
        assert (
            stats["groups_succeeded"], stats["members"], stats["vouchers_issued"],
            stats["vouchers_written_off"], stats["joins_via_share"], stats["refunds"],
        ) == (1, 3, 3, 1, 2, 0), stats  # fmt: skip
        return activity


def test_every_module_stays_under_600_lines() -> None:
    """Modules a newcomer finds by name: past 600 lines one holds several concerns."""
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "server").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 600
    }
    assert long == {}, f"split these by concern: {long}"


def test_readme_documents_every_setting() -> None:
    """The README's configuration table names every HAODIAN_* variable Settings reads."""
    readme = (ROOT / "README.md").read_text()
    missing = [
        f"HAODIAN_{name.upper()}"
        for name in Settings.model_fields
        if f"`HAODIAN_{name.upper()}`" not in readme
    ]
    assert missing == [], f"add these to the README's configuration table: {missing}"


def test_an_installed_package_migrates_a_fresh_database(tmp_path: Path) -> None:
    """`pip install .` (not editable) carries the top-level migrations/ as the package
    server.migrations: `haodian migrate` from that install, away from the checkout, builds
    the whole schema of an empty database."""
    from tests.conftest import own_database

    target = tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(ROOT)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    shipped = sorted(p.name for p in (target / "server" / "migrations").iterdir() if p.is_dir())
    assert [s for s in shipped if s != "__pycache__"] == sorted(db.DOMAIN_APPS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAODIAN_")}
    env["PYTHONPATH"] = str(target)  # ahead of the checkout's editable install
    with own_database() as pg:
        env |= {"HAODIAN_DATABASE_URL": pg, "HAODIAN_SECRET_KEY": "x" * 32}
        where = subprocess.run(
            [sys.executable, "-c", "import server.migrations as m; print(m.__file__)"],
            env=env, capture_output=True, text=True, cwd=tmp_path,
        )  # fmt: skip
        assert where.stdout.strip() == str(target / "server" / "migrations" / "__init__.py")
        done = subprocess.run(
            [sys.executable, "-m", "server", "migrate"],
            env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "applied orders.0003_order_event_by_month" in done.stdout + done.stderr
        again = subprocess.run(
            [sys.executable, "-m", "server", "migrate"],
            env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        assert "applied" not in again.stdout + again.stderr
