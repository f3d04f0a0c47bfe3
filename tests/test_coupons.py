"""Coupons: templates, the coupon centre under load, live write-off codes, clerks at stores,
revoke, pricing on orders, campaign issuance, stats. Against the real server, PostgreSQL and
Redis."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.coupons import codes, issuance, stock, templates
from server.coupons import service as cs
from server.coupons.models import Coupon, CouponStatus, CouponTemplate, WriteOff
from server.identity.models import Member, Operator
from server.infra.auth import encode_access
from server.infra.clock import SHANGHAI, utcnow
from server.infra.errors import AppError
from server.infra.redis import Scripts
from server.membership import segments
from server.orders import service as orders
from server.orders.models import OrderKind, OrderStatus
from server.settings import Settings
from server.stores.models import Store
from tests.conftest import TEST_SECRET, error_code, start_worker

# -- helpers (also used by test_scanner.py) ------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def operator_headers(settings: Settings) -> dict[str, str]:
    op = await Operator.create(username=f"op-{uuid.uuid4().hex[:8]}", password_hash="x")
    return bearer(encode_access(settings, "operator", op.id, ["admin"]))


async def new_member(settings: Settings, **fields: Any) -> tuple[Member, dict[str, str]]:
    m = await Member.create(nickname="Shopper", **fields)
    return m, bearer(encode_access(settings, "member", m.id))


async def new_store(code: str | None = None) -> Store:
    code = code or f"T{uuid.uuid4().hex[:8]}"
    return await Store.create(code=code, name=f"Store {code}", city="Wuhan", lat=30.5, lng=114.3)


async def new_staff(
    settings: Settings, stores: list[Store], role: str = "clerk", password: str = "clerk-pass-1"
) -> tuple[Any, dict[str, str]]:
    from server.identity.models import Staff, StaffStore
    from server.infra.passwords import hash_password

    s = await Staff.create(
        username=f"clerk-{uuid.uuid4().hex[:8]}", password_hash=hash_password(password), role=role
    )
    for st in stores:
        await StaffStore.create(staff_id=s.id, store_id=st.id)
    return s, bearer(encode_access(settings, "staff", s.id, [role]))


def template_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "¥5 off",
        "kind": "amount_off",
        "amount_off_fen": 500,
        "total": 100,
        "per_member_limit": 1,
        "valid_days": 7,
        "channel": "both",
    }
    body.update(over)
    return body


async def make_template(api: httpx.AsyncClient, op: dict[str, str], **over: Any) -> dict:
    r = await api.post("/api/v1/admin/coupon-templates", json=template_body(**over), headers=op)
    assert r.status_code == 201, r.text
    return r.json()


async def claim(api: httpx.AsyncClient, member: dict[str, str], template_id: int) -> dict:
    r = await api.post(f"/api/v1/coupon-center/{template_id}/claim", headers=member)
    assert r.status_code == 201, r.text
    return r.json()["coupon"]


async def live_code(api: httpx.AsyncClient, member: dict[str, str], coupon_id: int) -> dict:
    r = await api.get(f"/api/v1/me/coupons/{coupon_id}/code", headers=member)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
async def op(database: Settings) -> dict[str, str]:
    return await operator_headers(database)


# -- templates -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"kind": "percent_off", "amount_off_fen": None, "percent_off": 0}, "between 1 and 100"),
        ({"kind": "percent_off", "amount_off_fen": None, "percent_off": 101}, "between 1 and 100"),
        (
            {
                "valid_days": None,
                "valid_from": "2026-12-01T00:00:00+08:00",
                "valid_until": "2026-11-01T00:00:00+08:00",
            },
            "valid_until must be after valid_from",
        ),
        ({"kind": "threshold", "amount_off_fen": 5000, "threshold_fen": 3000}, "at least"),
        ({"kind": "threshold", "amount_off_fen": 5000}, "needs threshold_fen"),
        ({"amount_off_fen": None}, "amount_off_fen > 0"),
        ({"total": 0}, "total"),
        ({"valid_days": None}, "valid_days"),
        ({"channel": "online", "store_ids": [1]}, "store_ids"),
        ({"name": "   "}, "name must say something"),
        ({"kind": "percent_off", "percent_off": 10}, "amount_off_fen is for amount_off"),
        ({"amount_off_fen": 2**63}, "amount_off_fen"),
        ({"store_ids": [2**63]}, "store_ids"),
        ({"sku_ids": [-5, 0]}, "sku_ids"),
        ({"totl": 5}, "totl"),  # a misspelt field is not silently a default
        ({"free_sku_id": 987654321, "kind": "free_item", "amount_off_fen": None}, "no such SKU"),
        (
            {
                "valid_days": None,
                "valid_from": "2020-01-01T00:00:00+08:00",
                "valid_until": "2020-02-01T00:00:00+08:00",
            },
            "valid_until has passed",
        ),
    ],
)
async def test_template_validation_says_what_is_wrong(
    api: httpx.AsyncClient, op: dict[str, str], over: dict[str, Any], needle: str
) -> None:
    r = await api.post("/api/v1/admin/coupon-templates", json=template_body(**over), headers=op)
    assert r.status_code == 422, r.text
    assert error_code(r) == "VALIDATION_ERROR"
    assert needle in r.json()["error"]["message"]


async def test_template_needs_an_operator(api: httpx.AsyncClient, database: Settings) -> None:
    _, member = await new_member(database)
    r = await api.post("/api/v1/admin/coupon-templates", json=template_body(), headers=member)
    assert r.status_code == 401 and error_code(r) == "TOKEN_WRONG_AUDIENCE"


async def test_template_with_unknown_store_is_refused(
    api: httpx.AsyncClient, op: dict[str, str]
) -> None:
    r = await api.post(
        "/api/v1/admin/coupon-templates", json=template_body(store_ids=[987654321]), headers=op
    )
    assert r.status_code == 422 and "987654321" in r.json()["error"]["message"]


async def test_operator_roles_campaign_retries_and_what_a_template_shows(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings, redis: Any
) -> None:
    ops = await Operator.create(username=f"ops-{uuid.uuid4().hex[:8]}", password_hash="x")
    store_ops = bearer(encode_access(database, "operator", ops.id, ["store_ops"]))
    r = await api.post("/api/v1/admin/coupon-templates", json=template_body(), headers=store_ops)
    assert r.status_code == 403 and error_code(r) == "ROLE_REQUIRED"
    assert (await api.get("/api/v1/admin/coupon-templates", headers=store_ops)).status_code == 200

    t = await make_template(api, op, name="Retry campaign", total=10, in_center=False)
    a, b = await new_member(database), await new_member(database)
    send = {"template_id": t["id"], "member_ids": [a[0].id, b[0].id]}
    key = {"Idempotency-Key": "campaign-" + uuid.uuid4().hex}
    r1 = await api.post("/api/v1/admin/coupon-issuances", json=send, headers=op | key)
    r2 = await api.post("/api/v1/admin/coupon-issuances", json=send, headers=op | key)
    assert r1.status_code == 202 and r2.status_code == 202, (r1.text, r2.text)
    assert r1.json()["id"] == r2.json()["id"]
    await issuance.run_issuance(Scripts(redis), r1.json()["id"])
    assert await Coupon.filter(template_id=t["id"]).count() == 2
    for bad in ({**send, "member_ids": [0, -1]}, {**send, "template_id": 2**63}):
        r = await api.post("/api/v1/admin/coupon-issuances", json=bad, headers=op)
        assert r.status_code == 422, r.text
    r = await api.patch(
        f"/api/v1/admin/coupon-templates/{t['id']}", json={"active": False}, headers=op
    )
    assert r.status_code == 200, r.text
    r = await api.post("/api/v1/admin/coupon-issuances", json=send, headers=op)
    assert r.status_code == 409 and error_code(r) == "TEMPLATE_PAUSED"

    # PATCH checks what create checks, can clear the window's end, and shows it back.
    w = await make_template(
        api, op, claim_from="2026-12-01T00:00:00+08:00", claim_until="2027-12-01T00:00:00+08:00"
    )
    path = f"/api/v1/admin/coupon-templates/{w['id']}"
    assert w["claim_until"] == "2027-12-01T00:00:00+08:00" and w["in_center"] is True
    for bad, needle in [
        ({"claim_until": "2027-01-01T00:00:00"}, "time zone offset"),
        ({"claim_until": "2026-11-01T00:00:00+08:00"}, "after claim_from"),
        ({"bogus": 1}, "bogus"),
    ]:
        r = await api.patch(path, json=bad, headers=op)
        assert r.status_code == 422 and needle in r.text, r.text
    r = await api.patch(path, json={"claim_until": None}, headers=op)
    assert r.status_code == 200 and r.json()["claim_until"] is None, r.text


# -- coupon centre -------------------------------------------------------------------------


async def test_claim_under_load_never_oversells_nor_exceeds_the_limit(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings, redis: Any, server: Any
) -> None:
    """Stock 200, 1,000 members each tapping twice at once: exactly 200 coupons, at most one
    per member; after Redis loses the counter it re-warms from the database (still sold out)."""
    t = await make_template(api, op, name="Flash ¥10", amount_off_fen=1000, total=200)
    n = int(os.environ.get("COUPON_LOAD_MEMBERS", "1000"))
    await Member.bulk_create([Member(nickname=f"m{i}") for i in range(n)])
    ids = list(
        await Member.filter(nickname__in=[f"m{i}" for i in range(n)])
        .order_by("-id")
        .limit(1000)
        .values_list("id", flat=True)
    )
    assert len(ids) == n
    tokens = [encode_access(database, "member", mid) for mid in ids]
    statuses: Counter[Any] = Counter()
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60, limits=limits) as c:
        gate = asyncio.Semaphore(50)  # all 2,000 start at once; 50 in flight on the wire

        async def hit(token: str) -> None:
            async with gate:
                r = await c.post(f"/api/v1/coupon-center/{t['id']}/claim", headers=bearer(token))
            statuses[(r.status_code, r.json().get("error", {}).get("code"))] += 1

        started = time.monotonic()
        await asyncio.gather(*(hit(tok) for tok in tokens * 2))
        elapsed = time.monotonic() - started
    print(f"2000 claims in {elapsed:.1f}s: {dict(statuses)}")
    assert statuses[(201, None)] == 200
    assert set(statuses) <= {(201, None), (409, "COUPON_SOLD_OUT"), (409, "LIMIT_REACHED")}
    rows = await Coupon.filter(template_id=t["id"]).values_list("member_id", flat=True)
    assert len(rows) == 200
    assert max(Counter(rows).values()) == 1
    # Each coupon holds one unit of the 200: the database could not have made a 201st.
    units = await Coupon.filter(template_id=t["id"]).values_list("unit", flat=True)
    assert sorted(units) == list(range(1, 201))
    s = (await api.get(f"/api/v1/admin/coupon-templates/{t['id']}/stats", headers=op)).json()
    assert s["remaining"] == 0 and s["claimed"] == 200

    # Redis forgets everything about this template: it comes back from the database.
    await redis.delete(*stock.unit_keys(t["id"]))
    _, late = await new_member(database)
    r = await api.post(f"/api/v1/coupon-center/{t['id']}/claim", headers=late)
    assert r.status_code == 409 and error_code(r) == "COUPON_SOLD_OUT"
    assert int(await redis.get(stock.unit_keys(t["id"])[0])) == 201  # the next unit: none left


async def test_claim_limit_replay_and_the_centre(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings, redis: Any
) -> None:
    t = await make_template(api, op, name="Two per person", total=3, per_member_limit=2)
    _, m = await new_member(database)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    r1 = await api.post(f"/api/v1/coupon-center/{t['id']}/claim", headers=m | key)
    r2 = await api.post(f"/api/v1/coupon-center/{t['id']}/claim", headers=m | key)
    assert r1.status_code == 201 and r2.status_code == 200, (r1.text, r2.text)
    assert r1.json()["coupon"]["id"] == r2.json()["coupon"]["id"] and r2.json()["replayed"]
    second = await claim(api, m, t["id"])
    assert second["id"] != r1.json()["coupon"]["id"]
    r = await api.post(f"/api/v1/coupon-center/{t['id']}/claim", headers=m)
    assert r.status_code == 409 and error_code(r) == "LIMIT_REACHED"

    centre = (await api.get("/api/v1/coupon-center", headers=m)).json()["items"]
    mine = next(i for i in centre if i["template_id"] == t["id"])
    assert mine["claimable"] is False and mine["reason"] == "LIMIT_REACHED"
    assert mine["remaining"] == 1 and mine["claimed_by_me"] == 2

    # A re-warm after Redis lost the keys keeps the member's count (limit still holds).
    await redis.delete(*stock.unit_keys(t["id"]))
    r = await api.post(f"/api/v1/coupon-center/{t['id']}/claim", headers=m)
    assert r.status_code == 409 and error_code(r) == "LIMIT_REACHED"
    _, other = await new_member(database)
    await claim(api, other, t["id"])
    r = await api.post(f"/api/v1/coupon-center/{t['id']}/claim", headers=other)
    assert r.status_code == 409 and error_code(r) == "COUPON_SOLD_OUT"
    centre = (await api.get("/api/v1/coupon-center", headers=other)).json()["items"]
    assert next(i for i in centre if i["template_id"] == t["id"])["reason"] == "SOLD_OUT"

    mine_list = (await api.get("/api/v1/me/coupons?status=unused", headers=m)).json()["items"]
    assert {c["template_id"] for c in mine_list} == {t["id"]} and len(mine_list) == 2
    assert mine_list[0]["value_text"] == "¥5 off"


async def test_a_retried_claim_gets_its_coupon_after_a_pause_and_after_redis_forgot(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings, redis: Any
) -> None:
    """The answer to a claim can be lost on the way: its retry (same Idempotency-Key) gets
    the coupon it made, not a refusal once the template is paused, and not a second coupon
    once Redis lost the template's keys and answers (a restart without persistence)."""
    t = await make_template(api, op, name="Retry me", total=10, per_member_limit=3)
    path = f"/api/v1/coupon-center/{t['id']}/claim"
    _, m = await new_member(database)
    key = {"Idempotency-Key": "tap-" + uuid.uuid4().hex}
    first = await api.post(path, headers=m | key)
    assert first.status_code == 201, first.text
    coupon_id = first.json()["coupon"]["id"]

    await redis.delete(*await redis.keys(f"{stock.tag(t['id'])}:*"))  # Redis forgot it all
    again = await api.post(path, headers=m | key)
    assert again.status_code == 200 and again.json()["replayed"], again.text
    assert again.json()["coupon"]["id"] == coupon_id
    assert await Coupon.filter(template_id=t["id"]).count() == 1

    r = await api.patch(
        f"/api/v1/admin/coupon-templates/{t['id']}", json={"active": False}, headers=op
    )
    assert r.status_code == 200
    await asyncio.sleep(templates.TEMPLATE_KEPT_S + 0.2)
    late = await api.post(path, headers=m | key)
    assert late.status_code == 200 and late.json()["coupon"]["id"] == coupon_id, late.text
    fresh = await api.post(path, headers=m | {"Idempotency-Key": "tap-" + uuid.uuid4().hex})
    assert fresh.status_code == 409 and error_code(fresh) == "CLAIM_NOT_AVAILABLE"

    # Keys are compared whole: two long keys sharing 64 characters are two claims; a key
    # longer than any POST keeps is refused, not cut.
    t2 = await make_template(api, op, name="Long keys", total=10, per_member_limit=3)
    path2 = f"/api/v1/coupon-center/{t2['id']}/claim"
    a = await api.post(path2, headers=m | {"Idempotency-Key": "A" * 64 + "1"})
    b = await api.post(path2, headers=m | {"Idempotency-Key": "A" * 64 + "2"})
    assert a.status_code == 201 and b.status_code == 201, (a.text, b.text)
    assert a.json()["coupon"]["id"] != b.json()["coupon"]["id"]
    r = await api.post(path2, headers=m | {"Idempotency-Key": "K" * 129})
    assert r.status_code == 400 and error_code(r) == "IDEMPOTENCY_KEY_INVALID"


