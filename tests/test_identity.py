"""Identity over real HTTP: WeChat login through the sandbox, unionid mapping and merge,
phone, profile, tokens, staff and operators."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from server.identity import merge as merging
from server.identity import service
from server.identity.models import Member, MemberMerge, WeChatIdentity
from server.infra import auth
from server.settings import Settings
from tests.conftest import ServerProcess, error_code

SBX = "/_sandbox/wechat"
MAIN, GIFT = "wxdemo0000000001", "wxdemo0000000002"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def uid() -> str:
    return "u" + uuid.uuid4().hex[:24]


async def new_user(api: httpx.AsyncClient, **kw: Any) -> dict:
    r = await api.post(f"{SBX}/users", json=kw)
    assert r.status_code == 201, r.text
    return r.json()


async def code_for(api: httpx.AsyncClient, openid: str, kind: str = "login-code") -> str:
    r = await api.post(f"{SBX}/users/{openid}/{kind}")
    assert r.status_code == 200, r.text
    return r.json()["code"]


async def login(api: httpx.AsyncClient, openid: str, appid: str | None = None) -> dict:
    body: dict[str, Any] = {"code": await code_for(api, openid)}
    if appid:
        body["appid"] = appid
    r = await api.post("/api/v1/auth/login", json=body)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(autouse=True)
async def _clean_sandbox(api: httpx.AsyncClient) -> AsyncIterator[None]:
    yield
    await api.delete(f"{SBX}/control/failures")
    await api.put(f"{SBX}/control/msg-sec", json={"suggest": "pass"})


@pytest.fixture(scope="module")
async def operator(api: httpx.AsyncClient, database: Settings) -> str:
    await service.create_or_reset_operator("id-ops", "id-ops-pass-1", ["admin"])
    r = await api.post(
        "/api/v1/admin/auth/login", json={"username": "id-ops", "password": "id-ops-pass-1"}
    )
    assert r.status_code == 200, r.text
    return r.json()["token"]


# -- login ----------------------------------------------------------------------------------------


async def test_login_then_me_and_the_same_code_again_is_refused(api: httpx.AsyncClient) -> None:
    user = await new_user(api)
    code = await code_for(api, user["openid"])
    r = await api.post("/api/v1/auth/login", json={"code": code})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["created"] is True and out["expires_in"] > 0 and out["refresh_token"]
    me = await api.get("/api/v1/me", headers=bearer(out["token"]))
    assert me.status_code == 200
    assert me.json()["id"] == out["member"]["id"]
    assert me.json()["phone"] is None and me.json()["unionid_bound"] is False
    assert me.json()["created_at"].endswith("+08:00")
    r = await api.post("/api/v1/auth/login", json={"code": code})
    assert r.status_code == 401 and error_code(r) == "WECHAT_CODE_INVALID"
    # Logging in again with a fresh code finds the same member.
    again = await login(api, user["openid"])
    assert again["member"]["id"] == out["member"]["id"] and again["created"] is False


async def test_login_input_errors(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/v1/auth/login", json={"code": "made-up"})
    assert r.status_code == 401 and error_code(r) == "WECHAT_CODE_INVALID"
    r = await api.post("/api/v1/auth/login", json={"code": "x", "appid": "wx-unknown"})
    assert r.status_code == 422 and error_code(r) == "UNKNOWN_APPID"
    r = await api.post("/api/v1/auth/login", json={})
    assert r.status_code == 422 and error_code(r) == "VALIDATION_ERROR"


@pytest.mark.parametrize(
    ("errcode", "status", "code"),
    [
        (45011, 429, "WECHAT_RATE_LIMITED"),
        (40226, 403, "WECHAT_USER_BLOCKED"),
        (-1, 503, "WECHAT_BUSY"),
    ],
)
async def test_wechat_failures_reach_the_caller_as_actionable_errors(
    api: httpx.AsyncClient, errcode: int, status: int, code: str
) -> None:
    user = await new_user(api)
    wx_code = await code_for(api, user["openid"])
    await api.post(
        f"{SBX}/control/failures",
        json={"api": "jscode2session", "errcode": errcode, "openid": user["openid"]},
    )
    r = await api.post("/api/v1/auth/login", json={"code": wx_code})
    assert r.status_code == status and error_code(r) == code, r.text
    if status in (429, 503):
        assert int(r.headers["retry-after"]) >= 1
    r = await api.post("/api/v1/auth/login", json={"code": wx_code})
    assert r.status_code == 200, r.text


# -- unionid --------------------------------------------------------------------------------------


async def test_two_apps_sharing_a_unionid_are_one_member(api: httpx.AsyncClient) -> None:
    union = uid()
    main = await new_user(api, appid=MAIN, unionid=union)
    gift = await new_user(api, appid=GIFT, unionid=union)
    a = await login(api, main["openid"])
    b = await login(api, gift["openid"], GIFT)
    assert a["member"]["id"] == b["member"]["id"]
    assert a["created"] is True and b["created"] is False
    assert a["member"]["unionid_bound"] is True
    idents = await WeChatIdentity.filter(member_id=a["member"]["id"]).values_list(
        "appid", flat=True
    )
    assert sorted(idents) == [MAIN, GIFT]


async def test_member_made_before_its_unionid_is_merged_and_keeps_what_it_owned(
    api: httpx.AsyncClient, database: Settings, operator: str
) -> None:
    from server.orders.models import Order, OrderKind

    # The main app is not bound to the Open Platform yet: a member without a unionid.
    early = await new_user(api, appid=MAIN, phone="13812345678")
    first = await login(api, early["openid"])
    old_id, old_token = first["member"]["id"], first["token"]
    phone_code = await code_for(api, early["openid"], "phone-code")
    r = await api.post("/api/v1/auth/phone", json={"code": phone_code}, headers=bearer(old_token))
    assert r.status_code == 200 and r.json() == {"phone": "138****5678"}
    await Member.filter(id=old_id).update(points=120)
    order = await Order.create(
        order_no=f"T{uuid.uuid4().hex[:20]}",
        kind=OrderKind.PICKUP,
        member_id=old_id,
        goods_fen=1800,
        payable_fen=1800,
        pay_deadline=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=15),
    )
    # The same person uses the gift-card app, which is bound: a second member, with points.
    union = uid()
    gift = await new_user(api, appid=GIFT, unionid=union)
    second = await login(api, gift["openid"], GIFT)
    new_id = second["member"]["id"]
    assert new_id != old_id
    await Member.filter(id=new_id).update(points=30)

    # The main app gets bound: the next login carries the unionid and the two become one.
    r = await api.patch(f"{SBX}/users/{early['openid']}", json={"unionid": union})
    assert r.status_code == 200
    third = await login(api, early["openid"])
    assert third["member"]["id"] == new_id
    me = (await api.get("/api/v1/me", headers=bearer(third["token"]))).json()
    assert me["points"] == 150 and me["phone"] == "138****5678"
    await order.refresh_from_db()
    assert order.member_id == new_id
    assert sorted(
        await WeChatIdentity.filter(member_id=new_id).values_list("appid", flat=True)
    ) == [MAIN, GIFT]
    merge = await MemberMerge.get(from_member_id=old_id)
    assert merge.into_member_id == new_id and merge.unionid == union
    assert merge.moved["orders.Order.member_id"] == 1 and merge.moved["points"] == 120
    old = await Member.get(id=old_id)
    assert old.merged_into_id == new_id and old.points == 0
    # The absorbed member's tokens stop working; the operator view tells where it went.
    r = await api.get("/api/v1/me", headers=bearer(old_token))
    assert r.status_code == 401 and error_code(r) == "TOKEN_REVOKED"
    r = await api.get(f"/api/v1/admin/members/{old_id}", headers=bearer(operator))
    assert r.json()["merged_into"] == new_id


async def test_registered_member_owned_tables_move_with_a_merge(database: Settings) -> None:
    """The registry in identity.merge: a domain's mover runs inside the merge transaction."""
    seen: list[tuple[int, int]] = []

    async def mover(from_id: int, into_id: int, conn: Any) -> int:
        seen.append((from_id, into_id))
        return await Member.filter(id=from_id).using_db(conn).count()

    a = await Member.create(points=5)
    b = await Member.create(unionid=uid(), points=1)
    merging.register_member_owned(Member, "merged_into", mover)
    try:
        labels = {e[0] for e in merging.owned_tables()}
        assert "orders.Order" in labels  # foreign keys to members are found on their own
        record = await merging.merge_members(None, database, a.id, b.id, b.unionid or "")
        assert record is not None and seen == [(a.id, b.id)]
        assert record.moved["identity.Member.merged_into_id"] == 1
        assert (await Member.get(id=b.id)).points == 6
        # Merging again does nothing.
        assert await merging.merge_members(None, database, a.id, b.id, b.unionid or "") is None
    finally:
        merging._OWNED.pop(("identity.Member", "merged_into"), None)


