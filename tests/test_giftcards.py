"""Gift cards against the running server, real PostgreSQL, Redis and the WeChat sandbox:
buying (cards issued once), giving and claiming under races, paying beside WeChat Pay,
refunds per tender, moderation, printed cards and PIN lockout, operators' figures.
"""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from server.catalog.models import Category, Product, Sku, StoreSku
from server.giftcards import printed
from server.giftcards.models import CardStatus, Gift, GiftCard, GiftStatus
from server.infra.clock import utcnow
from server.ledger import service as ledger
from server.ledger.models import LedgerEntry
from server.orders import service as orders_service
from server.orders.models import Order, OrderStatus
from server.outbox import service as outbox
from server.outbox.models import OutboxEvent
from server.payments import service as payments
from server.payments.models import Refund, Tender
from server.settings import Settings
from server.stores.models import Store
from tests.conftest import ServerProcess, drain, error_code
from tests.test_coupons import operator_headers
from tests.test_groupbuy import keyed, wait_for
from tests.test_orders_payments import PAY, SANDBOX, shopper

FACES = [1000, 3000, 5000, 10000]


# -- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def op(database: Settings) -> dict[str, str]:
    return await operator_headers(database)


@pytest.fixture(scope="module")
async def design(api: httpx.AsyncClient, op: dict[str, str]) -> dict[str, Any]:
    r = await api.post(
        "/api/v1/admin/gift-card-designs",
        headers=op,
        json={"name": "心意卡", "face_values_fen": FACES, "valid_days": 1095, "theme": "red"},
    )
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="module")
async def store(database: Settings) -> dict[str, Any]:
    """A pickup store selling a 10-yuan SKU (orders of any multiple of 1,000 fen)."""
    suffix = uuid.uuid4().hex[:6]
    st = await Store.create(
        code=f"G{suffix}",
        name=f"Gift store {suffix}",
        city="武汉",
        lat=30.6,
        lng=114.3,
        pickup=True,
        takeout=True,
        write_off=True,
    )
    cat = await Category.create(name=f"gc-{suffix}")
    prod = await Product.create(category=cat, name="Nut mix")
    sku = await Sku.create(product=prod, name="Nut mix 250g", price_fen=1000)
    await StoreSku.create(store=st, sku=sku, stock=100_000)
    return {"store": st, "sku": sku}


async def buy(
    api: httpx.AsyncClient, who: dict[str, Any], design: dict[str, Any], face: int, qty: int = 1
) -> str:
    r = await api.post(
        "/api/v1/gift-cards/orders",
        headers=keyed(who["headers"]),
        json={"design_id": design["id"], "face_value_fen": face, "quantity": qty},
    )
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "giftcard"
    return r.json()["order_no"]


async def pay_wechat(
    api: httpx.AsyncClient, who: dict[str, Any], order_no: str, **body: Any
) -> dict:
    r = await api.post(f"/api/v1/orders/{order_no}/pay", headers=who["headers"], json=body)
    assert r.status_code == 200, r.text
    return r.json()


async def complete(api: httpx.AsyncClient, order_no: str) -> None:
    r = await api.post(f"{PAY}/{order_no}/complete?wait=1")
    assert r.json()["notify_status"] == 204, r.text