async def test_claim_window_and_audience(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings
) -> None:
    later = await make_template(api, op, claim_from="2099-01-01T00:00:00+08:00")
    r = await api.post(
        "/api/v1/admin/coupon-templates", json=template_body(audience_tiers=["gold"]), headers=op
    )
    if "gold" not in (await segments.tier_codes()):  # a tier the membership does not have
        from tests.test_membership import TIERS  # (it imports this module)

        assert r.status_code == 422 and "no such member tiers: ['gold']" in r.text, r.text
        r = await api.put("/api/v1/admin/membership/tiers", headers=op, json={"items": TIERS})
        assert r.status_code == 200, r.text
    gold = await make_template(api, op, audience_tiers=["gold"])
    _, m = await new_member(database)
    r = await api.post(f"/api/v1/coupon-center/{later['id']}/claim", headers=m)
    assert r.status_code == 409 and error_code(r) == "CLAIM_NOT_STARTED"
    r = await api.post(f"/api/v1/coupon-center/{gold['id']}/claim", headers=m)
    assert r.status_code == 409 and error_code(r) == "CLAIM_NOT_FOR_YOU"
    _, g = await new_member(database, tier="gold")
    await claim(api, g, gold["id"])


async def test_a_coupon_not_valid_yet_gets_no_live_code(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings
) -> None:
    """A code the till would refuse is not handed out: the shopper is told when it starts."""
    start = (utcnow() + timedelta(days=2)).astimezone(SHANGHAI).replace(microsecond=0)
    t = await make_template(
        api,
        op,
        name="From the day after tomorrow",
        valid_days=None,
        valid_from=start.isoformat(),
        valid_until=(start + timedelta(days=7)).isoformat(),
    )
    _, m = await new_member(database)
    c = await claim(api, m, t["id"])
    r = await api.get(f"/api/v1/me/coupons/{c['id']}/code", headers=m)
    assert r.status_code == 409 and error_code(r) == "COUPON_NOT_YET_VALID", r.text
    assert start.isoformat() in r.json()["error"]["message"]
    _, clerk = await new_staff(database, [await new_store()])
    r = await api.get("/api/v1/staff/write-offs?date=9999-12-31", headers=clerk)
    assert r.status_code == 422, r.text  # a day no till will see, not a 500


