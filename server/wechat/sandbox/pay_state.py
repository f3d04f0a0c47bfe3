"""The WeChat Pay sandbox's state and its outgoing notifications.

Transactions are one JSON document each in Redis (`sandbox:pay:tx:{out_trade_no}`, refunds
inside it), changed with WATCH/MULTI so that concurrent create / pay / close / refund
calls from any worker process see one order of events. Notifications are delivered by
background tasks of the worker that triggered them, with WeChat's retry schedule
compressed by a configurable factor; every attempt and its answer is recorded in
`sandbox:pay:deliveries:{out_trade_no}`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import time
import uuid
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import orjson
import redis.asyncio as aioredis
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from redis.exceptions import WatchError

from server.infra.clock import SHANGHAI
from server.infra.errors import NotFound
from server.wechat.pay_keys import PayConfig

log = logging.getLogger("haodian.sandbox.pay")

PREFIX = "sandbox:pay:"
TTL = 7 * 86400
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
# WeChat's retry schedule after a failed notification (seconds), compressed by
# config.notify_retry_scale.
RETRY_SCHEDULE = [15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600]
RETRY_SCHEDULE += [10800, 10800, 10800, 21600, 21600]
DEFAULT_CONFIG: dict[str, Any] = {
    "notify_retry_scale": 0.001,  # 15 s -> 15 ms; the whole schedule takes ~87 s
    "refund_auto": True,  # refunds go PROCESSING -> SUCCESS by themselves
    "refund_delay_ms": 200,
}
TRADE_STATE_DESC = {
    "NOTPAY": "未支付",
    "SUCCESS": "支付成功",
    "CLOSED": "已关闭",
    "REFUND": "转入退款",
}


class WxError(Exception):
    """An error answer in WeChat Pay's own format: HTTP status and {code, message}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def k_tx(out_trade_no: str) -> str:
    return f"{PREFIX}tx:{out_trade_no}"


def k_deliveries(out_trade_no: str) -> str:
    return f"{PREFIX}deliveries:{out_trade_no}"


def k_refund_index(out_refund_no: str) -> str:
    return f"{PREFIX}refund:{out_refund_no}"


def k_prepay(prepay_id: str) -> str:
    return f"{PREFIX}prepay:{prepay_id}"


def k_txid(transaction_id: str) -> str:
    return f"{PREFIX}txid:{transaction_id}"


K_CONFIG = f"{PREFIX}config"
K_FAIL = f"{PREFIX}fail-next"


def now_rfc3339() -> str:
    return datetime.now(SHANGHAI).isoformat(timespec="seconds")


