"""Stores: the operator API, CSV import, opening hours and delivery fees."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest

from server.infra.clock import SHANGHAI
from server.settings import Settings
from server.stores import service
from server.stores.hours import FeeRules, normalize_hours, open_state, week_minutes
from server.stores.models import Store
from tests.conftest import error_code
from tests.test_foundation import _cli

MON = datetime(2026, 11, 23, tzinfo=SHANGHAI)  # a Monday


async def _login(api: httpx.AsyncClient, env: dict[str, str], user: str, *roles: str) -> dict:
    args = ["admin", "create-operator", "--username", user, "--password", "stores-pass-1"]
    for r in roles:
        args += ["--role", r]
    out = _cli(env, *args)
    assert out.returncode == 0, out.stderr
    r = await api.post(
        "/api/v1/admin/auth/login", json={"username": user, "password": "stores-pass-1"}
    )
    assert r.status_code == 200, r.text
    return {"authorization": f"Bearer {r.json()['token']}"}


@pytest.fixture(scope="module")
async def ops(api: httpx.AsyncClient, env: dict[str, str]) -> AsyncIterator[dict[str, str]]:
    yield await _login(api, env, "stores-ops", "store_ops")


# -- opening hours (pure) --------------------------------------------------------------------


def test_hours_spec_forms() -> None:
    h = normalize_hours("mon-fri 08:00-22:00; sat,sun 10:00-02:00")
    assert h["fri"] == ["08:00-22:00"] and h["sat"] == ["10:00-02:00"]
    assert normalize_hours("08:00-22:00") == {d: ["08:00-22:00"] for d in h}
    h = normalize_hours("daily 09:00-21:00; mon closed")
    assert h["mon"] == [] and h["tue"] == ["09:00-21:00"]
    assert normalize_hours("fri-mon 10:00-12:00,14:00-18:00")["sun"] == [
        "10:00-12:00",
        "14:00-18:00",
    ]
    assert normalize_hours({"周一": "00:00-24:00"})["mon"] == ["00:00-24:00"]
    for bad, word in [
        ("8-22", "time span"),
        ("mon 25:00-26:00", "outside"),
        ("funday 08:00-22:00", "not a day"),
        ("mon 08:00-14:00,12:00-20:00", "overlap"),
        ("", "required"),
    ]:
        with pytest.raises(ValueError, match=word):
            normalize_hours(bad)


def test_overnight_hours_carry_into_the_next_day() -> None:
    week = week_minutes(normalize_hours("mon 10:00-02:00"))  # Tuesday itself is closed
    st = open_state(week, MON + timedelta(days=1, hours=1))  # Tuesday 01:00
    assert st.open_now and st.closes_at == MON + timedelta(days=1, hours=2)
    st = open_state(week, MON + timedelta(days=1, hours=2))  # Tuesday 02:00: just closed
    assert not st.open_now and st.next_open_at == MON + timedelta(days=7, hours=10)
    st = open_state(week, MON + timedelta(hours=9, minutes=59))
    assert not st.open_now and st.next_open_at == MON + timedelta(hours=10)
    # Asia/Shanghai whatever zone the caller uses: Monday 18:00 UTC is Tuesday 02:00 there.
    utc = (MON + timedelta(hours=17, minutes=59)).astimezone(SHANGHAI).replace(tzinfo=None)
    assert open_state(week, utc.replace(tzinfo=SHANGHAI)).open_now


def test_temporary_closure_and_24h_stores() -> None:
    week = week_minutes(normalize_hours("00:00-24:00"))
    st = open_state(week, MON + timedelta(hours=3))
    assert st.open_now and st.closes_at is None  # never closes this week
    shut = open_state(
        week, MON + timedelta(hours=3), MON, MON + timedelta(days=2, hours=9, minutes=30)
    )
    assert not shut.open_now and shut.next_open_at == MON + timedelta(days=2, hours=9, minutes=30)
    forever = open_state(week, MON + timedelta(hours=3), MON, None)
    assert not forever.open_now and forever.next_open_at is None
    upcoming = open_state(week, MON + timedelta(hours=3), MON + timedelta(hours=5), None)
    assert upcoming.open_now and upcoming.closes_at == MON + timedelta(hours=5)
    assert not open_state(week_minutes(normalize_hours("mon closed")), MON).open_now


def test_delivery_fee_rules() -> None:
    rules = FeeRules(base_fen=400, base_km=3, per_km_fen=100, free_over_fen=4900)
    assert rules.fee_fen(2500, 1000) == 400
    assert rules.fee_fen(3000, 1000) == 400
    assert rules.fee_fen(3001, 1000) == 500  # each started kilometre beyond the base
    assert rules.fee_fen(4200, 1000) == 600
    assert rules.fee_fen(4200, 4900) == 0


# -- operator API ----------------------------------------------------------------------------


def _body(**over: object) -> dict:
    return {
        "code": "S" + uuid.uuid4().hex[:10],
        "name": "好店 测试店",
        "city": "武汉",
        "district": "江汉区",
        "lat": 30.58,
        "lng": 114.28,
        "hours": {"mon": ["10:00-02:00"], "sat": "09:00-21:00"},
        "services": ["takeout", "pickup"],
        "delivery_radius_m": 2500,
        "delivery_fee_rules": {"base_fen": 500, "free_over_fen": 3900, "min_order_fen": 2000},
    } | over


async def test_operator_creates_updates_and_lists_stores(
    api: httpx.AsyncClient, ops: dict[str, str]
) -> None:
    city = "筛选" + uuid.uuid4().hex[:4]
    body = _body(city=city)
    r = await api.post("/api/v1/admin/stores", json=body, headers=ops)
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["services"] == ["takeout", "pickup"]
    assert s["hours"]["mon"] == ["10:00-02:00"] and s["hours"]["tue"] == []
    assert s["delivery_fee_rules"]["base_fen"] == 500

    r = await api.post("/api/v1/admin/stores", json=body, headers=ops)
    assert r.status_code == 409 and error_code(r) == "STORE_CODE_TAKEN"
    r = await api.post("/api/v1/admin/stores", json=_body(lat=123), headers=ops)
    assert r.status_code == 422 and "lat" in r.json()["error"]["message"]
    r = await api.post("/api/v1/admin/stores", json=_body(hours="mon 8-22"), headers=ops)
    assert r.status_code == 422 and "hours" in r.json()["error"]["message"]

    other = await api.post(
        "/api/v1/admin/stores",
        json=_body(city=city, name="另一家", services=["write_off"]),
        headers=ops,
    )
    assert other.status_code == 201
    r = await api.patch(
        f"/api/v1/admin/stores/{s['id']}",
        json={"name": "好店 改名店", "phone": "027-1"},
        headers=ops,
    )
    assert r.status_code == 200 and r.json()["name"] == "好店 改名店"
    assert r.json()["services"] == ["takeout", "pickup"]  # untouched fields stay
    r = await api.patch(f"/api/v1/admin/stores/{s['id']}", json={"lat": None}, headers=ops)
    assert r.status_code == 422
    r = await api.patch("/api/v1/admin/stores/999999999", json={"name": "x"}, headers=ops)
    assert r.status_code == 404

    page = (await api.get("/api/v1/admin/stores", params={"city": city}, headers=ops)).json()
    assert page["total"] == 2
    page = (
        await api.get(
            "/api/v1/admin/stores", params={"city": city, "service": "takeout"}, headers=ops
        )
    ).json()
    assert [i["id"] for i in page["items"]] == [s["id"]]
    page = (
        await api.get("/api/v1/admin/stores", params={"city": city, "q": "改名"}, headers=ops)
    ).json()
    assert [i["id"] for i in page["items"]] == [s["id"]]
    p1 = (
        await api.get("/api/v1/admin/stores", params={"city": city, "page_size": 1}, headers=ops)
    ).json()
    p2 = (
        await api.get(
            "/api/v1/admin/stores",
            params={"city": city, "page_size": 1, "page": 2},
            headers=ops,
        )
    ).json()
    assert p1["total"] == p2["total"] == 2
    assert {p1["items"][0]["id"], p2["items"][0]["id"]} == {s["id"], other.json()["id"]}

    # Closed for good: off the public list, still visible to operators with status=all.
    r = await api.post(
        f"/api/v1/admin/stores/{other.json()['id']}/close", json={"reason": "lease"}, headers=ops
    )
    assert r.status_code == 200
    public = (await api.get("/api/v1/stores", params={"city": city})).json()
    assert [i["id"] for i in public["items"]] == [s["id"]]
    assert all(i["closure_reason"] == "" for i in public["items"])
    every = (
        await api.get("/api/v1/admin/stores", params={"city": city, "status": "all"}, headers=ops)
    ).json()
    assert every["total"] == 2


async def test_a_temporary_closure_needs_a_sane_window(
    api: httpx.AsyncClient, ops: dict[str, str]
) -> None:
    s = (await api.post("/api/v1/admin/stores", json=_body(), headers=ops)).json()
    now = datetime.now(SHANGHAI)
    r = await api.post(
        f"/api/v1/admin/stores/{s['id']}/close",
        json={"from": now.isoformat(), "until": (now - timedelta(hours=1)).isoformat()},
        headers=ops,
    )
    assert r.status_code == 422
    r = await api.post(
        f"/api/v1/admin/stores/{s['id']}/close",
        json={"until": (now + timedelta(days=3)).isoformat(), "reason": "装修"},
        headers=ops,
    )
    assert r.status_code == 200
    body = r.json()
    assert body["closed"] is False and body["open_now"] is False
    assert body["closure_reason"] == "装修"


async def test_store_routes_need_an_operator_with_a_store_role(
    api: httpx.AsyncClient, env: dict[str, str]
) -> None:
    r = await api.post("/api/v1/admin/stores", json=_body())
    assert r.status_code == 401
    marketing = await _login(api, env, "stores-mkt", "marketing")
    r = await api.post("/api/v1/admin/stores", json=_body(), headers=marketing)
    assert r.status_code == 403 and error_code(r) == "ROLE_REQUIRED"
    r = await api.get("/api/v1/admin/stores", headers=marketing)
    assert r.status_code == 200  # reading is fine
    admin = await _login(api, env, "stores-admin")  # default role: admin, may do everything
    r = await api.post("/api/v1/admin/stores", json=_body(), headers=admin)
    assert r.status_code == 201


# -- CSV import ------------------------------------------------------------------------------


CSV_HEADER = "code,name,city,district,lat,lng,hours,services,delivery_radius_m,delivery_base_fen"


async def test_csv_import_keeps_good_rows_and_reports_each_bad_one(
    api: httpx.AsyncClient, ops: dict[str, str], database: Settings
) -> None:
    t = uuid.uuid4().hex[:6].upper()
    lines = [
        CSV_HEADER,  # line 1
        f"C{t}1,好店 一号,武汉,江汉区,30.581,114.287,08:00-22:00,pickup|takeout,3000,400",
        f"C{t}2,好店 二号,武汉,武昌区,91.5,114.3,08:00-22:00,pickup,,",  # bad latitude
        f"C{t}3,好店 三号,武汉,武昌区,30.55,114.31,mon 8-22,pickup,,",  # bad hours
        "",  # a blank line is skipped, not an error
        f'C{t}4,"好店 四号, 带逗号",武汉,洪山区,30.50,114.34,"mon-fri 08:00-22:00; sat,sun '
        f'10:00-02:00",write_off,,',
        f"C{t}1,好店 重复,武汉,江汉区,30.58,114.28,08:00-22:00,pickup,,",  # duplicate code
        f"C{t}6,好店 六号,武汉,江汉区,30.58,,08:00-22:00,pickup,,",  # no longitude
        f"C{t}7,好店 七号,武汉,江汉区,30.58,114.28,08:00-22:00,pickup|teleport,,",  # service
        f"C{t}8,,武汉,江汉区,30.58,114.28,08:00-22:00,pickup,,",  # no name
        f"C{t}9,好店 九号,武汉,江汉区,30.58,114.28,08:00-22:00,pickup,-5,",  # radius
    ]
    files = {"file": ("stores.csv", "\n".join(lines).encode(), "text/csv")}
    r = await api.post("/api/v1/admin/stores/import", files=files, headers=ops)
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["created"] == 2 and rep["updated"] == 0
    assert rep["rows"] == 9 and rep["failed"] == 7
    by_line = {e["line"]: e for e in rep["errors"]}
    assert sorted(by_line) == [3, 4, 7, 8, 9, 10, 11]
    assert len(rep["errors"]) == 7
    assert "lat" in by_line[3]["reason"] and by_line[3]["code"] == f"C{t}2"
    assert "hours" in by_line[4]["reason"]
    assert "line 2" in by_line[7]["reason"]
    assert "lng" in by_line[8]["reason"]
    assert "services" in by_line[9]["reason"]
    assert "name" in by_line[10]["reason"]
    assert "delivery_radius_m" in by_line[11]["reason"]

    good = {s.code: s for s in await Store.filter(code__startswith=f"C{t}")}
    assert set(good) == {f"C{t}1", f"C{t}4"}  # no bad row left anything behind
    assert good[f"C{t}4"].name == "好店 四号, 带逗号"
    assert good[f"C{t}4"].hours["sat"] == ["10:00-02:00"]
    assert good[f"C{t}1"].takeout and good[f"C{t}1"].delivery_fee_rules["base_fen"] == 400
    near = await api.get(
        "/api/v1/stores/nearby", params={"lat": 30.581, "lng": 114.287, "radius_m": 50}
    )
    assert f"C{t}1" in [i["code"] for i in near.json()["items"]]

    # The same file again, as a text/csv body: the good rows update, the bad ones fail again.
    fixed = [*lines[:2], f"C{t}2,好店 二号,武汉,武昌区,30.55,114.3,08:00-22:00,pickup,,"]
    r = await api.post(
        "/api/v1/admin/stores/import",
        content="\n".join(fixed).encode("gb18030"),  # what Excel saves on a Chinese Windows
        headers={**ops, "content-type": "text/csv"},
    )
    rep = r.json()
    assert (rep["created"], rep["updated"], rep["failed"]) == (1, 1, 0), rep
    assert (await Store.get(code=f"C{t}2")).name == "好店 二号"


async def test_csv_import_rejects_a_file_without_the_required_columns(
    api: httpx.AsyncClient, ops: dict[str, str]
) -> None:
    r = await api.post(
        "/api/v1/admin/stores/import",
        content=b"code,name,lat\nX1,x,30\n",
        headers={**ops, "content-type": "text/csv"},
    )
    assert r.status_code == 422 and error_code(r) == "CSV_BAD_HEADER"
    assert "city" in r.json()["error"]["message"] and "lng" in r.json()["error"]["message"]
    r = await api.post(
        "/api/v1/admin/stores/import", content=b"", headers={**ops, "content-type": "text/csv"}
    )
    assert r.status_code == 422 and error_code(r) == "CSV_EMPTY"


# -- for other domains -----------------------------------------------------------------------


async def test_require_store_and_delivery_area(
    api: httpx.AsyncClient, ops: dict[str, str], database: Settings
) -> None:
    from server.stores.areas import fee_rules

    s = (
        await api.post("/api/v1/admin/stores", json=_body(hours="00:00-24:00"), headers=ops)
    ).json()
    store = await service.get_store(s["id"])
    area, distance = service.delivery_area(store, 30.58 + 0.018, 114.28)  # ~2 km north
    assert 1990 < distance < 2010 and fee_rules(area).fee_fen(distance, 2500) == 500
    assert fee_rules(area).fee_fen(distance, 3900) == 0
    with pytest.raises(Exception) as exc:
        service.delivery_area(store, 30.58 + 0.03, 114.28)
    assert getattr(exc.value, "code", "") == "OUT_OF_DELIVERY_AREA"
    with pytest.raises(Exception) as exc:
        await service.require_store(s["id"], "write_off")
    assert getattr(exc.value, "code", "") == "SERVICE_NOT_OFFERED"
    assert (await service.require_store(s["id"], "pickup")).id == s["id"]


async def test_a_redis_failure_leaves_the_store_unchanged(
    api: httpx.AsyncClient, ops: dict[str, str], database: Settings
) -> None:
    """The index is written inside the store's transaction: no index, no change (503)."""
    import redis.asyncio as aioredis

    from server.stores.schemas import StorePatch

    s = (await api.post("/api/v1/admin/stores", json=_body(), headers=ops)).json()
    dead = aioredis.Redis.from_url("redis://127.0.0.1:1/0", decode_responses=True)
    try:
        with pytest.raises(Exception) as exc:
            await service.update_store(dead, s["id"], StorePatch(lat=31.0, name="moved"))
        assert getattr(exc.value, "code", "") == "LOCATOR_UNAVAILABLE"
        assert getattr(exc.value, "status", 0) == 503
    finally:
        await dead.aclose()
    row = await Store.get(id=s["id"])
    assert (row.lat, row.name, row.version) == (30.58, s["name"], 1)