async def test_expired_coupons_are_listed_as_expired(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings
) -> None:
    t = await make_template(api, op)
    _, m = await new_member(database)
    c = await claim(api, m, t["id"])
    await Coupon.filter(id=c["id"]).update(valid_until=utcnow() - timedelta(seconds=1))
    expired = (await api.get("/api/v1/me/coupons?status=expired", headers=m)).json()["items"]
    assert [x["id"] for x in expired] == [c["id"]] and expired[0]["status"] == "expired"
    assert (await api.get("/api/v1/me/coupons?status=unused", headers=m)).json()["items"] == []
    r = await api.get(f"/api/v1/me/coupons/{c['id']}/code", headers=m)
    assert r.status_code == 409 and error_code(r) == "COUPON_EXPIRED"


# -- live codes and write-off --------------------------------------------------------------


async def test_codes_expired_forged_and_used_are_rejected_with_distinct_codes(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings
) -> None:
    store = await new_store()
    _, clerk = await new_staff(database, [store])
    t = await make_template(api, op, name="Nut pack ¥8", amount_off_fen=800)
    member, m = await new_member(database, phone_masked="138****0042")
    c = await claim(api, m, t["id"])

    live = await live_code(api, m, c["id"])
    assert 0 < live["expires_in"] <= 60 and live["code"].startswith("HD1")
    assert len(live["digits"]) == 12 and live["digits"].isdigit()

    old = codes.sign_code(TEST_SECRET.encode(), c["id"], member.id, int(time.time()) - 61)
    r = await api.post("/api/v1/staff/write-offs", json={"code": old}, headers=clerk)
    assert r.status_code == 410 and error_code(r) == "CODE_EXPIRED", r.text

    forged = codes.sign_code(b"someone-else's-key", c["id"], member.id)
    r = await api.post("/api/v1/staff/write-offs", json={"code": forged}, headers=clerk)
    assert r.status_code == 400 and error_code(r) == "CODE_INVALID"
    tampered = live["code"][:-3] + ("AAA" if not live["code"].endswith("AAA") else "BBB")
    r = await api.post("/api/v1/staff/write-offs", json={"code": tampered}, headers=clerk)
    assert r.status_code == 400 and error_code(r) == "CODE_INVALID"
    r = await api.post("/api/v1/staff/write-offs", json={"code": "hello"}, headers=clerk)
    assert r.status_code == 400 and error_code(r) == "CODE_INVALID"

    r = await api.post("/api/v1/staff/write-offs", json={"code": live["code"]}, headers=clerk)
    assert r.status_code == 201, r.text
    wo = r.json()["write_off"]
    assert wo["coupon_id"] == c["id"] and wo["store_id"] == store.id
    assert wo["coupon_name"] == "Nut pack ¥8" and wo["value_text"] == "¥8 off"
    assert wo["member"] == "138****0042"

    r = await api.post("/api/v1/staff/write-offs", json={"code": live["code"]}, headers=clerk)
    assert r.status_code == 409 and error_code(r) == "COUPON_ALREADY_USED"
    r = await api.get(f"/api/v1/me/coupons/{c['id']}/code", headers=m)
    assert r.status_code == 409 and error_code(r) == "COUPON_ALREADY_USED"
    used = (await api.get("/api/v1/me/coupons?status=used", headers=m)).json()["items"]
    assert [u["id"] for u in used] == [c["id"]] and used[0]["used_channel"] == "store"


