"""Group-buy deadlines and the races around them, against the running server, PostgreSQL,
Redis and the WeChat sandbox.

No worker runs in this module: the test process plays it (delivers the outbox, runs the
deadline job), so it can run the job twice and land a payment at the same moment, and
decide when each effect happens. Orders are written on demand when the shopper pays.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest

from server.coupons.models import Coupon
from server.groupbuy import outcomes, seats
from server.groupbuy.models import Group, GroupSeat, GroupStatus, SeatState
from server.infra.clock import utcnow
from server.orders import service as orders
from server.orders.models import Order, OrderStatus
from server.outbox import service as outbox
from server.outbox.models import OutboxEvent
from server.payments.models import Refund
from server.settings import Settings
from tests.conftest import drain, error_code
from tests.test_groupbuy import create_activity, group_view, join, open_group
from tests.test_orders_payments import PAY, SANDBOX, shopper

TEMPLATE = "sandbox-group_result"


@pytest.fixture(scope="module")
async def op(database: Settings) -> dict[str, str]:
    from tests.test_coupons import operator_headers

    return await operator_headers(database)


async def prepay(api: httpx.AsyncClient, who: dict[str, Any], order_no: str) -> None:
    r = await api.post(f"/api/v1/orders/{order_no}/pay", headers=who["headers"], json={})
    assert r.status_code == 200, r.text


async def complete(api: httpx.AsyncClient, order_no: str) -> httpx.Response:
    return await api.post(f"{PAY}/{order_no}/complete?wait=1")


async def two_paid_and_one_unpaid(
    api: httpx.AsyncClient, env: outbox.Env, activity: dict[str, Any], subscribed: int = 3
) -> tuple[str, list[dict[str, Any]], list[str]]:
    """A group of 3: the leader and one friend paid, a third holds a seat, prepaid."""
    people = [await shopper(api) for _ in range(3)]
    for p in people[:subscribed]:  # they accept the result message (one send each)
        r = await api.post(
            f"{SANDBOX}/users/{p['openid']}/subscriptions", json={"template_id": TEMPLATE}
        )
        assert r.status_code == 200
    r = await open_group(api, people[0], activity)
    assert r.status_code == 201, r.text
    group_no, leader_order = r.json()["group_no"], r.json()["order_no"]
    await prepay(api, people[0], leader_order)
    assert (await complete(api, leader_order)).json()["notify_status"] == 204
    await drain(env)  # the group opens in Redis
    assert (await group_view(api, group_no))["status"] == "open"
    order_nos = [leader_order]
    for p in people[1:]:
        r = await join(api, p, group_no)
        assert r.status_code == 201, r.text
        order_nos.append(r.json()["order_no"])
        await prepay(api, p, order_nos[-1])
    assert (await complete(api, order_nos[1])).json()["notify_status"] == 204
    await drain(env)
    return group_no, people, order_nos


async def pass_deadline(env: outbox.Env, group_no: str) -> Group:
    """Move the group's deadline into the past, in PostgreSQL and Redis alike."""
    group = await Group.get(group_no=group_no)
    past = utcnow() - timedelta(seconds=1)
    await Group.filter(id=group.id).update(expires_at=past)
    g, _ = seats.group_keys(group.activity_id, group_no)  # type: ignore[attr-defined]
    await env.redis.hset(g, "exp", int(past.timestamp() * 1000))
    return group


async def refunds_of(order_no: str) -> int:
    order = await Order.get(order_no=order_no)
    return await Refund.filter(order_id=order.id).count()


async def wait_refunded(order_nos: list[str], env: outbox.Env) -> None:
    for _ in range(100):
        await drain(env)
        states = [(await Order.get(order_no=n)).status for n in order_nos]
        if all(s == OrderStatus.REFUNDED for s in states):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not refunded: {states}")


# -- deadlines -------------------------------------------------------------------------------------


