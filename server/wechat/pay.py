"""WeChat Pay v3: the one adapter in front of wechatpayv3's async client (public-key mode).

Everything that talks to WeChat Pay goes through `WeChatPay` (get one with
`get_wechatpay(settings)`): it signs requests, lets the library verify the signature of
every 2xx answer, turns error answers into typed `PayError`s, and verifies + decrypts
payment and refund notifications. The gateway (WeChat Pay, or the sandbox) is set in
exactly one place, `WeChatPay.__init__`, because the library has no base-URL option.

Callers (orders / payments) check what only they know: the notification's appid, mchid
and amount against the order, and applying an event at most once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar

import httpx
from wechatpayv3.async_ import AsyncWeChatPay
from wechatpayv3.async_.type import WeChatPayType
from wechatpayv3.utils import load_public_key, rsa_verify

from server.infra.clock import SHANGHAI
from server.infra.errors import AppError
from server.settings import Settings
from server.wechat.pay_keys import PayConfig, PayNotConfigured, pay_config

__all__ = [
    "PayBadResponse",
    "PayConfig",
    "PayError",
    "PayNotConfigured",
    "PayNotFound",
    "PayNotificationRejected",
    "PayOrderClosed",
    "PayOrderPaid",
    "PayOutTradeNoUsed",
    "PayRejected",
    "PaySignError",
    "PayUnavailable",
    "WeChatPay",
    "get_wechatpay",
    "pay_config",
]

log = logging.getLogger("haodian.wechatpay")

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
SIGNTEST_PREFIX = "WECHATPAY/SIGNTEST/"
NOTIFY_MAX_SKEW = 300  # seconds a notification's timestamp may differ from our clock
OUT_TRADE_NO = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")


# -- errors ---------------------------------------------------------------------------------------


class PayError(AppError):
    """WeChat Pay failed in a way with no more specific class. `wechat_code` is WeChat's own
    code (PARAM_ERROR, ...), `http_status` WeChat's status, `retryable` whether trying again
    later can succeed."""

    status = 502
    code = "WECHATPAY_ERROR"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        wechat_code: str | None = None,
        http_status: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.wechat_code = wechat_code
        self.http_status = http_status


class PayUnavailable(PayError):
    """WeChat Pay is down, busy or rate-limiting (SYSTEM_ERROR, 5xx, timeouts): retry later."""

    status = 503
    code = "WECHATPAY_UNAVAILABLE"
    retryable = True


class PayBadResponse(PayError):
    """A 2xx answer without a valid WeChat Pay signature, or one we cannot read."""

    status = 502
    code = "WECHATPAY_BAD_RESPONSE"
    retryable = True


class PaySignError(PayError):
    """WeChat Pay refused our signature (401 SIGN_ERROR): our merchant key or serial is wrong."""

    status = 502
    code = "WECHATPAY_SIGN_ERROR"


class PayRejected(PayError):
    """WeChat Pay rejected the request's content (PARAM_ERROR, INVALID_REQUEST, NO_AUTH...)."""

    status = 422
    code = "WECHATPAY_REJECTED"


class PayOutTradeNoUsed(PayError):
    """The out_trade_no was already used with other parameters (403 OUT_TRADE_NO_USED)."""

    status = 409
    code = "WECHATPAY_OUT_TRADE_NO_USED"


class PayOrderPaid(PayError):
    """The transaction is already paid (ORDERPAID): it cannot be created again or closed."""

    status = 409
    code = "WECHATPAY_ORDER_PAID"


class PayOrderClosed(PayError):
    """The transaction is closed (ORDER_CLOSED)."""

    status = 409
    code = "WECHATPAY_ORDER_CLOSED"


class PayNotFound(PayError):
    """No such transaction or refund (ORDERNOTEXIST / RESOURCE_NOT_EXISTS)."""

    status = 404
    code = "WECHATPAY_NOT_FOUND"


class PayNotificationRejected(AppError):
    """A notification that must not be acted on: `reason` is one of signature, probe, serial,
    stale, malformed, decrypt."""

    status = 401
    code = "WECHATPAY_NOTIFY_REJECTED"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


_BY_WECHAT_CODE: dict[str, type[PayError]] = {
    "OUT_TRADE_NO_USED": PayOutTradeNoUsed,
    "ORDERPAID": PayOrderPaid,
    "ORDER_CLOSED": PayOrderClosed,
    "ORDERNOTEXIST": PayNotFound,
    "RESOURCE_NOT_EXISTS": PayNotFound,
    "SIGN_ERROR": PaySignError,
    "SYSTEM_ERROR": PayUnavailable,
    "SYSTEMERROR": PayUnavailable,
    "BANKERROR": PayUnavailable,
    "FREQUENCY_LIMITED": PayUnavailable,
    "RATELIMIT_EXCEEDED": PayUnavailable,
    "NOT_ENOUGH": PayUnavailable,  # refund: merchant balance too low for now
}


