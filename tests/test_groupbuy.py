"""Group-buy against the running server, real PostgreSQL, Redis and the WeChat sandbox: seats
under a last-seat rush, units under a crowd, refunds before and after success, vouchers
written off at the right store, share attribution, refusals.

Deadlines and the races around them are in test_groupbuy_expiry.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from server.catalog.models import Category, Product, Sku
from server.coupons.models import Coupon, CouponStatus
from server.groupbuy.models import Group, GroupSeat, GroupStatus, SeatState
from server.orders.models import Order, OrderStatus
from server.payments.models import Refund
from server.settings import Settings
from server.stores.models import Store
from tests.conftest import ServerProcess, error_code, sweeping_worker
from tests.test_coupons import bearer, new_member, new_staff, new_store, operator_headers
from tests.test_orders_payments import PAY, shopper

# -- helpers (also used by test_groupbuy_expiry.py) ----------------------------------------------


async def new_sku() -> Sku:
    cat = await Category.create(name=f"gb-{uuid.uuid4().hex[:6]}")
    product = await Product.create(category=cat, name="Spicy duck neck")
    return await Sku.create(product=product, name="Family box", price_fen=5990)


async def create_activity(
    api: httpx.AsyncClient, op: dict[str, str], *, stores: list[Store] | None = None, **over: Any
) -> dict[str, Any]:
    now = datetime.now(UTC)
    sku = await new_sku()
    body: dict[str, Any] = {
        "sku_id": sku.id,
        "group_price_fen": 3990,
        "group_size": 3,
        "units": 300,
        "starts_at": (now - timedelta(seconds=5)).isoformat(),
        "ends_at": (now + timedelta(hours=2)).isoformat(),
        "group_minutes": 60,
        "per_member_limit": 5,
        "store_ids": [s.id for s in stores or []],
    }
    body.update(over)
    r = await api.post("/api/v1/admin/group-buys", json=body, headers=op)
    assert r.status_code == 201, r.text
    return r.json()


def keyed(headers: dict[str, str], key: str | None = None) -> dict[str, str]:
    return {**headers, "idempotency-key": key or uuid.uuid4().hex}


async def open_group(
    api: httpx.AsyncClient, who: dict[str, Any], activity: dict[str, Any], key: str | None = None
) -> httpx.Response:
    return await api.post(
        f"/api/v1/group-buys/{activity['id']}/groups", headers=keyed(who["headers"], key)
    )


async def join(
    api: httpx.AsyncClient,
    who: dict[str, Any],
    group_no: str,
    scene: str | None = None,
    key: str | None = None,
) -> httpx.Response:
    return await api.post(
        f"/api/v1/groups/{group_no}/join",
        headers=keyed(who["headers"], key),
        json={"scene": scene} if scene else {},
    )


async def pay(api: httpx.AsyncClient, who: dict[str, Any], order_no: str) -> httpx.Response:
    """The shopper pays: wx.requestPayment parameters, then the sandbox plays the phone."""
    r = await api.post(f"/api/v1/orders/{order_no}/pay", headers=who["headers"], json={})
    assert r.status_code == 200, r.text
    return await api.post(f"{PAY}/{order_no}/complete?wait=1")


async def wait_for(predicate: Any, seconds: float = 20) -> Any:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


async def group_view(api: httpx.AsyncClient, group_no: str) -> dict[str, Any]:
    r = await api.get(f"/api/v1/groups/{group_no}")
    assert r.status_code == 200, r.text
    return r.json()


async def wait_status(api: httpx.AsyncClient, group_no: str, status: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        view = await group_view(api, group_no)
        return view if view["status"] == status else None

    return await wait_for(reached)


async def open_paid_group(
    api: httpx.AsyncClient, activity: dict[str, Any]
) -> tuple[dict[str, Any], str, str]:
    """A group whose leader has paid, joinable: (leader, group_no, leader's order)."""
    leader = await shopper(api)
    r = await open_group(api, leader, activity)
    assert r.status_code == 201, r.text
    group_no, order_no = r.json()["group_no"], r.json()["order_no"]
    assert (await pay(api, leader, order_no)).json()["notify_status"] == 204
    await wait_status(api, group_no, "open")
    return leader, group_no, order_no


async def members_with_tokens(settings: Settings, n: int) -> list[dict[str, Any]]:
    """Members who can take seats but never pay (no WeChat identity needed)."""
    out = []
    for _ in range(n):
        m, headers = await new_member(settings)
        out.append({"member_id": m.id, "headers": headers})
    return out


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker(
    env: dict[str, str], server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The real `haodian worker`: seat materialisation, outbox, sweeps every second."""
    with sweeping_worker(
        env,
        server,
        tmp_path_factory.mktemp("logs") / "gb-worker.log",
        HAODIAN_GROUPBUY_SWEEP_SECONDS="1",
        HAODIAN_WORKER_NAME=f"gb-{uuid.uuid4().hex[:6]}",
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
async def op(database: Settings) -> dict[str, str]:
    return await operator_headers(database)


# -- the whole path --------------------------------------------------------------------------------


async def test_open_share_join_pay_vouchers_and_write_off(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings, worker: ServerProcess
) -> None:
    allowed, other = await new_store(), await new_store()
    activity = await create_activity(api, op, stores=[allowed])
    assert activity["status"] == "live" and activity["units_left"] == 300
    leader = await shopper(api)
    r = await open_group(api, leader, activity)
    assert r.status_code == 201, r.text
    opened = r.json()
    group_no = opened["group_no"]
    assert opened["seat"] == 1 and opened["order_no"].startswith(f"GB{activity['id']}-")
    # Random, not the leader's id; and not joinable before the leader pays.
    assert str(leader["member_id"]) not in group_no[:8]
    early = await join(api, await shopper(api), group_no)
    assert early.status_code == 409 and error_code(early) == "GROUP_NOT_OPEN"
    # Paying at once works even before the worker wrote the order.
    assert (await pay(api, leader, opened["order_no"])).json()["notify_status"] == 204
    view = await wait_status(api, group_no, "open")
    assert view["paid"] == 1 and view["seats_left"] == 2 and view["size"] == 3

    # The leader shares it; two friends come in through the scene and pay.
    share = await api.post(
        "/api/v1/shares", json={"kind": "group", "target": group_no}, headers=leader["headers"]
    )
    assert share.status_code == 201, share.text
    scene = share.json()["scene"]
    assert len(scene) <= 32 and group_no in share.json()["path"]
    landing = (await api.get(f"/api/v1/shares/{scene}")).json()
    assert landing["kind"] == "group" and landing["target"] == group_no
    png = await api.get(share.json()["wxacode_url"])
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    friends = [await shopper(api), await shopper(api)]
    for f in friends:
        r = await join(api, f, group_no, scene=scene)
        assert r.status_code == 201, r.text
        assert (await pay(api, f, r.json()["order_no"])).json()["notify_status"] == 204
    view = await wait_status(api, group_no, "succeeded")
    assert view["paid"] == 3 and view["seats_left"] == 0
    assert len(view["members"]) == 3 and view["members"][0]["is_leader"]
    assert all("*" in m["nickname"] or m["nickname"] == "微信用户" for m in view["members"])
    seats = await GroupSeat.filter(group__group_no=group_no).order_by("id")
    assert [s.sharer_member_id for s in seats] == [None, leader["member_id"], leader["member_id"]]
    assert all(s.state == SeatState.PAID and s.voucher_coupon_id for s in seats)

    # Each member has a voucher; one is written off at the allowed store, refused at another.
    vouchers = []
    for who in [leader, *friends]:
        mine = (await api.get("/api/v1/me/coupons?status=unused", headers=who["headers"])).json()
        ours = [c for c in mine["items"] if c["template_id"] == activity["voucher_template_id"]]
        assert len(ours) == 1 and ours[0]["store_ids"] == [allowed.id]
        vouchers.append(ours[0])
    _, clerk_here = await new_staff(database, [allowed])
    _, clerk_there = await new_staff(database, [other])
    code = await api.get(f"/api/v1/me/coupons/{vouchers[0]['id']}/code", headers=leader["headers"])
    r = await api.post("/api/v1/staff/write-offs", json={"code": code.json()["code"]},
                       headers=clerk_there)  # fmt: skip
    assert r.status_code == 403 and error_code(r) == "STORE_NOT_ALLOWED"
    r = await api.post("/api/v1/staff/write-offs", json={"code": code.json()["code"]},
                       headers=clerk_here)  # fmt: skip
    assert r.status_code == 201, r.text

    stats = (await api.get(f"/api/v1/admin/group-buys/{activity['id']}/stats", headers=op)).json()
    assert stats["groups_opened"] == 1 and stats["groups_succeeded"] == 1
    assert stats["groups_failed"] == 0 and stats["members"] == 3 and stats["refunds"] == 0
    assert stats["vouchers_issued"] == 3 and stats["vouchers_written_off"] == 1
    assert stats["write_off_rate"] == round(1 / 3, 4) and stats["joins_via_share"] == 2
    detail = (await api.get(f"/api/v1/group-buys/{activity['id']}")).json()
    assert detail["units_left"] == 297 and detail["joinable_groups"] == []
    share_stats = await api.get(
        f"/api/v1/admin/shares/stats?kind=group&target={group_no}", headers=op
    )
    assert share_stats.status_code == 200, share_stats.text
    top = share_stats.json()["items"][0]
    assert top["conversions"] == 2


async def test_two_hundred_members_race_for_the_last_two_seats(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings, worker: ServerProcess
) -> None:
    activity = await create_activity(api, op, group_size=4, per_member_limit=1)
    _, group_no, _ = await open_paid_group(api, activity)
    first = await shopper(api)
    r = await join(api, first, group_no)
    assert r.status_code == 201
    await pay(api, first, r.json()["order_no"])
    # A second group to be offered instead.
    _, spare_no, _ = await open_paid_group(api, activity)

    crowd = await members_with_tokens(database, 200)
    answers = await asyncio.gather(*(join(api, m, group_no) for m in crowd))
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {201: 2, 409: 198}, statuses
    full = [a for a in answers if a.status_code == 409]
    assert {error_code(a) for a in full} == {"GROUP_FULL"}
    assert spare_no in full[0].json()["error"]["details"]["joinable_groups"]
    winners = [a.json()["order_no"] for a in answers if a.status_code == 201]

    async def seats_written() -> bool:
        return await GroupSeat.filter(order_no__in=winners).count() == 2

    await wait_for(seats_written)
    assert (await group_view(api, group_no))["seats_left"] == 0
    # Nobody pays: at the pay deadline the seats come back and others can take them.
    await Order.filter(order_no__in=winners).update(pay_deadline=datetime.now(UTC))

    async def released() -> bool:
        return await GroupSeat.filter(order_no__in=winners, state=SeatState.RELEASED).count() == 2

    await wait_for(released)

    async def two_free() -> bool:
        return (await group_view(api, group_no))["seats_left"] == 2

    await wait_for(two_free)
    late = await shopper(api)
    r = await join(api, late, group_no)
    assert r.status_code == 201, r.text
    assert (await pay(api, late, r.json()["order_no"])).json()["notify_status"] == 204
    group = await Group.get(group_no=group_no)
    assert group.paid_count == 3 and group.status == GroupStatus.OPEN
    live = await GroupSeat.filter(group_id=group.id, live_seat__not_isnull=True).count()
    assert live == 3


async def test_thirty_units_under_three_hundred_openers_and_joiners(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings, worker: ServerProcess
) -> None:
    ends = datetime.now(UTC) + timedelta(seconds=40)
    activity = await create_activity(
        api, op, units=30, group_size=3, per_member_limit=1, ends_at=ends.isoformat()
    )
    leaders = [await open_paid_group(api, activity) for _ in range(4)]
    groups = [g for _, g, _ in leaders]
    payers = [await shopper(api) for _ in range(30)]  # who gets a seat and pays
    crowd = await members_with_tokens(database, 270)
    everyone = payers + crowd

    async def go(i: int, who: dict[str, Any]) -> tuple[dict[str, Any], httpx.Response]:
        if i % 2:
            return who, await open_group(api, who, activity)
        return who, await join(api, who, groups[(i // 2) % len(groups)])

    answers = await asyncio.gather(*(go(i, w) for i, w in enumerate(everyone)))
    opened = [r.json() for _, r in answers if r.status_code == 201 and r.json()["seat"] == 1]
    joined = [r.json() for _, r in answers if r.status_code == 201 and r.json()["seat"] > 1]
    refusals = Counter(error_code(r) for _, r in answers if r.status_code != 201)
    assert len(opened) == 6, (len(opened), refusals)  # 4 groups + 6 new = 30 units reserved
    assert len(joined) == 8, (len(joined), refusals)  # 2 free seats in each of the 4
    assert set(refusals) <= {"SOLD_OUT", "GROUP_FULL"} and sum(refusals.values()) == 286

    # Everyone who got a seat and can pay does, at once.
    paying = {id(w): w for w in payers}
    to_pay = [(w, r.json()["order_no"]) for w, r in answers
              if r.status_code == 201 and id(w) in paying]  # fmt: skip
    await asyncio.gather(*(pay(api, w, no) for w, no in to_pay))

    # The deadline passes; groups not full fail and every paid member of them is refunded.
    async def all_settled() -> bool:
        return not await Group.filter(
            activity_id=activity["id"], status__in=[GroupStatus.FORMING, GroupStatus.OPEN]
        ).exists()

    await asyncio.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()))
    await wait_for(all_settled, 30)
    groups_db = await Group.filter(activity_id=activity["id"])
    assert all(g.paid_count <= g.size for g in groups_db)
    for g in groups_db:
        live = await GroupSeat.filter(group_id=g.id, live_seat__not_isnull=True).count()
        assert live <= g.size
    paid_counted = sum(g.paid_count for g in groups_db if g.status == GroupStatus.SUCCEEDED)
    assert paid_counted <= 30

    async def failed_refunded() -> bool:
        for g in groups_db:
            if g.status != GroupStatus.FAILED:
                continue
            for s in await GroupSeat.filter(group_id=g.id, paid_at__not_isnull=True):
                order = await Order.get(order_no=s.order_no)
                if order.status != OrderStatus.REFUNDED:
                    return False
        return True

    await wait_for(failed_refunded, 30)
    for g in groups_db:
        for s in await GroupSeat.filter(group_id=g.id, paid_at__not_isnull=True):
            order = await Order.get(order_no=s.order_no)
            assert await Refund.filter(order_id=order.id).count() == (
                1 if g.status == GroupStatus.FAILED else 0
            )
    vouchers = await Coupon.filter(template_id=activity["voucher_template_id"]).count()
    assert vouchers == paid_counted


async def test_refund_before_success_frees_the_seat_after_success_only_the_voucher(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings, worker: ServerProcess
) -> None:
    store = await new_store()
    activity = await create_activity(api, op, stores=[store])
    _, group_no, leader_order = await open_paid_group(api, activity)
    quitter = await shopper(api)
    r = await join(api, quitter, group_no)
    quit_order = r.json()["order_no"]
    await pay(api, quitter, quit_order)
    assert (await group_view(api, group_no))["paid"] == 2
    # Before success: the shopper leaves (a refund), the seat is free for someone else.
    r = await api.post(f"/api/v1/orders/{quit_order}/cancel", headers=quitter["headers"], json={})
    assert r.status_code == 200, r.text

    async def freed() -> bool:
        view = await group_view(api, group_no)
        return view["paid"] == 1 and view["seats_left"] == 2

    await wait_for(freed)
    friends = [await shopper(api), await shopper(api)]
    orders = []
    for f in friends:
        r = await join(api, f, group_no)
        assert r.status_code == 201, r.text
        orders.append(r.json()["order_no"])
        await pay(api, f, orders[-1])
    view = await wait_status(api, group_no, "succeeded")
    assert view["paid"] == 3

    # After success: one member is refunded; the group stays succeeded, only that voucher
    # goes; a member whose voucher was already used at the store cannot be refunded.
    r = await api.post(f"/api/v1/orders/{orders[0]}/cancel", headers=friends[0]["headers"], json={})
    assert r.status_code == 200, r.text
    seat = await GroupSeat.get(order_no=orders[0])
    assert (await Coupon.get(id=seat.voucher_coupon_id)).status == CouponStatus.VOID
    assert (await Group.get(group_no=group_no)).status == GroupStatus.SUCCEEDED
    others = await GroupSeat.filter(order_no__in=[leader_order, orders[1]])
    kept = await Coupon.filter(id__in=[s.voucher_coupon_id for s in others])
    assert len(kept) == 2 and {c.status for c in kept} == {CouponStatus.UNUSED}
    used_seat = await GroupSeat.get(order_no=orders[1])
    _, clerk = await new_staff(database, [store])
    code = await api.get(f"/api/v1/me/coupons/{used_seat.voucher_coupon_id}/code",
                         headers=friends[1]["headers"])  # fmt: skip
    r = await api.post(
        "/api/v1/staff/write-offs", json={"code": code.json()["code"]}, headers=clerk
    )
    assert r.status_code == 201, r.text
    r = await api.post(f"/api/v1/orders/{orders[1]}/cancel", headers=friends[1]["headers"], json={})
    assert r.status_code == 409 and error_code(r) == "COUPON_ALREADY_USED"
    assert (await Order.get(order_no=orders[1])).status == OrderStatus.PAID

    async def quit_refunded() -> bool:
        return (await Order.get(order_no=orders[0])).status == OrderStatus.REFUNDED

    await wait_for(quit_refunded)
    stats = (await api.get(f"/api/v1/admin/group-buys/{activity['id']}/stats", headers=op)).json()
    assert stats["groups_succeeded"] == 1 and stats["refunds"] == 2
    assert stats["refunded_after_success"] == 1 and stats["vouchers_void"] == 1
    assert stats["vouchers_issued"] == 3 and stats["vouchers_written_off"] == 1
    assert stats["write_off_rate"] == 0.5


async def test_refusals_replays_and_the_landing_page(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings, worker: ServerProcess
) -> None:
    activity = await create_activity(api, op, per_member_limit=1)
    leader, group_no, _ = await open_paid_group(api, activity)
    m, headers = await new_member(database)
    who = {"member_id": m.id, "headers": headers}
    key = uuid.uuid4().hex
    first = await join(api, who, group_no, key=key)
    again = await join(api, who, group_no, key=key)
    assert first.status_code == again.status_code == 201
    assert again.json()["order_no"] == first.json()["order_no"] and again.json()["replayed"]
    assert error_code(await join(api, who, group_no)) == "ALREADY_IN_GROUP"
    # The join's key replayed on another request (opening a group) is refused, not replayed.
    r = await open_group(api, who, activity, key=key)
    assert r.status_code == 422 and error_code(r) == "IDEMPOTENCY_KEY_REUSED"
    r = await join(api, leader, group_no)
    assert r.status_code == 409 and error_code(r) == "ALREADY_IN_GROUP"
    # The limit is live seats in the activity: a second group is one too many.
    r = await open_group(api, who, activity)
    assert r.status_code == 409 and error_code(r) == "LIMIT_REACHED"
    r = await api.post(f"/api/v1/groups/{group_no}/join", headers=headers, json={})
    assert r.status_code == 400 and error_code(r) == "IDEMPOTENCY_KEY_REQUIRED"
    r = await api.post(f"/api/v1/groups/{group_no}/join", headers=keyed({}), json={})
    assert r.status_code == 401
    for bogus, code in [
        ("nope", "GROUP_NOT_FOUND"),
        ("abcdefgh0", "GROUP_NOT_FOUND"),
        ("abcdefgh99999999", "GROUP_NOT_FOUND"),
        ("ABCDEFGH1x", "GROUP_NOT_FOUND"),
        ("组团组团组团组团1", "NOT_FOUND"),  # not what a group number can be: no route takes it
    ]:
        r = await join(api, who, bogus)
        assert r.status_code == 404 and error_code(r) == code, (bogus, r.text)
        assert (await api.get(f"/api/v1/groups/{bogus}")).status_code == 404
    r = await api.post(f"/api/v1/groups/{group_no}/join", headers=keyed(headers),
                       json={"scene": "x" * 40})  # fmt: skip
    assert r.status_code == 422
    assert (await api.get("/api/v1/group-buys/99999999999999999999")).status_code == 404
    r = await api.post("/api/v1/group-buys/99999999999999999999/groups", headers=keyed(headers))
    assert r.status_code == 404 and error_code(r) == "NOT_FOUND"  # beyond any id: no route
    r = await api.post(f"/api/v1/group-buys/{2**63 - 1}/groups", headers=keyed(headers))
    assert r.status_code == 404 and error_code(r) == "GROUP_BUY_NOT_FOUND"

    # Upcoming and ended activities refuse with their own codes.
    now = datetime.now(UTC)
    later = await create_activity(
        api, op, starts_at=(now + timedelta(hours=1)).isoformat(),
        ends_at=(now + timedelta(hours=2)).isoformat(),
    )  # fmt: skip
    assert error_code(await open_group(api, who, later)) == "NOT_STARTED"
    soon = await create_activity(api, op, ends_at=(now + timedelta(seconds=2)).isoformat())
    await asyncio.sleep(2.2)
    assert error_code(await open_group(api, who, soon)) == "ENDED"

    # The landing page needs no token and shows no private data.
    view = await group_view(api, group_no)
    assert view["status"] == "open" and view["seats_left"] == 1
    assert set(view["members"][0]) == {"nickname", "avatar_url", "is_leader", "refunded"}
    listed = (await api.get(f"/api/v1/group-buys/{activity['id']}")).json()["joinable_groups"]
    assert [g["group_no"] for g in listed] == [group_no] and listed[0]["seats_left"] == 1
    # Bad activities are refused before anything is written.
    bad = await api.post(
        "/api/v1/admin/group-buys",
        headers=op,
        json={"sku_id": 1, "group_price_fen": 1, "group_size": 11, "units": 5,
              "starts_at": now.isoformat(), "ends_at": now.isoformat(), "group_minutes": 1},
    )  # fmt: skip
    assert bad.status_code == 422
    far = {"ends_at": "9999-12-31T23:59:59+00:00"}
    for over in (far, {"store_ids": [2**63]}, {"group_price_fen": 999_999}):
        body = {
            "sku_id": (await new_sku()).id,
            "group_price_fen": 100,
            "group_size": 3,
            "units": 30,
            "starts_at": now.isoformat(),
            "ends_at": (now + timedelta(days=1)).isoformat(),
            "group_minutes": 10,
            **over,
        }
        r = await api.post("/api/v1/admin/group-buys", headers=op, json=body)
        assert r.status_code == 422, (over, r.text)
    listed = await api.get("/api/v1/group-buys")
    assert listed.status_code == 200
    member_tries = await api.post("/api/v1/admin/group-buys", headers=bearer("x"), json={})
    assert member_tries.status_code == 401


async def test_a_payment_the_group_cannot_take_is_refunded_and_flagged_never_lost(
    api: httpx.AsyncClient,
    op: dict[str, str],
    database: Settings,
    worker: ServerProcess,
    redis: Any,
) -> None:
    from server.coupons import stock
    from server.coupons.models import CouponTemplate

    activity = await create_activity(api, op, group_size=2)
    tpl = activity["voucher_template_id"]
    # Vouchers are granted only by the group-buy: neither the centre nor a campaign can take them.
    r = await api.patch(f"/api/v1/admin/coupon-templates/{tpl}", json={"in_center": True},
                        headers=op)  # fmt: skip
    assert r.status_code == 409 and error_code(r) == "TEMPLATE_GRANTED_ONLY"
    m, _ = await new_member(database)
    r = await api.post("/api/v1/admin/coupon-issuances", headers=op,
                       json={"template_id": tpl, "member_ids": [m.id]})  # fmt: skip
    assert r.status_code == 409 and error_code(r) == "TEMPLATE_GRANTED_ONLY"
    # Should the voucher still be impossible to grant (here: its units gone behind our back),
    # the last payment is not applied as paid, and not dropped either: refunded and flagged.
    _, group_no, _ = await open_paid_group(api, activity)
    total = (await CouponTemplate.get(id=tpl)).total
    await redis.set(stock.unit_keys(tpl)[0], total + 1)  # the next unit is past the total
    friend = await shopper(api)
    r = await join(api, friend, group_no)
    order_no = r.json()["order_no"]
    assert (await pay(api, friend, order_no)).json()["notify_status"] == 204

    async def refunded() -> bool:
        return (await Order.get(order_no=order_no)).status == OrderStatus.REFUNDED

    await wait_for(refunded)
    order = await Order.get(order_no=order_no)
    assert order.flag and "COUPON_SOLD_OUT" in order.flag
    assert await Refund.filter(order_id=order.id).count() == 1
    group = await Group.get(group_no=group_no)
    assert group.status == GroupStatus.OPEN and group.paid_count == 1


async def test_a_leader_leaving_alone_ends_the_group_and_limits_come_back(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings, worker: ServerProcess
) -> None:
    activity = await create_activity(api, op, per_member_limit=1)
    leader, group_no, leader_order = await open_paid_group(api, activity)
    holder = await shopper(api)
    r = await join(api, holder, group_no)  # holds a seat, does not pay
    holder_order = r.json()["order_no"]
    # Cancelling at once works, before the worker wrote the order.
    other, other_key = await shopper(api), uuid.uuid4().hex
    r = await open_group(api, other, activity, key=other_key)
    r = await api.post(f"/api/v1/orders/{r.json()['order_no']}/cancel",
                       headers=other["headers"], json={})  # fmt: skip
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    replay = await api.post(f"/api/v1/group-buys/{activity['id']}/groups",
                            headers={**other["headers"], "idempotency-key": other_key})  # fmt: skip
    assert replay.json()["replayed"] and replay.json()["status"] == "released"
    # Double-tapped pay buttons: no error, one payment.
    again = await asyncio.gather(
        *(api.post(f"/api/v1/orders/{holder_order}/pay", headers=holder["headers"], json={})
          for _ in range(6))
    )  # fmt: skip
    assert {a.status_code for a in again} == {200}

    r = await api.post(f"/api/v1/orders/{leader_order}/cancel", headers=leader["headers"], json={})
    assert r.status_code == 200, r.text
    view = await wait_status(api, group_no, "failed")
    assert view["paid"] == 0

    async def holder_closed() -> bool:
        return (await Order.get(order_no=holder_order)).status == OrderStatus.CANCELLED

    await wait_for(holder_closed)
    # Neither the leader nor the holder is stuck at the limit of 1: both may open again.
    for who in (leader, holder):

        async def opens(who: dict[str, Any] = who) -> bool:
            r = await open_group(api, who, activity)
            return r.status_code == 201

        await wait_for(opens)
