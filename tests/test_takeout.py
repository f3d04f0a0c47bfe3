"""Takeout end to end over real HTTP: the address book, who delivers where, honest quotes, the
order paid through the sandbox, the store's board and its live feed read from another API
process, the accept deadline racing a clerk, rejections that refund every tender, and the
courier platform (the sandbox's 即时配送) calling back with signed, repeated, late and forged
pushes."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest

from server.catalog.models import Category, Product, Sku, StoreSku
from server.identity.sealing import unseal
from server.infra.clock import utcnow
from server.orders.models import Order, OrderStatus
from server.outbox import service as outbox
from server.outbox.models import OutboxEvent
from server.payments.models import Refund
from server.settings import Settings
from server.takeout.models import Address, Board, CourierCallback, TakeoutOrder
from tests.conftest import ServerProcess, drain, error_code
from tests.test_coupons import new_staff, operator_headers
from tests.test_orders_payments import PAY, SANDBOX, shopper, wait_for

# The store sits at (30.58, 114.28) and delivers within 3 km; 0.018° of latitude is ~2 km.
HERE = (30.58, 114.28)
INSIDE = (30.58 + 0.009, 114.28)  # ~1 km north: inside the 3 km ring
INSIDE_2KM = (30.58 + 0.018, 114.28)
OUTSIDE_2KM = (30.58 + 0.045, 114.28)  # ~5 km: 2 km beyond the ring
POLYGON_ONLY = (30.58 + 0.036, 114.28)  # ~4 km north: only the polygon holds it


def headers(who: dict[str, Any], key: bool = False) -> dict[str, str]:
    out = dict(who["headers"])
    if key:
        out["idempotency-key"] = uuid.uuid4().hex
    return out


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def op(database: Settings) -> dict[str, str]:
    return await operator_headers(database)


async def make_store(api: httpx.AsyncClient, op: dict[str, str], **over: Any) -> dict[str, Any]:
    body = {
        "code": "TK" + uuid.uuid4().hex[:8],
        "name": "好店 外卖测试店",
        "city": "武汉",
        "address": "武汉市江汉区测试路1号",
        "lat": HERE[0],
        "lng": HERE[1],
        "phone": "027-85550099",
        "hours": "00:00-24:00",
        "services": ["takeout", "pickup"],
        "packing_fee_fen": 100,
        "delivery_areas": [
            {
                "name": "3 km",
                "radius_m": 3000,
                "base_fen": 300,
                "min_order_fen": 2000,
                "free_over_fen": 9900,
            },
            {
                "name": "north strip",
                "polygon": [
                    {"lat": 30.600, "lng": 114.27},
                    {"lat": 30.600, "lng": 114.29},
                    {"lat": 30.620, "lng": 114.29},
                    {"lat": 30.620, "lng": 114.27},
                ],
                "base_fen": 800,
                "min_order_fen": 3000,
            },
        ],
    } | over
    r = await api.post("/api/v1/admin/stores", json=body, headers=op)
    assert r.status_code == 201, r.text
    return r.json()


async def stock_store(store_id: int, suffix: str) -> dict[str, Sku]:
    cat = await Category.create(name=f"takeout-{suffix}")
    prod = await Product.create(category=cat, name="Braised duck neck")
    neck = await Sku.create(product=prod, name="200g", price_fen=1500)
    wings = await Sku.create(product=prod, name="wings 300g", price_fen=2500)
    await StoreSku.create(store_id=store_id, sku=neck, stock=1000)
    await StoreSku.create(store_id=store_id, sku=wings, stock=3)
    return {"neck": neck, "wings": wings}


@pytest.fixture(scope="module")
async def shop(api: httpx.AsyncClient, op: dict[str, str], database: Settings) -> dict[str, Any]:
    store = await make_store(api, op)
    skus = await stock_store(store["id"], uuid.uuid4().hex[:6])
    clerk, clerk_h = await new_staff(database, [await _store(store["id"])])
    return {"store": store, **skus, "clerk": clerk, "clerk_h": clerk_h}


async def _store(store_id: int) -> Any:
    from server.stores.models import Store

    return await Store.get(id=store_id)


@pytest.fixture(scope="module")
def other_server(
    env: dict[str, str], database: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A second API process on the same PostgreSQL and Redis (the board follows it)."""
    proc = ServerProcess(
        ["serve"],
        env,
        tmp_path_factory.mktemp("logs") / "other.log",
        cwd=tmp_path_factory.mktemp("cwd2"),
    )
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