async def test_typed_digits_work_and_a_member_token_cannot_write_off(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings
) -> None:
    store = await new_store()
    _, clerk = await new_staff(database, [store])
    t = await make_template(api, op)
    _, m = await new_member(database)
    c = await claim(api, m, t["id"])
    live = await live_code(api, m, c["id"])
    r = await api.post("/api/v1/staff/write-offs", json={"code": live["code"]}, headers=m)
    assert r.status_code == 401
    r = await api.post("/api/v1/staff/write-offs", json={"code": "000000000000"}, headers=clerk)
    assert r.status_code == 400 and error_code(r) == "CODE_INVALID"
    spaced = " ".join(live["digits"][i : i + 4] for i in range(0, 12, 4))
    r = await api.post("/api/v1/staff/write-offs", json={"code": spaced}, headers=clerk)
    assert r.status_code == 201, r.text


async def test_two_clerks_scanning_one_code_at_once_write_off_once(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings
) -> None:
    store = await new_store()
    _, clerk1 = await new_staff(database, [store])
    _, clerk2 = await new_staff(database, [store])
    t = await make_template(api, op, total=20)
    for _ in range(10):
        _, m = await new_member(database)
        c = await claim(api, m, t["id"])
        code = (await live_code(api, m, c["id"]))["code"]
        r1, r2 = await asyncio.gather(
            api.post("/api/v1/staff/write-offs", json={"code": code}, headers=clerk1),
            api.post("/api/v1/staff/write-offs", json={"code": code}, headers=clerk2),
        )
        assert sorted([r1.status_code, r2.status_code]) == [201, 409], (r1.text, r2.text)
        loser = r1 if r1.status_code == 409 else r2
        assert error_code(loser) == "COUPON_ALREADY_USED"
        assert await WriteOff.filter(coupon_id=c["id"]).count() == 1