def _gateway_error(what: str, status: int, body: Any) -> PayError:
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
    wechat_code, message = None, ""
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            wechat_code, message = data.get("code"), str(data.get("message") or "")
    except ValueError:
        pass
    cls = _BY_WECHAT_CODE.get(wechat_code or "")
    if cls is None:
        if status >= 500 or status == 429:
            cls = PayUnavailable
        elif status == 401:
            cls = PaySignError
        else:
            cls = PayRejected
    log.warning("wechatpay %s failed", what, extra={"status": status, "wechat_code": wechat_code})
    return cls(
        f"WeChat Pay {what} failed: {wechat_code or status} {message}".strip(),
        wechat_code=wechat_code,
        http_status=status,
        details={"wechat_code": wechat_code, "wechat_status": status},
    )


def _rfc3339(value: datetime | str) -> str:
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("time_expire must be timezone-aware")
    return value.astimezone(SHANGHAI).isoformat(timespec="seconds")


# -- the adapter ----------------------------------------------------------------------------------


class WeChatPay:
    """One merchant's WeChat Pay v3 API. Safe to share within one event loop."""

    def __init__(self, config: PayConfig, *, timeout: tuple[float, float] = (5.0, 15.0)) -> None:
        self.config = config
        self.mchid = config.mchid
        self._client = AsyncWeChatPay(
            wechatpay_type=WeChatPayType.MINIPROG,
            mchid=config.mchid,
            private_key=config.merchant_private_key,
            cert_serial_no=config.cert_serial_no,
            appid=None,  # always passed per call: one merchant serves several mini-programs
            apiv3_key=config.apiv3_key,
            public_key=config.public_key,
            public_key_id=config.public_key_id,
            timeout=timeout,
        )
        # The one place the gateway is chosen (the library has no base-URL option).
        self._client._core._gate_way = config.gateway
        self._verify_key = load_public_key(config.public_key)
        self._opened = False
        self._open_lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> WeChatPay:
        return cls(pay_config(settings))

    async def aclose(self) -> None:
        if self._opened:
            self._opened = False
            await self._client.__aexit__(None, None, None)

    async def _call(
        self, what: str, fn: Callable[..., Awaitable[tuple[int, Any]]], **kwargs: Any
    ) -> tuple[int, Any]:
        if not self._opened:
            async with self._open_lock:
                if not self._opened:
                    await self._client.__aenter__()
                    self._opened = True
        try:
            status, body = await fn(**kwargs)
        except httpx.HTTPError as exc:
            log.warning("wechatpay %s: %s", what, type(exc).__name__)
            raise PayUnavailable(
                f"WeChat Pay {what}: cannot reach the gateway ({type(exc).__name__})"
            ) from None
        except Exception as exc:  # wechatpayv3 raises bare Exception on bad answer signatures
            log.warning("wechatpay %s: answer rejected: %s", what, exc)
            raise PayBadResponse(f"WeChat Pay {what}: answer not accepted ({exc})") from None
        if not 200 <= status < 300:
            raise _gateway_error(what, status, body)
        return status, body

    @staticmethod
    def _json(what: str, body: Any) -> dict[str, Any]:
        try:
            data = json.loads(body)
        except (TypeError, ValueError):
            raise PayBadResponse(f"WeChat Pay {what}: answer is not JSON") from None
        if not isinstance(data, dict):
            raise PayBadResponse(f"WeChat Pay {what}: answer is not a JSON object")
        return data

    # -- transactions -----------------------------------------------------------------------------

    async def create_jsapi(
        self,
        *,
        out_trade_no: str,
        description: str,
        total_fen: int,
        openid: str,
        appid: str,
        notify_url: str,
        time_expire: datetime | str,
        attach: str | None = None,
    ) -> str:
        """JSAPI / mini-program order; returns the prepay_id. Creating again with the same
        parameters is safe (same prepay_id); other parameters raise PayOutTradeNoUsed."""
        if not OUT_TRADE_NO.match(out_trade_no):
            raise ValueError("out_trade_no must be 6-32 of [0-9A-Za-z_-|*]")
        if not isinstance(total_fen, int) or total_fen < 1:
            raise ValueError("total_fen must be a positive int")
        _, body = await self._call(
            "create",
            self._client.pay,
            description=description[:127],
            out_trade_no=out_trade_no,
            amount={"total": total_fen, "currency": "CNY"},
            payer={"openid": openid},
            time_expire=_rfc3339(time_expire),
            attach=attach,
            notify_url=notify_url,
            appid=appid,
            pay_type=WeChatPayType.MINIPROG,
        )
        prepay_id = self._json("create", body).get("prepay_id")
        if not prepay_id:
            raise PayBadResponse("WeChat Pay create: no prepay_id in the answer")
        return str(prepay_id)

    def request_payment_params(self, appid: str, prepay_id: str) -> dict[str, str]:
        """The parameters of `wx.requestPayment`, signed with the merchant key."""
        timestamp = str(int(time.time()))
        nonce = uuid.uuid4().hex.upper()
        package = f"prepay_id={prepay_id}"
        pay_sign = self._client.sign([appid, timestamp, nonce, package])
        return {
            "timeStamp": timestamp,
            "nonceStr": nonce,
            "package": package,
            "signType": "RSA",
            "paySign": pay_sign,
        }

    async def query(self, out_trade_no: str) -> dict[str, Any]:
        """The transaction as WeChat Pay sees it (`trade_state`: SUCCESS, REFUND, NOTPAY,
        CLOSED, REVOKED, USERPAYING, PAYERROR). PayNotFound when WeChat has none."""
        _, body = await self._call("query", self._client.query, out_trade_no=out_trade_no)
        return self._json("query", body)

    async def close(self, out_trade_no: str) -> None:
        """Close an unpaid transaction (idempotent). PayOrderPaid when it was paid meanwhile;
        PayNotFound when WeChat never saw it."""
        await self._call("close", self._client.close, out_trade_no=out_trade_no)

    async def refund(
        self,
        *,
        out_trade_no: str,
        out_refund_no: str,
        refund_fen: int,
        total_fen: int,
        reason: str | None = None,
        notify_url: str | None = None,
    ) -> dict[str, Any]:
        """Ask for a refund; the same out_refund_no again returns the same refund. The answer's
        `status` is PROCESSING (usual), SUCCESS, CLOSED or ABNORMAL; the final state arrives as a
        REFUND.* notification or through `query_refund`."""
        if not isinstance(refund_fen, int) or refund_fen < 1 or refund_fen > total_fen:
            raise ValueError("refund_fen must be a positive int not above total_fen")
        _, body = await self._call(
            "refund",
            self._client.refund,
            out_refund_no=out_refund_no,
            amount={"refund": refund_fen, "total": total_fen, "currency": "CNY"},
            out_trade_no=out_trade_no,
            reason=reason[:80] if reason else None,
            notify_url=notify_url,
        )
        return self._json("refund", body)

    async def query_refund(self, out_refund_no: str) -> dict[str, Any]:
        _, body = await self._call(
            "refund query", self._client.query_refund, out_refund_no=out_refund_no
        )
        return self._json("refund query", body)

    # -- notifications ----------------------------------------------------------------------------

    def parse_notification(
        self, headers: Mapping[str, str], body: bytes | str, *, now: float | None = None
    ) -> dict[str, Any]:
        """Verify and decrypt a payment / refund notification.

        Returns `{"id", "create_time", "event_type", "resource_type", "summary",
        "resource": {...decrypted transaction or refund...}}`. Raises
        PayNotificationRejected (nothing may be applied) when the signature type, serial,
        signature or timestamp is wrong, for WeChat's `WECHATPAY/SIGNTEST/` probes, and when the
        resource does not decrypt with our APIv3 key."""
        h = {k.lower(): v for k, v in headers.items()}
        text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
        signature = h.get("wechatpay-signature", "")
        timestamp = h.get("wechatpay-timestamp", "")
        nonce = h.get("wechatpay-nonce", "")
        serial = h.get("wechatpay-serial", "")
        sig_type = h.get("wechatpay-signature-type", SIGNATURE_TYPE)
        if not (signature and timestamp and nonce and serial):
            raise PayNotificationRejected("signature headers missing", reason="signature")
        if signature.startswith(SIGNTEST_PREFIX):
            raise PayNotificationRejected("signature probe", reason="probe")
        if sig_type != SIGNATURE_TYPE:
            raise PayNotificationRejected("unsupported signature type", reason="signature")
        if serial != self.config.public_key_id:
            raise PayNotificationRejected("unknown WeChat Pay key serial", reason="serial")
        try:
            skew = abs((now if now is not None else time.time()) - int(timestamp))
        except ValueError:
            raise PayNotificationRejected("bad timestamp", reason="stale") from None
        if skew > NOTIFY_MAX_SKEW:
            raise PayNotificationRejected("notification timestamp too old", reason="stale")
        if not rsa_verify(timestamp, nonce, text, signature, self._verify_key):
            raise PayNotificationRejected("signature does not verify", reason="signature")
        canonical = {
            "Wechatpay-Signature": signature,
            "Wechatpay-Timestamp": timestamp,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Serial": serial,
            "Wechatpay-Signature-Type": sig_type,
        }
        try:
            event = self._client.callback(canonical, text)
        except Exception:  # bad JSON, unsupported algorithm
            raise PayNotificationRejected("malformed notification", reason="malformed") from None
        if not event or not isinstance(event.get("resource"), dict):
            raise PayNotificationRejected(
                "notification resource does not decrypt", reason="decrypt"
            )
        return event


# -- one adapter per event loop -------------------------------------------------------------------

_instances: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[PayConfig, WeChatPay]] = (
    weakref.WeakKeyDictionary()
)


def get_wechatpay(settings: Settings) -> WeChatPay:
    """The shared adapter for `settings` in the running event loop (a new one outside a loop).
    Raises PayNotConfigured (503) when WeChat Pay is not set up and there is no sandbox."""
    config = pay_config(settings)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return WeChatPay(config)
    per_loop = _instances.setdefault(loop, {})
    pay = per_loop.get(config)
    if pay is None:
        pay = per_loop[config] = WeChatPay(config)
    return pay
