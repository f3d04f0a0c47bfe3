"""The WeChat sandbox and our WeChat client, over real HTTP (the sandbox inside the running
server), with the token cache and locks in the test Redis."""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from server.infra.redis import make_client
from server.settings import Settings
from server.wechat import crypto
from server.wechat.client import WeChatClient, token_key
from server.wechat.errors import (
    WeChatBadRequest,
    WeChatBusy,
    WeChatCodeInvalid,
    WeChatDataInvalid,
    WeChatRateLimited,
    WeChatSubscribeRefused,
    WeChatUserRisky,
)
from tests.conftest import ROOT, ServerProcess

SBX = "/_sandbox/wechat"
MAIN, GIFT = "wxdemo0000000001", "wxdemo0000000002"
SECRET = "demo-secret-main"

# Official open-data vectors from WeChat's documentation (WECHAT.md and the decrypt demo).
RAW_DATA = (
    '{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou",'
    '"province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/'
    "1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5"
    'ibXQ/0"}'
)
DEMO_APPID = "wx4f4bc4dec97d474b"
DEMO_SESSION_KEY = "tiihtNczf5v6AKRyjwEUhQ=="
DEMO_IV = "r7BXXKkLb8qrSNn05n0qiA=="
DEMO_ENCRYPTED = (
    "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7f"
    "JlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8"
    "Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GR"
    "HpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UI"
    "eorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYT"
    "opNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T"
    "8yO5hzuyDb/XcxxmK01EpqOyuxINew=="
)


# -- open data ------------------------------------------------------------------------------------


def test_open_data_signature_matches_the_official_vector() -> None:
    sig = "75e81ceda165f4ffa64f4068af58c64b8f54b88c"
    assert crypto.signature(RAW_DATA, "HyVFkGl5F5OQWJZZaNzBBg==") == sig
    crypto.check_signature(RAW_DATA, sig, "HyVFkGl5F5OQWJZZaNzBBg==")
    with pytest.raises(WeChatDataInvalid):
        crypto.check_signature(RAW_DATA.replace("Band", "Bond"), sig, "HyVFkGl5F5OQWJZZaNzBBg==")


def test_open_data_decrypts_the_official_vector_and_checks_the_watermark() -> None:
    data = crypto.decrypt(DEMO_SESSION_KEY, DEMO_ENCRYPTED, DEMO_IV, DEMO_APPID)
    assert data["openId"] == "oGZUI0egBJY1zhBYw2KhdUfwVJJE"
    assert data["unionId"] == "ocMvos6NjeKLIBqg5Mr9QjxrP1FA"
    assert data["watermark"]["appid"] == DEMO_APPID
    with pytest.raises(WeChatDataInvalid, match="another app"):
        crypto.decrypt(DEMO_SESSION_KEY, DEMO_ENCRYPTED, DEMO_IV, MAIN)
    with pytest.raises(WeChatDataInvalid):  # another session's key
        crypto.decrypt("HyVFkGl5F5OQWJZZaNzBBg==", DEMO_ENCRYPTED, DEMO_IV, DEMO_APPID)
    with pytest.raises(WeChatDataInvalid):
        crypto.decrypt(DEMO_SESSION_KEY, "abc", DEMO_IV, DEMO_APPID)
    # Our encrypt is WeChat's: a round trip gives the same data back.
    sealed = crypto.encrypt(DEMO_SESSION_KEY, data, b"0123456789abcdef")
    iv = "MDEyMzQ1Njc4OWFiY2RlZg=="
    assert crypto.decrypt(DEMO_SESSION_KEY, sealed, iv, DEMO_APPID) == data


# -- helpers --------------------------------------------------------------------------------------


async def new_user(api: httpx.AsyncClient, **kw: str) -> dict:
    r = await api.post(f"{SBX}/users", json=kw)
    assert r.status_code == 201, r.text
    return r.json()


async def login_code(api: httpx.AsyncClient, openid: str) -> str:
    r = await api.post(f"{SBX}/users/{openid}/login-code")
    assert r.status_code == 200, r.text
    return r.json()["code"]


async def calls(api: httpx.AsyncClient, name: str) -> int:
    return (await api.get(f"{SBX}/control/stats")).json()["calls"].get(name, 0)