async def test_clerk_of_another_store_is_refused_and_revoke_rules(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings
) -> None:
    store_a, store_b = await new_store(), await new_store()
    _, clerk_a = await new_staff(database, [store_a])
    _, clerk_b = await new_staff(database, [store_b])
    _, manager_a = await new_staff(database, [store_a], role="manager")
    _, manager_b = await new_staff(database, [store_b], role="manager")
    only_b = await make_template(api, op, name="Store B only", store_ids=[store_b.id], total=10)
    _, m = await new_member(database)
    c = await claim(api, m, only_b["id"])
    code = (await live_code(api, m, c["id"]))["code"]

    r = await api.post("/api/v1/staff/write-offs", json={"code": code}, headers=clerk_a)
    assert r.status_code == 403 and error_code(r) == "STORE_NOT_ALLOWED"
    assert (await Coupon.get(id=c["id"])).status == CouponStatus.UNUSED

    r = await api.post("/api/v1/staff/write-offs", json={"code": code}, headers=clerk_b)
    assert r.status_code == 201
    wo_id = r.json()["write_off"]["id"]
    # Another store's clerk learns nothing of it, not even that it was used.
    r = await api.post("/api/v1/staff/write-offs", json={"code": code}, headers=clerk_a)
    assert r.status_code == 403 and error_code(r) == "STORE_NOT_ALLOWED"

    # Only a manager, only of that store.
    r = await api.post(f"/api/v1/staff/write-offs/{wo_id}/revoke", json={}, headers=clerk_b)
    assert r.status_code == 403 and error_code(r) == "MANAGER_REQUIRED"
    r = await api.post(f"/api/v1/staff/write-offs/{wo_id}/revoke", json={}, headers=manager_a)
    assert r.status_code == 403 and error_code(r) == "STORE_NOT_ALLOWED"
    r = await api.post(
        f"/api/v1/staff/write-offs/{wo_id}/revoke", json={"reason": "wrong item"}, headers=manager_b
    )
    assert r.status_code == 200, r.text
    assert r.json()["write_off"]["revoked_at"] and r.json()["write_off"]["revoke_reason"]
    assert (await Coupon.get(id=c["id"])).status == CouponStatus.UNUSED
    r = await api.post(f"/api/v1/staff/write-offs/{wo_id}/revoke", json={}, headers=manager_b)
    assert r.status_code == 409 and error_code(r) == "ALREADY_REVOKED"

    # Written off again, then the window passes: no revoke.
    code = (await live_code(api, m, c["id"]))["code"]
    r = await api.post("/api/v1/staff/write-offs", json={"code": code}, headers=clerk_b)
    assert r.status_code == 201
    wo2 = r.json()["write_off"]["id"]
    await WriteOff.filter(id=wo2).update(created_at=utcnow() - timedelta(minutes=11))
    r = await api.post(f"/api/v1/staff/write-offs/{wo2}/revoke", json={}, headers=manager_b)
    assert r.status_code == 409 and error_code(r) == "REVOKE_WINDOW_PASSED"
    assert (await Coupon.get(id=c["id"])).status == CouponStatus.USED

    # The day's list of store B shows both, one revoked; store A's list shows neither.
    day = utcnow().astimezone(SHANGHAI).date().isoformat()
    r = await api.get(f"/api/v1/staff/write-offs?date={day}", headers=clerk_b)
    body = r.json()
    assert {i["id"] for i in body["items"]} >= {wo_id} and body["count"] >= 0
    assert any(i["id"] == wo_id and i["revoked_at"] for i in body["items"])
    r = await api.get("/api/v1/staff/write-offs", headers=clerk_a)
    assert r.json()["items"] == []
    r = await api.get(f"/api/v1/staff/write-offs?store_id={store_b.id}", headers=clerk_a)
    assert r.status_code == 403 and error_code(r) == "STORE_NOT_ALLOWED"