async def test_deadline_fails_the_group_and_refunds_each_payment_once(
    api: httpx.AsyncClient, op: dict[str, str], worker_env: outbox.Env
) -> None:
    activity = await create_activity(api, op, units=30)
    group_no, people, order_nos = await two_paid_and_one_unpaid(api, worker_env, activity)
    group = await pass_deadline(worker_env, group_no)
    # Too late to join once the deadline passed, even before any job ran.
    late = await join(api, await shopper(api), group_no)
    assert late.status_code == 409 and error_code(late) == "GROUP_CLOSED"

    # The deadline job twice, at once, and the third payment landing at the same moment.
    a, b, paid = await asyncio.gather(
        outcomes.settle_at_deadline(worker_env.scripts, group.id),
        outcomes.settle_at_deadline(worker_env.scripts, group.id),
        complete(api, order_nos[2]),
    )
    assert sorted([a, b]) == ["failed", "settled"]
    assert paid.json()["notify_status"] == 204  # the money moved: it must come back
    await wait_refunded(order_nos, worker_env)
    # And once more, for good measure: nothing moves twice.
    assert await outcomes.settle_at_deadline(worker_env.scripts, group.id) == "settled"
    await outcomes.settle_due(worker_env.scripts)  # the sweep finds nothing of this group to do
    await drain(worker_env)
    assert [await refunds_of(n) for n in order_nos] == [1, 1, 1]
    group = await Group.get(id=group.id)
    assert group.status == GroupStatus.FAILED and group.paid_count == 2
    assert await Coupon.filter(template_id=activity["voucher_template_id"]).count() == 0
    states = [s.state for s in await GroupSeat.filter(group_id=group.id).order_by("id")]
    assert states == [SeatState.REFUNDED] * 3
    # The reserved units came back to the activity; the landing page says failed.
    assert (await api.get(f"/api/v1/group-buys/{activity['id']}")).json()["units_left"] == 30
    assert (await group_view(api, group_no))["status"] == "failed"
    # The two members who had paid heard "failed" (one message each); the third, refunded
    # as a late payment, got none — and 43101 for anyone would not have been an error.
    for p, expected in zip(people, [1, 1, 0], strict=True):
        msgs = (await api.get(f"{SANDBOX}/users/{p['openid']}/messages")).json()["items"]
        assert len(msgs) == expected, (p, msgs)
        if expected:
            assert msgs[0]["template_id"] == TEMPLATE and msgs[0]["data"]["phrase2"] == "拼团失败"
    stats = (await api.get(f"/api/v1/admin/group-buys/{activity['id']}/stats", headers=op)).json()
    # members counts payments the group took: the late one never counted
    assert stats["groups_failed"] == 1 and stats["refunds"] == 3 and stats["members"] == 2


async def test_virtual_fill_saves_the_same_group(
    api: httpx.AsyncClient, op: dict[str, str], worker_env: outbox.Env
) -> None:
    activity = await create_activity(api, op, units=30, virtual_fill_min=2)
    # The friend never accepted the result message: WeChat answers 43101 for them.
    group_no, people, order_nos = await two_paid_and_one_unpaid(api, worker_env, activity, 1)
    group = await pass_deadline(worker_env, group_no)
    results = await asyncio.gather(
        outcomes.settle_at_deadline(worker_env.scripts, group.id),
        outcomes.settle_at_deadline(worker_env.scripts, group.id),
        complete(api, order_nos[2]),
    )
    assert sorted(results[:2]) == ["settled", "succeeded"]
    await wait_refunded(order_nos[2:], worker_env)
    group = await Group.get(id=group.id)
    assert group.status == GroupStatus.SUCCEEDED and group.virtual_seats == 1
    seats_ = await GroupSeat.filter(group_id=group.id).order_by("id")
    assert [s.voucher_coupon_id is not None for s in seats_] == [True, True, False]
    assert [(await Order.get(order_no=n)).status for n in order_nos[:2]] == [OrderStatus.PAID] * 2
    assert [await refunds_of(n) for n in order_nos] == [0, 0, 1]
    # The virtual seat took no stock: one group of 3 keeps its 2 real units.
    assert (await api.get(f"/api/v1/group-buys/{activity['id']}")).json()["units_left"] == 28
    msgs = (await api.get(f"{SANDBOX}/users/{people[0]['openid']}/messages")).json()["items"]
    assert msgs[0]["data"]["phrase2"] == "拼团成功"
    friend = (await api.get(f"{SANDBOX}/users/{people[1]['openid']}/messages")).json()["items"]
    assert friend == []
    # 43101 is the member's choice, not a failure: nothing is left to retry.
    stuck = await OutboxEvent.filter(topic="groupbuy.message", attempts__gt=0).count()
    assert stuck == 0 and await outbox.pending("groupbuy.message") == 0