async def card_in_hand(
    api: httpx.AsyncClient, design: dict[str, Any], face: int, who: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A shopper holding one paid card of `face`: (shopper, card as /me/gift-cards shows it)."""
    who = who or await shopper(api)
    order_no = await buy(api, who, design, face)
    await pay_wechat(api, who, order_no)
    await complete(api, order_no)
    cards = await my_cards(api, who)
    card = next(c for c in cards if c["face_value_fen"] == face and c["balance_fen"] == face)
    return who, card


async def my_cards(api: httpx.AsyncClient, who: dict[str, Any]) -> list[dict[str, Any]]:
    r = await api.get("/api/v1/me/gift-cards", headers=who["headers"])
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def order_in(order_no: str, status: OrderStatus) -> bool:
    return (await Order.get(order_no=order_no)).status == status


async def balance_of(card_id: int) -> int:
    card = await GiftCard.get(id=card_id)
    return await ledger.balance(card.account_id)


async def pickup(
    api: httpx.AsyncClient, who: dict[str, Any], store: dict[str, Any], fen: int
) -> str:
    r = await api.post(
        "/api/v1/orders",
        headers=keyed(who["headers"]),
        json={
            "store_id": store["store"].id,
            "items": [{"sku_id": store["sku"].id, "quantity": fen // 1000}],
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["payable_fen"] == fen
    return r.json()["order_no"]


async def give(
    api: httpx.AsyncClient, who: dict[str, Any], card_id: int, greeting: str = "生日快乐!"
) -> httpx.Response:
    return await api.post(
        f"/api/v1/me/gift-cards/{card_id}/gifts",
        headers=who["headers"],
        json={"greeting": greeting},
    )


async def claim(
    api: httpx.AsyncClient, who: dict[str, Any], gift_no: str, scene: str | None = None
) -> httpx.Response:
    return await api.post(
        f"/api/v1/gifts/{gift_no}/claim",
        headers=who["headers"],
        json={"scene": scene} if scene else {},
    )


async def assert_books_balance() -> None:
    checked, problems = await ledger.check()
    assert checked > 0
    assert problems == [], [p.describe() for p in problems]


# -- designs and buying ---------------------------------------------------------------------------


async def test_designs_follow_the_prepaid_card_rules(
    api: httpx.AsyncClient, op: dict[str, str], design: dict[str, Any]
) -> None:
    base = {"name": "x", "face_values_fen": [1000], "valid_days": 1095}
    too_big = await api.post(
        "/api/v1/admin/gift-card-designs", headers=op, json={**base, "face_values_fen": [500_001]}
    )
    assert too_big.status_code == 422 and error_code(too_big) == "FACE_VALUE_OUT_OF_RANGE"
    too_short = await api.post(
        "/api/v1/admin/gift-card-designs", headers=op, json={**base, "valid_days": 365}
    )
    assert too_short.status_code == 422
    shown = (await api.get("/api/v1/gift-cards/designs")).json()["items"]
    assert any(d["id"] == design["id"] and d["face_values_fen"] == FACES for d in shown)

    who = await shopper(api)
    wrong_face = await api.post(
        "/api/v1/gift-cards/orders",
        headers=keyed(who["headers"]),
        json={"design_id": design["id"], "face_value_fen": 2000, "quantity": 1},
    )
    assert wrong_face.status_code == 422 and error_code(wrong_face) == "FACE_VALUE_NOT_OFFERED"
    too_many = await api.post(
        "/api/v1/gift-cards/orders",
        headers=keyed(who["headers"]),
        json={"design_id": design["id"], "face_value_fen": 1000, "quantity": 21},
    )
    assert too_many.status_code == 422

    retired = (await api.post("/api/v1/admin/gift-card-designs", headers=op, json=base)).json()
    r = await api.post(f"/api/v1/admin/gift-card-designs/{retired['id']}/retire", headers=op)
    assert r.status_code == 200 and r.json()["retired"] is True
    gone = await api.post(
        "/api/v1/gift-cards/orders",
        headers=keyed(who["headers"]),
        json={"design_id": retired["id"], "face_value_fen": 1000, "quantity": 1},
    )
    assert gone.status_code == 404 and error_code(gone) == "DESIGN_NOT_FOUND"


async def test_paid_notification_ten_times_issues_the_cards_once(
    api: httpx.AsyncClient, design: dict[str, Any]
) -> None:
    who = await shopper(api)
    order_no = await buy(api, who, design, 5000, qty=3)
    paid = await pay_wechat(api, who, order_no)
    assert paid["paid"] is False and paid["wechat_fen"] == 15000 and paid["package"]
    await complete(api, order_no)
    r = await api.post(f"{PAY}/{order_no}/notify?times=10&concurrent=1")
    assert r.json()["statuses"] == [204] * 10
    cards = await my_cards(api, who)
    assert len(cards) == 3
    assert {c["balance_fen"] for c in cards} == {5000}
    assert all(
        c["expires_at"] is None and c["status"] == "active" for c in cards
    )  # bound: no expiry
    assert all("****" in c["card_no"] for c in cards)
    assert await GiftCard.filter(order_no=order_no).count() == 3
    assert await LedgerEntry.filter(reason="issue", reference__startswith=order_no).count() == 3
    r = await api.get(f"/api/v1/me/gift-cards/{cards[0]['id']}/ledger", headers=who["headers"])
    assert [(e["reason"], e["amount_fen"], e["balance_after_fen"]) for e in r.json()["items"]] == [
        ("issue", 5000, 5000)
    ]
    # Somebody else's card is not yours to read.
    other = await shopper(api)
    r = await api.get(f"/api/v1/me/gift-cards/{cards[0]['id']}/ledger", headers=other["headers"])
    assert r.status_code == 404


async def test_a_gift_card_cannot_pay_for_gift_cards(
    api: httpx.AsyncClient, design: dict[str, Any]
) -> None:
    who, card = await card_in_hand(api, design, 1000)
    order_no = await buy(api, who, design, 1000)
    r = await api.post(
        f"/api/v1/orders/{order_no}/pay",
        headers=who["headers"],
        json={"gift_card_ids": [card["id"]]},
    )
    assert r.status_code == 409 and error_code(r) == "GIFT_CARD_NOT_ACCEPTED"
    assert await balance_of(card["id"]) == 1000


# -- paying with cards ----------------------------------------------------------------------------


async def test_card_covers_the_order_and_pays_it_at_once(
    api: httpx.AsyncClient, design: dict[str, Any], store: dict[str, Any]
) -> None:
    who, card = await card_in_hand(api, design, 10000)
    order_no = await pickup(api, who, store, 6000)
    answer = await pay_wechat(api, who, order_no, gift_card_ids=[card["id"]])
    assert answer["paid"] is True and answer["wechat_fen"] == 0 and answer["package"] is None
    assert answer["tenders"] == [
        {
            "kind": "gift_card",
            "label": answer["tenders"][0]["label"],
            "amount_fen": 6000,
            "status": "captured",
        }
    ]
    order = (await api.get(f"/api/v1/orders/{order_no}", headers=who["headers"])).json()
    assert order["status"] == "paid" and order["paid_fen"] == 6000
    assert order["tenders"][0]["amount_fen"] == 6000
    assert await balance_of(card["id"]) == 4000
    state = await api.get(f"{PAY}/{order_no}/state")
    assert state.status_code == 404  # WeChat Pay was never asked


async def test_two_cards_pay_in_order_and_never_cover_the_same_fen(
    api: httpx.AsyncClient, design: dict[str, Any], store: dict[str, Any]
) -> None:
    who, small = await card_in_hand(api, design, 3000)
    _, big = await card_in_hand(api, design, 5000, who)
    order_no = await pickup(api, who, store, 6000)
    answer = await pay_wechat(api, who, order_no, gift_card_ids=[small["id"], big["id"]])
    assert answer["paid"] is True
    assert [t["amount_fen"] for t in answer["tenders"]] == [3000, 3000]
    assert await balance_of(small["id"]) == 0 and await balance_of(big["id"]) == 2000


async def test_one_card_ten_phones_each_needing_sixty_percent_exactly_one_captures(
    api: httpx.AsyncClient, design: dict[str, Any], store: dict[str, Any]
) -> None:
    who, card = await card_in_hand(api, design, 10000)
    orders_ = [await pickup(api, who, store, 6000) for _ in range(10)]
    answers = await asyncio.gather(
        *(
            api.post(
                f"/api/v1/orders/{no}/pay",
                headers=who["headers"],
                json={"gift_card_ids": [card["id"]], "gift_card_fen": 6000},
            )
            for no in orders_
        )
    )
    ok = [r for r in answers if r.status_code == 200]
    assert len(ok) == 1 and ok[0].json()["paid"] is True, [r.text for r in answers]
    assert {error_code(r) for r in answers if r.status_code != 200} == {"CARD_BALANCE_CHANGED"}
    assert await balance_of(card["id"]) == 4000
    assert await Tender.filter(ref=str(card["id"]), kind="gift_card").count() == 1
    assert await Order.filter(order_no__in=orders_, status=OrderStatus.PAID).count() == 1
    await assert_books_balance()


async def test_split_payment_times_out_and_the_card_comes_back_once(
    api: httpx.AsyncClient,
    design: dict[str, Any],
    store: dict[str, Any],
    settings: Settings,
    server: ServerProcess,
) -> None:
    app = settings.model_copy(update={"public_url": server.base_url})
    who, card = await card_in_hand(api, design, 3000)
    order_no = await pickup(api, who, store, 5000)
    answer = await pay_wechat(api, who, order_no, gift_card_ids=[card["id"]])
    assert answer["paid"] is False and answer["wechat_fen"] == 2000 and answer["package"]
    state = (await api.get(f"{PAY}/{order_no}/state")).json()
    assert state["total"] == 2000  # WeChat is asked for the remainder only
    assert await balance_of(card["id"]) == 0
    # The same tap again (a retry) captures nothing more and reopens the same WeChat payment.
    again = await pay_wechat(api, who, order_no, gift_card_ids=[card["id"]])
    assert again["wechat_fen"] == 2000 and len(again["tenders"]) == 1
    await Order.filter(order_no=order_no).update(pay_deadline=utcnow() - timedelta(seconds=1))
    outcomes = await asyncio.gather(
        *(payments.close_unpaid(app, order_no, actor="system", reason="timeout") for _ in range(3))
    )
    assert "cancelled" in outcomes
    assert await balance_of(card["id"]) == 3000
    assert await LedgerEntry.filter(reason="spend_return", reference=order_no).count() == 1
    late = await api.post(f"{PAY}/{order_no}/complete")
    assert late.status_code == 409  # closed at WeChat: the remainder can no longer be paid
    order = (await api.get(f"/api/v1/orders/{order_no}", headers=who["headers"])).json()
    assert order["status"] == "cancelled" and order["tenders"][0]["status"] == "returned"


async def test_wechat_paying_after_we_closed_the_order_is_refunded_and_the_card_not_charged_twice(
    api: httpx.AsyncClient, design: dict[str, Any], store: dict[str, Any]
) -> None:
    who, card = await card_in_hand(api, design, 3000)
    order_no = await pickup(api, who, store, 5000)
    await pay_wechat(api, who, order_no, gift_card_ids=[card["id"]])
    # We closed it here (WeChat could not be reached to close it there): the card is back...
    await orders_service.transition(order_no, OrderStatus.CANCELLED, actor="system", reason="t")
    assert await balance_of(card["id"]) == 3000
    # ...and the shopper's WeChat part still went through: it goes back, the card stays whole.
    await complete(api, order_no)

    await wait_for(lambda: order_in(order_no, OrderStatus.REFUNDED))
    refund = await Refund.get(order__order_no=order_no)
    assert refund.amount_fen == 2000
    assert await balance_of(card["id"]) == 3000
    assert await LedgerEntry.filter(reference=order_no).count() == 2  # spend + its return
    await assert_books_balance()


async def test_split_payment_paid_then_refunded_to_each_tender_once(
    api: httpx.AsyncClient, design: dict[str, Any], store: dict[str, Any], op: dict[str, str]
) -> None:
    who, card = await card_in_hand(api, design, 3000)
    order_no = await pickup(api, who, store, 5000)
    await pay_wechat(api, who, order_no, gift_card_ids=[card["id"]])
    await complete(api, order_no)
    await api.post(f"{PAY}/{order_no}/notify?times=5&concurrent=1")
    order = (await api.get(f"/api/v1/orders/{order_no}", headers=who["headers"])).json()
    assert order["status"] == "paid" and order["paid_fen"] == 5000
    assert sorted((t["kind"], t["amount_fen"]) for t in order["tenders"]) == [
        ("gift_card", 3000),
        ("wechat", 2000),
    ]
    refunds = await asyncio.gather(
        *(
            api.post(
                f"/api/v1/admin/orders/{order_no}/refunds", headers=op, json={"reason": "test"}
            )
            for _ in range(3)
        )
    )
    assert sorted(r.status_code for r in refunds) == [201, 409, 409]
    done = next(r for r in refunds if r.status_code == 201).json()
    assert done["amount_fen"] == 2000  # WeChat's part; the card's is back already
    assert await balance_of(card["id"]) == 3000
    entry = await LedgerEntry.get(reason="spend_refund", reference=order_no)
    assert entry.balance_after == 3000 and entry.amount == 3000

    await wait_for(lambda: order_in(order_no, OrderStatus.REFUNDED))
    refund = await Refund.get(order__order_no=order_no)
    assert refund.amount_fen == 2000
    assert (await Order.get(order_no=order_no)).refunded_fen == 5000
    assert (await api.get(f"{PAY}/{order_no}/state")).json()["state"] == "REFUND"
    await assert_books_balance()


async def test_card_only_order_refunds_at_once_without_wechat(
    api: httpx.AsyncClient, design: dict[str, Any], store: dict[str, Any], op: dict[str, str]
) -> None:
    who, card = await card_in_hand(api, design, 5000)
    order_no = await pickup(api, who, store, 2000)
    assert (await pay_wechat(api, who, order_no, gift_card_ids=[card["id"]]))["paid"] is True
    r = await api.post(f"/api/v1/admin/orders/{order_no}/refunds", headers=op, json={"reason": "x"})
    assert r.status_code == 201 and r.json()["amount_fen"] == 0
    assert r.json()["status"] == "success"
    assert (await Order.get(order_no=order_no)).status == OrderStatus.REFUNDED
    assert await balance_of(card["id"]) == 5000


# -- giving and claiming --------------------------------------------------------------------------


async def test_two_friends_claim_one_gift_at_once_one_owner_each_round(
    api: httpx.AsyncClient, design: dict[str, Any]
) -> None:
    holder, card = await card_in_hand(api, design, 1000)
    for _ in range(20):
        r = await give(api, holder, card["id"])
        assert r.status_code == 201, r.text
        gift_no = r.json()["gift_no"]
        a, b = await shopper(api), await shopper(api)
        ra, rb = await asyncio.gather(claim(api, a, gift_no), claim(api, b, gift_no))
        assert sorted([ra.status_code, rb.status_code]) == [201, 409], (ra.text, rb.text)
        loser = ra if ra.status_code == 409 else rb
        assert error_code(loser) == "GIFT_ALREADY_CLAIMED"
        winner = a if ra.status_code == 201 else b
        fresh = await GiftCard.get(id=card["id"])
        assert fresh.holder_id == winner["member_id"] and fresh.status == CardStatus.ACTIVE
        assert await balance_of(card["id"]) == 1000
        holder = winner  # the card goes round: the winner gives it next
    entries = await LedgerEntry.filter(account_id=fresh.account_id, reason="gift_in").count()
    assert entries == 20
    await assert_books_balance()


async def test_giver_cancels_while_a_friend_claims_one_outcome_each_round(
    api: httpx.AsyncClient, design: dict[str, Any]
) -> None:
    giver, card = await card_in_hand(api, design, 1000)
    for _ in range(20):
        r = await give(api, giver, card["id"])
        assert r.status_code == 201, r.text
        gift_no = r.json()["gift_no"]
        friend = await shopper(api)
        cancel, took = await asyncio.gather(
            api.post(f"/api/v1/me/gifts/{gift_no}/cancel", headers=giver["headers"]),
            claim(api, friend, gift_no),
        )
        assert sorted([cancel.status_code, took.status_code]) in ([200, 409], [201, 409])
        gift = await Gift.get(gift_no=gift_no)
        fresh = await GiftCard.get(id=card["id"])
        assert fresh.status == CardStatus.ACTIVE
        if took.status_code == 201:
            assert gift.status == GiftStatus.CLAIMED and fresh.holder_id == friend["member_id"]
            assert error_code(cancel) == "GIFT_ALREADY_CLAIMED"
            giver = friend
        else:
            assert gift.status == GiftStatus.CANCELLED and fresh.holder_id == giver["member_id"]
    await assert_books_balance()


async def test_own_gift_pending_card_landing_page_and_share_attribution(
    api: httpx.AsyncClient, design: dict[str, Any], store: dict[str, Any]
) -> None:
    giver, card = await card_in_hand(api, design, 3000)
    r = await give(api, giver, card["id"], "新年快乐")
    gift = r.json()
    assert gift["status"] == "pending" and gift["flagged"] is False
    assert f"gift={gift['gift_no']}" in gift["share"]["path"] and gift["share"]["scene"]
    assert (await claim(api, giver, gift["gift_no"])).json()["error"]["code"] == "OWN_GIFT"
    # Given, it cannot pay until the gift ends.
    order_no = await pickup(api, giver, store, 1000)
    r = await api.post(
        f"/api/v1/orders/{order_no}/pay",
        headers=giver["headers"],
        json={"gift_card_ids": [card["id"]]},
    )
    assert r.status_code == 409 and error_code(r) == "CARD_NOT_USABLE"
    again = await give(api, giver, card["id"])
    assert again.status_code == 409 and error_code(again) == "CARD_NOT_GIVABLE"
    page = await api.get(f"/api/v1/gifts/{gift['gift_no']}")  # no token
    assert page.status_code == 200
    view = page.json()
    assert view["greeting"] == "新年快乐" and view["amount_fen"] == 3000
    assert view["design"]["name"] == "心意卡" and view["status"] == "pending"
    friend = await shopper(api)
    r = await claim(api, friend, gift["gift_no"], scene=gift["share"]["scene"])
    assert r.status_code == 201 and r.json()["balance_fen"] == 3000
    spend = await pickup(api, friend, store, 1000)
    assert (await pay_wechat(api, friend, spend, gift_card_ids=[card["id"]]))["paid"] is True
    after = (await api.get(f"/api/v1/gifts/{gift['gift_no']}")).json()
    assert after["status"] == "claimed" and after["amount_fen"] == 3000  # not the 2000 left
    assert (await my_cards(api, friend))[0]["id"] == card["id"]
    assert all(c["id"] != card["id"] for c in await my_cards(api, giver))
    stats = await api.get("/api/v1/me/shares", headers=giver["headers"])
    mine = [s for s in stats.json()["items"] if s["scene"] == gift["share"]["scene"]]
    assert mine and mine[0]["conversions"] == 1
    # The friend's ledger starts at the claim; the giver's history is not theirs to see.
    entries = (
        await api.get(f"/api/v1/me/gift-cards/{card['id']}/ledger", headers=friend["headers"])
    ).json()["items"]
    assert [(e["reason"], e["amount_fen"]) for e in entries] == [
        ("spend", -1000),
        ("gift_in", 3000),
    ]


async def test_risky_greeting_is_refused_and_moderation_down_sends_nothing(
    api: httpx.AsyncClient, design: dict[str, Any], worker_env: outbox.Env
) -> None:
    giver, card = await card_in_hand(api, design, 1000)
    word = f"bad{uuid.uuid4().hex[:6]}"
    await api.put(
        f"{SANDBOX}/control/msg-sec", json={"suggest": "risky", "label": 20001, "keywords": [word]}
    )
    try:
        r = await give(api, giver, card["id"], f"hello {word}")
        assert r.status_code == 422 and error_code(r) == "GREETING_REJECTED"
        assert not await Gift.filter(card_id=card["id"]).exists()
        assert (await GiftCard.get(id=card["id"])).status == CardStatus.ACTIVE
        await api.put(
            f"{SANDBOX}/control/msg-sec",
            json={"suggest": "review", "label": 20002, "keywords": [word]},
        )
        r = await give(api, giver, card["id"], f"maybe {word}")
        assert r.status_code == 201 and r.json()["flagged"] is True
        cancel = await api.post(
            f"/api/v1/me/gifts/{r.json()['gift_no']}/cancel", headers=giver["headers"]
        )
        assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
    finally:
        await api.put(f"{SANDBOX}/control/msg-sec", json={"suggest": "pass"})

    _, second = await card_in_hand(api, design, 1000, giver)
    rule = {"api": "msg_sec_check", "errcode": -1, "times": -1, "openid": giver["openid"]}
    assert (await api.post(f"{SANDBOX}/control/failures", json=rule)).status_code == 201
    try:
        r = await give(api, giver, card["id"], "等一下")
        assert (
            r.status_code == 202 and r.json()["status"] == "checking" and r.json()["share"] is None
        )
        gift_no = r.json()["gift_no"]
        page = (await api.get(f"/api/v1/gifts/{gift_no}")).json()
        assert page["greeting"] is None and page["status"] == "checking"
        friend = await shopper(api)
        r = await claim(api, friend, gift_no)
        assert r.status_code == 409 and error_code(r) == "GIFT_NOT_READY"
        await outbox.deliver_due(worker_env)  # the worker asks again: still down, the gift waits
        assert (await Gift.get(gift_no=gift_no)).status == GiftStatus.CHECKING
        # Taken back while unchecked: its greeting is still never shown.
        r = await give(api, giver, second["id"], "not checked either")
        unchecked = r.json()["gift_no"]
        await api.post(f"/api/v1/me/gifts/{unchecked}/cancel", headers=giver["headers"])
        page = (await api.get(f"/api/v1/gifts/{unchecked}")).json()
        assert page["status"] == "cancelled" and page["greeting"] is None
    finally:
        await api.delete(f"{SANDBOX}/control/failures")
    await OutboxEvent.filter(key=f"gc:{gift_no}").update(available_at=utcnow())
    await drain(worker_env)
    assert (await Gift.get(gift_no=gift_no)).status == GiftStatus.PENDING
    mine = await api.get(f"/api/v1/me/gifts/{gift_no}", headers=giver["headers"])
    assert mine.json()["share"]["scene"]
    assert (await claim(api, friend, gift_no)).status_code == 201


async def test_an_unclaimed_gift_comes_back_after_24_hours(
    api: httpx.AsyncClient, design: dict[str, Any], worker_env: outbox.Env
) -> None:
    giver, card = await card_in_hand(api, design, 1000)
    gift_no = (await give(api, giver, card["id"])).json()["gift_no"]
    await Gift.filter(gift_no=gift_no).update(expires_at=utcnow() - timedelta(seconds=1))
    friend = await shopper(api)
    r = await claim(api, friend, gift_no)
    assert r.status_code == 409 and error_code(r) == "GIFT_EXPIRED"
    assert (await Gift.get(gift_no=gift_no)).status == GiftStatus.RETURNED
    fresh = await GiftCard.get(id=card["id"])
    assert fresh.holder_id == giver["member_id"] and fresh.status == CardStatus.ACTIVE

    # Nobody tries: the delayed outbox event returns it on its own.
    gift_no = (await give(api, giver, card["id"])).json()["gift_no"]
    await Gift.filter(gift_no=gift_no).update(expires_at=utcnow() - timedelta(seconds=1))
    await OutboxEvent.filter(key=f"gr:{gift_no}").update(available_at=utcnow())
    await drain(worker_env)
    assert (await Gift.get(gift_no=gift_no)).status == GiftStatus.RETURNED
    assert (await GiftCard.get(id=card["id"])).status == CardStatus.ACTIVE


# -- refunds of purchases and of orders paid by a card since given away ---------------------------


async def test_a_purchase_refunds_only_while_its_cards_are_untouched(
    api: httpx.AsyncClient, design: dict[str, Any], store: dict[str, Any], op: dict[str, str]
) -> None:
    who = await shopper(api)
    untouched = await buy(api, who, design, 1000, qty=2)
    await pay_wechat(api, who, untouched)
    await complete(api, untouched)
    r = await api.post(
        f"/api/v1/admin/orders/{untouched}/refunds", headers=op, json={"reason": "x"}
    )
    assert r.status_code == 201, r.text
    cards = await GiftCard.filter(order_no=untouched)
    assert {c.status for c in cards} == {CardStatus.REFUNDED}
    assert [await balance_of(c.id) for c in cards] == [0, 0]

    spent = await buy(api, who, design, 3000)
    await pay_wechat(api, who, spent)
    await complete(api, spent)
    card = await GiftCard.get(order_no=spent)
    order_no = await pickup(api, who, store, 1000)
    await pay_wechat(api, who, order_no, gift_card_ids=[card.id])
    r = await api.post(f"/api/v1/admin/orders/{spent}/refunds", headers=op, json={"reason": "x"})
    assert r.status_code == 409 and error_code(r) == "CARD_IN_USE"
    assert (await Order.get(order_no=spent)).status == OrderStatus.PAID
    assert await balance_of(card.id) == 2000

    given = await buy(api, who, design, 1000)
    await pay_wechat(api, who, given)
    await complete(api, given)
    card = await GiftCard.get(order_no=given)
    gift_no = (await give(api, who, card.id)).json()["gift_no"]
    r = await api.post(f"/api/v1/admin/orders/{given}/refunds", headers=op, json={"reason": "x"})
    assert r.status_code == 409 and error_code(r) == "CARD_IN_USE"
    assert (await claim(api, await shopper(api), gift_no)).status_code == 201


async def test_refund_after_the_paying_card_was_given_away_goes_to_a_new_card_of_the_payer(
    api: httpx.AsyncClient, design: dict[str, Any], store: dict[str, Any], op: dict[str, str]
) -> None:
    payer, card = await card_in_hand(api, design, 5000)
    order_no = await pickup(api, payer, store, 2000)
    assert (await pay_wechat(api, payer, order_no, gift_card_ids=[card["id"]]))["paid"] is True
    gift_no = (await give(api, payer, card["id"])).json()["gift_no"]
    friend = await shopper(api)
    assert (await claim(api, friend, gift_no)).status_code == 201
    r = await api.post(f"/api/v1/admin/orders/{order_no}/refunds", headers=op, json={"reason": "x"})
    assert r.status_code == 201, r.text
    assert await balance_of(card["id"]) == 3000  # the friend's card is not topped up
    mine = await my_cards(api, payer)
    assert [c["balance_fen"] for c in mine] == [2000]  # a new card for the payer
    await assert_books_balance()


# -- printed cards --------------------------------------------------------------------------------


async def batch(
    api: httpx.AsyncClient, op: dict[str, str], design: dict[str, Any], count: int
) -> list[dict[str, str]]:
    r = await api.post(
        "/api/v1/admin/gift-card-batches",
        headers=op,
        json={"design_id": design["id"], "face_value_fen": 10000, "count": count},
    )
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == count
    return rows


async def test_printed_cards_bind_by_pin_and_brute_force_is_locked_out(
    api: httpx.AsyncClient, op: dict[str, str], design: dict[str, Any]
) -> None:
    over = await api.post(
        "/api/v1/admin/gift-card-batches",
        headers=op,
        json={"design_id": design["id"], "face_value_fen": 100_001, "count": 1},
    )
    assert over.status_code == 422  # a bearer card holds at most 1,000 yuan
    rows = await batch(api, op, design, 3)
    stored = await GiftCard.get(card_no=rows[0]["card_no"])
    assert stored.pin_hash and rows[0]["pin"] not in stored.pin_hash and stored.holder_id is None
    assert stored.expires_at is not None

    thief = await shopper(api)
    target = rows[0]
    wrong = f"{(int(target['pin']) + 1) % 10**6:06d}"
    for _ in range(5):
        r = await api.post(
            "/api/v1/me/gift-cards/bind",
            headers=thief["headers"],
            json={"card_no": target["card_no"], "pin": wrong},
        )
        assert r.status_code == 422 and error_code(r) == "CARD_OR_PIN_WRONG"
    r = await api.post(
        "/api/v1/me/gift-cards/bind",
        headers=thief["headers"],
        json={"card_no": target["card_no"], "pin": target["pin"]},
    )
    assert r.status_code == 429 and error_code(r) == "TOO_MANY_ATTEMPTS"
    # The card is locked for everyone for the hour, and the thief for every card.
    owner = await shopper(api)
    r = await api.post(
        "/api/v1/me/gift-cards/bind",
        headers=owner["headers"],
        json={"card_no": target["card_no"], "pin": target["pin"]},
    )
    assert r.status_code == 429
    r = await api.post(
        "/api/v1/me/gift-cards/bind",
        headers=thief["headers"],
        json={"card_no": rows[1]["card_no"], "pin": rows[1]["pin"]},
    )
    assert r.status_code == 429
    assert (await GiftCard.get(card_no=target["card_no"])).holder_id is None

    r = await api.post(
        "/api/v1/me/gift-cards/bind",
        headers=owner["headers"],
        json={"card_no": rows[1]["card_no"], "pin": rows[1]["pin"]},
    )
    assert r.status_code == 200, r.text
    bound = r.json()
    assert (
        bound["balance_fen"] == 10000 and bound["expires_at"] is None and not bound["reactivated"]
    )
    twice = await api.post(
        "/api/v1/me/gift-cards/bind",
        headers=(await shopper(api))["headers"],
        json={"card_no": rows[1]["card_no"], "pin": rows[1]["pin"]},
    )
    assert twice.status_code == 409 and error_code(twice) == "CARD_ALREADY_BOUND"

    # An expired bearer card keeps its money; binding brings it back.
    await GiftCard.filter(card_no=rows[2]["card_no"]).update(
        expires_at=utcnow() - timedelta(days=1)
    )
    assert await printed.expire_bearer_cards() >= 1
    assert (await GiftCard.get(card_no=rows[2]["card_no"])).status == CardStatus.EXPIRED
    r = await api.post(
        "/api/v1/me/gift-cards/bind",
        headers=owner["headers"],
        json={"card_no": rows[2]["card_no"], "pin": rows[2]["pin"]},
    )
    assert r.status_code == 200 and r.json()["reactivated"] is True
    assert r.json()["balance_fen"] == 10000 and r.json()["status"] == "active"


async def test_a_holder_hears_seven_days_before_a_dated_card_expires(
    api: httpx.AsyncClient, op: dict[str, str], design: dict[str, Any], worker_env: outbox.Env
) -> None:
    rows = await batch(api, op, design, 1)
    holder = await shopper(api)
    await api.post(
        f"{SANDBOX}/users/{holder['openid']}/subscriptions",
        json={"template_id": "sandbox-giftcard_expiry"},
    )
    # A dated card with a known holder (say registered at the till without binding).
    await GiftCard.filter(card_no=rows[0]["card_no"]).update(
        holder_id=holder["member_id"], expires_at=utcnow() + timedelta(days=6)
    )
    assert await printed.remind_expiring() >= 1
    assert await printed.remind_expiring() == 0  # once
    await drain(worker_env)
    msgs = (await api.get(f"{SANDBOX}/users/{holder['openid']}/messages")).json()["items"]
    assert any(m["data"]["thing1"].endswith(rows[0]["card_no"][-4:]) for m in msgs), msgs


# -- operators ------------------------------------------------------------------------------------


async def test_operator_figures_are_the_ledger_sums(
    api: httpx.AsyncClient, op: dict[str, str], design: dict[str, Any]
) -> None:
    r = await api.get("/api/v1/admin/gift-cards/stats", headers=op)
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["outstanding_fen"] == s["ledger_fen"]
    assert s["outstanding_fen"] == (
        s["sold"]["fen"]
        + s["printed"]["fen"]
        + s["returned_to_new_cards_fen"]
        - s["spent_fen"]
        - s["refunded"]["fen"]
    )
    assert s["sold"]["count"] > 0 and s["refunded"]["count"] > 0 and s["spent_fen"] > 0
    shopper_token = (await shopper(api))["headers"]
    assert (await api.get("/api/v1/admin/gift-cards/stats", headers=shopper_token)).status_code in (
        401,
        403,
    )
    await assert_books_balance()


async def test_a_merge_moves_the_cards_their_history_and_their_money(
    api: httpx.AsyncClient, design: dict[str, Any], settings: Settings, redis: aioredis.Redis
) -> None:
    from server.identity import merge

    old, card = await card_in_hand(api, design, 5000)
    new = await shopper(api)
    await merge.merge_members(
        redis, settings, old["member_id"], new["member_id"], f"u-{uuid.uuid4().hex}"
    )
    moved = await my_cards(api, new)
    assert [(c["id"], c["balance_fen"]) for c in moved] == [(card["id"], 5000)]
    r = await api.get(f"/api/v1/me/gift-cards/{card['id']}/ledger", headers=new["headers"])
    assert [e["reason"] for e in r.json()["items"]] == ["issue"]
    await assert_books_balance()


async def test_a_burst_of_pin_guesses_tests_at_most_five(
    api: httpx.AsyncClient, op: dict[str, str], design: dict[str, Any]
) -> None:
    rows = await batch(api, op, design, 1)
    card_no, pin = rows[0]["card_no"], rows[0]["pin"]
    guesses = [f"{(int(pin) + i) % 10**6:06d}" for i in range(1, 40)]
    thieves = [await shopper(api) for _ in range(4)]  # many accounts: the card's own limit holds
    answers = await asyncio.gather(
        *(
            api.post(
                "/api/v1/me/gift-cards/bind",
                headers=thieves[i % 4]["headers"],
                json={"card_no": card_no, "pin": g},
            )
            for i, g in enumerate([*guesses, pin])
        )
    )
    codes = [error_code(r) if r.status_code != 200 else "BOUND" for r in answers]
    assert codes.count("CARD_OR_PIN_WRONG") <= 5, codes
    assert codes.count("TOO_MANY_ATTEMPTS") >= len(guesses) - 5
    assert all(r.status_code in (200, 422, 429) for r in answers)


async def test_bad_input_is_a_clear_4xx_and_takes_nothing(
    api: httpx.AsyncClient, design: dict[str, Any], store: dict[str, Any]
) -> None:
    who, card = await card_in_hand(api, design, 5000)
    order_no = await pickup(api, who, store, 8000)
    huge = 2**63
    r = await api.post(
        f"/api/v1/orders/{order_no}/pay", headers=who["headers"], json={"gift_card_ids": [huge]}
    )
    assert r.status_code == 422
    for path in (
        f"/api/v1/me/gift-cards/{huge * 10}/ledger",
        "/api/v1/gifts/G" + "0" * 40,
        "/api/v1/me/gifts/G" + "礼" * 20,
        "/api/v1/orders/" + "9" * 40,
    ):
        r = await api.get(path, headers=who["headers"])
        assert r.status_code == 404, (path, r.text)
    r = await api.post(
        f"/api/v1/me/gift-cards/{huge}/gifts", headers=who["headers"], json={"greeting": "hi"}
    )
    assert r.status_code == 404
    # A WeChat part that cannot be opened (an app that is not ours) takes no card money.
    r = await api.post(
        f"/api/v1/orders/{order_no}/pay",
        headers=who["headers"],
        json={"gift_card_ids": [card["id"]], "appid": "wxnotours0000000"},
    )
    assert r.status_code == 422 and error_code(r) == "UNKNOWN_APPID"
    assert await balance_of(card["id"]) == 5000
    assert not await Tender.filter(order__order_no=order_no).exists()
    # Buying cards moves money: a second tap without a key could buy twice, so a key is a must.
    r = await api.post(
        "/api/v1/gift-cards/orders",
        headers=who["headers"],
        json={"design_id": design["id"], "face_value_fen": 1000, "quantity": 1},
    )
    assert r.status_code == 400 and error_code(r) == "IDEMPOTENCY_KEY_REQUIRED"
