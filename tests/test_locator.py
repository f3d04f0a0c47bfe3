"""The store locator: nearby stores from the Redis GEO index, in step with every change."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from server.infra.clock import SHANGHAI
from server.settings import Settings
from server.stores import index
from server.stores.geo import haversine_m
from server.stores.models import Store
from tests.conftest import ROOT, ServerProcess, error_code
from tests.test_foundation import _cli

# 2026-11-23 is a Monday; 2026-11-24 01:00 is Tuesday night, after Monday's evening.
TUE_0100 = datetime(2026, 11, 24, 1, 0, tzinfo=SHANGHAI)


@pytest.fixture(scope="module")
async def ops(api: httpx.AsyncClient, env: dict[str, str]) -> AsyncIterator[dict[str, str]]:
    out = _cli(env, "admin", "create-operator", "--username", "loc-ops", "--password", "loc-pass-1")
    assert out.returncode == 0, out.stderr
    r = await api.post(
        "/api/v1/admin/auth/login", json={"username": "loc-ops", "password": "loc-pass-1"}
    )
    assert r.status_code == 200, r.text
    yield {"authorization": f"Bearer {r.json()['token']}"}


def _area() -> tuple[float, float]:
    """A centre no other test uses (north-west China, away from the seed's cities)."""
    return 38 + random.random() * 4, 95 + random.random() * 10


def _offset(lat: float, lng: float, north_m: float, east_m: float) -> tuple[float, float]:
    dlat = north_m / 111_320
    dlng = east_m / (111_320 * math.cos(math.radians(lat)))
    return lat + dlat, lng + dlng


async def _create(
    api: httpx.AsyncClient, ops: dict[str, str], lat: float, lng: float, **extra: Any
) -> dict[str, Any]:
    body = {
        "code": "T" + uuid.uuid4().hex[:12],
        "name": extra.pop("name", "test store"),
        "city": extra.pop("city", "测试市"),
        "lat": lat,
        "lng": lng,
        "hours": extra.pop("hours", "00:00-24:00"),
        **extra,
    }
    r = await api.post("/api/v1/admin/stores", json=body, headers=ops)
    assert r.status_code == 201, r.text
    return r.json()


async def _nearby(api: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    if isinstance(params.get("at"), datetime):
        params["at"] = params["at"].isoformat()
    if "open_now" in params:
        params["open_now"] = str(params["open_now"]).lower()
    r = await api.get("/api/v1/stores/nearby", params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_a_missing_index_is_rebuilt_at_start(
    api: httpx.AsyncClient,
    ops: dict[str, str],
    redis: aioredis.Redis,
    env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A server starting on a Redis without the index builds it before serving."""
    s = await _create(api, ops, *_area())
    await index.drop(redis)
    proc = ServerProcess(
        ["serve", "--no-seed"], env, tmp_path_factory.mktemp("logs") / "start.log", ROOT
    )
    try:
        proc.wait_ready()
        assert await redis.exists(index.BUILT_KEY)  # no nearby query was made
        assert await redis.geopos(index.GEO_KEY, str(s["id"])) != [None]
    finally:
        proc.stop()


async def test_nearby_is_sorted_by_true_distance_within_radius_and_limit(
    api: httpx.AsyncClient, ops: dict[str, str]
) -> None:
    clat, clng = _area()
    stores = {}
    for _ in range(30):
        lat, lng = _offset(clat, clng, random.uniform(-7000, 7000), random.uniform(-7000, 7000))
        s = await _create(api, ops, lat, lng)
        stores[s["id"]] = (lat, lng)
    truth = sorted((haversine_m(clat, clng, *p), sid) for sid, p in stores.items())
    inside = [sid for d, sid in truth if d <= 5000]
    assert 3 <= len(inside) < 30

    items = await _nearby(api, lat=clat, lng=clng, radius_m=5000, limit=100)
    got = [i["id"] for i in items]
    # Everything within 5 km and nothing beyond (ignoring a metre of GEO rounding at the edge).
    edge = {sid for d, sid in truth if abs(d - 5000) < 1}
    assert set(got) - edge == set(inside) - edge
    # Nearest first by a haversine computed here, and the distance it reports is that one.
    dists = [haversine_m(clat, clng, *stores[sid]) for sid in got]
    assert all(b >= a - 1.0 for a, b in itertools.pairwise(dists)), dists
    for item, d in zip(items, dists, strict=True):
        assert abs(item["distance_m"] - d) < 1.0
        assert {"id", "name", "lat", "lng", "distance_m", "open_now", "next_open_at"} <= set(item)

    top = await _nearby(api, lat=clat, lng=clng, radius_m=5000, limit=3)
    assert [i["id"] for i in top] == got[:3]
    small = await _nearby(api, lat=clat, lng=clng, radius_m=1, limit=20)
    assert small == [] or all(i["distance_m"] <= 1.0 for i in small)


async def test_service_filter_overfetches_to_honour_the_limit(
    api: httpx.AsyncClient, ops: dict[str, str]
) -> None:
    clat, clng = _area()
    # 60 pickup-only stores close by (more than one over-fetch round), 6 takeout stores further.
    rows = ["code,name,city,lat,lng,services,hours"]
    tag = uuid.uuid4().hex[:6]
    for n in range(60):
        lat, lng = _offset(clat, clng, random.uniform(-400, 400), random.uniform(-400, 400))
        rows.append(f"P{tag}{n},near {n},测试市,{lat:.7f},{lng:.7f},pickup,00:00-24:00")
    takeout = {}
    for n in range(6):
        lat, lng = _offset(clat, clng, 1000 + n * 300, 0)
        rows.append(f"K{tag}{n},takeout {n},测试市,{lat:.7f},{lng:.7f},takeout|pickup,08:00-22:00")
        takeout[f"K{tag}{n}"] = haversine_m(clat, clng, lat, lng)
    r = await api.post(
        "/api/v1/admin/stores/import",
        content="\n".join(rows).encode(),
        headers={**ops, "content-type": "text/csv"},
    )
    assert r.status_code == 200 and r.json()["created"] == 66, r.text

    items = await _nearby(api, lat=clat, lng=clng, radius_m=5000, limit=5, service="takeout")
    assert [i["code"] for i in items] == sorted(takeout, key=takeout.get)[:5]
    assert all("takeout" in i["services"] for i in items)
    plain = await _nearby(api, lat=clat, lng=clng, radius_m=5000, limit=5)
    assert all(i["code"].startswith("P") for i in plain)


async def test_open_now_filter_and_an_overnight_store_at_one_in_the_morning(
    api: httpx.AsyncClient, ops: dict[str, str]
) -> None:
    clat, clng = _area()
    late = await _create(api, ops, *_offset(clat, clng, 100, 0), hours="mon 10:00-02:00")
    day = await _create(api, ops, *_offset(clat, clng, 200, 0), hours="08:00-22:00")
    always = await _create(api, ops, *_offset(clat, clng, 300, 0), hours="00:00-24:00")
    shut = await _create(api, ops, *_offset(clat, clng, 400, 0), hours="00:00-24:00")
    r = await api.post(
        f"/api/v1/admin/stores/{shut['id']}/close",
        json={
            "from": (TUE_0100 - timedelta(days=1)).isoformat(),
            "until": (TUE_0100 + timedelta(hours=5)).isoformat(),
            "reason": "renovation",
        },
        headers=ops,
    )
    assert r.status_code == 200, r.text

    items = await _nearby(api, lat=clat, lng=clng, radius_m=1000, at=TUE_0100)
    by_id = {i["id"]: i for i in items}
    assert by_id[late["id"]]["open_now"] is True  # Monday's 10:00-02:00 carries over
    assert by_id[late["id"]]["closes_at"].startswith("2026-11-24T02:00:00+08:00")
    assert by_id[day["id"]]["open_now"] is False
    assert by_id[day["id"]]["next_open_at"].startswith("2026-11-24T08:00:00+08:00")
    assert by_id[always["id"]]["open_now"] is True
    assert by_id[shut["id"]]["open_now"] is False  # temporarily closed, still on the map
    assert by_id[shut["id"]]["next_open_at"].startswith("2026-11-24T06:00:00+08:00")

    open_ids = [
        i["id"]
        for i in await _nearby(api, lat=clat, lng=clng, radius_m=1000, at=TUE_0100, open_now=True)
    ]
    assert open_ids == [late["id"], always["id"]]
    # At 03:00 the overnight store has closed too; Tuesday itself is a closed day for it.
    later = await _nearby(
        api, lat=clat, lng=clng, radius_m=1000, at=TUE_0100 + timedelta(hours=2), open_now=True
    )
    assert [i["id"] for i in later] == [always["id"]]
    # The default instant is now: the 24-hour store is open whenever this test runs.
    now_open = await _nearby(api, lat=clat, lng=clng, radius_m=1000, open_now=True)
    assert always["id"] in [i["id"] for i in now_open]


async def test_closing_and_moving_show_in_the_next_query(
    api: httpx.AsyncClient, ops: dict[str, str]
) -> None:
    clat, clng = _area()
    s = await _create(api, ops, *_offset(clat, clng, 500, 500))
    ids = lambda items: [i["id"] for i in items]  # noqa: E731
    assert s["id"] in ids(await _nearby(api, lat=clat, lng=clng, radius_m=2000))

    r = await api.post(f"/api/v1/admin/stores/{s['id']}/close", json={}, headers=ops)
    assert r.status_code == 200 and r.json()["closed"] is True
    assert s["id"] not in ids(await _nearby(api, lat=clat, lng=clng, radius_m=2000))

    r = await api.post(f"/api/v1/admin/stores/{s['id']}/reopen", headers=ops)
    assert r.status_code == 200 and r.json()["closed"] is False
    assert s["id"] in ids(await _nearby(api, lat=clat, lng=clng, radius_m=2000))

    soon = datetime.now(SHANGHAI) + timedelta(days=30)
    r = await api.post(
        f"/api/v1/admin/stores/{s['id']}/close", json={"from": soon.isoformat()}, headers=ops
    )
    assert r.status_code == 200 and r.json()["closed"] is False  # closes for good later
    later = await _nearby(api, lat=clat, lng=clng, radius_m=2000, at=soon + timedelta(hours=1))
    assert [i["open_now"] for i in later if i["id"] == s["id"]] == [False]

    r = await api.post(f"/api/v1/admin/stores/{s['id']}/reopen", headers=ops)
    assert r.status_code == 200 and r.json()["closed"] is False
    assert s["id"] in ids(await _nearby(api, lat=clat, lng=clng, radius_m=2000))

    nlat, nlng = _offset(clat, clng, 20_000, 0)
    r = await api.patch(
        f"/api/v1/admin/stores/{s['id']}", json={"lat": nlat, "lng": nlng}, headers=ops
    )
    assert r.status_code == 200, r.text
    assert s["id"] not in ids(await _nearby(api, lat=clat, lng=clng, radius_m=2000))
    moved = await _nearby(api, lat=nlat, lng=nlng, radius_m=100)
    assert moved[0]["id"] == s["id"] and moved[0]["distance_m"] < 1.0

    r = await api.patch(
        f"/api/v1/admin/stores/{s['id']}", json={"services": ["takeout"]}, headers=ops
    )
    assert r.status_code == 200
    assert s["id"] in ids(await _nearby(api, lat=nlat, lng=nlng, radius_m=100, service="takeout"))
    assert s["id"] not in ids(
        await _nearby(api, lat=nlat, lng=nlng, radius_m=100, service="write_off")
    )


async def test_racing_moves_leave_the_index_at_the_committed_position(
    api: httpx.AsyncClient, ops: dict[str, str], redis: aioredis.Redis, database: Settings
) -> None:
    clat, clng = _area()
    s = await _create(api, ops, clat, clng)
    moves = [_offset(clat, clng, 100 * k, 0) for k in range(1, 13)]
    rs = await asyncio.gather(
        *(
            api.patch(f"/api/v1/admin/stores/{s['id']}", json={"lat": la, "lng": ln}, headers=ops)
            for la, ln in moves
        )
    )
    assert all(r.status_code == 200 for r in rs)
    row = await Store.get(id=s["id"])
    assert row.version == 13
    ((lng, lat),) = await redis.geopos(index.GEO_KEY, str(s["id"]))
    assert haversine_m(lat, lng, row.lat, row.lng) < 1.0  # the last commit, not a stale one
    assert int(await redis.hget(index.VERSIONS_KEY, str(s["id"]))) == 13


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"lat": "91", "lng": "114"}, "lat"),
        ({"lat": "30", "lng": "-181"}, "lng"),
        ({"lat": "abc", "lng": "114"}, "lat"),
        ({"lat": "nan", "lng": "114"}, "lat"),
        ({"lng": "114"}, "lat"),
        ({"lat": "30", "lng": "114", "limit": "0"}, "limit"),
        ({"lat": "30", "lng": "114", "limit": "101"}, "limit"),
        ({"lat": "30", "lng": "114", "radius_m": "60000"}, "radius_m"),
        ({"lat": "30", "lng": "114", "radius_m": "-5"}, "radius_m"),
        ({"lat": "30", "lng": "114", "service": "massage"}, "service"),
        ({"lat": "30", "lng": "114", "at": "yesterday"}, "at"),
    ],
)
async def test_bad_coordinates_and_limits_are_a_clear_4xx(
    api: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    r = await api.get("/api/v1/stores/nearby", params=params)
    assert r.status_code == 422, r.text
    assert error_code(r) == "VALIDATION_ERROR"
    assert f"query: {field}" in r.json()["error"]["message"]


async def test_store_detail_and_cities(api: httpx.AsyncClient, ops: dict[str, str]) -> None:
    clat, clng = _area()
    city = "城" + uuid.uuid4().hex[:6]
    a = await _create(api, ops, clat, clng, city=city, hours="mon-fri 09:00-18:00")
    await _create(api, ops, *_offset(clat, clng, 100, 0), city=city)
    r = await api.get(f"/api/v1/stores/{a['id']}")
    assert r.status_code == 200
    assert r.json()["hours"]["mon"] == ["09:00-18:00"] and r.json()["hours"]["sat"] == []
    r = await api.get("/api/v1/stores/999999999")
    assert r.status_code == 404 and error_code(r) == "STORE_NOT_FOUND"
    cities = {c["city"]: c["stores"] for c in (await api.get("/api/v1/cities")).json()["items"]}
    assert cities[city] == 2


async def test_a_lost_index_is_rebuilt(
    api: httpx.AsyncClient, ops: dict[str, str], redis: aioredis.Redis, env: dict[str, str]
) -> None:
    clat, clng = _area()
    s = await _create(api, ops, clat, clng)
    await index.drop(redis)  # what a Redis restart without persistence looks like
    items = await _nearby(api, lat=clat, lng=clng, radius_m=100)
    assert [i["id"] for i in items] == [s["id"]]  # rebuilt before answering

    await index.drop(redis)
    out = _cli(env, "reindex", "stores")
    assert out.returncode == 0, out.stderr
    assert "indexed" in out.stdout
    assert await redis.exists(index.BUILT_KEY)
    assert await redis.geopos(index.GEO_KEY, str(s["id"])) != [None]


async def test_bench_locator_prints_the_geo_vs_sql_ratio(
    env: dict[str, str], redis: aioredis.Redis, pg_url: str
) -> None:
    """A small run of `haodian bench locator` on the test PostgreSQL and Redis: it measures
    both sides, agrees with SQL on the answers, and cleans up after itself."""
    import json

    out = _cli(
        env, "bench", "locator", "--sizes", "300,3000", "--seconds", "0.3", "--concurrency", "2"
    )
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["database"] == "postgresql"
    for n in (300, 3000):
        assert summary[f"geo_vs_sql_scan_qps_ratio_{n}"] > 0
        assert summary[f"geo_sql_same_top20_{n}"] >= 0.9
        assert summary[f"stores_{n}"]["redis_geo"]["p99_ms"] > 0
    assert "sql_scan" in out.stdout and "redis_geo" in out.stdout
    assert not await redis.keys("bench:{locator}:*")
    conn = await asyncpg.connect(pg_url)
    try:
        left = await conn.fetch("SELECT tablename FROM pg_tables WHERE tablename LIKE 'bench_%'")
    finally:
        await conn.close()
    assert left == []
