"""The sandbox's courier platform: WeChat's immediate delivery (即时配送), over real HTTP.

- the **API** we call: `cgi-bin/express/local/business/order/{add,cancel,get}` with an
  access token and delivery_sign; `add` answers 101 and a waybill, and the same
  shop_order_id again is the same waybill;
- the **pushes** it makes: `update_waybill_status` events to our message push URL in safe
  mode (AES body, msg_signature), as WeChat relays the courier company's progress;
- **controls** for tests and the demo: refuse the next dispatches, advance a waybill one
  step (102 rider assigned → 202 picked up → 301 delivering → 302 delivered), push any
  status (twice, out of order, forged), cancel it from the platform's side, or let every
  waybill advance by itself every few seconds (the demo does).

State is in Redis under `sandbox:dl:` so every worker agrees.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import orjson
from pydantic import BaseModel, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from server.infra.errors import NotFound
from server.infra.http import body, respond
from server.takeout.courier import LABELS, delivery_sign
from server.wechat import crypto
from server.wechat.sandbox.pay_state import _client, spawn
from server.wechat.sandbox.routes import _ok, _open_call, _settings, _wx
from server.wechat.sandbox.state import redis_of

bp = Blueprint("wechat_sandbox_delivery", url_prefix="/_sandbox/wechat")

PREFIX = "sandbox:dl:"
K_CONF = f"{PREFIX}conf"
TTL = 7 * 86400
NEXT = {101: 102, 102: 202, 201: 202, 202: 301, 301: 302}
RIDERS = [("张师傅", "13800138001"), ("李师傅", "13900139002"), ("王师傅", "13700137003")]
NOTIFY_PATH = "/api/v1/takeout/courier/notify"


def _k_waybill(waybill: str) -> str:
    return f"{PREFIX}wb:{waybill}"


def _k_order(shop_order_id: str) -> str:
    return f"{PREFIX}order:{shop_order_id}"


async def _load(request: Request, waybill: str) -> dict[str, Any]:
    raw = await redis_of(request).get(_k_waybill(waybill))
    if raw is None:
        raise NotFound(f"no waybill {waybill[:40]}", code="WAYBILL_NOT_FOUND")
    return dict(orjson.loads(raw))


async def _save(request: Request, wb: dict[str, Any]) -> None:
    await redis_of(request).set(_k_waybill(wb["waybill_id"]), orjson.dumps(wb), ex=TTL)


def _signed_ok(request: Request, data: dict[str, Any]) -> bool:
    account = _settings(request).delivery_account
    if account is None:
        return False
    shopid, secret = account
    want = delivery_sign(shopid, str(data.get("shop_order_id", "")), secret)
    return data.get("shopid") == shopid and data.get("delivery_sign") == want


# -- the API we call -----------------------------------------------------------------------------


@bp.post("/cgi-bin/express/local/business/order/add")
async def order_add(request: Request) -> HTTPResponse:
    appid, data, bad = await _open_call(request, "local_delivery_add")
    if bad:
        return bad
    assert data is not None
    if not _signed_ok(request, data):
        return _wx(930559, "delivery_sign error")
    order_id = str(data.get("shop_order_id") or "")
    receiver = data.get("receiver") or {}
    if not order_id or not isinstance(receiver, dict) or "lat" not in receiver:
        return _wx(47001, "data format error")
    redis = redis_of(request)
    waybill = "SBXWB" + secrets.token_hex(8).upper()
    # One waybill per shop order, even for two adds at once: the first SET NX wins.
    if not await redis.set(_k_order(order_id), waybill, nx=True, ex=TTL):
        existing = await redis.get(_k_order(order_id))
        for _ in range(50):  # the winner may still be writing it
            if await redis.exists(_k_waybill(existing)):
                break
            await asyncio.sleep(0.02)
        wb = await _load(request, existing)
        return _ok(
            resultcode=0,
            resultmsg="ok",
            waybill_id=wb["waybill_id"],
            order_status=wb["status"],
            fee=wb["fee"],
            distance=wb["distance"],
        )
    if await redis.hincrby(K_CONF, "refuse_next", -1) >= 0:
        await redis.delete(_k_order(order_id))
        return _ok(resultcode=3004, resultmsg="运力不足, 暂无骑手接单 (no rider available)")
    await redis.hset(K_CONF, "refuse_next", 0)
    rider = RIDERS[secrets.randbelow(len(RIDERS))]
    wb = {
        "waybill_id": waybill,
        "shop_order_id": order_id,
        "shopid": data["shopid"],
        "shop_no": data.get("shop_no", ""),
        "appid": appid,
        "status": 101,
        "fee": 6.0,
        "distance": 0,
        "rider": {"name": rider[0], "phone": rider[1]},
        "receiver": receiver,
        "pushes": [],
    }
    await _save(request, wb)
    auto = float(await redis.hget(K_CONF, "auto_seconds") or 0)
    if auto > 0:
        spawn(_auto_advance(request, waybill, auto))
    return _ok(
        resultcode=0,
        resultmsg="ok",
        waybill_id=waybill,
        order_status=101,
        fee=wb["fee"],
        distance=0,
        dispatch_duration=300,
    )


@bp.post("/cgi-bin/express/local/business/order/cancel")
async def order_cancel(request: Request) -> HTTPResponse:
    _, data, bad = await _open_call(request, "local_delivery_cancel")
    if bad:
        return bad
    assert data is not None
    if not _signed_ok(request, data):
        return _wx(930559, "delivery_sign error")
    waybill = await redis_of(request).get(_k_order(str(data.get("shop_order_id") or "")))
    if not waybill:
        return _wx(930561, "order not exist")
    wb = await _load(request, waybill)
    if wb["status"] not in (302, 401, 103):
        wb["status"] = 103
        wb["cancelled_by"] = "shop"
        await _save(request, wb)
    return _ok(resultcode=0, resultmsg="ok", deduct_fee=0, desc="cancelled")


@bp.post("/cgi-bin/express/local/business/order/get")
async def order_get(request: Request) -> HTTPResponse:
    _, data, bad = await _open_call(request, "local_delivery_get")
    if bad:
        return bad
    assert data is not None
    waybill = await redis_of(request).get(_k_order(str(data.get("shop_order_id") or "")))
    if not waybill:
        return _wx(930561, "order not exist")
    wb = await _load(request, waybill)
    return _ok(
        resultcode=0,
        resultmsg="ok",
        waybill_id=waybill,
        order_status=wb["status"],
        rider_name=wb["rider"]["name"],
        rider_phone=wb["rider"]["phone"],
    )


# -- the pushes it makes ---------------------------------------------------------------------------


async def push(
    request: Request,
    wb: dict[str, Any],
    status: int,
    *,
    forge: str | None = None,
    action_time: int | None = None,
) -> int | None:
    """POST one signed update_waybill_status push to our server; the HTTP status it got."""
    settings = _settings(request)
    token, aes_key = settings.push_token or "", settings.push_aes_key or ""
    event = {
        "ToUserName": "gh_sandbox0000",
        "FromUserName": "o_sandbox_delivery",
        "CreateTime": int(time.time()),
        "MsgType": "event",
        "Event": "update_waybill_status",
        "shopid": wb["shopid"],
        "shop_order_id": wb["shop_order_id"],
        "waybill_id": wb["waybill_id"],
        "action_time": action_time or int(time.time() * 1000),
        "order_status": status,
        "action_msg": LABELS.get(status, ""),
        "shop_no": wb["shop_no"],
        "agent": wb["rider"] if status not in (101, 103) else {},
    }
    key = aes_key if forge != "key" else "A" * 43
    encrypt = crypto.encrypt_push(key, wb["appid"], event)
    ts, nonce = str(int(time.time())), secrets.token_hex(8)
    sig = crypto.push_signature(token, ts, nonce, encrypt)
    if forge == "signature":
        sig = crypto.push_signature("not-the-token", ts, nonce, encrypt)
    if forge == "stale":
        ts = str(int(time.time()) - 3600)
        sig = crypto.push_signature(token, ts, nonce, encrypt)
    url = settings.public_base() + NOTIFY_PATH
    params = {
        "timestamp": ts,
        "nonce": nonce,
        "encrypt_type": "aes",
        "msg_signature": sig,
        "signature": crypto.push_signature(token, ts, nonce, ""),
    }
    try:
        resp = await _client().post(
            url,
            params=params,
            content=orjson.dumps({"ToUserName": event["ToUserName"], "Encrypt": encrypt}),
            headers={"content-type": "application/json"},
        )
        return resp.status_code
    except Exception:
        return None


async def _move(request: Request, wb: dict[str, Any], status: int) -> None:
    wb["status"] = status
    wb["pushes"].append(status)
    await _save(request, wb)


async def _auto_advance(request: Request, waybill: str, every: float) -> None:
    for _ in range(6):
        await asyncio.sleep(every)
        wb = await _load(request, waybill)
        nxt = NEXT.get(wb["status"])
        if nxt is None:
            return
        await _move(request, wb, nxt)
        await push(request, wb, nxt)


# -- controls ------------------------------------------------------------------------------------


class DeliveryConfig(BaseModel):
    refuse_next: int | None = Field(default=None, ge=0, le=100)
    auto_seconds: float | None = Field(default=None, ge=0, le=600)


class PushIn(BaseModel):
    status: int = Field(ge=101, le=502)
    times: int = Field(default=1, ge=1, le=5)
    forge: str | None = Field(default=None, pattern="^(signature|key|stale)$")
    action_time: int | None = Field(default=None, ge=0)


@bp.post("/delivery/config")
@body(DeliveryConfig)
async def delivery_config(request: Request, payload: DeliveryConfig) -> HTTPResponse:
    """refuse_next: the next N dispatches are refused; auto_seconds: waybills advance by
    themselves every N seconds (0 = only when told)."""
    changes = {k: v for k, v in payload.model_dump().items() if v is not None}
    if changes:
        await redis_of(request).hset(K_CONF, mapping=changes)
    return respond(await redis_of(request).hgetall(K_CONF))


@bp.get("/delivery/orders/<shop_order_id:str>")
async def show_by_order(request: Request, shop_order_id: str) -> HTTPResponse:
    waybill = await redis_of(request).get(_k_order(shop_order_id[:80]))
    if not waybill:
        raise NotFound(f"no waybill for {shop_order_id[:40]}", code="WAYBILL_NOT_FOUND")
    return respond(await _load(request, waybill))


@bp.post("/delivery/waybills/<waybill:str>/advance")
async def advance(request: Request, waybill: str) -> HTTPResponse:
    """The next step of a normal delivery, pushed to us; its answer's status is ours."""
    wb = await _load(request, waybill)
    nxt = NEXT.get(wb["status"])
    if nxt is None:
        return respond({"waybill": wb, "pushed": None, "answer": None})
    await _move(request, wb, nxt)
    answer = await push(request, wb, nxt)
    return respond({"waybill": wb, "pushed": nxt, "answer": answer})


@bp.post("/delivery/waybills/<waybill:str>/push")
@body(PushIn)
async def push_status(request: Request, waybill: str, payload: PushIn) -> HTTPResponse:
    """Push any status (`times` copies, the same action_time; `forge` to sign it wrongly)."""
    wb = await _load(request, waybill)
    if payload.forge is None:
        await _move(request, wb, payload.status)
    at = payload.action_time or int(time.time() * 1000)
    answers = [
        await push(request, wb, payload.status, forge=payload.forge, action_time=at)
        for _ in range(payload.times)
    ]
    return respond({"waybill": wb, "answers": answers})