async def test_online_only_coupon_cannot_be_scanned(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings
) -> None:
    t = await make_template(api, op, channel="online")
    _, m = await new_member(database)
    c = await claim(api, m, t["id"])
    r = await api.get(f"/api/v1/me/coupons/{c['id']}/code", headers=m)
    assert r.status_code == 409 and error_code(r) == "COUPON_NOT_FOR_STORE"


# -- pricing and orders --------------------------------------------------------------------


async def test_pricing_rules() -> None:
    def t(**kw: Any) -> CouponTemplate:
        base = {"name": "x", "sku_ids": [], "category_ids": [], "free_sku_id": None}
        return CouponTemplate(**(base | kw))

    lines = [
        cs.PricedLine(sku_id=1, quantity=2, unit_price_fen=5000, category_id=10),
        cs.PricedLine(sku_id=2, quantity=1, unit_price_fen=3000, category_id=20),
    ]
    assert cs.template_discount(t(kind="amount_off", amount_off_fen=500), lines) == 500
    assert cs.template_discount(t(kind="percent_off", percent_off=10), lines) == 1300
    assert (
        cs.template_discount(t(kind="percent_off", percent_off=50, max_off_fen=2000), lines) == 2000
    )
    assert (
        cs.template_discount(
            t(kind="threshold", amount_off_fen=5000, threshold_fen=10000, sku_ids=[1]), lines
        )
        == 5000
    )
    with pytest.raises(AppError) as exc:
        cs.template_discount(t(kind="threshold", amount_off_fen=5000, threshold_fen=20000), lines)
    assert exc.value.code == "COUPON_NOT_APPLICABLE"
    assert cs.template_discount(t(kind="free_item", free_sku_id=2), lines) == 3000
    assert (
        cs.template_discount(t(kind="percent_off", percent_off=50, category_ids=[20]), lines)
        == 1500
    )
    # Never more than what is left of the order.
    assert cs.template_discount(t(kind="amount_off", amount_off_fen=9000), lines, 12000) == 1000


async def test_coupon_on_unpaid_order_comes_back_when_the_order_times_out(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings
) -> None:
    from tortoise.transactions import in_transaction

    t = await make_template(
        api, op, name="¥20 off ¥100", kind="threshold", amount_off_fen=2000, threshold_fen=10000
    )
    member, m = await new_member(database)
    c = await claim(api, m, t["id"])
    lines = [orders.LineIn(sku_id=None, name="Dried mango", quantity=4, unit_price_fen=3000)]

    async def place() -> tuple[str, cs.CouponLock]:
        async with in_transaction() as conn:
            order_no = orders.new_order_no()
            lock = await cs.lock_coupons_for_order(
                member.id, [c["id"]], lines, None, order_no, conn
            )
            await orders.create_order(
                kind=OrderKind.PICKUP,
                member_id=member.id,
                lines=lines,
                discount_fen=lock.discount_fen,
                order_no=order_no,
                connection=conn,
            )
        return order_no, lock

    order_no, lock = await place()
    assert lock.discount_fen == 2000 and lock.per_coupon == {c["id"]: 2000}
    locked = (await api.get("/api/v1/me/coupons?status=locked", headers=m)).json()["items"]
    assert [x["id"] for x in locked] == [c["id"]]
    # A second order cannot take the same coupon; and that failed order leaves nothing behind.
    with pytest.raises(AppError) as exc:
        await place()
    assert exc.value.code == "COUPON_LOCKED"

    await orders.transition(
        order_no, OrderStatus.CANCELLED, actor="system", reason="payment timeout"
    )
    unused = (await api.get("/api/v1/me/coupons?status=unused", headers=m)).json()["items"]
    assert [x["id"] for x in unused] == [c["id"]]
    assert (await Coupon.get(id=c["id"])).order_no is None

    # Usable again: a new order takes it, is paid, and the coupon is used online.
    order_no2, _ = await place()
    # The coupons' `paid` hook runs inside the transition's transaction.
    await orders.transition(order_no2, OrderStatus.PAID, actor="wechat")
    got = await Coupon.get(id=c["id"])
    assert got.status == CouponStatus.USED and got.used_channel == "online"
    assert got.discount_fen == 2000 and got.order_no == order_no2
    stats = (await api.get(f"/api/v1/admin/coupon-templates/{t['id']}/stats", headers=op)).json()
    assert stats["used_online"] == 1


async def test_store_only_and_wrong_store_coupons_are_refused_online(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings
) -> None:
    store_a, store_b = await new_store(), await new_store()
    in_store = await make_template(api, op, channel="store")
    at_b = await make_template(api, op, store_ids=[store_b.id])
    member, m = await new_member(database)
    c1 = await claim(api, m, in_store["id"])
    c2 = await claim(api, m, at_b["id"])
    lines = [{"sku_id": None, "quantity": 1, "unit_price_fen": 1000}]
    with pytest.raises(AppError) as exc:
        await cs.quote_coupons(member.id, [c1["id"]], lines, store_a.id)
    assert exc.value.code == "COUPON_NOT_ONLINE"
    with pytest.raises(AppError) as exc:
        await cs.quote_coupons(member.id, [c2["id"]], lines, store_a.id)
    assert exc.value.code == "STORE_NOT_ALLOWED"
    assert (await cs.quote_coupons(member.id, [c2["id"]], lines, store_b.id)).discount_fen == 500


# -- campaign issuance and stats -----------------------------------------------------------


