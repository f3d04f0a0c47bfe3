"""The one adapter to the courier platform: WeChat's immediate delivery (即时配送).

We place a waybill with `business/order/add` (signed with delivery_sign = sha1(shopid +
shop_order_id + AppSecret)), cancel it with `business/order/cancel`, and follow it through
the `update_waybill_status` events WeChat pushes to us in safe mode: the body carries only
`Encrypt`, and `msg_signature` = sha1(sorted token, timestamp, nonce, Encrypt) is checked
before anything is opened. Statuses are WeChat's (101-502); `RANK` orders them so a late
or repeated callback never moves a waybill backwards.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from server.infra.errors import Conflict, Forbidden, Unavailable
from server.settings import Settings
from server.wechat import crypto
from server.wechat.errors import WeChatDataInvalid

WAITING, ASSIGNED, CANCELLED = 101, 102, 103
AT_STORE, PICKED_UP = 201, 202
PICKUP_FAILED = (203, 204, 205)
DELIVERING, DELIVERED = 301, 302
RETURNING = (303, 304, 305)
RETURNED = 401
SYSTEM_CANCELLED, FORCE_MAJEURE = 501, 502

LABELS: dict[int, str] = {
    101: "waiting for a rider",
    102: "rider assigned",
    103: "cancelled by the courier platform",
    201: "rider at the store",
    202: "picked up",
    203: "pickup failed: the store cancelled",
    204: "pickup failed: the rider could not collect",
    205: "pickup failed",
    301: "out for delivery",
    302: "delivered",
    303: "returning: the shopper refused",
    304: "returning: the shopper could not be reached",
    305: "returning",
    401: "returned to the store",
    501: "cancelled by the platform (system)",
    502: "cancelled (force majeure)",
}

# Where each status stands in a waybill's life; a callback applies only when it moves forward.
RANK: dict[int, int] = {101: 1, 102: 2, 201: 3, 202: 4, 301: 5, 303: 6, 304: 6, 305: 6}
FAILED = frozenset({CANCELLED, *PICKUP_FAILED, RETURNED, SYSTEM_CANCELLED, FORCE_MAJEURE})
FINAL_RANK = 100  # delivered or failed: nothing after it applies
PUSH_MAX_AGE_S = 300  # a signed push older than this is a replay


def rank(status: int | None) -> int:
    if status is None:
        return 0
    if status == DELIVERED or status in FAILED:
        return FINAL_RANK
    return RANK.get(status, 0)


def shop_order_id(order_no: str, dispatch_no: int) -> str:
    """Each dispatch of an order is its own waybill at the platform."""
    return f"{order_no}-{dispatch_no}"


def parse_shop_order_id(value: str) -> tuple[str, int] | None:
    order_no, _, n = value.rpartition("-")
    return (order_no, int(n)) if order_no and n.isdigit() else None


def delivery_sign(shopid: str, order_id: str, app_secret: str) -> str:
    return hashlib.sha1(f"{shopid}{order_id}{app_secret}".encode()).hexdigest()


class CourierPlatform:
    def __init__(self, settings: Settings, wechat: Any) -> None:
        account = settings.delivery_account
        if account is None:
            raise Unavailable(
                "no courier platform is configured (HAODIAN_DELIVERY_SHOPID / _APP_SECRET)",
                code="COURIER_NOT_CONFIGURED",
            )
        self.shopid, self.app_secret = account
        self.delivery_id = settings.delivery_id
        self.wechat = wechat

    def _signed(self, order_id: str, store_code: str) -> dict[str, Any]:
        return {
            "shopid": self.shopid,
            "shop_order_id": order_id,
            "shop_no": store_code,
            "delivery_id": self.delivery_id,
            "delivery_sign": delivery_sign(self.shopid, order_id, self.app_secret),
        }

    async def add(self, order_id: str, order: dict[str, Any]) -> dict[str, Any]:
        """Place a waybill; the platform answers 101 (waiting for a rider) or refuses (409
        COURIER_REFUSED). The same shop_order_id again is the same waybill."""
        store = order["store"]
        body = {
            **self._signed(order_id, store["code"]),
            "openid": order.get("openid") or "",
            "sender": {
                "name": store["name"],
                "city": store["city"],
                "address": store["address"] or store["name"],
                "address_detail": "",
                "phone": store["phone"] or "",
                "lat": store["lat"],
                "lng": store["lng"],
                "coordinate_type": 0,  # GCJ-02
            },
            "receiver": {
                "name": order["contact"],
                "city": store["city"],
                "address": order["address_text"],
                "address_detail": "",
                "phone": order["phone"],
                "lat": order["lat"],
                "lng": order["lng"],
                "coordinate_type": 0,
            },
            "cargo": {
                "goods_value": round(order["goods_fen"] / 100, 2),
                "goods_weight": 1,
                "cargo_first_class": "美食夜宵",
                "cargo_second_class": "零食小吃",
                "goods_detail": {
                    "goods": [
                        {"good_count": ln["quantity"], "good_name": ln["name"][:20]}
                        for ln in order["lines"]
                    ]
                },
            },
            "order_info": {
                "order_time": int(time.time()),
                "note": order.get("note", ""),
                "order_type": 0,
            },
            "shop": {
                "wxa_path": f"pages/takeout/track?no={order['order_no']}",
                "goods_name": order["lines"][0]["name"][:20],
                "goods_count": sum(ln["quantity"] for ln in order["lines"]),
            },
        }
        answer = await self.wechat.local_delivery("add", body)
        if int(answer.get("resultcode", 0)) != 0:
            raise Conflict(
                f"the courier platform refused: {answer.get('resultmsg') or 'no reason'}",
                code="COURIER_REFUSED",
                details={"resultcode": answer.get("resultcode")},
            )
        return answer

    async def cancel(self, order_id: str, store_code: str, waybill_id: str, reason: str) -> None:
        body = {
            **self._signed(order_id, store_code),
            "waybill_id": waybill_id,
            "cancel_reason_id": 1,
            "cancel_reason": reason[:50],
        }
        await self.wechat.local_delivery("cancel", body)


def open_push(settings: Settings, args: Any, body: Any) -> dict[str, Any]:
    """Check the push's msg_signature, then decrypt it; 403 unless both hold."""
    token, aes_key = settings.push_token, settings.push_aes_key
    if not token or not aes_key or not settings.apps:
        raise Unavailable("message push is not configured", code="PUSH_NOT_CONFIGURED")
    timestamp, nonce = str(args.get("timestamp") or ""), str(args.get("nonce") or "")
    signature = str(args.get("msg_signature") or "")
    encrypt = body.get("Encrypt") if isinstance(body, dict) else None
    if not timestamp or not nonce or not isinstance(encrypt, str) or not encrypt:
        raise Forbidden("not a signed push", code="PUSH_SIGNATURE_INVALID")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > PUSH_MAX_AGE_S:
        raise Forbidden("the push is stale or from the future", code="PUSH_STALE")
    want = crypto.push_signature(token, timestamp, nonce, encrypt)
    if not hmac.compare_digest(want, signature.lower()):
        raise Forbidden("the push signature does not match", code="PUSH_SIGNATURE_INVALID")
    for app in settings.apps:
        try:
            return crypto.decrypt_push(aes_key, app.appid, encrypt)
        except WeChatDataInvalid:
            continue
    raise Forbidden("the push does not open for our apps", code="PUSH_SIGNATURE_INVALID")
