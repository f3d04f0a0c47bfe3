"""Coupons on real pickup orders through the API: the order records the discount, the coupon
is locked while unpaid, comes back when the payment deadline passes (the payments sweep that
the worker runs), and is used once the order is paid through the WeChat Pay sandbox."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx

from server.catalog.models import Category, Product, Sku, StoreSku
from server.coupons import service as cs
from server.coupons.models import Coupon, CouponStatus
from server.infra.clock import utcnow
from server.orders.models import Order, OrderStatus
from server.payments import service as payments
from server.settings import Settings
from server.stores.models import Store
from tests.conftest import ServerProcess, error_code
from tests.test_coupons import claim, make_template, operator_headers

SANDBOX = "/_sandbox/wechat"


async def _shopper(api: httpx.AsyncClient) -> dict[str, Any]:
    user = (await api.post(f"{SANDBOX}/users", json={})).json()
    code = (await api.post(f"{SANDBOX}/users/{user['openid']}/login-code")).json()["code"]
    r = await api.post("/api/v1/auth/login", json={"code": code})
    assert r.status_code == 200, r.text
    return {"headers": {"authorization": f"Bearer {r.json()['token']}"}}


async def _shop() -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:6]
    store = await Store.create(
        code=f"C{suffix}",
        name=f"Coupon store {suffix}",
        city="武汉",
        lat=30.59,
        lng=114.30,
        pickup=True,
        takeout=True,
        write_off=True,
    )
    cat = await Category.create(name=f"nuts-{suffix}")
    prod = await Product.create(category=cat, name="Cashews")
    sku = await Sku.create(product=prod, name="Cashews 250g", price_fen=3500)
    await StoreSku.create(store=store, sku=sku, stock=50)
    return {"store": store, "sku": sku}


async def test_coupon_locked_by_unpaid_order_comes_back_on_timeout_then_used_when_paid(
    api: httpx.AsyncClient, server: ServerProcess, database: Settings
) -> None:
    shop = await _shop()
    op = await operator_headers(database)
    t = await make_template(
        api,
        op,
        name="¥20 off ¥100",
        kind="threshold",
        amount_off_fen=2000,
        threshold_fen=10000,
        channel="online",
    )
    who = await _shopper(api)
    c = await claim(api, who["headers"], t["id"])
    body = {
        "store_id": shop["store"].id,
        "items": [{"sku_id": shop["sku"].id, "quantity": 3}],
        "coupon_ids": [c["id"]],
    }

    r = await api.post("/api/v1/orders", headers=who["headers"], json=body)
    assert r.status_code == 201, r.text
    order_no = r.json()["order_no"]
    order = await Order.get(order_no=order_no)
    assert (order.goods_fen, order.discount_fen, order.payable_fen) == (10500, 2000, 8500)
    got = await Coupon.get(id=c["id"])
    assert got.status == CouponStatus.LOCKED and got.order_no == order_no
    assert await cs.coupons_for_order(order_no) == [
        {"coupon_id": c["id"], "name": "¥20 off ¥100", "discount_fen": 2000, "status": "locked"}
    ]
    # While locked, a second order cannot use it (and leaves no order behind).
    r = await api.post("/api/v1/orders", headers=who["headers"], json=body)
    assert r.status_code == 409 and error_code(r) == "COUPON_LOCKED"

    # The payment deadline passes; the sweep the worker runs closes the order.
    await Order.filter(order_no=order_no).update(pay_deadline=utcnow() - timedelta(seconds=1))
    settings = database.model_copy(update={"public_url": server.base_url})
    await payments.sweep(settings)
    assert (await Order.get(order_no=order_no)).status == OrderStatus.CANCELLED
    got = await Coupon.get(id=c["id"])
    assert got.status == CouponStatus.UNUSED and got.order_no is None
    mine = (await api.get("/api/v1/me/coupons?status=unused", headers=who["headers"])).json()
    assert [x["id"] for x in mine["items"]] == [c["id"]]

    # Usable again: a new order takes it, WeChat Pay (sandbox) pays, the coupon is used.
    r = await api.post("/api/v1/orders", headers=who["headers"], json=body)
    assert r.status_code == 201, r.text
    order_no2 = r.json()["order_no"]
    r = await api.post(f"/api/v1/orders/{order_no2}/pay", headers=who["headers"], json={})
    assert r.status_code == 200, r.text
    r = await api.post(f"{SANDBOX}/pay/{order_no2}/complete?wait=1")
    assert r.json()["notify_status"] == 204, r.text
    got = await Coupon.get(id=c["id"])
    assert got.status == CouponStatus.USED and got.used_channel == "online"
    assert got.order_no == order_no2 and got.discount_fen == 2000
    stats = (await api.get(f"/api/v1/admin/coupon-templates/{t['id']}/stats", headers=op)).json()
    assert stats["used_online"] == 1 and stats["written_off_in_store"] == 0


async def test_threshold_not_met_refuses_the_order(
    api: httpx.AsyncClient, database: Settings
) -> None:
    shop = await _shop()
    op = await operator_headers(database)
    t = await make_template(
        api, op, name="¥20 off ¥100", kind="threshold", amount_off_fen=2000, threshold_fen=10000
    )
    who = await _shopper(api)
    c = await claim(api, who["headers"], t["id"])
    r = await api.post(
        "/api/v1/orders",
        headers=who["headers"],
        json={
            "store_id": shop["store"].id,
            "items": [{"sku_id": shop["sku"].id, "quantity": 1}],
            "coupon_ids": [c["id"]],
        },
    )
    assert r.status_code == 409 and error_code(r) == "COUPON_NOT_APPLICABLE"
    assert "¥100" in r.json()["error"]["message"]
    assert (await Coupon.get(id=c["id"])).status == CouponStatus.UNUSED
    assert (await StoreSku.get(store_id=shop["store"].id, sku_id=shop["sku"].id)).stock == 50