@pytest.fixture
async def wx(server: ServerProcess, settings: Settings, redis_url: str) -> AsyncIterator:
    """Our client in the test process, talking to the server's sandbox over HTTP."""
    redis = make_client(redis_url)
    client = WeChatClient(settings, redis, base_url=server.base_url + SBX)
    yield client
    await client.aclose()
    await redis.aclose()


@pytest.fixture(autouse=True)
async def _no_failures_left(api: httpx.AsyncClient) -> AsyncIterator[None]:
    yield
    await api.delete(f"{SBX}/control/failures")


# -- sandbox: phone side and login ----------------------------------------------------------------


async def test_sandbox_lists_the_configured_apps_default_first(api: httpx.AsyncClient) -> None:
    r = await api.get(f"{SBX}/apps")
    assert r.status_code == 200
    assert r.json()["items"] == [MAIN, GIFT]
    assert r.json()["default"] == MAIN


async def test_login_codes_work_once(api: httpx.AsyncClient, wx: WeChatClient) -> None:
    user = await new_user(api, unionid=f"u{uuid.uuid4().hex[:20]}")
    assert user["appid"] == MAIN
    code = await login_code(api, user["openid"])
    session = await wx.code2session(code)
    assert session.openid == user["openid"] and session.unionid == user["unionid"]
    assert len(session.session_key) == 24 and "session_key" not in repr(session)
    with pytest.raises(WeChatCodeInvalid) as err:
        await wx.code2session(code)
    assert err.value.errcode == 40029 and err.value.status == 401
    # A code of the main app is no code for the gift-card app.
    code = await login_code(api, user["openid"])
    with pytest.raises(WeChatCodeInvalid):
        await wx.code2session(code, GIFT)


async def test_jscode2session_checks_appid_and_secret(api: httpx.AsyncClient) -> None:
    params = {"js_code": "x", "grant_type": "authorization_code"}
    r = await api.get(f"{SBX}/sns/jscode2session", params=params | {"appid": MAIN, "secret": "no"})
    assert r.json()["errcode"] == 40125
    r = await api.get(
        f"{SBX}/sns/jscode2session", params=params | {"appid": "wxnope", "secret": "x"}
    )
    assert r.json()["errcode"] == 40013


async def test_unionid_appears_after_binding(api: httpx.AsyncClient, wx: WeChatClient) -> None:
    user = await new_user(api)
    assert user["unionid"] is None
    assert (await wx.code2session(await login_code(api, user["openid"]))).unionid is None
    union = f"u{uuid.uuid4().hex[:20]}"
    r = await api.patch(f"{SBX}/users/{user['openid']}", json={"unionid": union})
    assert r.status_code == 200 and r.json()["unionid"] == union
    assert (await wx.code2session(await login_code(api, user["openid"]))).unionid == union
    # One unionid is one person: a second user of the same app cannot take it.
    r = await api.post(f"{SBX}/users", json={"unionid": union})
    assert r.status_code == 409


@pytest.mark.parametrize(
    ("errcode", "exc", "status"),
    [(45011, WeChatRateLimited, 429), (40226, WeChatUserRisky, 403), (-1, WeChatBusy, 503)],
)
async def test_switched_failures_become_typed_errors(
    api: httpx.AsyncClient, wx: WeChatClient, errcode: int, exc: type, status: int
) -> None:
    user = await new_user(api)
    code = await login_code(api, user["openid"])
    r = await api.post(
        f"{SBX}/control/failures",
        json={"api": "jscode2session", "errcode": errcode, "openid": user["openid"]},
    )
    assert r.status_code == 201
    with pytest.raises(exc) as err:
        await wx.code2session(code)
    assert err.value.errcode == errcode and err.value.status == status
    # The failure was for one call; the code was not spent by it.
    assert (await wx.code2session(code)).openid == user["openid"]


# -- access tokens --------------------------------------------------------------------------------