async def test_issuance_is_resumable_and_never_issues_twice(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings, redis: Any
) -> None:
    t = await make_template(api, op, name="Campaign", total=3000, in_center=False)
    await Member.bulk_create([Member(nickname="campaign") for _ in range(2500)])
    ids = list(await Member.filter(nickname="campaign").values_list("id", flat=True))
    listed = [*ids, ids[0], ids[1], 999_999_999]  # duplicates and an unknown member
    r = await api.post(
        "/api/v1/admin/coupon-issuances",
        json={"template_id": t["id"], "member_ids": listed},
        headers=op,
    )
    assert r.status_code == 202, r.text
    issuance_id = r.json()["id"]
    assert r.json()["total"] == 2501

    scripts = Scripts(redis)
    # A run that stops after one batch (as if the worker died), then the rest.
    i = await issuance.run_issuance(scripts, issuance_id, batch=1000, max_batches=1)
    assert (i.position, i.issued, i.status) == (1000, 1000, "running")
    # Crash between batches, with some of the next batch already written by another run.
    got = (await api.get(f"/api/v1/admin/coupon-issuances/{issuance_id}", headers=op)).json()
    assert got["progress"] == pytest.approx(1000 / 2501, abs=1e-3)
    i = await issuance.run_issuance(scripts, issuance_id, batch=1000)
    assert i.status == "done" and i.issued == 2500 and i.skipped == 1
    i2 = await issuance.run_issuance(scripts, issuance_id, batch=1000)  # re-run: nothing new
    assert i2.issued == 2500
    assert await Coupon.filter(issuance_id=issuance_id).count() == 2500
    per_member = Counter(
        await Coupon.filter(issuance_id=issuance_id).values_list("member_id", flat=True)
    )
    assert max(per_member.values()) == 1
    s = (await api.get(f"/api/v1/admin/coupon-templates/{t['id']}/stats", headers=op)).json()
    assert s["remaining"] == 500 and s["issued"] == 2500
    assert int(await redis.get(stock.unit_keys(t["id"])[0])) == 2501  # units 1..2500 are out
    got = (await api.get(f"/api/v1/admin/coupon-issuances/{issuance_id}", headers=op)).json()
    assert got["status"] == "done" and got["progress"] == 1.0


async def test_issuance_stops_when_stock_runs_out_and_resumes_after(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings, redis: Any
) -> None:
    t = await make_template(api, op, name="Small campaign", total=30, in_center=False)
    await Member.bulk_create([Member(nickname="small-campaign") for _ in range(50)])
    ids = list(await Member.filter(nickname="small-campaign").values_list("id", flat=True))
    i = await issuance.create_issuance(t["id"], ids, None)
    scripts = Scripts(redis)
    i = await issuance.run_issuance(scripts, i.id, batch=20)
    assert i.status == "stopped" and i.issued == 30 and i.position == 30
    # The operator adds stock, then runs it again; a smaller total is refused.
    r = await api.patch(f"/api/v1/admin/coupon-templates/{t['id']}", json={"total": 20}, headers=op)
    assert r.status_code == 409 and error_code(r) == "TOTAL_CANNOT_SHRINK"
    r = await api.patch(f"/api/v1/admin/coupon-templates/{t['id']}", json={"total": 60}, headers=op)
    assert r.status_code == 200 and r.json()["remaining"] == 30, r.text
    i = await issuance.run_issuance(scripts, i.id, batch=20)
    assert i.status == "done" and i.issued == 50
    assert await Coupon.filter(issuance_id=i.id).count() == 50


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    """A real `haodian worker` process on the test database and Redis; yields its log path."""
    proc = start_worker(env, tmp_path / "worker.log")
    try:
        yield proc.log_path
    finally:
        proc.stop()


async def test_issuance_through_the_worker(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings, worker: Path
) -> None:
    """The real worker picks the job from the queue; progress shows through the API."""
    t = await make_template(api, op, name="Worker campaign", total=500, in_center=False)
    await Member.bulk_create([Member(nickname="worker-campaign") for _ in range(300)])
    ids = list(await Member.filter(nickname="worker-campaign").values_list("id", flat=True))
    r = await api.post(
        "/api/v1/admin/coupon-issuances",
        json={"template_id": t["id"], "member_ids": ids},
        headers=op,
    )
    issuance_id = r.json()["id"]
    deadline = time.monotonic() + 60
    got: dict = {}
    while time.monotonic() < deadline:
        got = (await api.get(f"/api/v1/admin/coupon-issuances/{issuance_id}", headers=op)).json()
        if got["status"] == "done":
            break
        await asyncio.sleep(0.3)
    assert got["status"] == "done", (got, str(worker))
    assert got["issued"] == 300 and got["progress"] == 1.0


async def test_stats(api: httpx.AsyncClient, op: dict[str, str], database: Settings) -> None:
    store = await new_store()
    _, clerk = await new_staff(database, [store])
    t = await make_template(api, op, name="Stats", total=10)
    codes = []
    for _ in range(4):
        _, m = await new_member(database)
        c = await claim(api, m, t["id"])
        codes.append((await live_code(api, m, c["id"]))["code"])
    for code in codes[:3]:
        r = await api.post("/api/v1/staff/write-offs", json={"code": code}, headers=clerk)
        assert r.status_code == 201
    r = await api.get(f"/api/v1/admin/coupon-templates/{t['id']}/stats", headers=op)
    s = r.json()
    assert s["claimed"] == 4 and s["issued"] == 0 and s["written_off_in_store"] == 3
    assert s["write_off_rate"] == 0.75 and s["remaining"] == 6
    assert s["by_store"] == [{"store_id": store.id, "written_off": 3}]