async def new_address(
    api: httpx.AsyncClient, who: dict[str, Any], where: tuple[float, float] = INSIDE
) -> dict[str, Any]:
    r = await api.post(
        "/api/v1/me/addresses",
        headers=who["headers"],
        json={
            "contact": "王女士",
            "phone": "13812345678",
            "text": "测试路8号 3楼",
            "lat": where[0],
            "lng": where[1],
        },
    )
    assert r.status_code == 201, r.text
    return r.json()


def cart(shop: dict[str, Any], necks: int = 2, wings: int = 0) -> list[dict[str, int]]:
    items = [{"sku_id": shop["neck"].id, "quantity": necks}]
    if wings:
        items.append({"sku_id": shop["wings"].id, "quantity": wings})
    return items


async def order_takeout(
    api: httpx.AsyncClient,
    who: dict[str, Any],
    shop: dict[str, Any],
    address: dict[str, Any],
    **over: Any,
) -> dict[str, Any]:
    body = {"store_id": shop["store"]["id"], "address_id": address["id"], "items": cart(shop)}
    r = await api.post("/api/v1/takeout/orders", headers=headers(who, key=True), json=body | over)
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "takeout" and r.json()["status"] == "pending_payment"
    return r.json()


async def pay(api: httpx.AsyncClient, who: dict[str, Any], order_no: str, **body: Any) -> None:
    r = await api.post(f"/api/v1/orders/{order_no}/pay", headers=who["headers"], json=body)
    assert r.status_code == 200, r.text
    if not r.json()["paid"]:
        done = await api.post(f"{PAY}/{order_no}/complete?wait=1")
        assert done.json()["notify_status"] == 204, done.text


async def paid_takeout(
    api: httpx.AsyncClient, worker_env: Any, shop: dict[str, Any], who: dict[str, Any] | None = None
) -> tuple[dict[str, Any], str]:
    who = who or await shopper(api)
    address = await new_address(api, who)
    order = await order_takeout(api, who, shop, address)
    await pay(api, who, order["order_no"])
    await drain(worker_env)
    return who, order["order_no"]


async def board_status(order_no: str) -> Board:
    return (await TakeoutOrder.get(order__order_no=order_no)).status


async def clerk(api: httpx.AsyncClient, shop: dict[str, Any], no: str, what: str, **body: Any):
    return await api.post(
        f"/api/v1/staff/takeout/orders/{no}/{what}", headers=shop["clerk_h"], json=body or None
    )


class Feed:
    """A live board feed (Server-Sent Events) read in the background, as a clerk's screen."""

    def __init__(self, base_url: str, clerk_h: dict[str, str]) -> None:
        self.base_url, self.clerk_h = base_url, clerk_h
        self.events: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.connected = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=None) as c:
            async with c.stream("GET", "/api/v1/staff/takeout/events", headers=self.clerk_h) as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                self.connected.set()
                block: list[str] = []
                async for line in r.aiter_lines():
                    if line:
                        block.append(line)
                        continue
                    data = [ln[6:] for ln in block if ln.startswith("data: ")]
                    ids = [ln[4:] for ln in block if ln.startswith("id: ")]
                    if data:
                        self.events.append(orjson.loads("".join(data)))
                        self.ids.extend(ids)
                    block = []

    async def __aenter__(self) -> Feed:
        self.task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.connected.wait(), 20)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task

    async def seen(self, order_no: str, status: str) -> dict[str, Any]:
        async def found() -> Any:
            return next(
                (
                    e
                    for e in self.events
                    if e["order"]["order_no"] == order_no and e["order"]["status"] == status
                ),
                None,
            )

        return await wait_for(found, 20)


# -- the address book ----------------------------------------------------------------------------