async def test_twenty_simultaneous_first_logins_make_one_member(api: httpx.AsyncClient) -> None:
    user = await new_user(api)
    codes = [await code_for(api, user["openid"]) for _ in range(20)]
    async with httpx.AsyncClient(base_url=str(api.base_url), timeout=30) as fresh:
        results = await asyncio.gather(
            *(fresh.post("/api/v1/auth/login", json={"code": c}) for c in codes)
        )
    assert [r.status_code for r in results] == [200] * 20, [r.text for r in results]
    ids = {r.json()["member"]["id"] for r in results}
    assert len(ids) == 1
    assert sum(r.json()["created"] for r in results) == 1
    assert await WeChatIdentity.filter(openid=user["openid"]).count() == 1


async def test_simultaneous_first_logins_from_two_apps_make_one_member(
    api: httpx.AsyncClient,
) -> None:
    union = uid()
    main = await new_user(api, appid=MAIN, unionid=union)
    gift = await new_user(api, appid=GIFT, unionid=union)
    bodies = []
    for _ in range(10):
        bodies.append({"code": await code_for(api, main["openid"])})
        bodies.append({"code": await code_for(api, gift["openid"]), "appid": GIFT})
    async with httpx.AsyncClient(base_url=str(api.base_url), timeout=30) as fresh:
        results = await asyncio.gather(*(fresh.post("/api/v1/auth/login", json=b) for b in bodies))
    assert [r.status_code for r in results] == [200] * 20, [r.text for r in results]
    assert len({r.json()["member"]["id"] for r in results}) == 1
    assert await Member.filter(unionid=union).count() == 1