async def test_demo_seed_is_idempotent_and_walks_claim_code_scan(
    api: httpx.AsyncClient, database: Settings, redis: Any
) -> None:
    from server.coupons import seed

    store = await Store.get_or_none(code=seed.DEMO_STORE_CODE) or await new_store(
        seed.DEMO_STORE_CODE
    )
    await seed.seed(database, redis, lambda n=1: None)
    await seed.seed(database, redis, lambda n=1: None)
    names = [t["name"] for t in seed.TEMPLATES] + [seed.STORE_ONLY["name"]]
    assert await CouponTemplate.filter(name__in=names).count() == len(names)
    store_only = await CouponTemplate.get(name=seed.STORE_ONLY["name"])
    assert store_only.store_ids == [store.id]

    # The README's walk: a shopper claims, shows the live code, the demo clerk (identity's
    # seed puts it at WH0001) scans it.
    from server.identity import seed as identity_seed

    await identity_seed.seed(database, redis, lambda n=1: None)
    username, password = identity_seed.DEMO_CLERK
    r = await api.post(
        "/api/v1/staff/auth/login", json={"username": username, "password": password}
    )
    assert r.status_code == 200, r.text
    clerk = bearer(r.json()["token"])
    _, m = await new_member(database)
    centre = (await api.get("/api/v1/coupon-center", headers=m)).json()["items"]
    assert {i["template_id"] for i in centre if i["claimable"]} >= {store_only.id}
    c = await claim(api, m, store_only.id)
    digits = (await live_code(api, m, c["id"]))["digits"]
    r = await api.post("/api/v1/staff/write-offs", json={"code": digits}, headers=clerk)
    assert r.status_code == 201 and r.json()["write_off"]["value_text"] == "free 柠檬茶"


async def test_member_merge_moves_coupons_and_the_limit_still_holds(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings, redis: Any
) -> None:
    from server.identity import merge

    t = await make_template(api, op, name="Merge me", total=50, per_member_limit=3)
    a, ha = await new_member(database)
    b, hb = await new_member(database)
    await claim(api, ha, t["id"])
    await claim(api, ha, t["id"])
    await claim(api, hb, t["id"])
    campaign = await make_template(api, op, name="Merge campaign", total=10, in_center=False)
    i = await issuance.create_issuance(campaign["id"], [a.id, b.id], None)
    await issuance.run_issuance(Scripts(redis), i.id)

    merged = await merge.merge_members(redis, database, a.id, b.id, f"u-{uuid.uuid4().hex}")
    assert merged is not None
    seqs = sorted(
        await Coupon.filter(template_id=t["id"], member_id=b.id).values_list("claim_seq", flat=True)
    )
    assert seqs == [1, 2, 3]
    assert await Coupon.filter(member_id=a.id).count() == 0
    assert await Coupon.filter(template_id=campaign["id"], member_id=b.id).count() == 2
    # Redis still counts one claim for b; the database says three: refused, and resynced.
    r = await api.post(f"/api/v1/coupon-center/{t['id']}/claim", headers=hb)
    assert r.status_code == 409 and error_code(r) == "LIMIT_REACHED"
    assert int(await redis.hget(stock.unit_keys(t["id"])[2], str(b.id))) == 3
    assert await stock.units_left(Scripts(redis), await CouponTemplate.get(id=t["id"])) == 47


async def test_a_clerk_cannot_guess_typed_digits_at_speed(
    api: httpx.AsyncClient, database: Settings
) -> None:
    store = await new_store()
    _, clerk = await new_staff(database, [store])
    codes = []
    for n in range(61):
        r = await api.post("/api/v1/staff/write-offs", json={"code": f"{n:012d}"}, headers=clerk)
        codes.append(r.status_code)
    assert codes[:60] == [400] * 60 and codes[60] == 429


async def test_pausing_a_template_stops_claims_and_the_api_is_documented(
    api: httpx.AsyncClient, op: dict[str, str], database: Settings
) -> None:
    t = await make_template(api, op, name="Pause me")
    listed = (await api.get("/api/v1/admin/coupon-templates", headers=op)).json()["items"]
    assert t["id"] in [x["id"] for x in listed]
    r = await api.patch(
        f"/api/v1/admin/coupon-templates/{t['id']}", json={"active": False}, headers=op
    )
    assert r.status_code == 200 and r.json()["active"] is False
    await asyncio.sleep(templates.TEMPLATE_KEPT_S + 0.2)  # each worker keeps a template 2 s
    _, m = await new_member(database)
    r = await api.post(f"/api/v1/coupon-center/{t['id']}/claim", headers=m)
    assert r.status_code == 409 and error_code(r) == "CLAIM_NOT_AVAILABLE"
    centre = (await api.get("/api/v1/coupon-center", headers=m)).json()["items"]
    assert t["id"] not in [i["template_id"] for i in centre]

    doc = (await api.get("/docs/openapi.json")).json()
    paths = doc["paths"]
    for path, method, status in [
        ("/api/v1/admin/coupon-templates", "post", "201"),
        ("/api/v1/coupon-center/{template_id}/claim", "post", "201"),
        ("/api/v1/me/coupons/{coupon_id}/code", "get", "200"),
        ("/api/v1/staff/write-offs", "post", "201"),
        ("/api/v1/staff/write-offs", "get", "200"),
        ("/api/v1/admin/coupon-templates/{template_id}/stats", "get", "200"),
        ("/api/v1/admin/coupon-issuances/{issuance_id}", "get", "200"),
    ]:
        assert status in paths[path][method]["responses"], (path, method)