async def test_address_book_seals_phones_masks_answers_and_holds_twenty(
    api: httpx.AsyncClient, database: Settings
) -> None:
    who = await shopper(api)
    a = await new_address(api, who)
    assert a["phone"] == "138****5678" and a["contact"] == "王女士"
    row = await Address.get(id=a["id"])
    assert "13812345678" not in row.phone_sealed
    assert unseal(database, "phone", row.phone_sealed) == "13812345678"

    r = await api.patch(
        f"/api/v1/me/addresses/{a['id']}",
        headers=who["headers"],
        json={"phone": "027-85551234", "text": "新地址 5楼"},
    )
    assert r.status_code == 200 and r.json()["text"] == "新地址 5楼"
    assert r.json()["phone"] == "027****1234"
    r = await api.patch(
        f"/api/v1/me/addresses/{a['id']}", headers=who["headers"], json={"lat": 30.6}
    )
    assert r.status_code == 422  # a point moves as a whole
    r = await api.post(
        "/api/v1/me/addresses",
        headers=who["headers"],
        json={"contact": "x", "phone": "12345", "text": "y", "lat": 1, "lng": 2},
    )
    assert r.status_code == 422

    other = await shopper(api)
    r = await api.get("/api/v1/me/addresses", headers=other["headers"])
    assert r.json()["items"] == []
    r = await api.delete(f"/api/v1/me/addresses/{a['id']}", headers=other["headers"])
    assert r.status_code == 404 and error_code(r) == "ADDRESS_NOT_FOUND"

    for _ in range(19):
        await new_address(api, who)
    r = await api.post(
        "/api/v1/me/addresses",
        headers=who["headers"],
        json={"contact": "x", "phone": "13800000000", "text": "y", "lat": 30.5, "lng": 114.3},
    )
    assert r.status_code == 409 and error_code(r) == "ADDRESS_BOOK_FULL"
    assert (
        len((await api.get("/api/v1/me/addresses", headers=who["headers"])).json()["items"]) == 20
    )
    assert (
        await api.delete(f"/api/v1/me/addresses/{a['id']}", headers=who["headers"])
    ).status_code == 204


# -- who delivers here, and the price ------------------------------------------------------------


async def test_who_delivers_here_inside_outside_polygon_and_closed(
    api: httpx.AsyncClient, op: dict[str, str], shop: dict[str, Any]
) -> None:
    who = await shopper(api)
    store_id = shop["store"]["id"]
    inside = await new_address(api, who, INSIDE_2KM)
    r = await api.get(
        f"/api/v1/takeout/stores?address_id={inside['id']}&limit=50", headers=who["headers"]
    )
    assert r.status_code == 200, r.text
    mine = next(s for s in r.json()["items"] if s["id"] == store_id)
    assert 1990 < mine["distance_m"] < 2010 and mine["area"] == "3 km"
    assert mine["delivery_fee_fen"] == 300 and mine["min_order_fen"] == 2000
    assert mine["packing_fee_fen"] == 100 and mine["eta_minutes"] == 15 + 9  # ~2,001 m at 250 m/min
    dists = [s["distance_m"] for s in r.json()["items"]]
    assert dists == sorted(dists)  # nearest first

    outside = await new_address(api, who, OUTSIDE_2KM)
    r = await api.get(
        f"/api/v1/takeout/stores?lat={OUTSIDE_2KM[0]}&lng={OUTSIDE_2KM[1]}&limit=50",
        headers=who["headers"],
    )
    assert store_id not in [s["id"] for s in r.json()["items"]]
    q = await api.post(
        "/api/v1/takeout/quote",
        headers=who["headers"],
        json={"store_id": store_id, "address_id": outside["id"], "items": cart(shop)},
    )
    assert q.status_code == 409 and error_code(q) == "OUT_OF_DELIVERY_AREA"

    # Beyond the ring but inside the polygon: that area's own fee and minimum.
    strip = await new_address(api, who, POLYGON_ONLY)
    q = await api.post(
        "/api/v1/takeout/quote",
        headers=who["headers"],
        json={"store_id": store_id, "address_id": strip["id"], "items": cart(shop, 1)},
    )
    assert q.status_code == 409 and error_code(q) == "BELOW_MINIMUM"
    assert q.json()["error"]["details"] == {"min_order_fen": 3000, "missing_fen": 1500}
    q = await api.post(
        "/api/v1/takeout/quote",
        headers=who["headers"],
        json={"store_id": store_id, "address_id": strip["id"], "items": cart(shop, 2)},
    )
    assert q.status_code == 200 and q.json()["delivery_fee_fen"] == 800

    # A closed store is not offered, and will not quote.
    closed = await make_store(api, op, lat=HERE[0] + 0.002)
    await stock_store(closed["id"], uuid.uuid4().hex[:6])
    listed = await api.get(
        f"/api/v1/takeout/stores?address_id={inside['id']}&limit=50", headers=who["headers"]
    )
    assert closed["id"] in [s["id"] for s in listed.json()["items"]]
    until = (utcnow() + timedelta(hours=2)).isoformat()
    r = await api.post(
        f"/api/v1/admin/stores/{closed['id']}/close",
        headers=op,
        json={"until": until, "reason": "renovation"},
    )
    assert r.status_code == 200, r.text
    listed = await api.get(
        f"/api/v1/takeout/stores?address_id={inside['id']}&limit=50", headers=who["headers"]
    )
    assert closed["id"] not in [s["id"] for s in listed.json()["items"]]
    q = await api.post(
        "/api/v1/takeout/quote",
        headers=who["headers"],
        json={"store_id": closed["id"], "address_id": inside["id"], "items": cart(shop)},
    )
    assert q.status_code == 409 and error_code(q) == "STORE_CLOSED"

    pickup_only = await make_store(api, op, services=["pickup"])
    q = await api.post(
        "/api/v1/takeout/quote",
        headers=who["headers"],
        json={"store_id": pickup_only["id"], "address_id": inside["id"], "items": cart(shop)},
    )
    assert q.status_code == 409 and error_code(q) == "TAKEOUT_NOT_OFFERED"