# -- tokens and audiences -------------------------------------------------------------------------


async def test_tampered_and_expired_member_tokens_are_refused(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    out = await login(api, (await new_user(api))["openid"])
    head, payload, sig = out["token"].split(".")
    bad = f"{head}.{payload}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}"
    r = await api.get("/api/v1/me", headers=bearer(bad))
    assert r.status_code == 401 and error_code(r) == "TOKEN_INVALID"
    expired = auth.encode_access(
        settings.model_copy(update={"access_token_ttl": -5}), "member", out["member"]["id"]
    )
    r = await api.get("/api/v1/me", headers=bearer(expired))
    assert r.status_code == 401 and error_code(r) == "TOKEN_EXPIRED"


async def test_a_token_opens_only_its_own_audience(
    api: httpx.AsyncClient, operator: str, staff_account: dict
) -> None:
    member = (await login(api, (await new_user(api))["openid"]))["token"]
    staff = staff_account["token"]
    for token, path in [
        (member, "/api/v1/staff/me"),
        (member, "/api/v1/admin/me"),
        (staff, "/api/v1/me"),
        (staff, "/api/v1/admin/me"),
        (operator, "/api/v1/me"),
        (operator, "/api/v1/staff/me"),
    ]:
        r = await api.get(path, headers=bearer(token))
        assert r.status_code in (401, 403), (path, r.text)
        assert error_code(r) == "TOKEN_WRONG_AUDIENCE"
    r = await api.post(
        "/api/v1/admin/staff",
        json={"username": "nope", "password": "x" * 8, "store_ids": [1]},
        headers=bearer(member),
    )
    assert r.status_code == 401


async def test_refresh_rotates_and_logout_revokes(api: httpx.AsyncClient) -> None:
    out = await login(api, (await new_user(api))["openid"])
    r = await api.post("/api/v1/auth/refresh", json={"refresh_token": out["refresh_token"]})
    assert r.status_code == 200
    fresh = r.json()
    r = await api.post("/api/v1/auth/refresh", json={"refresh_token": out["refresh_token"]})
    assert r.status_code == 401  # a refresh token works once
    r = await api.post("/api/v1/staff/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert r.status_code == 401 and error_code(r) == "TOKEN_WRONG_AUDIENCE"
    # That failed attempt spent the refresh token too: log in again for the logout check.
    out = await login(api, (await new_user(api))["openid"])
    r = await api.post(
        "/api/v1/auth/logout",
        json={"refresh_token": out["refresh_token"]},
        headers=bearer(out["token"]),
    )
    assert r.status_code == 200
    r = await api.get("/api/v1/me", headers=bearer(out["token"]))
    assert r.status_code == 401 and error_code(r) == "TOKEN_REVOKED"
    r = await api.post("/api/v1/auth/refresh", json={"refresh_token": out["refresh_token"]})
    assert r.status_code == 401


async def test_disabled_member_loses_its_tokens_and_cannot_log_in(
    api: httpx.AsyncClient, operator: str
) -> None:
    user = await new_user(api)
    out = await login(api, user["openid"])
    mid = out["member"]["id"]
    r = await api.post(f"/api/v1/admin/members/{mid}/disable", headers=bearer(operator))
    assert r.status_code == 200 and r.json()["disabled"] is True
    r = await api.get("/api/v1/me", headers=bearer(out["token"]))
    assert r.status_code == 401 and error_code(r) == "TOKEN_REVOKED"
    r = await api.post("/api/v1/auth/refresh", json={"refresh_token": out["refresh_token"]})
    assert r.status_code == 401
    r = await api.post("/api/v1/auth/login", json={"code": await code_for(api, user["openid"])})
    assert r.status_code == 403 and error_code(r) == "MEMBER_DISABLED"
    r = await api.post(f"/api/v1/admin/members/{mid}/enable", headers=bearer(operator))
    assert r.status_code == 200
    assert (await login(api, user["openid"]))["member"]["id"] == mid


# -- phone and profile ----------------------------------------------------------------------------


async def test_phone_is_bound_masked_and_stored_sealed(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    user = await new_user(api, phone="13912345678")
    out = await login(api, user["openid"])
    code = await code_for(api, user["openid"], "phone-code")
    r = await api.post("/api/v1/auth/phone", json={"code": code}, headers=bearer(out["token"]))
    assert r.status_code == 200 and r.json()["phone"] == "139****5678"
    me = await api.get("/api/v1/me", headers=bearer(out["token"]))
    assert me.json()["phone"] == "139****5678"
    row = await Member.get(id=out["member"]["id"])
    assert row.phone_sealed and "13912345678" not in row.phone_sealed
    assert await service.find_members_by_phone(settings, "13912345678") == [row.id]
    r = await api.post("/api/v1/auth/phone", json={"code": code}, headers=bearer(out["token"]))
    assert r.status_code == 401 and error_code(r) == "WECHAT_CODE_INVALID"


@pytest.mark.parametrize(
    "patch",
    [
        {"nickname": "   "},
        {"nickname": "a" * 33},
        {"nickname": "bad\x07bell"},
        {"birthday": "2999-01-01"},
        {"birthday": "1800-01-01"},
        {"birthday": "not-a-date"},
        {"gender": 5},
        {"avatar_url": "http://plain.example/a.png"},
        {"unknown_field": 1},
    ],
)
async def test_profile_changes_are_validated(api: httpx.AsyncClient, patch: dict) -> None:
    out = await login(api, (await new_user(api))["openid"])
    r = await api.patch("/api/v1/me", json=patch, headers=bearer(out["token"]))
    assert r.status_code == 422 and error_code(r) == "VALIDATION_ERROR", r.text


async def test_profile_update_birthday_once_and_moderated_nickname(api: httpx.AsyncClient) -> None:
    out = await login(api, (await new_user(api))["openid"])
    h = bearer(out["token"])
    r = await api.patch(
        "/api/v1/me",
        json={
            "nickname": " 小明 ",
            "avatar_url": "https://img.example.com/a.png",
            "birthday": "1990-05-17",
            "gender": 1,
        },
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.json()["nickname"] == "小明" and r.json()["birthday"] == "1990-05-17"
    assert r.json()["gender"] == 1
    r = await api.patch("/api/v1/me", json={"birthday": "1991-05-17"}, headers=h)
    assert r.status_code == 409 and error_code(r) == "BIRTHDAY_LOCKED"
    await api.put(
        f"{SBX}/control/msg-sec", json={"suggest": "risky", "label": 20001, "keywords": ["坏"]}
    )
    r = await api.patch("/api/v1/me", json={"nickname": "坏人"}, headers=h)
    assert r.status_code == 422 and error_code(r) == "CONTENT_REJECTED"
    assert (await api.get("/api/v1/me", headers=h)).json()["nickname"] == "小明"


# -- staff ----------------------------------------------------------------------------------------


async def _store(code: str) -> int:
    from server.stores.models import Store

    store = await Store.create(code=code, name=f"store {code}", city="上海", lat=31.2, lng=121.4)
    return store.id


@pytest.fixture(scope="module")
async def staff_account(api: httpx.AsyncClient, operator: str, database: Settings) -> dict:
    s1, s2 = await _store(f"T{uuid.uuid4().hex[:8]}"), await _store(f"T{uuid.uuid4().hex[:8]}")
    username = f"clerk-{uuid.uuid4().hex[:6]}"
    r = await api.post(
        "/api/v1/admin/staff",
        json={
            "username": username,
            "password": "clerk-pass-1",
            "role": "clerk",
            "store_ids": [s1, s2],
        },
        headers=bearer(operator),
    )
    assert r.status_code == 201, r.text
    login_r = await api.post(
        "/api/v1/staff/auth/login", json={"username": username, "password": "clerk-pass-1"}
    )
    assert login_r.status_code == 200, login_r.text
    return {"id": r.json()["id"], "username": username, "stores": [s1, s2], **login_r.json()}


async def test_staff_sign_in_and_see_their_stores(
    api: httpx.AsyncClient, staff_account: dict
) -> None:
    r = await api.get("/api/v1/staff/me", headers=bearer(staff_account["token"]))
    assert r.status_code == 200
    me = r.json()
    assert me["id"] == staff_account["id"] and me["role"] == "clerk"
    assert [s["id"] for s in me["stores"]] == sorted(staff_account["stores"])
    assert await service.staff_store_ids(staff_account["id"]) == set(staff_account["stores"])
    assert await service.staff_works_at(staff_account["id"], staff_account["stores"][0])
    assert not await service.staff_is_manager_of(staff_account["id"], staff_account["stores"][0])


async def test_operators_manage_staff_with_checked_input(
    api: httpx.AsyncClient, operator: str
) -> None:
    store = await _store(f"T{uuid.uuid4().hex[:8]}")
    body = {
        "username": f"mgr-{uuid.uuid4().hex[:6]}",
        "password": "manager-pass-1",
        "role": "manager",
        "store_ids": [store],
    }
    r = await api.post(
        "/api/v1/admin/staff",
        json=body | {"store_ids": [store, 99999999]},
        headers=bearer(operator),
    )
    assert r.status_code == 422 and error_code(r) == "UNKNOWN_STORE"
    assert r.json()["error"]["details"]["missing"] == [99999999]
    r = await api.post(
        "/api/v1/admin/staff", json=body | {"role": "boss"}, headers=bearer(operator)
    )
    assert r.status_code == 422
    r = await api.post("/api/v1/admin/staff", json=body, headers=bearer(operator))
    assert r.status_code == 201
    sid = r.json()["id"]
    r = await api.post("/api/v1/admin/staff", json=body, headers=bearer(operator))
    assert r.status_code == 409 and error_code(r) == "STAFF_EXISTS"
    assert await service.staff_is_manager_of(sid, store)
    # A marketing operator may not create staff accounts.
    await service.create_or_reset_operator("id-mkt", "id-mkt-pass-1", ["marketing"])
    mkt = (
        await api.post(
            "/api/v1/admin/auth/login", json={"username": "id-mkt", "password": "id-mkt-pass-1"}
        )
    ).json()
    r = await api.post(
        "/api/v1/admin/staff", json=body | {"username": "other-one"}, headers=bearer(mkt["token"])
    )
    assert r.status_code == 403 and error_code(r) == "ROLE_REQUIRED"
    # Disabling the account ends its sessions at once and empties its stores.
    staff = (
        await api.post(
            "/api/v1/staff/auth/login",
            json={"username": body["username"], "password": "manager-pass-1"},
        )
    ).json()
    r = await api.patch(
        f"/api/v1/admin/staff/{sid}", json={"disabled": True}, headers=bearer(operator)
    )
    assert r.status_code == 200 and r.json()["disabled"] is True
    r = await api.get("/api/v1/staff/me", headers=bearer(staff["token"]))
    assert r.status_code == 401 and error_code(r) == "TOKEN_REVOKED"
    assert await service.staff_store_ids(sid) == set()
    r = await api.post(
        "/api/v1/staff/auth/login",
        json={"username": body["username"], "password": "manager-pass-1"},
    )
    assert r.status_code == 401


async def test_staff_login_is_rate_limited(api: httpx.AsyncClient) -> None:
    codes = []
    for _ in range(11):
        r = await api.post(
            "/api/v1/staff/auth/login", json={"username": "clerk-nobody", "password": "wrong-pw"}
        )
        codes.append(r.status_code)
    assert codes[:10] == [401] * 10 and codes[10] == 429


# -- secrets stay secret --------------------------------------------------------------------------


async def test_session_key_and_raw_phone_appear_in_no_response_and_no_log(
    api: httpx.AsyncClient, server: ServerProcess, sandbox_redis: Any
) -> None:
    import orjson

    phone = "13700001234"
    user = await new_user(api, phone=phone, unionid=uid())
    texts: list[str] = []
    out = await api.post("/api/v1/auth/login", json={"code": await code_for(api, user["openid"])})
    texts.append(out.text)
    token = out.json()["token"]
    session_keys = [
        orjson.loads(await sandbox_redis.get(f"sandbox:wx:user:{user['openid']}"))["session_key"]
    ]
    r = await api.post(
        "/api/v1/auth/phone",
        json={"code": await code_for(api, user["openid"], "phone-code")},
        headers=bearer(token),
    )
    texts.append(r.text)
    for path in ("/api/v1/me",):
        texts.append((await api.get(path, headers=bearer(token))).text)
    texts.append(
        (await api.patch("/api/v1/me", json={"nickname": "秘密"}, headers=bearer(token))).text
    )
    again = await api.post("/api/v1/auth/login", json={"code": await code_for(api, user["openid"])})
    texts.append(again.text)
    session_keys.append(
        orjson.loads(await sandbox_redis.get(f"sandbox:wx:user:{user['openid']}"))["session_key"]
    )
    assert session_keys[0] != session_keys[1]
    await asyncio.sleep(0.5)  # let the workers flush their log lines
    logs = server.logs()
    assert "member signed in" in logs  # the log is being captured
    for secret in [*session_keys, phone]:
        for text in texts:
            assert secret not in text
        assert secret not in logs
    ident = await WeChatIdentity.get(openid=user["openid"])
    assert session_keys[1] not in ident.session_key_sealed


async def test_demo_seed_adds_the_operator_and_a_clerk_once(
    api: httpx.AsyncClient, database: Settings, redis: Any
) -> None:
    from server.identity import seed
    from server.identity.models import Operator, Staff, StaffStore
    from server.stores.models import Store

    await Store.get_or_create(
        code=seed.DEMO_STORE_CODES[-1],
        defaults={"name": "demo", "city": "上海", "lat": 31.2, "lng": 121.4},
    )
    for _ in range(2):
        await seed.seed(database, redis, lambda n: None)
    assert await Operator.filter(username="admin").count() == 1
    clerk = await Staff.get(username=seed.DEMO_CLERK[0])
    links = await StaffStore.filter(staff_id=clerk.id).values_list("store_id", flat=True)
    assert len(links) == 1  # (another test's seeding may have bound it to its own store)
    r = await api.post(
        "/api/v1/staff/auth/login",
        json={"username": seed.DEMO_CLERK[0], "password": seed.DEMO_CLERK[1]},
    )
    assert r.status_code == 200, r.text
    me = (await api.get("/api/v1/staff/me", headers=bearer(r.json()["token"]))).json()
    assert [s["id"] for s in me["stores"]] == list(links)
    assert links[0] in await Store.filter(code__in=seed.DEMO_STORE_CODES).values_list(
        "id", flat=True
    )


async def test_a_merge_that_fails_midway_changes_nothing(database: Settings) -> None:
    """A table whose rows cannot move (a unique per member) aborts the whole merge."""
    from tortoise.exceptions import IntegrityError

    async def stuck(from_id: int, into_id: int, conn: Any) -> int:
        raise IntegrityError("duplicate key value violates unique constraint")

    a = await Member.create(points=7)
    b = await Member.create(unionid=uid(), points=2)
    ident = await WeChatIdentity.create(appid=MAIN, openid=f"o{uuid.uuid4().hex}", member=a)
    merging.register_member_owned(Member, "merged_into", stuck)
    try:
        with pytest.raises(merging.MergeConflict):
            await merging.merge_members(None, database, a.id, b.id, b.unionid or "")
    finally:
        merging._OWNED.pop(("identity.Member", "merged_into"), None)
    await ident.refresh_from_db()
    assert ident.member_id == a.id  # the identity moved first, and was moved back
    assert (await Member.get(id=a.id)).points == 7 and (await Member.get(id=b.id)).points == 2
    assert (await Member.get(id=a.id)).merged_into_id is None
    assert not await MemberMerge.exists(from_member_id=a.id)