async def test_stable_token_is_stable_until_forced(api: httpx.AsyncClient) -> None:
    body = {"grant_type": "client_credential", "appid": GIFT, "secret": "demo-secret-gift"}
    a = (await api.post(f"{SBX}/cgi-bin/stable_token", json=body)).json()
    b = (await api.post(f"{SBX}/cgi-bin/stable_token", json=body)).json()
    assert a["access_token"] == b["access_token"] and 0 < b["expires_in"] <= 7200
    c = (await api.post(f"{SBX}/cgi-bin/stable_token", json=body | {"force_refresh": True})).json()
    assert c["access_token"] != a["access_token"]
    bad = (await api.post(f"{SBX}/cgi-bin/stable_token", json=body | {"secret": "x"})).json()
    assert bad["errcode"] == 40125
    # An unknown token is 40001; an expired one is 42001.
    r = await api.post(f"{SBX}/wxa/msg_sec_check", params={"access_token": "sbx.nope"}, json={})
    assert r.json()["errcode"] == 40001
    await api.post(f"{SBX}/control/expire-token", json={"appid": GIFT})
    r = await api.post(
        f"{SBX}/wxa/msg_sec_check", params={"access_token": c["access_token"]}, json={}
    )
    assert r.json()["errcode"] == 42001


async def test_client_refreshes_once_when_the_token_expired(
    api: httpx.AsyncClient, wx: WeChatClient
) -> None:
    user = await new_user(api)
    await wx.access_token()
    await api.post(f"{SBX}/control/expire-token", json={"appid": MAIN})
    before = await calls(api, "stable_token")
    result = await wx.msg_sec_check(user["openid"], "hello", scene=2)
    assert result["suggest"] == "pass"
    assert await calls(api, "stable_token") == before + 1


async def test_token_refresh_is_single_flight(
    api: httpx.AsyncClient, settings: Settings, server: ServerProcess, redis_url: str
) -> None:
    """Eight clients (as eight workers would) need a token at once: WeChat is asked once."""
    redises = [make_client(redis_url) for _ in range(8)]
    clients = [WeChatClient(settings, r, base_url=server.base_url + SBX) for r in redises]
    try:
        await redises[0].delete(token_key(GIFT))
        await api.post(f"{SBX}/control/expire-token", json={"appid": GIFT})
        before = await calls(api, "stable_token")
        tokens = await asyncio.gather(*(c.access_token(GIFT) for c in clients for _ in range(5)))
        assert len(set(tokens)) == 1
        assert await calls(api, "stable_token") == before + 1
    finally:
        for c, r in zip(clients, redises, strict=True):
            await c.aclose()
            await r.aclose()


# -- share codes, links, messages, moderation -----------------------------------------------------


async def test_share_code_is_a_real_png(api: httpx.AsyncClient, wx: WeChatClient) -> None:
    png = await wx.wxacode_unlimit("g=42&u=7", "pages/groupbuy/detail", width=430)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])  # IHDR
    assert width == height and 280 <= width <= 1280
    with pytest.raises(WeChatBadRequest) as err:
        await wx.wxacode_unlimit("x" * 33, "pages/index/index")
    assert err.value.errcode == 40169
    await api.put(f"{SBX}/control/pages", json={"pages": ["pages/index/index"]})
    try:
        with pytest.raises(WeChatBadRequest) as err:
            await wx.wxacode_unlimit("a=1", "pages/nowhere/index")
        assert err.value.errcode == 41030
        assert (await wx.wxacode_unlimit("a=1", "pages/index/index"))[:4] == b"\x89PNG"
    finally:
        await api.put(f"{SBX}/control/pages", json={"pages": []})


async def test_url_link_opens_the_page(api: httpx.AsyncClient, wx: WeChatClient) -> None:
    link = await wx.generate_urllink("pages/giftcard/open", "card=abc", expire_interval_days=7)
    assert link.startswith("https://wxaurl.cn/")
    r = await api.get(f"{SBX}/links/{link.rsplit('/', 1)[1]}")
    assert r.json()["path"] == "pages/giftcard/open" and r.json()["query"] == "card=abc"
    with pytest.raises(WeChatBadRequest):
        await wx.generate_urllink("pages/x", "q" * 1025)