async def test_quote_refusals_and_the_quote_is_what_the_order_costs(
    api: httpx.AsyncClient, shop: dict[str, Any]
) -> None:
    who = await shopper(api)
    a = await new_address(api, who, INSIDE_2KM)
    base = {"store_id": shop["store"]["id"], "address_id": a["id"]}
    q = await api.post(
        "/api/v1/takeout/quote", headers=who["headers"], json=base | {"items": cart(shop, 1)}
    )
    assert q.status_code == 409 and error_code(q) == "BELOW_MINIMUM"
    assert q.json()["error"]["details"]["missing_fen"] == 500
    q = await api.post(
        "/api/v1/takeout/quote",
        headers=who["headers"],
        json=base | {"items": cart(shop, 1, wings=5)},
    )
    assert q.status_code == 409 and error_code(q) == "OUT_OF_STOCK"
    assert q.json()["error"]["details"]["lines"] == [
        {"sku_id": shop["wings"].id, "requested": 5, "available": 3}
    ]
    # Prices come from the server: a client price is not even accepted as input.
    q = await api.post(
        "/api/v1/takeout/quote",
        headers=who["headers"],
        json=base | {"items": cart(shop), "payable_fen": 1},
    )
    assert q.status_code == 422

    q = await api.post(
        "/api/v1/takeout/quote", headers=who["headers"], json=base | {"items": cart(shop)}
    )
    assert q.status_code == 200, q.text
    quote = q.json()
    assert quote["goods_fen"] == 3000 and quote["packing_fee_fen"] == 100
    assert quote["delivery_fee_fen"] == 300 and quote["payable_fen"] == 3400
    order = await order_takeout(api, who, shop, a)
    assert order["payable_fen"] == quote["payable_fen"] and order["fee_fen"] == 400
    assert order["takeout"]["status"] == "unpaid" and order["takeout"]["phone"] == "138****5678"
    # Enough goods: delivery is free over 99 yuan.
    q = await api.post(
        "/api/v1/takeout/quote", headers=who["headers"], json=base | {"items": cart(shop, 7)}
    )
    assert q.json()["delivery_fee_fen"] == 0 and q.json()["payable_fen"] == 10600


# -- paid → board → accept → ready → courier platform → delivered -------------------------------


