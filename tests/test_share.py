"""Share links over real HTTP: one scene per (kind, target, sharer), the landing page and its
open count, the cached mini-program code, URL links, WeChat being down, attribution through
`record_conversion` (called from this process, on the same PostgreSQL), fission stats and
member merges."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from tortoise.transactions import in_transaction

from server.identity import merge
from server.identity import service as identity
from server.identity.models import Member, Operator
from server.infra.auth import encode_access
from server.settings import Settings
from server.share import service as share
from server.share.models import Share, ShareCode, ShareConversion, ShareOpen
from tests.conftest import error_code

SBX = "/_sandbox/wechat"
SCENE = re.compile(r"^[0-9A-Za-z]{1,32}$")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# A kind only this test process knows, to share one target from several members (an invite
# names its sender, so two members can never share the same invite).
OPEN_KIND = "t_open"


async def _anyone_may_share(target: str, sharer_member_id: int) -> None:
    return None


share.register_kind(OPEN_KIND, "pages/test/open", _anyone_may_share, param="t")


# -- helpers ---------------------------------------------------------------------------------------


async def shopper(api: httpx.AsyncClient, nickname: str | None = None) -> dict[str, Any]:
    """A WeChat user of the default app who opened the mini-program and signed in."""
    user = (await api.post(f"{SBX}/users", json={})).json()
    code = (await api.post(f"{SBX}/users/{user['openid']}/login-code")).json()["code"]
    r = await api.post("/api/v1/auth/login", json={"code": code})
    assert r.status_code == 200, r.text
    member_id = r.json()["member"]["id"]
    if nickname is not None:
        await Member.filter(id=member_id).update(nickname=nickname)
    return {
        "openid": user["openid"],
        "headers": {"authorization": f"Bearer {r.json()['token']}"},
        "member_id": member_id,
    }


async def invite(api: httpx.AsyncClient, who: dict[str, Any]) -> httpx.Response:
    return await api.post(
        "/api/v1/shares",
        json={"kind": "invite", "target": str(who["member_id"])},
        headers=who["headers"],
    )


async def calls(api: httpx.AsyncClient, name: str) -> int:
    return (await api.get(f"{SBX}/control/stats")).json()["calls"].get(name, 0)


async def fail(api: httpx.AsyncClient, wechat_api: str, errcode: int = -1) -> None:
    r = await api.post(
        f"{SBX}/control/failures", json={"api": wechat_api, "errcode": errcode, "times": -1}
    )
    assert r.status_code == 201, r.text


@pytest.fixture(autouse=True)
async def _no_failures_left(api: httpx.AsyncClient) -> AsyncIterator[None]:
    await api.delete(f"{SBX}/control/failures")
    yield
    await api.delete(f"{SBX}/control/failures")


@pytest.fixture(scope="module")
async def operator(database: Settings) -> dict[str, str]:
    op = await Operator.create(username=f"op-{uuid.uuid4().hex[:8]}", password_hash="x")
    return {"authorization": f"Bearer {encode_access(database, 'operator', op.id, ['admin'])}"}


# -- making a share --------------------------------------------------------------------------------


async def test_a_share_is_one_short_scene_and_a_repeat_gives_the_same_answer(
    api: httpx.AsyncClient, database: Settings
) -> None:
    a = await shopper(api)
    r = await invite(api, a)
    assert r.status_code == 201, r.text
    out = r.json()
    scene = out["scene"]
    assert SCENE.match(scene) and len(scene) <= 32
    assert (out["kind"], out["target"]) == ("invite", str(a["member_id"]))
    assert out["wxacode_url"] == f"/api/v1/shares/{scene}/wxacode"
    # The card path: the invite page, naming the inviter and the scene.
    parts = urlsplit(out["path"])
    assert out["path"].startswith("/") and parts.path == "/pages/index/index"
    assert parse_qs(parts.query) == {"inviter": [str(a["member_id"])], "scene": [scene]}
    assert out["url_link"] and out["url_link"].startswith("https://")

    again = await invite(api, a)
    assert again.status_code == 200 and again.json() == out
    assert await Share.filter(sharer_id=a["member_id"], kind="invite").count() == 1

    # Tapping the URL link outside WeChat opens that page with that query.
    link_id = out["url_link"].rsplit("/", 1)[1]
    opened = await api.get(f"{SBX}/links/{link_id}")
    assert opened.status_code == 200, opened.text
    assert opened.json()["path"] == "pages/index/index"
    assert parse_qs(opened.json()["query"]) == {"inviter": [str(a["member_id"])], "scene": [scene]}


async def test_ten_simultaneous_first_shares_make_one_scene(
    api: httpx.AsyncClient, database: Settings
) -> None:
    a = await shopper(api)
    answers = await asyncio.gather(*(invite(api, a) for _ in range(10)))
    assert sorted(r.status_code for r in answers) == [200] * 9 + [201], [r.text for r in answers]
    bodies = {r.text for r in answers}
    assert len({r.json()["scene"] for r in answers}) == 1
    assert len(bodies) == 1  # the one URL link that was stored, for everyone
    assert await Share.filter(sharer_id=a["member_id"], kind="invite").count() == 1


async def test_two_sharers_of_one_target_get_their_own_scenes(database: Settings) -> None:
    one = await Member.create(nickname="一")
    two = await Member.create(nickname="二")
    target = f"G{uuid.uuid4().hex[:8]}"
    s1, created1 = await share.share_for(OPEN_KIND, target, one.id)
    s2, created2 = await share.share_for(OPEN_KIND, target, two.id)
    assert created1 and created2 and s1.scene != s2.scene
    again, created = await share.share_for(OPEN_KIND, target, one.id)
    assert not created and again.scene == s1.scene
    assert s1.path == f"/pages/test/open?t={target}&scene={s1.scene}"
    # Simultaneous first calls in this process (a pool of connections): still one row.
    three = await Member.create(nickname="三")
    many = await asyncio.gather(*(share.share_for(OPEN_KIND, target, three.id) for _ in range(10)))
    assert len({s.scene for s, _ in many}) == 1 and sum(c for _, c in many) == 1
    assert await Share.filter(sharer_id=three.id).count() == 1


async def test_refused_shares_say_why_and_store_nothing(
    api: httpx.AsyncClient, database: Settings
) -> None:
    a, b = await shopper(api), await shopper(api)
    cases = [
        ({"kind": "invite", "target": str(b["member_id"])}, 403, "SHARE_TARGET_FORBIDDEN"),
        ({"kind": "invite", "target": "someone"}, 403, "SHARE_TARGET_FORBIDDEN"),
        ({"kind": "lottery", "target": "1"}, 422, "SHARE_KIND_UNKNOWN"),
        ({"kind": "invite", "target": "1 OR 1=1"}, 422, "VALIDATION_ERROR"),
        ({"kind": "invite", "target": ""}, 422, "VALIDATION_ERROR"),
        ({"kind": "invite"}, 422, "VALIDATION_ERROR"),
    ]
    for payload, status, code in cases:
        r = await api.post("/api/v1/shares", json=payload, headers=a["headers"])
        assert (r.status_code, error_code(r)) == (status, code), (payload, r.text)
    # The kind the test process registered is unknown to the server: no cross-talk.
    r = await api.post(
        "/api/v1/shares", json={"kind": OPEN_KIND, "target": "x"}, headers=a["headers"]
    )
    assert (r.status_code, error_code(r)) == (422, "SHARE_KIND_UNKNOWN")
    assert "invite" in r.json()["error"]["details"]["known"]
    r = await api.post("/api/v1/shares", json={"kind": "invite", "target": "1"})
    assert r.status_code == 401
    assert await Share.filter(sharer_id=a["member_id"]).count() == 0


# -- opening a share -------------------------------------------------------------------------------


async def test_the_landing_page_shows_the_masked_sharer_and_counts_opens(
    api: httpx.AsyncClient, database: Settings
) -> None:
    a = await shopper(api, nickname="张三丰")
    await Member.filter(id=a["member_id"]).update(
        phone_masked="138****0042", avatar_url="https://img.example/a.png"
    )
    friend = await shopper(api)
    made = (await invite(api, a)).json()
    scene = made["scene"]

    r = await api.get(f"/api/v1/shares/{scene}")
    assert r.status_code == 200, r.text
    out = r.json()
    assert {k: out[k] for k in ("scene", "kind", "target", "path")} == {
        k: made[k] for k in ("scene", "kind", "target", "path")
    }
    assert out["sharer"] == {"nickname": "张**", "avatar_url": "https://img.example/a.png"}
    assert out["opens"] == 1
    assert "0042" not in r.text and "三丰" not in r.text and "138" not in r.text

    # A signed-in friend is recorded as the opener; a broken token still opens the page.
    r = await api.get(f"/api/v1/shares/{scene}", headers=friend["headers"])
    assert r.status_code == 200 and r.json()["opens"] == 2
    r = await api.get(f"/api/v1/shares/{scene}", headers={"authorization": "Bearer nonsense"})
    assert r.status_code == 200 and r.json()["opens"] == 3
    row = await Share.get(scene=scene)
    openers = (
        await ShareOpen.filter(share_id=row.id).order_by("id").values_list("opener_id", flat=True)
    )
    assert row.opens == 3 and openers == [None, friend["member_id"], None]

    # Ten friends at once: every open counted.
    await asyncio.gather(*(api.get(f"/api/v1/shares/{scene}") for _ in range(10)))
    assert (await Share.get(scene=scene)).opens == 13
    assert await ShareOpen.filter(share_id=row.id).count() == 13

    # Reloading from one address cannot inflate it: past 30 an hour the page opens uncounted.
    pages = await asyncio.gather(*(api.get(f"/api/v1/shares/{scene}") for _ in range(25)))
    assert {p.status_code for p in pages} == {200}
    assert (await Share.get(scene=scene)).opens == 30
    assert await ShareOpen.filter(share_id=row.id).count() == 30


async def test_public_profiles_mask_every_nickname(database: Settings) -> None:
    named = await Member.create(nickname="Alice", phone_masked="139****1234")
    blank = await Member.create(nickname="")
    out = await identity.public_profiles([named.id, blank.id, 10**12])
    assert out[named.id] == {"nickname": "A**", "avatar_url": ""}
    assert out[blank.id]["nickname"] == "微信用户"
    assert out[10**12]["nickname"] == "微信用户"  # a vanished member is shown anonymous
    assert "1234" not in str(out)


@pytest.mark.parametrize(
    ("scene", "code"),
    [
        ("Zz9Zz9Zz9Z", "SHARE_NOT_FOUND"),  # well formed, never made
        ("bad-scene", "SHARE_NOT_FOUND"),
        # not what a scene can be: no route takes it (server.infra.openapi, `ref`)
        ("a" * 33, "NOT_FOUND"),  # longer than WeChat allows
        ("x" * 2000, "NOT_FOUND"),
        ("a.b", "NOT_FOUND"),
        ("%F0%9F%98%80", "NOT_FOUND"),
        ("'%20OR%201=1", "NOT_FOUND"),
        ("%00", "NOT_FOUND"),
    ],
)
async def test_unknown_and_malformed_scenes_are_404(
    api: httpx.AsyncClient, scene: str, code: str
) -> None:
    for path in (f"/api/v1/shares/{scene}", f"/api/v1/shares/{scene}/wxacode"):
        r = await api.get(path)
        assert (r.status_code, error_code(r)) == (404, code), (path, r.text)


# -- the mini-program code -------------------------------------------------------------------------


async def test_the_code_is_a_png_from_wechat_once_then_from_the_database(
    api: httpx.AsyncClient, database: Settings
) -> None:
    a = await shopper(api)
    made = (await invite(api, a)).json()
    before = await calls(api, "getwxacodeunlimit")
    first = await api.get(made["wxacode_url"])
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/png"
    assert first.content.startswith(PNG_MAGIC) and len(first.content) > 200
    assert await calls(api, "getwxacodeunlimit") == before + 1
    second = await api.get(made["wxacode_url"])
    assert second.status_code == 200 and second.content == first.content
    assert await calls(api, "getwxacodeunlimit") == before + 1  # served from the cache
    row = await Share.get(scene=made["scene"])
    assert bytes((await ShareCode.get(share_id=row.id)).png) == first.content


async def test_wechat_down_still_shares_without_a_link_and_the_code_is_503(
    api: httpx.AsyncClient, database: Settings
) -> None:
    a = await shopper(api)
    await fail(api, "generate_urllink")
    await fail(api, "getwxacodeunlimit")
    r = await invite(api, a)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["url_link"] is None and SCENE.match(made["scene"])
    code = await api.get(made["wxacode_url"])
    assert code.status_code == 503, code.text
    err = code.json()["error"]
    assert err["code"] == "WECHAT_BUSY" and err["request_id"]
    assert "retry-after" in code.headers
    row = await Share.get(scene=made["scene"])
    assert not await ShareCode.filter(share_id=row.id).exists()
    # The landing page never needs WeChat.
    assert (await api.get(f"/api/v1/shares/{made['scene']}")).status_code == 200

    # WeChat is back: the next POST fills the link in, the code is drawn.
    await api.delete(f"{SBX}/control/failures")
    again = await invite(api, a)
    assert again.status_code == 200 and again.json()["scene"] == made["scene"]
    assert again.json()["url_link"] and again.json()["url_link"].startswith("https://")
    code = await api.get(made["wxacode_url"])
    assert code.status_code == 200 and code.content.startswith(PNG_MAGIC)


async def test_an_unclassified_wechat_error_on_the_code_is_a_503(
    api: httpx.AsyncClient, database: Settings
) -> None:
    """An errcode WeChat has no special class for (502 upstream) still answers 503 here."""
    a = await shopper(api)
    await fail(api, "getwxacodeunlimit", errcode=99999)
    made = (await invite(api, a)).json()
    code = await api.get(made["wxacode_url"])
    assert code.status_code == 503, code.text
    assert code.json()["error"]["code"] == "WECHAT_ERROR"


# -- attribution and stats -------------------------------------------------------------------------


async def test_conversions_count_once_per_joiner_and_ignore_self_and_strangers(
    api: httpx.AsyncClient, database: Settings, operator: dict[str, str]
) -> None:
    a = await shopper(api, nickname="李雷")
    made = (await invite(api, a)).json()
    scene, target, aid = made["scene"], made["target"], a["member_id"]
    b = await Member.create()
    c = await Member.create()
    d = await Member.create()

    assert await share.record_conversion(scene, b.id, "invite", target) == aid
    assert await share.record_conversion(scene, b.id, "invite", target) == aid  # no raise
    assert await ShareConversion.filter(joiner_id=b.id).count() == 1

    # Not attributable: the sharer themself, another kind or target, no or a bad scene.
    assert await share.record_conversion(scene, aid, "invite", target) is None
    assert await share.record_conversion(scene, c.id, "group", target) is None
    assert await share.record_conversion(scene, c.id, "invite", str(c.id)) is None
    for bad in (None, "", "Zz9Zz9Zz9Z", "no such scene!", "x" * 40):
        assert await share.record_conversion(bad, c.id, "invite", target) is None
    assert not await ShareConversion.filter(joiner_id__in=[aid, c.id]).exists()

    # Inside the caller's transaction: a duplicate there leaves it usable; a rollback takes the
    # conversion with it.
    async with in_transaction() as conn:
        assert await share.record_conversion(scene, c.id, "invite", target, conn) == aid
        assert await share.record_conversion(scene, c.id, "invite", target, conn) == aid
        assert await Member.filter(id=c.id).using_db(conn).exists()
    assert await ShareConversion.filter(joiner_id=c.id).count() == 1
    with pytest.raises(RuntimeError):
        async with in_transaction() as conn:
            assert await share.record_conversion(scene, d.id, "invite", target, conn) == aid
            raise RuntimeError("the join failed after all")
    assert not await ShareConversion.filter(joiner_id=d.id).exists()

    # Simultaneous copies of one conversion (each in its own transaction): one row, no error.
    async def join_in_own_tx() -> int | None:
        async with in_transaction() as conn:
            return await share.record_conversion(scene, d.id, "invite", target, conn)

    assert await asyncio.gather(*(join_in_own_tx() for _ in range(8))) == [aid] * 8
    assert await ShareConversion.filter(joiner_id=d.id).count() == 1

    # A second sharer with one conversion ranks below.
    e = await shopper(api)
    e_made = (await invite(api, e)).json()
    assert await share.record_conversion(e_made["scene"], b.id, "invite", e_made["target"])
    await api.get(f"/api/v1/shares/{scene}")

    r = await api.get(
        "/api/v1/admin/shares/stats", params={"kind": "invite", "target": target}, headers=operator
    )
    assert r.status_code == 200, r.text
    assert r.json()["items"] == [
        {"sharer_id": aid, "nickname": "李**", "shares": 1, "opens": 1, "conversions": 3}
    ]
    r = await api.get("/api/v1/admin/shares/stats?kind=invite&target=", headers=operator)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["conversions"] for i in items] == sorted(
        (i["conversions"] for i in items), reverse=True
    )
    by_id = {i["sharer_id"]: i for i in items}
    assert by_id[aid]["conversions"] == 3 and by_id[e["member_id"]]["conversions"] == 1
    ranks = [i["sharer_id"] for i in items]
    assert ranks.index(aid) < ranks.index(e["member_id"])
    assert len(items) <= 50

    mine = await api.get("/api/v1/me/shares", headers=a["headers"])
    assert mine.status_code == 200, mine.text
    [item] = mine.json()["items"]
    assert (item["scene"], item["opens"], item["conversions"]) == (scene, 1, 3)
    assert item["created_at"].endswith("+08:00")

    # Stats are for operators only.
    r = await api.get("/api/v1/admin/shares/stats", headers=a["headers"])
    assert r.status_code == 401 and error_code(r) == "TOKEN_WRONG_AUDIENCE"


# -- member merges ---------------------------------------------------------------------------------


async def test_a_merge_moves_shares_and_conversions_without_a_clash(
    api: httpx.AsyncClient, database: Settings
) -> None:
    old = await Member.create(nickname="旧")
    new = await Member.create(nickname="新", unionid=f"u{uuid.uuid4().hex}")
    other = await Member.create(nickname="他")
    both = f"G{uuid.uuid4().hex[:8]}"
    only_old = f"G{uuid.uuid4().hex[:8]}"
    old_both, _ = await share.share_for(OPEN_KIND, both, old.id)
    new_both, _ = await share.share_for(OPEN_KIND, both, new.id)
    old_only, _ = await share.share_for(OPEN_KIND, only_old, old.id)
    theirs, _ = await share.share_for(OPEN_KIND, both, other.id)
    # Both accounts of one person joined through the same share of the same target.
    assert await share.record_conversion(theirs.scene, old.id, OPEN_KIND, both) == other.id
    assert await share.record_conversion(theirs.scene, new.id, OPEN_KIND, both) == other.id
    # And someone joined through the old account's share.
    assert await share.record_conversion(old_only.scene, other.id, OPEN_KIND, only_old) == old.id

    record = await merge.merge_members(None, database, old.id, new.id, new.unionid or "")
    assert record is not None

    assert not await Share.filter(sharer_id=old.id).exists()
    moved = await Share.get(id=old_both.id)
    assert moved.sharer_id == new.id and moved.slot == old_both.id  # type: ignore[attr-defined]
    assert (await Share.get(id=old_only.id)).slot == 0
    # The member's own share of that target is still the one POST answers with.
    again, created = await share.share_for(OPEN_KIND, both, new.id)
    assert not created and again.id == new_both.id
    # Every old scene still opens, now in the name of the merged member.
    for scene in (old_both.scene, old_only.scene):
        r = await api.get(f"/api/v1/shares/{scene}")
        assert r.status_code == 200 and r.json()["sharer"]["nickname"] == "新**"
    # One person, one conversion through their share; the old account's referral moved.
    assert await ShareConversion.filter(share_id=theirs.id).count() == 1
    assert await ShareConversion.filter(joiner_id=old.id).count() == 0
    referral = await ShareConversion.get(share_id=old_only.id)
    assert referral.sharer_id == new.id  # type: ignore[attr-defined]


async def test_every_share_route_is_in_the_openapi_document(api: httpx.AsyncClient) -> None:
    doc = (await api.get("/docs/openapi.json")).json()
    paths = doc["paths"]
    post = paths["/api/v1/shares"]["post"]
    ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert "kind" in doc["components"]["schemas"][ref]["properties"]
    assert {"200", "201"} <= set(post["responses"])
    made = post["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]
    assert "url_link" in doc["components"]["schemas"][made.rsplit("/", 1)[1]]["properties"]
    landing = paths["/api/v1/shares/{scene}"]["get"]
    assert "200" in landing["responses"]
    assert "image/png" in str(paths["/api/v1/shares/{scene}/wxacode"]["get"]["responses"])
    assert "200" in paths["/api/v1/me/shares"]["get"]["responses"]
    stats = paths["/api/v1/admin/shares/stats"]["get"]
    assert {p["name"] for p in stats["parameters"]} >= {"kind", "target"}
