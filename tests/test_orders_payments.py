"""Pickup orders paid with WeChat Pay through the sandbox, over real HTTP.

The notification, the worker's sweep and the refunds all run for real: the running
server receives the sandbox's signed notifications; a real `haodian worker` closes
expired orders.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest

from server.catalog.models import Category, Product, Sku, StoreSku
from server.infra.clock import utcnow
from server.orders import service as orders
from server.orders.models import Order, OrderEvent, OrderStatus
from server.payments import service as payments
from server.payments.models import Refund
from server.settings import Settings
from server.stores.models import Store
from tests.conftest import ServerProcess, error_code, sweeping_worker

SANDBOX = "/_sandbox/wechat"
PAY = f"{SANDBOX}/pay"


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker(
    env: dict[str, str], server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A real `haodian worker` sweeping every second (closes expired orders, queries WeChat)."""
    with sweeping_worker(
        env,
        server,
        tmp_path_factory.mktemp("logs") / "worker.log",
        HAODIAN_PAYMENT_QUERY_AFTER_SECONDS="2",
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def app_settings(settings: Settings, server: ServerProcess) -> Settings:
    """The server's settings as seen from the test process (same DB, Redis, public URL)."""
    return settings.model_copy(update={"public_url": server.base_url})


@pytest.fixture(scope="module")
async def shop(database: Settings) -> dict[str, Any]:
    """A store that takes pickup orders, two SKUs it stocks."""
    suffix = uuid.uuid4().hex[:6]
    store = await Store.create(
        code=f"T{suffix}",
        name=f"Test store {suffix}",
        city="武汉",
        lat=30.59,
        lng=114.30,
        pickup=True,
        takeout=True,
        write_off=True,
    )
    cat = await Category.create(name=f"snacks-{suffix}")
    prod = await Product.create(category=cat, name="Dried mango")
    sku_a = await Sku.create(product=prod, name="Dried mango 100g", price_fen=1290)
    sku_b = await Sku.create(product=prod, name="Dried mango 500g", price_fen=4990)
    await StoreSku.create(store=store, sku=sku_a, stock=100)
    await StoreSku.create(store=store, sku=sku_b, stock=5, price_override_fen=4500)
    return {"store": store, "a": sku_a, "b": sku_b}


@pytest.fixture(scope="module")
async def operator_token(api: httpx.AsyncClient, env: dict[str, str]) -> str:
    from tests.test_foundation import _cli

    name = f"ops-{uuid.uuid4().hex[:6]}"
    assert (
        _cli(
            env, "admin", "create-operator", "--username", name, "--password", "operator-pass-1"
        ).returncode
        == 0
    )
    r = await api.post(
        "/api/v1/admin/auth/login", json={"username": name, "password": "operator-pass-1"}
    )
    return r.json()["token"]


async def shopper(api: httpx.AsyncClient) -> dict[str, Any]:
    """A WeChat user of the default app who opened the mini-program and signed in."""
    user = (await api.post(f"{SANDBOX}/users", json={})).json()
    code = (await api.post(f"{SANDBOX}/users/{user['openid']}/login-code")).json()["code"]
    r = await api.post("/api/v1/auth/login", json={"code": code})
    assert r.status_code == 200, r.text
    return {
        "openid": user["openid"],
        "token": r.json()["token"],
        "headers": {"authorization": f"Bearer {r.json()['token']}"},
        "member_id": r.json()["member"]["id"],
    }


async def place(
    api: httpx.AsyncClient,
    who: dict[str, Any],
    shop: dict[str, Any],
    qty_a: int = 2,
    key: str | None = None,
) -> httpx.Response:
    headers = dict(who["headers"])
    if key:
        headers["idempotency-key"] = key
    return await api.post(
        "/api/v1/orders",
        headers=headers,
        json={
            "store_id": shop["store"].id,
            "items": [{"sku_id": shop["a"].id, "quantity": qty_a}],
        },
    )


async def paid_order(api: httpx.AsyncClient, who: dict[str, Any], shop: dict[str, Any]) -> str:
    r = await place(api, who, shop)
    assert r.status_code == 201, r.text
    order_no = r.json()["order_no"]
    assert (
        await api.post(f"/api/v1/orders/{order_no}/pay", headers=who["headers"], json={})
    ).status_code == 200
    r = await api.post(f"{PAY}/{order_no}/complete?wait=1")
    assert r.json()["notify_status"] == 204, r.text
    return order_no


async def stock(store_id: int, sku_id: int) -> int:
    row = await StoreSku.get(store_id=store_id, sku_id=sku_id)
    return row.stock


async def wait_for(predicate: Any, seconds: float = 20) -> Any:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError("condition not reached in time")


async def paid_events(order_no: str) -> int:
    order = await Order.get(order_no=order_no)
    return await OrderEvent.filter(order_id=order.id, to_status="paid").count()


# -- the whole path --------------------------------------------------------------------------------


async def test_order_pay_and_pick_up_end_to_end(
    api: httpx.AsyncClient, shop: dict[str, Any], operator_token: str
) -> None:
    who = await shopper(api)
    before = await stock(shop["store"].id, shop["a"].id)

    r = await api.post(
        "/api/v1/orders",
        headers=who["headers"],
        json={
            "store_id": shop["store"].id,
            "items": [
                {"sku_id": shop["a"].id, "quantity": 2},
                {"sku_id": shop["b"].id, "quantity": 1},
            ],
        },
    )
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "pending_payment"
    assert order["payable_fen"] == 2 * 1290 + 4500  # the store's override price counts
    assert order["pickup_code"] is None
    assert await stock(shop["store"].id, shop["a"].id) == before - 2  # held while unpaid

    r = await api.post(f"/api/v1/orders/{order['order_no']}/pay", headers=who["headers"], json={})
    assert r.status_code == 200, r.text
    params = r.json()
    assert {"timeStamp", "nonceStr", "package", "signType", "paySign"} <= set(params)
    assert params["package"].startswith("prepay_id=") and params["signType"] == "RSA"
    assert params["paid"] is False and params["wechat_fen"] == order["payable_fen"]
    assert params["tenders"] == []  # WeChat Pay's part is recorded once it is paid

    r = await api.post(f"{PAY}/{order['order_no']}/complete?wait=1")
    assert r.json()["notify_status"] == 204
    r = await api.get(f"/api/v1/orders/{order['order_no']}", headers=who["headers"])
    paid = r.json()
    assert paid["status"] == "paid" and paid["paid_fen"] == order["payable_fen"]
    assert paid["pickup_code"] and len(paid["pickup_code"]) == 6
    assert [e["to_status"] for e in paid["events"]] == ["pending_payment", "paid"]

    # A clerk of this store hands it over.
    clerk = f"clerk-{uuid.uuid4().hex[:6]}"
    r = await api.post(
        "/api/v1/admin/staff",
        headers={"authorization": f"Bearer {operator_token}"},
        json={
            "username": clerk,
            "password": "clerk-pass-1",
            "role": "clerk",
            "store_ids": [shop["store"].id],
        },
    )
    assert r.status_code == 201, r.text
    staff_token = (
        await api.post(
            "/api/v1/staff/auth/login", json={"username": clerk, "password": "clerk-pass-1"}
        )
    ).json()["token"]
    staff = {"authorization": f"Bearer {staff_token}"}
    wrong = "000000" if paid["pickup_code"] != "000000" else "111111"
    r = await api.post(
        f"/api/v1/staff/orders/{order['order_no']}/complete",
        headers=staff,
        json={"pickup_code": wrong},
    )
    assert r.status_code == 409 and error_code(r) == "PICKUP_CODE_MISMATCH"
    r = await api.post(
        f"/api/v1/staff/orders/{order['order_no']}/complete",
        headers=staff,
        json={"pickup_code": paid["pickup_code"]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "completed"
    # A member token does not open the clerk's route.
    r = await api.post(
        f"/api/v1/staff/orders/{order['order_no']}/complete",
        headers=who["headers"],
        json={"pickup_code": paid["pickup_code"]},
    )
    assert r.status_code == 401


async def test_clerk_of_another_store_cannot_complete(
    api: httpx.AsyncClient, shop: dict[str, Any], operator_token: str
) -> None:
    who = await shopper(api)
    order_no = await paid_order(api, who, shop)
    other = await Store.create(
        code=f"O{uuid.uuid4().hex[:6]}", name="Other", city="武汉", lat=30.5, lng=114.3
    )
    clerk = f"clerk-{uuid.uuid4().hex[:6]}"
    await api.post(
        "/api/v1/admin/staff",
        headers={"authorization": f"Bearer {operator_token}"},
        json={
            "username": clerk,
            "password": "clerk-pass-1",
            "role": "clerk",
            "store_ids": [other.id],
        },
    )
    token = (
        await api.post(
            "/api/v1/staff/auth/login", json={"username": clerk, "password": "clerk-pass-1"}
        )
    ).json()["token"]
    code = (await Order.get(order_no=order_no)).pickup_code
    r = await api.post(
        f"/api/v1/staff/orders/{order_no}/complete",
        headers={"authorization": f"Bearer {token}"},
        json={"pickup_code": code},
    )
    assert r.status_code == 403 and error_code(r) == "STORE_NOT_ALLOWED"


# -- notifications ---------------------------------------------------------------------------------


async def test_same_notification_ten_times_and_concurrently_applies_once(
    api: httpx.AsyncClient, shop: dict[str, Any]
) -> None:
    who = await shopper(api)
    before = await stock(shop["store"].id, shop["a"].id)
    order_no = await paid_order(api, who, shop)
    r = await api.post(f"{PAY}/{order_no}/notify?times=10")
    assert r.json()["statuses"] == [204] * 10
    r = await api.post(f"{PAY}/{order_no}/notify?times=10&concurrent=1")
    assert r.json()["statuses"] == [204] * 10
    assert await paid_events(order_no) == 1
    order = await Order.get(order_no=order_no)
    assert order.status == OrderStatus.PAID
    assert await stock(shop["store"].id, shop["a"].id) == before - 2  # one stock movement


async def test_forged_signature_is_rejected_and_changes_nothing(
    api: httpx.AsyncClient, shop: dict[str, Any]
) -> None:
    who = await shopper(api)
    r = await place(api, who, shop)
    order_no = r.json()["order_no"]
    await api.post(f"/api/v1/orders/{order_no}/pay", headers=who["headers"], json={})
    r = await api.post(f"{PAY}/{order_no}/notify?forge=signature")
    assert r.json()["statuses"] == [401]
    order = await Order.get(order_no=order_no)
    assert order.status == OrderStatus.PENDING_PAYMENT and order.paid_fen is None

    # WeChat's signature probes are refused too.
    r = await api.post(
        "/api/v1/payments/wechat/notify",
        content=b"{}",
        headers={
            "Wechatpay-Signature": "WECHATPAY/SIGNTEST/abc",
            "Wechatpay-Timestamp": str(int(time.time())),
            "Wechatpay-Nonce": "n",
            "Wechatpay-Serial": "PUB_KEY_ID_X",
        },
    )
    assert r.status_code == 401


async def test_amount_mismatch_is_not_marked_paid_and_is_flagged(
    api: httpx.AsyncClient, shop: dict[str, Any], operator_token: str
) -> None:
    who = await shopper(api)
    order_no = (await place(api, who, shop)).json()["order_no"]
    await api.post(f"/api/v1/orders/{order_no}/pay", headers=who["headers"], json={})
    r = await api.post(f"{PAY}/{order_no}/notify?amount=1")
    assert r.json()["statuses"] == [204]  # accepted (no retries), but not applied
    order = await Order.get(order_no=order_no)
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert order.flag and "mismatch" in order.flag
    r = await api.get(
        f"/api/v1/admin/orders/{order_no}", headers={"authorization": f"Bearer {operator_token}"}
    )
    assert "mismatch" in r.json()["flag"]


# -- timeouts, races, refunds ---------------------------------------------------------------------


async def test_unpaid_order_times_out_and_its_stock_comes_back(
    api: httpx.AsyncClient, shop: dict[str, Any], worker: Any
) -> None:
    who = await shopper(api)
    before = await stock(shop["store"].id, shop["a"].id)
    order_no = (await place(api, who, shop, qty_a=3)).json()["order_no"]
    await api.post(f"/api/v1/orders/{order_no}/pay", headers=who["headers"], json={})
    assert await stock(shop["store"].id, shop["a"].id) == before - 3
    await Order.filter(order_no=order_no).update(pay_deadline=utcnow() - timedelta(seconds=1))

    async def cancelled() -> bool:
        return (await Order.get(order_no=order_no)).status == OrderStatus.CANCELLED

    await wait_for(cancelled)
    assert await stock(shop["store"].id, shop["a"].id) == before
    state = (await api.get(f"{PAY}/{order_no}/state")).json()
    assert state["state"] == "CLOSED"  # closed at WeChat too: it cannot be paid any more
    r = await api.post(f"{PAY}/{order_no}/complete")
    assert r.status_code == 409


async def test_pay_racing_the_timeout_close_has_exactly_one_outcome(
    api: httpx.AsyncClient, shop: dict[str, Any], app_settings: Settings
) -> None:
    outcomes = []
    for _ in range(6):
        who = await shopper(api)
        before = await stock(shop["store"].id, shop["a"].id)
        order_no = (await place(api, who, shop, qty_a=1)).json()["order_no"]
        await api.post(f"/api/v1/orders/{order_no}/pay", headers=who["headers"], json={})
        await Order.filter(order_no=order_no).update(pay_deadline=utcnow())
        close, pay = await asyncio.gather(
            payments.close_unpaid(app_settings, order_no, actor="system", reason="timeout"),
            api.post(f"{PAY}/{order_no}/complete?wait=1"),
        )
        order = await Order.get(order_no=order_no)
        if order.status == OrderStatus.PAID:
            assert pay.status_code == 200
            assert await stock(shop["store"].id, shop["a"].id) == before - 1
        else:
            assert order.status == OrderStatus.CANCELLED
            assert pay.status_code == 409  # WeChat closed it first: nobody was charged
            assert await stock(shop["store"].id, shop["a"].id) == before
        assert await paid_events(order_no) == (1 if order.status == OrderStatus.PAID else 0)
        outcomes.append((close, order.status))
    assert all(status in (OrderStatus.PAID, OrderStatus.CANCELLED) for _, status in outcomes)


async def test_payment_landing_on_a_closed_order_is_refunded(
    api: httpx.AsyncClient, shop: dict[str, Any]
) -> None:
    who = await shopper(api)
    order_no = (await place(api, who, shop, qty_a=1)).json()["order_no"]
    await api.post(f"/api/v1/orders/{order_no}/pay", headers=who["headers"], json={})
    # We closed it here (say WeChat could not be reached to close it there)...
    await orders.transition(order_no, OrderStatus.CANCELLED, actor="system", reason="test")
    # ...and the shopper's payment still went through at WeChat.
    r = await api.post(f"{PAY}/{order_no}/complete?wait=1")
    assert r.json()["notify_status"] == 204

    async def refunded() -> bool:
        return (await Order.get(order_no=order_no)).status == OrderStatus.REFUNDED

    await wait_for(refunded)
    order = await Order.get(order_no=order_no)
    assert order.paid_fen == order.payable_fen == order.refunded_fen
    assert await Refund.filter(order_id=order.id).count() == 1


async def test_two_refunds_at_once_make_one_refund(
    api: httpx.AsyncClient, shop: dict[str, Any], operator_token: str
) -> None:
    who = await shopper(api)
    order_no = await paid_order(api, who, shop)
    auth = {"authorization": f"Bearer {operator_token}"}
    r1, r2 = await asyncio.gather(
        api.post(
            f"/api/v1/admin/orders/{order_no}/refunds",
            headers=auth,
            json={"reason": "customer asked"},
        ),
        api.post(
            f"/api/v1/admin/orders/{order_no}/refunds",
            headers=auth,
            json={"reason": "customer asked"},
        ),
    )
    assert sorted([r1.status_code, r2.status_code]) == [201, 409], (r1.text, r2.text)
    order = await Order.get(order_no=order_no)
    assert await Refund.filter(order_id=order.id).count() == 1

    async def refunded() -> bool:
        return (await Order.get(order_no=order_no)).status == OrderStatus.REFUNDED

    await wait_for(refunded)
    # The refund notification again changes nothing.
    refund = await Refund.get(order_id=order.id)
    r = await api.post(f"{PAY}/refunds/{refund.out_refund_no}/notify?times=3")
    assert r.json()["statuses"] == [204, 204, 204]
    assert await OrderEvent.filter(order_id=order.id, to_status="refunded").count() == 1


async def test_shopper_cancels_unpaid_then_paid_order(
    api: httpx.AsyncClient, shop: dict[str, Any]
) -> None:
    who = await shopper(api)
    before = await stock(shop["store"].id, shop["a"].id)
    order_no = (await place(api, who, shop)).json()["order_no"]
    r = await api.post(f"/api/v1/orders/{order_no}/cancel", headers=who["headers"], json={})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert await stock(shop["store"].id, shop["a"].id) == before
    r = await api.post(f"/api/v1/orders/{order_no}/cancel", headers=who["headers"], json={})
    assert r.status_code == 409

    order_no = await paid_order(api, who, shop)
    r = await api.post(f"/api/v1/orders/{order_no}/cancel", headers=who["headers"], json={})
    assert r.status_code == 200 and r.json()["status"] in ("refunding", "refunded")


# -- idempotency and input ------------------------------------------------------------------------


async def test_same_idempotency_key_gives_one_order_and_the_same_answer(
    api: httpx.AsyncClient, shop: dict[str, Any]
) -> None:
    who = await shopper(api)
    key = uuid.uuid4().hex
    r1 = await place(api, who, shop, key=key)
    r2 = await place(api, who, shop, key=key)
    assert r1.status_code == r2.status_code == 201
    assert r1.json() == r2.json()
    # Concurrent copies of one request: one order, the others wait or replay.
    key2 = uuid.uuid4().hex
    answers = await asyncio.gather(*(place(api, who, shop, key=key2) for _ in range(5)))
    created = {a.json()["order_no"] for a in answers if a.status_code == 201}
    assert len(created) == 1
    assert all(a.status_code in (201, 409) for a in answers)
    assert await Order.filter(member_id=who["member_id"]).count() == 2
    # The same key with another body is refused.
    r = await place(api, who, shop, qty_a=5, key=key)
    assert r.status_code == 422 and error_code(r) == "IDEMPOTENCY_KEY_REUSED"


async def test_bad_orders_are_refused_without_side_effects(
    api: httpx.AsyncClient, shop: dict[str, Any]
) -> None:
    who = await shopper(api)
    before_b = await stock(shop["store"].id, shop["b"].id)
    before_a = await stock(shop["store"].id, shop["a"].id)
    # More than the store has of b: nothing held, not even a.
    r = await api.post(
        "/api/v1/orders",
        headers=who["headers"],
        json={
            "store_id": shop["store"].id,
            "items": [
                {"sku_id": shop["a"].id, "quantity": 1},
                {"sku_id": shop["b"].id, "quantity": before_b + 1},
            ],
        },
    )
    assert r.status_code == 409, r.text
    assert await stock(shop["store"].id, shop["a"].id) == before_a
    assert await stock(shop["store"].id, shop["b"].id) == before_b
    for bad in (
        {"store_id": shop["store"].id, "items": []},
        {"store_id": shop["store"].id, "items": [{"sku_id": shop["a"].id, "quantity": 0}]},
        {"store_id": "x", "items": [{"sku_id": 1, "quantity": 1}]},
    ):
        r = await api.post("/api/v1/orders", headers=who["headers"], json=bad)
        assert r.status_code == 422, r.text
    r = await api.post(
        "/api/v1/orders",
        headers=who["headers"],
        json={"store_id": 10**9, "items": [{"sku_id": shop["a"].id, "quantity": 1}]},
    )
    assert r.status_code == 404
    assert await Order.filter(member_id=who["member_id"]).count() == 0


async def test_a_lost_notification_is_found_by_the_workers_query(
    api: httpx.AsyncClient, shop: dict[str, Any], sandbox_redis: Any, worker: Any
) -> None:
    """WeChat's notification never reaches us; the worker queries quiet orders and applies
    the payment anyway, once."""
    from server.wechat.sandbox import pay_state

    who = await shopper(api)
    order_no = (await place(api, who, shop, qty_a=1)).json()["order_no"]
    await api.post(f"/api/v1/orders/{order_no}/pay", headers=who["headers"], json={})
    # Make the fake WeChat deliver its notification nowhere (a network that loses it).
    key = pay_state.k_tx(order_no)
    tx = orjson.loads(await sandbox_redis.get(key))
    tx["notify_url"] = "http://127.0.0.1:9/lost"
    await sandbox_redis.set(key, orjson.dumps(tx))
    r = await api.post(f"{PAY}/{order_no}/complete?wait=1")
    assert r.status_code == 200 and r.json()["notify_status"] != 204

    async def paid() -> bool:
        return (await Order.get(order_no=order_no)).status == OrderStatus.PAID

    await wait_for(paid, seconds=30)
    assert await paid_events(order_no) == 1
    event = await OrderEvent.get(order__order_no=order_no, to_status="paid")
    assert "query" in event.reason