async def test_order_to_doorstep_with_the_board_on_another_process(
    api: httpx.AsyncClient,
    shop: dict[str, Any],
    worker_env: Any,
    other_server: ServerProcess,
    server: ServerProcess,
) -> None:
    who = await shopper(api)
    template = "sandbox-takeout_status"
    await api.post(
        f"{SANDBOX}/users/{who['openid']}/subscriptions",
        json={"template_id": template, "count": 10},
    )
    a = await new_address(api, who)
    stock_before = (await StoreSku.get(store_id=shop["store"]["id"], sku_id=shop["neck"].id)).stock
    async with Feed(other_server.base_url, shop["clerk_h"]) as feed:
        order = await order_takeout(api, who, shop, a, note="少辣")
        no = order["order_no"]
        await pay(api, who, no)
        await drain(worker_env)
        new = await feed.seen(no, "new")
        assert new["type"] == "new" and new["order"]["note"] == "少辣"
        assert new["order"]["phone"] == "138****5678"

        r = await api.get("/api/v1/staff/takeout/orders?status=new", headers=shop["clerk_h"])
        assert no in [o["order_no"] for o in r.json()["items"]]
        r = await clerk(api, shop, no, "accept", prep_minutes=10)
        assert r.status_code == 200 and r.json()["status"] == "accepted" and r.json()["eta_at"]
        again = await clerk(api, shop, no, "accept", prep_minutes=10)
        assert again.status_code == 409 and error_code(again) == "ORDER_STATE_CONFLICT"
        assert (await clerk(api, shop, no, "ready")).json()["status"] == "ready"
        r = await clerk(api, shop, no, "dispatch", courier="platform")
        assert r.status_code == 200, r.text
        assert (
            r.json()["status"] == "dispatched"
            and r.json()["courier_status"] == "waiting for a rider"
        )
        await drain(worker_env)
        await feed.seen(no, "dispatched")

    wb = (await api.get(f"{SANDBOX}/delivery/orders/{no}-1")).json()
    waybill = wb["waybill_id"]
    # A forged push (wrong signature, wrong key, stale) changes nothing.
    for forge in ("signature", "key", "stale"):
        r = await api.post(
            f"{SANDBOX}/delivery/waybills/{waybill}/push", json={"status": 302, "forge": forge}
        )
        assert r.json()["answers"] == [403]
    assert await board_status(no) == Board.DISPATCHED
    # Rider assigned, delivered twice; then picked up arrives late: it changes nothing.
    r = await api.post(f"{SANDBOX}/delivery/waybills/{waybill}/advance")
    assert r.json()["pushed"] == 102 and r.json()["answer"] == 200
    r = await api.post(
        f"{SANDBOX}/delivery/waybills/{waybill}/push", json={"status": 301, "times": 2}
    )
    assert r.json()["answers"] == [200, 200]
    r = await api.post(f"{SANDBOX}/delivery/waybills/{waybill}/push", json={"status": 202})
    t = await TakeoutOrder.get(order__order_no=no)
    assert t.courier_status == 301 and t.rider_name and t.rider_phone_masked.count("*") == 4
    r = await api.post(
        f"{SANDBOX}/delivery/waybills/{waybill}/push", json={"status": 302, "times": 2}
    )
    assert r.json()["answers"] == [200, 200]
    assert await board_status(no) == Board.DELIVERED
    assert (await Order.get(order_no=no)).status == OrderStatus.COMPLETED
    applied = await CourierCallback.filter(waybill_id=waybill, applied=True).values_list(
        "order_status", flat=True
    )
    assert sorted(applied) == [102, 301, 302]

    r = await api.get(f"/api/v1/orders/{no}", headers=who["headers"])
    track = r.json()["takeout"]
    steps = [s["step"] for s in track["timeline"]]
    assert steps == [
        "placed",
        "paid",
        "accepted",
        "ready",
        "dispatched",
        "rider_assigned",
        "out_for_delivery",
        "delivered",
    ]
    assert track["status"] == "delivered" and track["rider_phone"].count("*") == 4
    out = next(s for s in track["timeline"] if s["step"] == "out_for_delivery")
    assert track["rider_name"] in out["detail"]
    stock_after = (await StoreSku.get(store_id=shop["store"]["id"], sku_id=shop["neck"].id)).stock
    assert stock_after == stock_before - 2

    await drain(worker_env)
    msgs = (await api.get(f"{SANDBOX}/users/{who['openid']}/messages")).json()["items"]
    words = [m["data"]["phrase2"] for m in msgs if m["template_id"] == template]
    assert "商家已接单" in words and "配送中" in words and "已送达" in words
    assert server.proc.poll() is None


# -- the accept deadline -------------------------------------------------------------------------


async def _deadline_now(order_no: str) -> None:
    await OutboxEvent.filter(key=f"takeout-accept-due:{order_no}").update(available_at=utcnow())


async def test_not_accepted_in_time_is_refunded_once(
    api: httpx.AsyncClient, shop: dict[str, Any], worker_env: Any
) -> None:
    _who, no = await paid_takeout(api, worker_env, shop)
    t = await TakeoutOrder.get(order__order_no=no)
    assert t.status == Board.NEW and t.accept_by is not None
    assert 4.9 * 60 < (t.accept_by - utcnow()).total_seconds() <= 5 * 60  # default: 5 minutes
    await drain(worker_env)
    assert await board_status(no) == Board.NEW  # not yet due
    await _deadline_now(no)
    await drain(worker_env)
    assert await board_status(no) == Board.CANCELLED
    # The deadline's event delivered again (a second worker, a retry): still one refund.
    await OutboxEvent.filter(key=f"takeout-accept-due:{no}").update(delivered_at=None)
    await drain(worker_env)
    assert await Refund.filter(order__order_no=no).count() == 1
    await wait_for(lambda: _status_is(no, OrderStatus.REFUNDED))
    r = await clerk(api, shop, no, "accept", prep_minutes=5)
    assert r.status_code == 409 and error_code(r) == "ORDER_CANCELLED"