async def test_subscribe_message_needs_an_accepted_subscription(
    api: httpx.AsyncClient, wx: WeChatClient
) -> None:
    user = await new_user(api)
    with pytest.raises(WeChatSubscribeRefused) as err:
        await wx.send_subscribe(user["openid"], "TPL_PICKUP", {"thing1": "Your order is ready"})
    assert err.value.errcode == 43101
    r = await api.post(
        f"{SBX}/users/{user['openid']}/subscriptions", json={"template_id": "TPL_PICKUP"}
    )
    assert r.json()["remaining"] == 1
    await wx.send_subscribe(user["openid"], "TPL_PICKUP", {"thing1": "Your order is ready"})
    with pytest.raises(WeChatSubscribeRefused):  # one acceptance, one send
        await wx.send_subscribe(user["openid"], "TPL_PICKUP", {"thing1": "again"})
    msgs = (await api.get(f"{SBX}/users/{user['openid']}/messages")).json()["items"]
    assert [m["data"]["thing1"] for m in msgs] == ["Your order is ready"]


async def test_msg_sec_check_verdict_is_configurable(
    api: httpx.AsyncClient, wx: WeChatClient
) -> None:
    user = await new_user(api)
    await api.put(
        f"{SBX}/control/msg-sec", json={"suggest": "risky", "label": 20001, "keywords": ["坏词"]}
    )
    try:
        bad = await wx.msg_sec_check(user["openid"], "这里有坏词", scene=2)
        assert bad == {"suggest": "risky", "label": 20001}
        good = await wx.msg_sec_check(user["openid"], "生日快乐", scene=2)
        assert good["suggest"] == "pass"
    finally:
        await api.put(f"{SBX}/control/msg-sec", json={"suggest": "pass"})


def test_sandbox_runs_on_its_own(
    env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`haodian sandbox --port P` serves the same sandbox without the API or a database."""
    proc = ServerProcess(
        ["sandbox"],
        {k: v for k, v in env.items() if k != "HAODIAN_DATABASE_URL"},
        tmp_path_factory.mktemp("logs") / "sandbox.log",
        ROOT,
    )
    try:
        proc.wait_ready(path=f"{SBX}/apps")
        r = httpx.post(proc.base_url + f"{SBX}/users", json={"appid": GIFT})
        assert r.status_code == 201 and r.json()["appid"] == GIFT
        code = httpx.post(proc.base_url + f"{SBX}/users/{r.json()['openid']}/login-code")
        s = httpx.get(
            proc.base_url + f"{SBX}/sns/jscode2session",
            params={
                "appid": GIFT,
                "secret": "demo-secret-gift",
                "js_code": code.json()["code"],
                "grant_type": "authorization_code",
            },
        )
        assert s.json()["openid"] == r.json()["openid"]
    finally:
        proc.stop()


async def test_workers_of_the_server_share_one_token_refresh(
    api: httpx.AsyncClient, redis_url: str
) -> None:
    """20 simultaneous phone bindings through both server workers right after the token
    expired: every call succeeds and WeChat's stable_token is asked once."""
    tokens, codes = [], []
    for _ in range(20):
        user = await new_user(api)
        r = await api.post(
            "/api/v1/auth/login", json={"code": await login_code(api, user["openid"])}
        )
        tokens.append(r.json()["token"])
        codes.append((await api.post(f"{SBX}/users/{user['openid']}/phone-code")).json()["code"])
    redis = make_client(redis_url)
    try:
        await redis.delete(token_key(MAIN))
    finally:
        await redis.aclose()
    await api.post(f"{SBX}/control/expire-token", json={"appid": MAIN})
    before = await calls(api, "stable_token")
    async with httpx.AsyncClient(base_url=str(api.base_url), timeout=30) as fresh:
        results = await asyncio.gather(
            *(
                fresh.post(
                    "/api/v1/auth/phone",
                    json={"code": code},
                    headers={"authorization": f"Bearer {token}"},
                )
                for token, code in zip(tokens, codes, strict=True)
            )
        )
    assert [r.status_code for r in results] == [200] * 20, [r.text for r in results]
    assert await calls(api, "stable_token") == before + 1


async def test_classic_token_ends_the_previous_one(api: httpx.AsyncClient) -> None:
    params = {"grant_type": "client_credential", "appid": GIFT, "secret": "demo-secret-gift"}
    first = (await api.get(f"{SBX}/cgi-bin/token", params=params)).json()["access_token"]
    second = (await api.get(f"{SBX}/cgi-bin/token", params=params)).json()["access_token"]
    assert first != second
    for token, errcode in ((first, 40001), (second, 40097)):  # 40097: the token was fine
        r = await api.post(f"{SBX}/wxa/msg_sec_check", params={"access_token": token}, json={})
        assert r.json()["errcode"] == errcode
