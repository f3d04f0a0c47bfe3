"""Membership against the running server and real PostgreSQL/Redis: tiers by growth, points
earned once and clawed back (debt included), stored value topped up and spent beside WeChat
Pay, refunds per tender, merges that keep every fen and point. The test process plays the
worker (it delivers the outbox) so each step is deterministic."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from server.identity.models import Member
from server.infra.clock import SHANGHAI, utcnow
from server.ledger import service as ledger
from server.membership import service as membership
from server.membership.models import GrowthEvent, PointsLot
from server.orders.models import Order, OrderStatus
from server.outbox import service as outbox
from server.settings import Settings
from tests.conftest import drain, error_code
from tests.test_coupons import operator_headers
from tests.test_giftcards import assert_books_balance, complete, order_in, pay_wechat, pickup
from tests.test_giftcards import store as store
from tests.test_groupbuy import keyed, wait_for
from tests.test_orders_payments import PAY, shopper

TIERS = [
    {"code": "regular", "name": "会员", "min_growth": 0, "points_multiplier": 1},
    {"code": "silver", "name": "银卡", "min_growth": 20_000, "points_multiplier": 1.5},
    {"code": "gold", "name": "金卡", "min_growth": 1_000_000, "points_multiplier": 2},
]


@pytest.fixture(scope="module")
async def op(database: Settings) -> dict[str, str]:
    return await operator_headers(database)


@pytest.fixture(scope="module")
async def ladder(api: httpx.AsyncClient, op: dict[str, str]) -> list[dict[str, Any]]:
    r = await api.put("/api/v1/admin/membership/tiers", headers=op, json={"items": TIERS})
    assert r.status_code == 200, r.text
    return r.json()["items"]


@pytest.fixture(scope="module")
async def plan(api: httpx.AsyncClient, op: dict[str, str]) -> dict[str, Any]:
    r = await api.post(
        "/api/v1/admin/stored-value/plans", headers=op, json={"pay_fen": 10000, "credit_fen": 11000}
    )
    assert r.status_code == 201, r.text
    assert r.json()["bonus_fen"] == 1000
    return r.json()


async def me(api: httpx.AsyncClient, who: dict[str, Any]) -> dict[str, Any]:
    r = await api.get("/api/v1/me/membership", headers=who["headers"])
    assert r.status_code == 200, r.text
    return r.json()


async def paid_pickup(
    api: httpx.AsyncClient, who: dict[str, Any], shop: dict[str, Any], fen: int
) -> str:
    order_no = await pickup(api, who, shop, fen)
    await pay_wechat(api, who, order_no)
    await complete(api, order_no)
    return order_no


async def topped_up(api: httpx.AsyncClient, who: dict[str, Any], plan: dict[str, Any]) -> str:
    r = await api.post(
        "/api/v1/stored-value/top-ups", headers=keyed(who["headers"]), json={"plan_id": plan["id"]}
    )
    assert r.status_code == 201 and r.json()["kind"] == "topup", r.text
    order_no = r.json()["order_no"]
    await pay_wechat(api, who, order_no)
    await complete(api, order_no)
    return order_no


async def test_tier_ladder_is_validated(
    api: httpx.AsyncClient, op: dict[str, str], ladder: Any
) -> None:
    no_base = [{**TIERS[1]}]
    r = await api.put("/api/v1/admin/membership/tiers", headers=op, json={"items": no_base})
    assert r.status_code == 422 and error_code(r) == "TIERS_INVALID"
    twice = [TIERS[0], {**TIERS[1], "code": "regular"}]
    r = await api.put("/api/v1/admin/membership/tiers", headers=op, json={"items": twice})
    assert r.status_code == 422
    shown = (await api.get("/api/v1/admin/membership/tiers", headers=op)).json()["items"]
    assert [t["code"] for t in shown] == ["regular", "silver", "gold"]


async def test_a_paid_order_earns_once_its_refund_takes_back_and_the_tier_waits_for_the_review(
    api: httpx.AsyncClient,
    ladder: Any,
    store: dict[str, Any],
    worker_env: outbox.Env,
    op: dict[str, str],
) -> None:
    who = await shopper(api)
    order_no = await paid_pickup(api, who, store, 25000)
    await api.post(f"{PAY}/{order_no}/notify?times=10&concurrent=1")
    await drain(worker_env)
    await drain(worker_env)
    view = await me(api, who)
    assert view["growth"] == 25000 and view["tier"] == "silver"  # crossed: at once
    assert view["points"] == 250  # 250 yuan x 1 (the tier before this order)
    assert await GrowthEvent.filter(ref=order_no).count() == 1
    assert view["next_tier"] == "gold" and view["growth_to_next"] == 1_000_000 - 25000

    r = await api.post(f"/api/v1/admin/orders/{order_no}/refunds", headers=op, json={"reason": "x"})
    assert r.status_code == 201

    await wait_for(lambda: order_in(order_no, OrderStatus.REFUNDED))
    await drain(worker_env)
    view = await me(api, who)
    assert view["points"] == 0 and view["growth"] == 0
    assert view["tier"] == "silver"  # kept until the monthly review
    paid_ev, refund_ev = await GrowthEvent.filter(ref=order_no).order_by("id")
    assert refund_ev.fen == -paid_ev.fen and refund_ev.at == paid_ev.at  # leave the window together
    first = await membership.monthly_review()
    again = await membership.monthly_review()
    assert first["down"] >= 1 and again["down"] == 0
    assert (await me(api, who))["tier"] == "regular"
    await assert_books_balance()


async def test_points_clawed_back_after_they_were_spent_leave_a_debt_paid_first(
    api: httpx.AsyncClient,
    ladder: Any,
    store: dict[str, Any],
    worker_env: outbox.Env,
    op: dict[str, str],
) -> None:
    from tortoise.transactions import in_transaction

    who = await shopper(api)
    first = await paid_pickup(api, who, store, 10000)
    await drain(worker_env)
    assert (await me(api, who))["points"] == 100
    async with in_transaction() as conn:  # the member redeems 80 of them
        await membership.spend_points(who["member_id"], 80, "redeem", "reward:test", conn)
    await api.post(f"/api/v1/admin/orders/{first}/refunds", headers=op, json={"reason": "x"})

    await wait_for(lambda: order_in(first, OrderStatus.REFUNDED))
    await drain(worker_env)
    view = await me(api, who)
    assert view["points"] == 0 and view["points_debt"] == 80  # never below zero
    await paid_pickup(api, who, store, 5000)
    await drain(worker_env)
    view = await me(api, who)
    assert view["points_debt"] == 30 and view["points"] == 0  # 50 earned paid the debt first
    await paid_pickup(api, who, store, 4000)
    await drain(worker_env)
    view = await me(api, who)
    assert view["points_debt"] == 0 and view["points"] == 10
    lots = await PointsLot.filter(member_id=who["member_id"]).values_list("remaining", flat=True)
    assert sum(lots) == 10  # the lots add up to the balance
    page = (await api.get("/api/v1/me/points?limit=2", headers=who["headers"])).json()
    assert len(page["items"]) == 2 and page["next_before_id"]
    rest = await api.get(
        f"/api/v1/me/points?limit=50&before_id={page['next_before_id']}", headers=who["headers"]
    )
    reasons = [e["reason"] for e in page["items"] + rest.json()["items"]]
    assert reasons[0] == "earn" and "clawback" in reasons and "redeem" in reasons
    await assert_books_balance()


async def test_a_top_up_earns_nothing_until_it_is_spent(
    api: httpx.AsyncClient, ladder: Any, plan: dict[str, Any], worker_env: outbox.Env
) -> None:
    who = await shopper(api)
    order_no = await topped_up(api, who, plan)
    await drain(worker_env)
    assert not await GrowthEvent.filter(ref=order_no).exists()
    assert (await me(api, who))["points"] == 0


async def test_top_up_then_pay_part_stored_value_part_wechat_and_refund_each(
    api: httpx.AsyncClient,
    ladder: Any,
    plan: dict[str, Any],
    store: dict[str, Any],
    op: dict[str, str],
    worker_env: outbox.Env,
) -> None:
    who = await shopper(api)
    top = await topped_up(api, who, plan)
    assert (await me(api, who))["stored_value_fen"] == 11000  # 100 paid, 110 credited
    order_no = await pickup(api, who, store, 11000)
    answer = await pay_wechat(api, who, order_no, stored_value_fen=6000)
    assert answer["wechat_fen"] == 5000 and answer["paid"] is False
    parts = sorted((t["label"], t["amount_fen"]) for t in answer["tenders"])
    assert sum(a for _, a in parts) == 6000
    assert dict(parts)["储值赠送"] == 6000 * 1000 // 11000  # in proportion: 545
    await complete(api, order_no)
    assert (await me(api, who))["stored_value_fen"] == 5000
    # Spent in part: the top-up itself can no longer be refunded.
    r = await api.post(f"/api/v1/admin/orders/{top}/refunds", headers=op, json={"reason": "x"})
    assert r.status_code == 409 and error_code(r) == "STORED_VALUE_IN_USE"
    r = await api.post(f"/api/v1/admin/orders/{order_no}/refunds", headers=op, json={"reason": "x"})
    assert r.status_code == 201 and r.json()["amount_fen"] == 5000

    await wait_for(lambda: order_in(order_no, OrderStatus.REFUNDED))
    assert (await me(api, who))["stored_value_fen"] == 11000
    r = await api.post(f"/api/v1/admin/orders/{top}/refunds", headers=op, json={"reason": "x"})
    assert r.status_code == 201  # untouched again: principal back by WeChat, bonus withdrawn
    await wait_for(lambda: order_in(top, OrderStatus.REFUNDED))
    assert (await me(api, who))["stored_value_fen"] == 0
    await drain(worker_env)
    await assert_books_balance()


async def test_two_devices_spending_stored_value_at_once_never_go_below_zero(
    api: httpx.AsyncClient, ladder: Any, plan: dict[str, Any], store: dict[str, Any]
) -> None:
    who = await shopper(api)
    await topped_up(api, who, plan)
    orders_ = [await pickup(api, who, store, 6000) for _ in range(8)]
    answers = await asyncio.gather(
        *(
            api.post(
                f"/api/v1/orders/{no}/pay", headers=who["headers"], json={"stored_value_fen": 6000}
            )
            for no in orders_
        )
    )
    ok = [r for r in answers if r.status_code == 200]
    assert len(ok) == 1 and ok[0].json()["paid"] is True, [r.text for r in answers]
    assert {error_code(r) for r in answers if r.status_code != 200} == {"STORED_VALUE_TOO_LOW"}
    assert (await me(api, who))["stored_value_fen"] == 5000
    await assert_books_balance()


async def test_a_merge_keeps_the_sum_of_both_members_points_and_balances(
    api: httpx.AsyncClient,
    ladder: Any,
    plan: dict[str, Any],
    store: dict[str, Any],
    worker_env: outbox.Env,
    settings: Settings,
    redis: aioredis.Redis,
) -> None:
    from server.identity import merge

    old, new = await shopper(api), await shopper(api)
    r = await api.patch("/api/v1/me", headers=old["headers"], json={"birthday": "1990-07-08"})
    assert r.status_code == 200
    for who in (old, new):
        await topped_up(api, who, plan)
        await paid_pickup(api, who, store, 3000)
    await drain(worker_env)
    before = [await me(api, w) for w in (old, new)]
    from server.membership import segments
    from server.membership.models import MemberRfm, SegmentMember

    both = await segments.create_segment(
        None, "merge spenders", {"type": "spent", "min_fen": 3000, "days": 30}
    )
    await segments.compute_rfm()
    assert {old["member_id"], new["member_id"]} <= set(await segments.members(both.id))
    await merge.merge_members(redis, settings, old["member_id"], new["member_id"], uuid.uuid4().hex)
    after = await me(api, new)
    assert after["points"] == sum(b["points"] for b in before) == 60
    assert after["stored_value_fen"] == sum(b["stored_value_fen"] for b in before) == 22000
    assert after["growth"] == 6000
    assert await ledger.member_balance(membership.POINTS, old["member_id"]) == 0
    # Tags follow without a conflict: one place in the segment, one RFM row of both histories.
    assert await SegmentMember.filter(segment_id=both.id, member_id=new["member_id"]).count() == 1
    assert not await SegmentMember.filter(member_id=old["member_id"]).exists()
    assert not await MemberRfm.filter(member_id=old["member_id"]).exists()
    assert (await MemberRfm.get(member_id=new["member_id"])).frequency == 2
    survivor = await Member.get(id=new["member_id"])  # the birthday came with what finds it
    assert (survivor.birthday_md, survivor.birthday_set_at is not None) == ("0708", True)
    await assert_books_balance()


async def test_points_left_in_a_lot_expire_at_the_end_of_the_next_year(
    api: httpx.AsyncClient, ladder: Any, store: dict[str, Any], worker_env: outbox.Env
) -> None:
    who = await shopper(api)
    await paid_pickup(api, who, store, 7000)
    await drain(worker_env)
    lot = await PointsLot.get(member_id=who["member_id"])
    earned_in = lot.created_at.astimezone(SHANGHAI).year
    assert lot.expires_at.astimezone(SHANGHAI) == datetime(earned_in + 2, 1, 1, tzinfo=SHANGHAI)
    await PointsLot.filter(id=lot.id).update(expires_at=utcnow() - timedelta(seconds=1))
    assert await membership.expire_points() >= 1
    assert await membership.expire_points() == 0
    assert (await me(api, who))["points"] == 0
    member = await Member.get(id=who["member_id"])
    assert member.tier == "regular"
    await assert_books_balance()


async def earned_points(
    api: httpx.AsyncClient, store: dict[str, Any], worker_env: outbox.Env, fen: int
) -> dict[str, Any]:
    """A shopper who earned fen / 100 points by a paid pickup order."""
    who = await shopper(api)
    await paid_pickup(api, who, store, fen)
    await drain(worker_env)
    assert (await me(api, who))["points"] == fen // 100
    return who


async def test_points_pay_at_most_half_of_the_goods_and_come_back_on_cancel(
    api: httpx.AsyncClient, ladder: Any, store: dict[str, Any], worker_env: outbox.Env
) -> None:
    who = await earned_points(api, store, worker_env, 90000)  # 900 points
    order_no = await pickup(api, who, store, 1000)
    r = await api.post(
        f"/api/v1/orders/{order_no}/pay", headers=who["headers"], json={"points": 600}
    )
    assert r.status_code == 409 and error_code(r) == "POINTS_LIMIT"
    assert r.json()["error"]["details"]["max_points"] == 500
    answer = await pay_wechat(api, who, order_no, points=500)  # 5 yuan off, 5 by WeChat
    assert answer["wechat_fen"] == 500
    assert [(t["kind"], t["amount_fen"]) for t in answer["tenders"]] == [("points", 500)]
    assert (await me(api, who))["points"] == 400
    r = await api.post(f"/api/v1/orders/{order_no}/cancel", headers=who["headers"], json={})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert (await me(api, who))["points"] == 900
    lots = await PointsLot.filter(member_id=who["member_id"]).values_list("remaining", flat=True)
    assert sum(lots) == 900
    await assert_books_balance()


async def test_redeeming_points_for_a_coupon_is_once_per_key_and_never_below_zero(
    api: httpx.AsyncClient,
    ladder: Any,
    store: dict[str, Any],
    worker_env: outbox.Env,
    op: dict[str, str],
) -> None:
    from server.coupons.models import Coupon
    from tests.test_coupons import make_template

    template = await make_template(api, op, total=100, per_member_limit=10)
    r = await api.post(
        "/api/v1/admin/points/rewards",
        headers=op,
        json={"template_id": template["id"], "points_price": 300},
    )
    assert r.status_code == 201, r.text
    reward = r.json()
    assert any(
        x["id"] == reward["id"] for x in (await api.get("/api/v1/points/rewards")).json()["items"]
    )
    who = await earned_points(api, store, worker_env, 70000)  # 700 points: two rewards, not three
    key = uuid.uuid4().hex
    first, again = [
        await api.post(
            "/api/v1/points/redemptions",
            headers=keyed(who["headers"], key),
            json={"reward_id": reward["id"]},
        )
        for _ in range(2)
    ]
    assert first.status_code == 201 and again.json() == first.json()  # one coupon for one key
    tries = await asyncio.gather(
        *(
            api.post(
                "/api/v1/points/redemptions",
                headers=keyed(who["headers"]),
                json={"reward_id": reward["id"]},
            )
            for _ in range(4)
        )
    )
    assert sorted(r.status_code for r in tries) == [201, 409, 409, 409]
    assert {error_code(r) for r in tries if r.status_code == 409} == {"NOT_ENOUGH_POINTS"}
    assert (await me(api, who))["points"] == 100
    assert await Coupon.filter(member_id=who["member_id"], template_id=template["id"]).count() == 2
    # The template's own per-member limit holds on the shelf too.
    single = await make_template(api, op, total=100, per_member_limit=1)
    r = await api.post(
        "/api/v1/admin/points/rewards",
        headers=op,
        json={"template_id": single["id"], "points_price": 10},
    )
    cheap = r.json()["id"]
    statuses = [
        (
            await api.post(
                "/api/v1/points/redemptions",
                headers=keyed(who["headers"]),
                json={"reward_id": cheap},
            )
        ).status_code
        for _ in range(2)
    ]
    assert statuses == [201, 409]
    await assert_books_balance()


async def test_a_late_wechat_payment_on_a_closed_top_up_or_order_goes_back_and_touches_nothing(
    api: httpx.AsyncClient,
    ladder: Any,
    plan: dict[str, Any],
    store: dict[str, Any],
    worker_env: outbox.Env,
) -> None:
    from server.orders import service as orders_service
    from server.outbox.models import OutboxEvent
    from server.payments.models import Refund

    who = await shopper(api)
    await topped_up(api, who, plan)  # 11000 of stored value already
    for kind in ("topup", "pickup"):
        if kind == "topup":
            r = await api.post(
                "/api/v1/stored-value/top-ups",
                headers=keyed(who["headers"]),
                json={"plan_id": plan["id"]},
            )
            late = r.json()["order_no"]
        else:
            late = await pickup(api, who, store, 3000)
        await pay_wechat(api, who, late)
        # Closed here (WeChat could not be reached to close it there), then paid there.
        await orders_service.transition(late, OrderStatus.CANCELLED, actor="system", reason="t")
        await complete(api, late)
        await wait_for(lambda no=late: order_in(no, OrderStatus.REFUNDED))
        refund = await Refund.get(order__order_no=late)
        assert refund.amount_fen == (10000 if kind == "topup" else 3000)
        await drain(worker_env)
        assert not await OutboxEvent.filter(key=f"mr:{late}", delivered_at__isnull=True).exists()
    view = await me(api, who)
    assert view["stored_value_fen"] == 11000 and view["points"] == 0
    await assert_books_balance()


async def test_refunds_in_either_order_leave_no_free_points(
    api: httpx.AsyncClient,
    ladder: Any,
    store: dict[str, Any],
    worker_env: outbox.Env,
    op: dict[str, str],
) -> None:
    for first_refunded in ("earning", "spending"):
        who = await earned_points(api, store, worker_env, 10000)  # order A: 100 points
        earning = (await Order.filter(member_id=who["member_id"]).order_by("-id").first()).order_no
        spending = await pickup(api, who, store, 1000)  # order B: 100 points + 9 yuan WeChat
        await pay_wechat(api, who, spending, points=100)
        await complete(api, spending)
        await drain(worker_env)
        for no in (earning, spending) if first_refunded == "earning" else (spending, earning):
            r = await api.post(
                f"/api/v1/admin/orders/{no}/refunds", headers=op, json={"reason": "x"}
            )
            assert r.status_code == 201, r.text
            await wait_for(lambda n=no: order_in(n, OrderStatus.REFUNDED))
            await drain(worker_env)
        view = await me(api, who)
        assert (view["points"], view["points_debt"], view["growth"]) == (0, 0, 0), first_refunded
    await assert_books_balance()


async def test_a_benefit_that_cannot_be_given_never_holds_back_growth_and_points(
    api: httpx.AsyncClient,
    ladder: Any,
    store: dict[str, Any],
    worker_env: outbox.Env,
    op: dict[str, str],
) -> None:
    from tests.test_coupons import make_template

    one = await make_template(api, op, total=1, per_member_limit=1)
    bad = [{**TIERS[0]}, {**TIERS[1], "benefit_template_ids": [10**12]}]
    r = await api.put("/api/v1/admin/membership/tiers", headers=op, json={"items": bad})
    assert r.status_code == 422 and error_code(r) == "TEMPLATE_NOT_FOUND"
    rich = [{**TIERS[0]}, {**TIERS[1], "benefit_template_ids": [one["id"]]}, TIERS[2]]
    r = await api.put("/api/v1/admin/membership/tiers", headers=op, json={"items": rich})
    assert r.status_code == 200, r.text
    try:
        first = await earned_points(api, store, worker_env, 20000)
        second = await earned_points(api, store, worker_env, 20000)  # the benefit is sold out
        for who in (first, second):
            view = await me(api, who)
            assert view["tier"] == "silver" and view["growth"] == 20000
    finally:
        await api.put("/api/v1/admin/membership/tiers", headers=op, json={"items": TIERS})


# -- the member at the till ----------------------------------------------------------------------


async def test_the_till_identifies_by_live_code_and_records_each_receipt_once(
    api: httpx.AsyncClient,
    ladder: Any,
    plan: dict[str, Any],
    store: dict[str, Any],
    database: Settings,
    op: dict[str, str],
) -> None:
    import time

    from server.infra import livecodes
    from server.membership import pos
    from tests.conftest import TEST_SECRET
    from tests.test_coupons import make_template, new_staff, new_store

    who = await shopper(api)
    await topped_up(api, who, plan)  # 11000 of stored value
    template = await make_template(api, op, channel="store", store_ids=[store["store"].id])
    claimed = await api.post(
        f"/api/v1/coupon-center/{template['id']}/claim", headers=who["headers"]
    )
    assert claimed.status_code == 201, claimed.text
    _, clerk = await new_staff(database, [store["store"]])
    other_store = await new_store()
    _, stranger = await new_staff(database, [other_store])

    await Member.filter(id=who["member_id"]).update(nickname="张三丰")
    code = (await api.get("/api/v1/me/member-code", headers=who["headers"])).json()
    assert code["code"].startswith("HM1") and len(code["digits"]) == 12
    r = await api.post("/api/v1/staff/pos/identify", headers=clerk, json={"code": code["digits"]})
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["member_id"] == who["member_id"] and seen["stored_value_fen"] == 11000
    assert seen["name"] == "张**"  # masked: the clerk sees no full name
    assert [c["template_id"] for c in seen["coupons"]] == [template["id"]]
    # A clerk of another store cannot act for this one.
    r = await api.post(
        "/api/v1/staff/pos/identify",
        headers=stranger,
        json={"code": code["code"], "store_id": store["store"].id},
    )
    assert r.status_code == 403 and error_code(r) == "STORE_NOT_ALLOWED"
    # A coupon's code is not a member code, and an old member code is refused.
    stale = livecodes.sign(
        TEST_SECRET.encode(), pos.MEMBER_CODE, who["member_id"], 0, int(time.time()) - 61
    )
    r = await api.post("/api/v1/staff/pos/identify", headers=clerk, json={"code": stale})
    assert r.status_code == 410 and error_code(r) == "CODE_EXPIRED"
    coupon_code = (
        await api.get(
            f"/api/v1/me/coupons/{claimed.json()['coupon']['id']}/code", headers=who["headers"]
        )
    ).json()["code"]
    r = await api.post("/api/v1/staff/pos/identify", headers=clerk, json={"code": coupon_code})
    assert r.status_code == 400 and error_code(r) == "CODE_INVALID"

    sale = {
        "code": code["code"],
        "receipt_no": f"R{uuid.uuid4().hex[:10]}",
        "amount_fen": 6000,
        "pay_with": "stored_value",
    }
    answers = await asyncio.gather(
        *(api.post("/api/v1/staff/pos/sales", headers=clerk, json=sale) for _ in range(5))
    )
    assert sorted(r.status_code for r in answers) == [200, 200, 200, 200, 201], [
        a.text for a in answers
    ]
    assert len({r.json()["id"] for r in answers}) == 1  # one sale
    view = await me(api, who)
    assert view["stored_value_fen"] == 5000 and view["points"] == 60 and view["growth"] == 6000
    r = await api.post("/api/v1/staff/pos/sales", headers=clerk, json={**sale, "amount_fen": 1})
    assert r.status_code == 409 and error_code(r) == "RECEIPT_REUSED"
    r = await api.post(
        "/api/v1/staff/pos/sales",
        headers=clerk,
        json={**sale, "receipt_no": f"R{uuid.uuid4().hex[:10]}", "amount_fen": 9000},
    )
    assert r.status_code == 409 and error_code(r) == "STORED_VALUE_TOO_LOW"
    assert (await me(api, who))["stored_value_fen"] == 5000
    await assert_books_balance()


# -- birthdays -------------------------------------------------------------------------------------


async def test_the_birthday_pack_comes_once_on_the_day_and_29_february_on_28_february(
    api: httpx.AsyncClient, ladder: Any, op: dict[str, str], worker_env: outbox.Env
) -> None:
    from datetime import date

    from server.coupons.models import Coupon
    from server.membership import birthday
    from tests.test_coupons import make_template
    from tests.test_orders_payments import SANDBOX

    a = await make_template(api, op, name="生日蛋糕券", total=1000, per_member_limit=5)
    b = await make_template(api, op, name="生日饮品券", total=1000, per_member_limit=5)
    r = await api.put(
        "/api/v1/admin/membership/birthday-pack",
        headers=op,
        json={"template_ids": [a["id"], b["id"]]},
    )
    assert r.status_code == 200 and r.json()["template_ids"] == [a["id"], b["id"]]

    today = utcnow().astimezone(SHANGHAI).date()
    who = await shopper(api)
    await api.post(
        f"{SANDBOX}/users/{who['openid']}/subscriptions",
        json={"template_id": "sandbox-birthday_gift"},
    )
    born = date(1992, today.month, today.day)
    r = await api.patch("/api/v1/me", headers=who["headers"], json={"birthday": born.isoformat()})
    assert r.status_code == 200, r.text
    first, again = await birthday.give_packs(), await birthday.give_packs()
    assert first["packs"] >= 1 and again["packs"] == 0
    mine = await Coupon.filter(member_id=who["member_id"]).values_list("template_id", flat=True)
    assert sorted(mine) == sorted([a["id"], b["id"]])  # one pack
    await drain(worker_env)
    msgs = (await api.get(f"{SANDBOX}/users/{who['openid']}/messages")).json()["items"]
    assert len([m for m in msgs if m["template_id"] == "sandbox-birthday_gift"]) == 1

    # Born on 29 February: in a common year the pack comes on 28 February.
    leapling = await shopper(api)
    r = await api.patch("/api/v1/me", headers=leapling["headers"], json={"birthday": "2000-02-29"})
    assert r.status_code == 200
    feb28 = datetime(2027, 2, 28, 12, tzinfo=SHANGHAI)
    assert (await birthday.give_packs(now=feb28))["packs"] >= 1
    assert await Coupon.filter(member_id=leapling["member_id"]).count() == 2
    mar1 = datetime(2027, 3, 1, 12, tzinfo=SHANGHAI)
    await birthday.give_packs(now=mar1)
    assert await Coupon.filter(member_id=leapling["member_id"]).count() == 2

    # The birthday can change once a year at most.
    r = await api.patch("/api/v1/me", headers=who["headers"], json={"birthday": "1992-01-01"})
    assert r.status_code == 409 and error_code(r) == "BIRTHDAY_LOCKED"
    await Member.filter(id=who["member_id"]).update(birthday_set_at=utcnow() - timedelta(days=366))
    r = await api.patch("/api/v1/me", headers=who["headers"], json={"birthday": "1992-01-01"})
    assert r.status_code == 200 and r.json()["birthday"] == "1992-01-01"
    assert (await Member.get(id=who["member_id"])).birthday_md == "0101"


# -- segments and RFM ----------------------------------------------------------------------------


async def test_a_segment_holds_exactly_who_its_rule_says_and_targets_a_coupon(
    api: httpx.AsyncClient,
    ladder: Any,
    store: dict[str, Any],
    worker_env: outbox.Env,
    op: dict[str, str],
) -> None:
    from server.catalog.models import Category, Product, Sku, StoreSku
    from server.membership.models import MemberRfm
    from tests.test_coupons import make_template

    cat = await Category.create(name=f"seg-{uuid.uuid4().hex[:6]}")
    prod = await Product.create(category=cat, name="Spicy tofu")
    sku = await Sku.create(product=prod, name="Spicy tofu 200g", price_fen=1000)
    await StoreSku.create(store=store["store"], sku=sku, stock=10_000)

    async def bought(who: dict[str, Any], times: int, sku_id: int) -> None:
        for _ in range(times):
            r = await api.post(
                "/api/v1/orders",
                headers=keyed(who["headers"]),
                json={"store_id": store["store"].id, "items": [{"sku_id": sku_id, "quantity": 1}]},
            )
            await pay_wechat(api, who, r.json()["order_no"])
            await complete(api, r.json()["order_no"])

    regular, twice, elsewhere = await shopper(api), await shopper(api), await shopper(api)
    await bought(regular, 3, sku.id)
    await bought(twice, 2, sku.id)
    await bought(elsewhere, 3, store["sku"].id)  # as often, another category
    await drain(worker_env)

    r = await api.post(
        "/api/v1/admin/segments",
        headers=op,
        json={
            "name": "tofu regulars",
            "rule": {"type": "bought_category", "category_id": cat.id, "min_times": 3, "days": 90},
        },
    )
    assert r.status_code == 201, r.text
    segment = r.json()
    assert segment["size"] == 1
    from server.membership import segments

    assert await segments.members(segment["id"]) == [regular["member_id"]]
    shown = await api.get(f"/api/v1/admin/segments/{segment['id']}", headers=op)
    assert shown.json()["size"] == 1
    bad = await api.post(
        "/api/v1/admin/segments", headers=op, json={"name": "x", "rule": {"type": "nonsense"}}
    )
    assert bad.status_code == 422

    template = await make_template(api, op, name="tofu lovers", audience_segment_id=segment["id"])
    r = await api.post(f"/api/v1/coupon-center/{template['id']}/claim", headers=regular["headers"])
    assert r.status_code == 201, r.text
    for outsider in (twice, elsewhere):
        r = await api.post(
            f"/api/v1/coupon-center/{template['id']}/claim", headers=outsider["headers"]
        )
        assert r.status_code == 409 and error_code(r) == "CLAIM_NOT_FOR_YOU"
        centre = (await api.get("/api/v1/coupon-center", headers=outsider["headers"])).json()
        assert template["id"] not in [i["template_id"] for i in centre["items"]]  # not offered
    centre = (await api.get("/api/v1/coupon-center", headers=regular["headers"])).json()
    assert template["id"] in [i["template_id"] for i in centre["items"]]
    campaign = await make_template(api, op, name="tofu campaign", in_center=False)
    r = await api.post(
        "/api/v1/admin/coupon-issuances",
        headers=op,
        json={"template_id": campaign["id"], "audience_segment_id": segment["id"]},
    )
    assert r.status_code == 202 and r.json()["total"] == 1

    # RFM: frequency ranks the three; an order later, the incremental run sees it.
    await segments.compute_rfm()
    rfm = {
        row.member_id: row
        for row in await MemberRfm.filter(member_id__in=[regular["member_id"], twice["member_id"]])
    }
    assert rfm[regular["member_id"]].frequency == 3 and rfm[twice["member_id"]].frequency == 2
    assert rfm[regular["member_id"]].f >= rfm[twice["member_id"]].f
    await bought(twice, 2, sku.id)
    await drain(worker_env)
    await segments.compute_rfm()
    assert (await MemberRfm.get(member_id=twice["member_id"])).frequency == 4
    r = await api.post(f"/api/v1/admin/segments/{segment['id']}/refresh", headers=op)
    assert r.json()["size"] == 2
    spent = await api.post(
        "/api/v1/admin/segments",
        headers=op,
        json={"name": "big spenders", "rule": {"type": "spent", "min_fen": 4000, "days": 30}},
    )
    assert twice["member_id"] in await segments.members(spent.json()["id"])
    assert regular["member_id"] not in await segments.members(spent.json()["id"])


# -- the paid membership card --------------------------------------------------------------------


async def test_a_paid_card_runs_from_payment_renewals_extend_and_refunds_follow_the_rule(
    api: httpx.AsyncClient,
    ladder: Any,
    store: dict[str, Any],
    worker_env: outbox.Env,
    op: dict[str, str],
) -> None:
    from server.coupons.models import Coupon, CouponStatus
    from server.membership.models import MemberCard
    from tests.test_coupons import make_template

    pack = await make_template(api, op, name="会员月礼", total=1000, per_member_limit=50)
    r = await api.post(
        "/api/v1/admin/membership/cards",
        headers=op,
        json={
            "name": "黑金卡",
            "price_fen": 19900,
            "days": 365,
            "points_multiplier": 2,
            "monthly_template_ids": [pack["id"]],
            "free_delivery": True,
        },
    )
    assert r.status_code == 201, r.text
    plan = r.json()
    assert any(
        p["id"] == plan["id"] for p in (await api.get("/api/v1/membership/cards")).json()["items"]
    )

    async def buy_card(who: dict[str, Any]) -> str:
        r = await api.post(
            "/api/v1/membership/cards/orders",
            headers=keyed(who["headers"]),
            json={"plan_id": plan["id"]},
        )
        assert r.status_code == 201 and r.json()["kind"] == "membership", r.text
        await pay_wechat(api, who, r.json()["order_no"])
        await complete(api, r.json()["order_no"])
        return r.json()["order_no"]

    # Bought and refunded at once, nothing used: a full refund, the pack coupon taken back.
    quick = await shopper(api)
    first = await buy_card(quick)
    view = await me(api, quick)
    assert view["card"]["name"] == "黑金卡" and view["card"]["free_delivery"] is True
    assert await Coupon.filter(member_id=quick["member_id"], template_id=pack["id"]).count() == 1
    r = await api.post(f"/api/v1/admin/orders/{first}/refunds", headers=op, json={"reason": "x"})
    assert r.status_code == 201, r.text
    await wait_for(lambda: order_in(first, OrderStatus.REFUNDED))
    assert (await me(api, quick))["card"] is None
    assert (
        await Coupon.get(member_id=quick["member_id"], template_id=pack["id"])
    ).status == CouponStatus.VOID

    # A holder: the multiplier doubles points (a benefit used), a renewal extends the end.
    holder = await shopper(api)
    card_order = await buy_card(holder)
    ends = (await MemberCard.get(order_no=card_order)).ends_at
    renewal = await buy_card(holder)
    renewed = await MemberCard.get(order_no=renewal)
    assert renewed.starts_at == ends and renewed.ends_at == ends + timedelta(days=365)
    assert (await me(api, holder))["card"]["ends_at"].startswith(
        renewed.ends_at.astimezone(SHANGHAI).date().isoformat()
    )
    await paid_pickup(api, holder, store, 5000)
    await drain(worker_env)
    assert (await me(api, holder))["points"] == 100  # 50 yuan x 2
    r = await api.post(
        f"/api/v1/admin/orders/{card_order}/refunds", headers=op, json={"reason": "x"}
    )
    assert r.status_code == 409 and error_code(r) == "RENEWED_SINCE"
    r = await api.post(f"/api/v1/admin/orders/{renewal}/refunds", headers=op, json={"reason": "x"})
    assert r.status_code == 201  # the renewal has not started: nothing of it was used
    r = await api.post(
        f"/api/v1/admin/orders/{card_order}/refunds", headers=op, json={"reason": "x"}
    )
    assert r.status_code == 409 and error_code(r) == "CARD_BENEFITS_USED"

    # A pack coupon held by an unpaid order is a benefit in use: no refund either.
    locker = await shopper(api)
    locked_card = await buy_card(locker)
    coupon = await Coupon.get(member_id=locker["member_id"], template_id=pack["id"])
    r = await api.post(
        "/api/v1/orders",
        headers=keyed(locker["headers"]),
        json={
            "store_id": store["store"].id,
            "items": [{"sku_id": store["sku"].id, "quantity": 1}],
            "coupon_ids": [coupon.id],
        },
    )
    assert r.status_code == 201 and r.json()["discount_fen"] == 500, r.text
    r = await api.post(
        f"/api/v1/admin/orders/{locked_card}/refunds", headers=op, json={"reason": "x"}
    )
    assert r.status_code == 409 and error_code(r) == "CARD_BENEFITS_USED"