async def _status_is(order_no: str, status: OrderStatus) -> bool:
    return (await Order.get(order_no=order_no)).status == status


async def test_accept_racing_the_deadline_has_one_winner_every_round(
    api: httpx.AsyncClient, shop: dict[str, Any], worker_env: Any
) -> None:
    outcomes = []
    for _ in range(10):
        _, no = await paid_takeout(api, worker_env, shop)
        await _deadline_now(no)
        accept_r, _ = await asyncio.gather(
            clerk(api, shop, no, "accept", prep_minutes=10), outbox.deliver_due(worker_env)
        )
        t = await TakeoutOrder.get(order__order_no=no)
        order = await Order.get(order_no=no)
        refunds = await Refund.filter(order_id=order.id).count()
        if accept_r.status_code == 200:
            assert t.status == Board.ACCEPTED and order.status == OrderStatus.PAID and refunds == 0
            outcomes.append("accepted")
        else:
            assert error_code(accept_r) == "ORDER_CANCELLED", accept_r.text
            assert t.status == Board.CANCELLED and refunds == 1
            assert order.status in (OrderStatus.REFUNDING, OrderStatus.REFUNDED)
            outcomes.append("refunded")
    assert len(outcomes) == 10
    await drain(worker_env)


# -- rejections, cancellations, other stores ------------------------------------------------------


async def test_reject_refunds_gift_card_and_wechat_and_returns_the_stock(
    api: httpx.AsyncClient, shop: dict[str, Any], worker_env: Any, op: dict[str, str]
) -> None:
    from tests.test_giftcards import card_in_hand

    r = await api.post(
        "/api/v1/admin/gift-card-designs",
        headers=op,
        json={"name": "外卖卡", "face_values_fen": [1000, 5000], "valid_days": 1095},
    )
    assert r.status_code == 201, r.text
    who, card = await card_in_hand(api, r.json(), 1000)
    a = await new_address(api, who)
    before = (await StoreSku.get(store_id=shop["store"]["id"], sku_id=shop["neck"].id)).stock
    order = await order_takeout(api, who, shop, a)
    no = order["order_no"]
    assert (
        await StoreSku.get(store_id=shop["store"]["id"], sku_id=shop["neck"].id)
    ).stock == before - 2
    await pay(api, who, no, gift_card_ids=[card["id"]])
    await drain(worker_env)
    paid = (await api.get(f"/api/v1/orders/{no}", headers=who["headers"])).json()
    assert {t["kind"] for t in paid["tenders"]} == {"gift_card", "wechat"}

    r = await clerk(api, shop, no, "reject", reason="售罄 sold out")
    assert r.status_code == 200 and r.json()["status"] == "rejected", r.text
    assert (
        await StoreSku.get(store_id=shop["store"]["id"], sku_id=shop["neck"].id)
    ).stock == before
    await wait_for(lambda: _status_is(no, OrderStatus.REFUNDED))
    done = (await api.get(f"/api/v1/orders/{no}", headers=who["headers"])).json()
    assert all(t["status"] in ("returned", "refunded") for t in done["tenders"]), done["tenders"]
    assert done["refunded_fen"] == done["paid_fen"] == 3400
    cards = (await api.get("/api/v1/me/gift-cards", headers=who["headers"])).json()["items"]
    assert next(c for c in cards if c["id"] == card["id"])["balance_fen"] == 1000
    assert done["takeout"]["timeline"][-1]["step"] == "rejected"
    assert "售罄" in done["takeout"]["timeline"][-1]["detail"]


async def test_shopper_cancels_before_acceptance_but_not_after(
    api: httpx.AsyncClient, shop: dict[str, Any], worker_env: Any, op: dict[str, str]
) -> None:
    from server.coupons.models import Coupon, CouponStatus
    from tests.test_coupons import claim, make_template

    who = await shopper(api)
    template = await make_template(api, op, name="外卖 ¥5", channel="online")
    coupon = await claim(api, who["headers"], template["id"])
    a = await new_address(api, who)
    order = await order_takeout(api, who, shop, a, coupon_ids=[coupon["id"]])
    assert order["discount_fen"] == 500 and order["payable_fen"] == 2900
    no = order["order_no"]
    await pay(api, who, no)
    await drain(worker_env)
    assert (await Coupon.get(id=coupon["id"])).status == CouponStatus.USED
    r = await api.post(f"/api/v1/orders/{no}/cancel", headers=who["headers"], json={})
    assert r.status_code == 200, r.text
    assert await board_status(no) == Board.CANCELLED
    # Not served: the coupon is the shopper's again, the money goes back.
    assert (await Coupon.get(id=coupon["id"])).status == CouponStatus.UNUSED
    await wait_for(lambda: _status_is(no, OrderStatus.REFUNDED))

    who, no = await paid_takeout(api, worker_env, shop)
    assert (await clerk(api, shop, no, "accept", prep_minutes=10)).status_code == 200
    r = await api.post(f"/api/v1/orders/{no}/cancel", headers=who["headers"], json={})
    assert r.status_code == 409 and error_code(r) == "ORDER_ACCEPTED"
    assert await board_status(no) == Board.ACCEPTED
    assert (await Order.get(order_no=no)).status == OrderStatus.PAID