async def test_a_payment_after_the_seat_was_freed_is_reseated_or_refunded(
    api: httpx.AsyncClient, op: dict[str, str], worker_env: outbox.Env
) -> None:
    activity = await create_activity(api, op, units=30, group_size=3)
    group_no, _people, order_nos = await two_paid_and_one_unpaid(api, worker_env, activity)
    third = order_nos[2]
    # Its order was closed here (WeChat could not be reached to close it there)...
    await orders.transition(third, OrderStatus.CANCELLED, actor="system", reason="test")
    await drain(worker_env)  # the seat is free in Redis too
    assert (await group_view(api, group_no))["seats_left"] == 1
    # ...and the payment went through anyway: a seat is free, so it is taken back.
    assert (await complete(api, third)).json()["notify_status"] == 204
    assert (await Order.get(order_no=third)).status == OrderStatus.PAID
    await drain(worker_env)
    assert (await group_view(api, group_no))["status"] == "succeeded"
    assert await refunds_of(third) == 0

    # Again in a second group, but someone else takes the freed seat first: refunded.
    group_no, _people, order_nos = await two_paid_and_one_unpaid(api, worker_env, activity)
    third = order_nos[2]
    await orders.transition(third, OrderStatus.CANCELLED, actor="system", reason="test")
    await drain(worker_env)
    taker = await shopper(api)
    r = await join(api, taker, group_no)
    assert r.status_code == 201, r.text
    await prepay(api, taker, r.json()["order_no"])  # (its order is written now)
    assert (await complete(api, third)).json()["notify_status"] == 204
    await wait_refunded([third], worker_env)
    assert await refunds_of(third) == 1
    group = await Group.get(group_no=group_no)
    assert group.paid_count == 2 and group.status == GroupStatus.OPEN
    live = await GroupSeat.filter(group_id=group.id, live_seat__not_isnull=True).count()
    assert live == 3  # leader, friend, the new taker (unpaid): never over the size


async def test_a_free_that_had_not_reached_redis_is_stopped_by_the_late_payment(
    api: httpx.AsyncClient, op: dict[str, str], worker_env: outbox.Env
) -> None:
    activity = await create_activity(api, op, units=30)
    group_no, _people, order_nos = await two_paid_and_one_unpaid(api, worker_env, activity)
    third = order_nos[2]
    await orders.transition(third, OrderStatus.CANCELLED, actor="system", reason="test")
    # The payment lands before the worker freed the seat in Redis.
    assert (await complete(api, third)).json()["notify_status"] == 204
    await drain(worker_env)  # the stale free is delivered now, and must not free the seat
    group = await Group.get(group_no=group_no)
    assert group.status == GroupStatus.SUCCEEDED and group.paid_count == 3
    g, _ = seats.group_keys(group.activity_id, group_no)  # type: ignore[attr-defined]
    assert await worker_env.redis.hget(g, "taken") == "3"


async def test_redis_losing_the_activity_is_warmed_from_the_database(
    api: httpx.AsyncClient, op: dict[str, str], worker_env: outbox.Env
) -> None:
    activity = await create_activity(api, op, units=9, group_size=3, per_member_limit=1)
    group_no, _people, _orders = await two_paid_and_one_unpaid(api, worker_env, activity)
    # Two more groups reserve the rest of the units; one leader went on to pay (so its order
    # and group are written), the other's seat exists only in Redis.
    for pays in (True, False):
        who = await shopper(api)
        r = await open_group(api, who, activity)
        assert r.status_code == 201
        if pays:
            await prepay(api, who, r.json()["order_no"])
    assert (await api.get(f"/api/v1/group-buys/{activity['id']}")).json()["units_left"] == 0
    keys = [k async for k in worker_env.redis.scan_iter(match=f"gb:{{{activity['id']}}}:*")]
    assert keys
    await worker_env.redis.delete(*keys)  # Redis lost the activity (a restart without persistence)
    # The next request warms it from PostgreSQL: the group's seats are still taken, units
    # left are what the groups written to the database do not hold.
    r = await join(api, await shopper(api), group_no)
    assert r.status_code == 409 and error_code(r) == "GROUP_FULL", r.text
    assert await Group.filter(activity_id=activity["id"]).count() == 2
    left = (await api.get(f"/api/v1/group-buys/{activity['id']}")).json()["units_left"]
    assert left == 3  # never the configured 9: the database's groups hold 6
    opened = [await open_group(api, await shopper(api), activity) for _ in range(3)]
    assert [o.status_code for o in opened] == [201, 409, 409]
    assert {error_code(o) for o in opened[1:]} == {"SOLD_OUT"}