def parse_rfc3339(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def new_prepay_id() -> str:
    return "wx" + datetime.now(SHANGHAI).strftime("%d%H%M%S") + secrets.token_hex(12)


def new_transaction_id() -> str:
    return "4200" + datetime.now(SHANGHAI).strftime("%Y%m%d") + str(secrets.randbelow(10**16))


def new_refund_id() -> str:
    return "5030" + datetime.now(SHANGHAI).strftime("%Y%m%d") + str(secrets.randbelow(10**16))


# -- config ---------------------------------------------------------------------------------------


async def get_config(redis: aioredis.Redis) -> dict[str, Any]:
    raw = await redis.get(K_CONFIG)
    cfg = dict(DEFAULT_CONFIG)
    if raw:
        cfg.update(orjson.loads(raw))
    return cfg


async def set_config(redis: aioredis.Redis, changes: dict[str, Any]) -> dict[str, Any]:
    cfg = await get_config(redis)
    for key, value in changes.items():
        if key not in DEFAULT_CONFIG:
            raise ValueError(f"unknown sandbox setting {key!r}")
        cfg[key] = type(DEFAULT_CONFIG[key])(value)
    await redis.set(K_CONFIG, orjson.dumps(cfg))
    return cfg


# -- signatures and encryption (what WeChat Pay does) ----------------------------------------------


def _private_key(cfg: PayConfig) -> Any:
    return _load_private(cfg.platform_private_key or "")


_key_cache: dict[str, Any] = {}


def _load_private(pem: str) -> Any:
    key = _key_cache.get(pem)
    if key is None:
        key = _key_cache[pem] = serialization.load_pem_private_key(pem.encode(), password=None)
    return key


def _load_public(pem: str) -> Any:
    key = _key_cache.get(pem)
    if key is None:
        key = _key_cache[pem] = serialization.load_pem_public_key(pem.encode())
    return key


def sign_message(cfg: PayConfig, message: str) -> str:
    sig = _private_key(cfg).sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(sig).decode()


def signed_headers(cfg: PayConfig, body: str, *, timestamp: int | None = None) -> dict[str, str]:
    """Wechatpay-* headers for an answer or a notification with this body."""
    ts = str(timestamp if timestamp is not None else int(time.time()))
    nonce = secrets.token_hex(16).upper()
    return {
        "Wechatpay-Timestamp": ts,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": sign_message(cfg, f"{ts}\n{nonce}\n{body}\n"),
        "Wechatpay-Serial": cfg.public_key_id,
        "Wechatpay-Signature-Type": SIGNATURE_TYPE,
        "Request-ID": uuid.uuid4().hex,
    }


def verify_merchant_signature(cfg: PayConfig, message: str, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        _load_public(cfg.merchant_public_key).verify(
            raw, message.encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except Exception:
        return False
    return True


def encrypt_resource(
    apiv3_key: str, plaintext: dict[str, Any], associated_data: str, original_type: str
) -> dict[str, str]:
    nonce = secrets.token_hex(6)  # 12 characters, as WeChat sends
    ct = AESGCM(apiv3_key.encode()).encrypt(
        nonce.encode(), orjson.dumps(plaintext), associated_data.encode()
    )
    return {
        "original_type": original_type,
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": base64.b64encode(ct).decode(),
        "associated_data": associated_data,
        "nonce": nonce,
    }


# -- transactions ---------------------------------------------------------------------------------


async def update(
    redis: aioredis.Redis,
    key: str,
    fn: Callable[[dict[str, Any] | None], tuple[dict[str, Any] | None, Any]],
) -> Any:
    """Read-modify-write one JSON document atomically (optimistic, retried on conflict)."""
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(key)
                raw = await pipe.get(key)
                current = orjson.loads(raw) if raw else None
                new, result = fn(current)
                pipe.multi()
                if new is not None:
                    pipe.set(key, orjson.dumps(new), ex=TTL)
                await pipe.execute()
                return result
            except WatchError:
                continue


async def load_tx(redis: aioredis.Redis, out_trade_no: str) -> dict[str, Any] | None:
    raw = await redis.get(k_tx(out_trade_no))
    return orjson.loads(raw) if raw else None


async def phone_tx(redis: aioredis.Redis, out_trade_no: str) -> dict[str, Any]:
    """A transaction the phone side or a control names: 404 when the sandbox has none."""
    tx = await load_tx(redis, out_trade_no)
    if tx is None:
        raise NotFound(f"the sandbox has no transaction {out_trade_no}", code="SANDBOX_NO_TX")
    return tx


def tx_view(tx: dict[str, Any], *, amount_override: int | None = None) -> dict[str, Any]:
    """The transaction as WeChat Pay's query answer and notification plaintext show it."""
    total = tx["total"] if amount_override is None else amount_override
    state = tx["state"]
    out: dict[str, Any] = {
        "appid": tx["appid"],
        "mchid": tx["mchid"],
        "out_trade_no": tx["out_trade_no"],
        "trade_type": "JSAPI",
        "trade_state": state,
        "trade_state_desc": TRADE_STATE_DESC.get(state, state),
        "payer": {"openid": tx["openid"]},
        "amount": {"total": total, "currency": "CNY"},
    }
    if tx.get("attach"):
        out["attach"] = tx["attach"]
    if tx.get("transaction_id"):
        out["transaction_id"] = tx["transaction_id"]
        out["bank_type"] = "OTHERS"
        out["success_time"] = tx["success_time"]
        out["amount"].update({"payer_total": total, "payer_currency": "CNY"})
    return out


def refund_view(tx: dict[str, Any], refund: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "refund_id": refund["refund_id"],
        "out_refund_no": refund["out_refund_no"],
        "transaction_id": tx["transaction_id"],
        "out_trade_no": tx["out_trade_no"],
        "channel": "ORIGINAL",
        "user_received_account": "支付用户零钱",
        "create_time": refund["create_time"],
        "status": refund["status"],
        "funds_account": "AVAILABLE",
        "amount": {
            "total": tx["total"],
            "refund": refund["refund"],
            "payer_total": tx["total"],
            "payer_refund": refund["refund"],
            "settlement_total": tx["total"],
            "settlement_refund": refund["refund"],
            "discount_refund": 0,
            "currency": "CNY",
            "refund_fee": 0,
            "from": [],
        },
    }
    if refund.get("success_time"):
        out["success_time"] = refund["success_time"]
    return out


def refund_notification_plain(tx: dict[str, Any], refund: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "mchid": tx["mchid"],
        "out_trade_no": tx["out_trade_no"],
        "transaction_id": tx["transaction_id"],
        "out_refund_no": refund["out_refund_no"],
        "refund_id": refund["refund_id"],
        "refund_status": refund["status"],
        "user_received_account": "支付用户零钱",
        "amount": {
            "total": tx["total"],
            "refund": refund["refund"],
            "payer_total": tx["total"],
            "payer_refund": refund["refund"],
        },
    }
    if refund.get("success_time"):
        out["success_time"] = refund["success_time"]
    return out


# -- notifications --------------------------------------------------------------------------------

_tasks: set[asyncio.Task[Any]] = set()
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)
FORGERIES = ("signature", "signtest", "serial", "stale", "key")


def spawn(coro: Any) -> asyncio.Task[Any]:
    task = asyncio.get_running_loop().create_task(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task


def _client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = httpx.AsyncClient(timeout=5.0)
    return client


class Notification:
    """One notification event (its id stays the same across retries and re-deliveries)."""

    def __init__(
        self,
        cfg: PayConfig,
        redis: aioredis.Redis,
        *,
        out_trade_no: str,
        event_id: str,
        event_type: str,
        summary: str,
        original_type: str,
        plaintext: dict[str, Any],
        notify_url: str,
        forge: str | None = None,
        label: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.label = forge or label  # what was forged or tampered with, for the record
        self.redis = redis
        self.out_trade_no = out_trade_no
        self.event_id = event_id
        self.event_type = event_type
        self.summary = summary
        self.original_type = original_type
        self.plaintext = plaintext
        self.notify_url = notify_url
        self.forge = forge

    def build(self) -> tuple[str, dict[str, str]]:
        """Body and headers of one delivery: freshly encrypted and signed."""
        key = self.cfg.apiv3_key
        if self.forge == "key":
            key = secrets.token_hex(16)  # a valid signature over something we cannot decrypt
        body = orjson.dumps(
            {
                "id": self.event_id,
                "create_time": now_rfc3339(),
                "resource_type": "encrypt-resource",
                "event_type": self.event_type,
                "summary": self.summary,
                "resource": encrypt_resource(
                    key, self.plaintext, self.original_type, self.original_type
                ),
            }
        ).decode()
        ts = int(time.time()) - (3600 if self.forge == "stale" else 0)
        headers = signed_headers(self.cfg, body, timestamp=ts)
        if self.forge == "signature":
            sig = bytearray(base64.b64decode(headers["Wechatpay-Signature"]))
            sig[10] ^= 0xFF
            headers["Wechatpay-Signature"] = base64.b64encode(bytes(sig)).decode()
        elif self.forge == "signtest":
            headers["Wechatpay-Signature"] = (
                "WECHATPAY/SIGNTEST/" + base64.b64encode(os.urandom(64)).decode()
            )
        elif self.forge == "serial":
            headers["Wechatpay-Serial"] = "PUB_KEY_ID_" + "0" * 32
        headers["Content-Type"] = "application/json"
        return body, headers

    async def attempt(self, kind: str) -> int | None:
        body, headers = self.build()
        record: dict[str, Any] = {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "kind": kind,
            "forged": self.label,
            "amount": (self.plaintext.get("amount") or {}).get("total"),
            "at": now_rfc3339(),
            "status": None,
        }
        started = time.monotonic()
        try:
            resp = await _client().post(self.notify_url, content=body, headers=headers)
            record["status"] = resp.status_code
            record["answer"] = resp.text[:300]
        except httpx.HTTPError as exc:
            record["error"] = type(exc).__name__
        record["ms"] = round((time.monotonic() - started) * 1000, 1)
        key = k_deliveries(self.out_trade_no)
        await self.redis.rpush(key, orjson.dumps(record))
        await self.redis.expire(key, TTL)
        return record["status"]

    async def retry_after_failure(self) -> None:
        """WeChat's schedule of retries, until an answer is 2xx or the schedule runs out."""
        scale = float((await get_config(self.redis))["notify_retry_scale"])
        for n, delay in enumerate(RETRY_SCHEDULE, start=1):
            await asyncio.sleep(delay * scale)
            status = await self.attempt(f"retry-{n}")
            if status is not None and 200 <= status < 300:
                return

    async def deliver(self, kind: str = "initial", *, retry: bool = True) -> int | None:
        """One delivery now; on a failure the retries continue in the background."""
        status = await self.attempt(kind)
        if retry and not (status is not None and 200 <= status < 300):
            spawn(self.retry_after_failure())
        return status


def payment_notification(
    cfg: PayConfig,
    redis: aioredis.Redis,
    tx: dict[str, Any],
    *,
    forge: str | None = None,
    amount: int | None = None,
) -> Notification:
    return Notification(
        cfg,
        redis,
        out_trade_no=tx["out_trade_no"],
        event_id=tx["notify_id"],
        event_type="TRANSACTION.SUCCESS",
        summary="支付成功",
        original_type="transaction",
        plaintext=tx_view(tx, amount_override=amount),
        notify_url=tx["notify_url"],
        forge=forge,
        label="amount" if amount is not None else None,
    )


def refund_notification(
    cfg: PayConfig,
    redis: aioredis.Redis,
    tx: dict[str, Any],
    refund: dict[str, Any],
    *,
    forge: str | None = None,
) -> Notification:
    status = refund["status"]
    return Notification(
        cfg,
        redis,
        out_trade_no=tx["out_trade_no"],
        event_id=refund["notify_id"],
        event_type=f"REFUND.{status}",
        summary={"SUCCESS": "退款成功", "ABNORMAL": "退款异常", "CLOSED": "退款关闭"}.get(
            status, status
        ),
        original_type="refund",
        plaintext=refund_notification_plain(tx, refund),
        notify_url=refund["notify_url"],
        forge=forge,
    )


async def finish_refund(
    cfg: PayConfig, redis: aioredis.Redis, out_trade_no: str, out_refund_no: str, status: str
) -> dict[str, Any]:
    """PROCESSING -> status (SUCCESS / ABNORMAL / CLOSED), then the REFUND.* notification."""

    def fn(tx: dict[str, Any] | None) -> tuple[dict[str, Any] | None, Any]:
        if tx is None or out_refund_no not in tx.get("refunds", {}):
            raise WxError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        refund = tx["refunds"][out_refund_no]
        if refund["status"] != "PROCESSING":
            return None, (tx, refund, False)
        refund["status"] = status
        if status == "SUCCESS":
            refund["success_time"] = now_rfc3339()
            tx["state"] = "REFUND"
        return tx, (tx, refund, True)

    tx, refund, changed = await update(redis, k_tx(out_trade_no), fn)
    if changed and refund.get("notify_url"):
        await refund_notification(cfg, redis, tx, refund).deliver()
    return refund


async def auto_finish_refund(
    cfg: PayConfig, redis: aioredis.Redis, out_trade_no: str, out_refund_no: str
) -> None:
    conf = await get_config(redis)
    if not conf["refund_auto"]:
        return
    await asyncio.sleep(int(conf["refund_delay_ms"]) / 1000)
    try:
        await finish_refund(cfg, redis, out_trade_no, out_refund_no, "SUCCESS")
    except Exception:
        log.exception("sandbox refund %s did not finish", out_refund_no)


def expired(tx: dict[str, Any]) -> bool:
    te = tx.get("time_expire")
    if not te:
        return False
    try:
        return parse_rfc3339(te) < datetime.now(SHANGHAI)
    except ValueError:
        return False