async def test_a_clerk_sees_and_acts_only_for_their_own_stores(
    api: httpx.AsyncClient,
    op: dict[str, str],
    shop: dict[str, Any],
    worker_env: Any,
    database: Settings,
) -> None:
    _, no = await paid_takeout(api, worker_env, shop)
    elsewhere = await make_store(api, op, lat=HERE[0] + 0.3)
    _, other_h = await new_staff(database, [await _store(elsewhere["id"])])
    r = await api.get("/api/v1/staff/takeout/orders", headers=other_h)
    assert r.status_code == 200 and no not in [o["order_no"] for o in r.json()["items"]]
    for what, body in (
        ("accept", {"prep_minutes": 5}),
        ("reject", {"reason": "x"}),
        ("ready", None),
        ("dispatch", {"courier": "store"}),
        ("delivered", None),
    ):
        r = await api.post(f"/api/v1/staff/takeout/orders/{no}/{what}", headers=other_h, json=body)
        assert r.status_code == 403 and error_code(r) == "STORE_NOT_ALLOWED", (what, r.text)
    r = await api.get(
        f"/api/v1/staff/takeout/orders?store_id={shop['store']['id']}", headers=other_h
    )
    assert r.status_code == 403
    r = await api.get(
        f"/api/v1/staff/takeout/events?store_id={shop['store']['id']}", headers=other_h
    )
    assert r.status_code == 403
    assert await board_status(no) == Board.NEW


async def test_courier_refuses_then_cancels_and_the_order_comes_back_flagged(
    api: httpx.AsyncClient, shop: dict[str, Any], worker_env: Any
) -> None:
    _who, no = await paid_takeout(api, worker_env, shop)
    await clerk(api, shop, no, "accept", prep_minutes=5)
    await api.post(f"{SANDBOX}/delivery/config", json={"refuse_next": 1})
    r = await clerk(api, shop, no, "dispatch", courier="platform")
    assert r.status_code == 409 and error_code(r) == "COURIER_REFUSED"
    t = await TakeoutOrder.get(order__order_no=no)
    assert t.status == Board.ACCEPTED and "refused" in (t.flag or "")

    r = await clerk(api, shop, no, "dispatch", courier="platform")
    assert r.status_code == 200 and r.json()["flag"] is None
    waybill = (await TakeoutOrder.get(order__order_no=no)).waybill_id
    await api.post(f"{SANDBOX}/delivery/waybills/{waybill}/advance")  # 102 rider assigned
    r = await api.post(f"{SANDBOX}/delivery/waybills/{waybill}/push", json={"status": 103})
    assert r.json()["answers"] == [200]
    t = await TakeoutOrder.get(order__order_no=no)
    assert t.status == Board.READY and "cancelled by the courier platform" in (t.flag or "")
    r = await api.get("/api/v1/staff/takeout/orders?status=ready", headers=shop["clerk_h"])
    assert next(o for o in r.json()["items"] if o["order_no"] == no)["flag"]
    # The old waybill's later pushes change nothing; the store delivers itself.
    await api.post(f"{SANDBOX}/delivery/waybills/{waybill}/push", json={"status": 302})
    assert await board_status(no) == Board.READY
    r = await clerk(api, shop, no, "delivered")
    assert r.status_code == 409
    assert (await clerk(api, shop, no, "dispatch", courier="store")).json()[
        "status"
    ] == "dispatched"
    assert (await clerk(api, shop, no, "delivered")).json()["status"] == "delivered"
    assert (await Order.get(order_no=no)).status == OrderStatus.COMPLETED


