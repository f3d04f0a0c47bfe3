"""The catalog: operator CRUD, the public menu, and store stock that never goes negative."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from server.catalog import service
from server.catalog.models import StoreSku
from server.infra.errors import Conflict
from server.settings import Settings
from server.stores import service as stores
from server.stores.schemas import StoreCreate
from tests.conftest import error_code
from tests.test_foundation import _cli


async def _login(api: httpx.AsyncClient, env: dict[str, str], user: str, *roles: str) -> dict:
    args = ["admin", "create-operator", "--username", user, "--password", "catalog-pass-1"]
    for r in roles:
        args += ["--role", r]
    out = _cli(env, *args)
    assert out.returncode == 0, out.stderr
    r = await api.post(
        "/api/v1/admin/auth/login", json={"username": user, "password": "catalog-pass-1"}
    )
    assert r.status_code == 200, r.text
    return {"authorization": f"Bearer {r.json()['token']}"}


@pytest.fixture(scope="module")
async def admin(api: httpx.AsyncClient, env: dict[str, str]) -> AsyncIterator[dict[str, str]]:
    yield await _login(api, env, "catalog-admin")


async def _store(redis: aioredis.Redis) -> int:
    s = await stores.create_store(
        redis,
        StoreCreate(
            code="CAT" + uuid.uuid4().hex[:8], name="menu store", city="武汉", lat=30.5, lng=114.3
        ),
    )
    return s.id


async def _product(api: httpx.AsyncClient, h: dict[str, str], **over: Any) -> dict[str, Any]:
    cat = await api.post(
        "/api/v1/admin/categories", json={"name": "类" + uuid.uuid4().hex[:6]}, headers=h
    )
    assert cat.status_code == 201, cat.text
    body = {
        "category_id": cat.json()["id"],
        "name": "蜜汁猪肉脯",
        "images": ["https://img.example/p.jpg"],
        "skus": [
            {"name": "100g", "price_fen": 1990, "attributes": {"净含量": "100g"}},
            {"name": "200g", "price_fen": 3590, "code": "T" + uuid.uuid4().hex[:10]},
        ],
    } | over
    r = await api.post("/api/v1/admin/products", json=body, headers=h)
    assert r.status_code == 201, r.text
    return r.json()


async def test_catalog_crud_and_public_reads(api: httpx.AsyncClient, admin: dict[str, str]) -> None:
    p = await _product(api, admin)
    assert p["min_price_fen"] == 1990 and len(p["skus"]) == 2
    cat_id = p["category_id"]

    listed = (await api.get("/api/v1/products", params={"category_id": cat_id})).json()
    assert [i["id"] for i in listed["items"]] == [p["id"]] and listed["total"] == 1
    detail = (await api.get(f"/api/v1/products/{p['id']}")).json()
    assert detail["skus"][0]["attributes"] == {"净含量": "100g"}
    cats = {c["id"]: c for c in (await api.get("/api/v1/categories")).json()["items"]}
    assert cats[cat_id]["products"] == 1

    # A SKU off sale disappears from public reads; the product off sale disappears entirely.
    sku_id = p["skus"][1]["id"]
    r = await api.patch(f"/api/v1/admin/skus/{sku_id}", json={"on_sale": False}, headers=admin)
    assert r.status_code == 200
    detail = (await api.get(f"/api/v1/products/{p['id']}")).json()
    assert [s["id"] for s in detail["skus"]] == [p["skus"][0]["id"]]
    r = await api.patch(f"/api/v1/admin/products/{p['id']}", json={"on_sale": False}, headers=admin)
    assert r.status_code == 200
    assert (await api.get(f"/api/v1/products/{p['id']}")).status_code == 404
    assert (await api.get(f"/api/v1/admin/products/{p['id']}", headers=admin)).status_code == 200

    r = await api.delete(f"/api/v1/admin/categories/{cat_id}", headers=admin)
    assert r.status_code == 409 and error_code(r) == "CATEGORY_IN_USE"
    r = await api.post(
        "/api/v1/admin/skus",
        json={"product_id": p["id"], "name": "dup", "price_fen": 1, "code": p["skus"][1]["code"]},
        headers=admin,
    )
    assert r.status_code == 409 and error_code(r) == "SKU_CODE_TAKEN"
    r = await api.post(
        "/api/v1/admin/skus",
        json={"product_id": p["id"], "name": "x", "price_fen": -1},
        headers=admin,
    )
    assert r.status_code == 422
    assert (await api.delete(f"/api/v1/admin/products/{p['id']}", headers=admin)).status_code == 200
    assert (
        await api.delete(f"/api/v1/admin/categories/{cat_id}", headers=admin)
    ).status_code == 200


async def test_catalog_writes_need_a_catalog_role(
    api: httpx.AsyncClient, env: dict[str, str]
) -> None:
    ops = await _login(api, env, "catalog-storeops", "store_ops")
    r = await api.post("/api/v1/admin/categories", json={"name": "nope"}, headers=ops)
    assert r.status_code == 403
    r = await api.post("/api/v1/admin/categories", json={"name": "nope"})
    assert r.status_code == 401


async def test_store_menu_uses_the_store_price_and_stock(
    api: httpx.AsyncClient, admin: dict[str, str], redis: aioredis.Redis, database: Settings
) -> None:
    store_id = await _store(redis)
    p = await _product(api, admin)
    a, b = (s["id"] for s in p["skus"])
    r = await api.put(
        f"/api/v1/admin/stores/{store_id}/skus/{a}",
        json={"stock": 7, "price_override_fen": 1500},
        headers=admin,
    )
    assert r.status_code == 200 and r.json()["price_fen"] == 1500, r.text
    r = await api.post(
        f"/api/v1/admin/stores/{store_id}/skus",
        json={"items": [{"sku_id": b, "stock": 0}]},
        headers=admin,
    )
    assert r.status_code == 200

    menu = (await api.get(f"/api/v1/stores/{store_id}/menu")).json()
    by_sku = {i["sku_id"]: i for i in menu["items"]}
    assert set(by_sku) == {a, b}
    assert by_sku[a]["price_fen"] == 1500 and by_sku[a]["list_price_fen"] == 1990
    assert by_sku[a]["stock"] == 7 and by_sku[a]["name"] == "蜜汁猪肉脯 100g"
    assert by_sku[b]["price_fen"] == 3590 and by_sku[b]["sold_out"] is True
    in_stock = await api.get(f"/api/v1/stores/{store_id}/menu", params={"in_stock": "true"})
    assert [i["sku_id"] for i in in_stock.json()["items"]] == [a]

    assert await service.store_menu_prices(store_id, [a, b, 999999999]) == {
        a: ("蜜汁猪肉脯 100g", 1500),
        b: ("蜜汁猪肉脯 200g", 3590),
    }
    r = await api.put(
        f"/api/v1/admin/stores/{store_id}/skus/{a}", json={"available": False}, headers=admin
    )
    assert r.status_code == 200
    assert a not in await service.store_menu_prices(store_id, [a, b])
    assert a not in {
        i["sku_id"] for i in (await api.get(f"/api/v1/stores/{store_id}/menu")).json()["items"]
    }

    r = await api.put(
        f"/api/v1/admin/stores/{store_id}/skus/{b}", json={"stock_delta": -1}, headers=admin
    )
    assert r.status_code == 409 and error_code(r) == "STOCK_BELOW_ZERO"
    r = await api.put(
        f"/api/v1/admin/stores/{store_id}/skus/{b}", json={"stock_delta": 5}, headers=admin
    )
    assert r.json()["stock"] == 5
    assert (await api.get("/api/v1/stores/999999999/menu")).status_code == 404


async def _stocked(
    api: httpx.AsyncClient,
    admin: dict[str, str],
    redis: aioredis.Redis,
    stock: dict[int, int] | None = None,
) -> tuple[int, list[int]]:
    store_id = await _store(redis)
    p = await _product(api, admin)
    skus = [s["id"] for s in p["skus"]]
    for sku_id in skus:
        await StoreSku.create(store_id=store_id, sku_id=sku_id, stock=(stock or {}).get(sku_id, 10))
    return store_id, skus


async def _stock(store_id: int, sku_id: int) -> int:
    return (await StoreSku.get(store_id=store_id, sku_id=sku_id)).stock


async def test_concurrent_holds_never_oversell(
    api: httpx.AsyncClient, admin: dict[str, str], redis: aioredis.Redis, database: Settings
) -> None:
    store_id, (a, _b) = await _stocked(api, admin, redis)

    async def one() -> bool:
        try:
            await service.hold_store_stock(store_id, {a: 1})
            return True
        except Conflict as exc:
            assert exc.code == "OUT_OF_STOCK"
            return False

    results = await asyncio.gather(*(one() for _ in range(40)))
    assert sum(results) == 10
    assert await _stock(store_id, a) == 0

    with pytest.raises(Conflict) as exc:
        await service.hold_store_stock(store_id, {a: 1})
    assert exc.value.details == {"sku_id": a, "requested": 1, "available": 0}
    await service.release_store_stock(store_id, {a: 3})
    assert await _stock(store_id, a) == 3
    await service.release_store_stock(store_id, {})  # an order whose SKUs were deleted
    assert await _stock(store_id, a) == 3


async def test_a_multi_line_hold_is_all_or_nothing_and_does_not_deadlock(
    api: httpx.AsyncClient, admin: dict[str, str], redis: aioredis.Redis, database: Settings
) -> None:
    store_id, (a, b) = await _stocked(api, admin, redis)
    with pytest.raises(Conflict) as exc:
        await service.hold_store_stock(store_id, {a: 2, b: 11})
    assert exc.value.details["sku_id"] == b
    assert (await _stock(store_id, a), await _stock(store_id, b)) == (10, 10)  # a untouched

    # Orders that touch both SKUs in either order, concurrently: no deadlock, never below
    # zero, and what was taken is exactly what the successful holds asked for.
    rng = random.Random(7)
    orders = [
        dict(rng.sample([(a, rng.randint(1, 3)), (b, rng.randint(1, 3))], 2)) for _ in range(30)
    ]

    async def place(lines: dict[int, int]) -> dict[int, int]:
        try:
            await service.hold_store_stock(store_id, lines)
            return lines
        except Conflict:
            return {}

    done = await asyncio.wait_for(asyncio.gather(*(place(o) for o in orders)), timeout=60)
    taken_a = sum(o.get(a, 0) for o in done)
    taken_b = sum(o.get(b, 0) for o in done)
    left_a, left_b = await _stock(store_id, a), await _stock(store_id, b)
    assert left_a >= 0 and left_b >= 0
    assert (left_a, left_b) == (10 - taken_a, 10 - taken_b)
    assert any(done) and not all(done)

    for bad in ({a: 0}, {a: -1}, {}):
        with pytest.raises(Exception, match=r"positive|no lines"):
            await service.hold_store_stock(store_id, bad)