async def test_three_taps_on_dispatch_place_one_waybill(
    api: httpx.AsyncClient, shop: dict[str, Any], worker_env: Any
) -> None:
    _, no = await paid_takeout(api, worker_env, shop)
    await clerk(api, shop, no, "accept", prep_minutes=5)
    answers = await asyncio.gather(
        *(clerk(api, shop, no, "dispatch", courier="platform") for _ in range(3))
    )
    assert sorted(r.status_code for r in answers) == [200, 409, 409]
    t = await TakeoutOrder.get(order__order_no=no)
    wb = (await api.get(f"{SANDBOX}/delivery/orders/{no}-{t.dispatch_no}")).json()
    assert t.dispatch_no == 1 and wb["waybill_id"] == t.waybill_id and wb["status"] == 101


async def test_bad_feed_and_locator_input_is_a_422(
    api: httpx.AsyncClient, shop: dict[str, Any]
) -> None:
    who = await shopper(api)
    for at in ("9999-12-30T00:00:00Z", "0001-01-01T00:00:00Z"):
        r = await api.get(
            "/api/v1/takeout/stores",
            params={"lat": 30.58, "lng": 114.28, "at": at},
            headers=who["headers"],
        )
        assert r.status_code == 422, r.text
        r = await api.get("/api/v1/stores/nearby", params={"lat": 30.58, "lng": 114.28, "at": at})
        assert r.status_code == 422, r.text
    for bad in ("xyz", "99999999999999999999999"):
        r = await api.get(f"/api/v1/staff/takeout/events?store_id={bad}", headers=shop["clerk_h"])
        assert r.status_code == 422 and error_code(r) == "VALIDATION_ERROR"


async def test_the_feed_resumes_after_last_event_id(
    api: httpx.AsyncClient, shop: dict[str, Any], worker_env: Any, other_server: ServerProcess
) -> None:
    r = await api.get("/api/v1/staff/takeout/orders", headers=shop["clerk_h"])
    cursor = r.json()["cursor"]
    _, no = await paid_takeout(api, worker_env, shop)  # while no board is connected
    feed = Feed(other_server.base_url, {**shop["clerk_h"], "Last-Event-ID": cursor})
    async with feed:
        await feed.seen(no, "new")


# -- the board page in a real browser ------------------------------------------------------------


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    import shutil
    import tempfile

    from playwright.async_api import async_playwright

    from tests.test_scanner import CHROMIUM, FLAGS

    profile = tempfile.mkdtemp(prefix="hd-board-")
    async with async_playwright() as p:
        context = await p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=[*FLAGS, "--autoplay-policy=no-user-gesture-required"],
        )
        try:
            yield context
        finally:
            await context.close()
            shutil.rmtree(profile, ignore_errors=True)


async def test_board_page_shows_a_new_order_without_reload_and_accepts_it(
    api: httpx.AsyncClient,
    shop: dict[str, Any],
    worker_env: Any,
    database: Settings,
    server: ServerProcess,
    browser: Any,
    tmp_path: Any,
) -> None:
    from server.identity.models import Staff

    staff = await Staff.get(id=shop["clerk"].id)
    page = await browser.new_page()
    await page.goto(server.base_url + "/staff/orders")
    await page.fill("#username", staff.username)
    await page.fill("#password", "clerk-pass-1")
    await page.click("#login-btn")
    await page.wait_for_selector("#board", state="visible")
    await page.wait_for_function("document.querySelector('#status').textContent.includes('live')")
    loads = await page.evaluate("performance.getEntriesByType('navigation').length")

    who = await shopper(api)
    a = await new_address(api, who)
    order = await order_takeout(api, who, shop, a, note="<img src=x onerror=alert(1)>不要香菜")
    no = order["order_no"]
    await pay(api, who, no)
    await drain(worker_env)
    card = f'[data-no="{no}"]'
    await page.wait_for_selector(f'{card}[data-status="new"]', timeout=20_000)
    assert await page.evaluate("window.hdBeeps") >= 1  # the sound cue was given
    assert await page.evaluate("performance.getEntriesByType('navigation').length") == loads
    text = await page.text_content(card) or ""
    assert "不要香菜" in text and "138****5678" in text
    assert "<img" in text and await page.query_selector(f"{card} img") is None  # text, not HTML
    await page.screenshot(path=str(tmp_path / "board-new.png"))

    await page.select_option(f"{card} select.prep", "20")
    await page.click(f"{card} button.accept")
    await page.wait_for_selector(f'{card}[data-status="accepted"]', timeout=20_000)
    t = await TakeoutOrder.get(order__order_no=no)
    assert t.status == Board.ACCEPTED and t.prep_minutes == 20
    await page.click(f"{card} button.ready")
    await page.wait_for_selector(f'{card}[data-status="ready"]', timeout=20_000)
    await page.screenshot(path=str(tmp_path / "board-ready.png"))
