"""The WeChat Pay v3 sandbox, mounted under /_sandbox/wechat/pay.

Gateway (what `api.mch.weixin.qq.com` does; our adapter's gateway points here):

    POST /v3/pay/transactions/jsapi                       -> {prepay_id}
    GET  /v3/pay/transactions/out-trade-no/{no}?mchid=    -> transaction
    GET  /v3/pay/transactions/id/{transaction_id}?mchid=  -> transaction
    POST /v3/pay/transactions/out-trade-no/{no}/close     -> 204
    POST /v3/refund/domestic/refunds                      -> refund (PROCESSING)
    GET  /v3/refund/domestic/refunds/{out_refund_no}      -> refund

Every request must carry a valid `WECHATPAY2-SHA256-RSA2048` Authorization made with the
merchant key (else 401 SIGN_ERROR); every 2xx answer (204 too) is signed with the WeChat
Pay platform key and carries a PUB_KEY_ID_ serial. Errors are WeChat's `{code, message}`.

Phone side and test controls (answers in our own envelope):

    POST /{no}/complete[?wait=1]        the user pays: SUCCESS, then TRANSACTION.SUCCESS
    POST /request-payment[?wait=1]      the same, from wx.requestPayment's params (paySign checked)
    POST /{no}/notify?times=N[&concurrent=1][&forge=signature|signtest|serial|stale|key]
                      [&amount=FEN][&retry=0|1]   deliver the notification again / forged
    GET  /{no}/deliveries                every delivery attempt and the answer it got
    GET  /{no}/state                     the sandbox's record of the transaction
    POST /refunds/{out_refund_no}/complete?status=SUCCESS|ABNORMAL|CLOSED
    POST /refunds/{out_refund_no}/notify?times=N
    GET|POST /config                     {notify_retry_scale, refund_auto, refund_delay_ms}
    POST|DELETE /fail-next               {status, code, message, count, bad_signature}
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import orjson
import redis.asyncio as aioredis
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from server.app import on_startup
from server.infra.errors import BadRequest, Conflict, NotFound
from server.infra.http import respond
from server.wechat.pay_keys import PayConfig, pay_config
from server.wechat.sandbox import pay_state as st
from server.wechat.sandbox.pay_state import WxError
from server.wechat.sandbox.state import redis_of

PREFIX = "/_sandbox/wechat/pay"
bp = Blueprint("wechat_pay_sandbox", url_prefix=PREFIX)


@on_startup
async def _warm_keys(app: Any) -> None:
    """Make (or read) the sandbox's keys before the first request instead of during it."""
    await asyncio.to_thread(pay_config, app.ctx.settings)


OUT_TRADE_NO = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")
OUT_REFUND_NO = re.compile(r"^[0-9A-Za-z_\-|*@]{1,64}$")
AUTH_FIELDS = re.compile(r'(\w+)="([^"]*)"')
MAX_SKEW = 300


def _cfg(request: Request) -> PayConfig:
    return pay_config(request.app.ctx.settings)


# -- gateway plumbing -----------------------------------------------------------------------------


def _wx_error(exc: WxError) -> HTTPResponse:
    body = orjson.dumps({"code": exc.code, "message": exc.message})
    return HTTPResponse(
        body,
        status=exc.status,
        headers={"Request-ID": uuid.uuid4().hex},
        content_type="application/json",
    )


async def _authenticate(request: Request, cfg: PayConfig, redis: aioredis.Redis) -> str:
    """Check the merchant's RSA Authorization; return the merchant id."""
    scheme, _, rest = (request.headers.get("authorization") or "").partition(" ")
    if scheme != "WECHATPAY2-SHA256-RSA2048":
        raise WxError(401, "SIGN_ERROR", "Authorization 缺失或认证类型不正确")
    fields = dict(AUTH_FIELDS.findall(rest))
    mchid = fields.get("mchid", "")
    nonce = fields.get("nonce_str", "")
    signature = fields.get("signature", "")
    timestamp = fields.get("timestamp", "")
    if mchid != cfg.mchid:
        raise WxError(401, "SIGN_ERROR", "商户号不存在或与签名不匹配")
    if fields.get("serial_no", "").upper() != cfg.cert_serial_no.upper():
        raise WxError(401, "SIGN_ERROR", "商户证书序列号有误")
    if not (nonce and signature and timestamp.isdigit()):
        raise WxError(401, "SIGN_ERROR", "Authorization 参数不完整")
    if abs(time.time() - int(timestamp)) > MAX_SKEW:
        raise WxError(401, "SIGN_ERROR", "请求时间戳已过期")
    body = (request.body or b"").decode("utf-8", errors="replace")
    query = f"?{request.query_string}" if request.query_string else ""
    raw_path = request.path[len(PREFIX) :]
    ok = False
    for path in dict.fromkeys((raw_path, unquote(raw_path))):
        message = f"{request.method}\n{path}{query}\n{timestamp}\n{nonce}\n{body}\n"
        if st.verify_merchant_signature(cfg, message, signature):
            ok = True
            break
    if not ok:
        raise WxError(401, "SIGN_ERROR", "签名错误")
    if not await redis.set(f"{st.PREFIX}nonce:{mchid}:{nonce}", "1", nx=True, ex=2 * MAX_SKEW):
        raise WxError(401, "SIGN_ERROR", "重复的请求随机串")
    return mchid


Handler = Callable[..., Awaitable[tuple[int, Any]]]


def gateway(handler: Handler) -> Callable[..., Awaitable[HTTPResponse]]:
    """Authenticate, run, answer: 2xx signed with the platform key, errors as {code, message}."""

    @functools.wraps(handler)
    async def wrapped(request: Request, **kwargs: Any) -> HTTPResponse:
        cfg, redis = _cfg(request), redis_of(request)
        bad_signature = False
        try:
            mchid = await _authenticate(request, cfg, redis)
            injected = await redis.lpop(st.K_FAIL)
            if injected:
                fail = orjson.loads(injected)
                if fail.get("bad_signature"):
                    bad_signature = True
                else:
                    raise WxError(
                        int(fail.get("status") or 500),
                        str(fail.get("code") or "SYSTEM_ERROR"),
                        str(fail.get("message") or "系统错误"),
                    )
            status, data = await handler(request, cfg, redis, mchid, **kwargs)
        except WxError as exc:
            return _wx_error(exc)
        body = "" if status == 204 else orjson.dumps(data).decode()
        headers = st.signed_headers(cfg, body)
        if bad_signature:
            headers = {**headers, "Wechatpay-Signature": st.sign_message(cfg, "something else")}
        if status == 204:
            return HTTPResponse(status=204, headers=headers)
        return HTTPResponse(body, status=status, headers=headers, content_type="application/json")

    return wrapped


def _json_body(request: Request) -> dict[str, Any]:
    try:
        data = orjson.loads(request.body or b"")
    except orjson.JSONDecodeError:
        raise WxError(400, "PARAM_ERROR", "请求体不是合法的JSON") from None
    if not isinstance(data, dict):
        raise WxError(400, "PARAM_ERROR", "请求体必须是JSON对象")
    return data


def _tx_of(tx: dict[str, Any] | None, mchid: str) -> dict[str, Any]:
    if tx is None or tx["mchid"] != mchid:
        raise WxError(404, "ORDERNOTEXIST", "订单不存在")
    return tx


# -- gateway routes -------------------------------------------------------------------------------


@bp.post("/v3/pay/transactions/jsapi")
@gateway
async def create_jsapi(
    request: Request, cfg: PayConfig, redis: aioredis.Redis, mchid: str
) -> tuple[int, Any]:
    data = _json_body(request)
    amount = data.get("amount") if isinstance(data.get("amount"), dict) else {}
    payer = data.get("payer") if isinstance(data.get("payer"), dict) else {}
    out_trade_no = str(data.get("out_trade_no") or "")
    total = amount.get("total")
    if data.get("mchid") != mchid:
        raise WxError(400, "PARAM_ERROR", "mchid与请求签名的商户号不一致")
    apps = [a.appid for a in request.app.ctx.settings.apps]
    if not data.get("appid") or (apps and data["appid"] not in apps):
        raise WxError(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
    if not OUT_TRADE_NO.match(out_trade_no):
        raise WxError(400, "PARAM_ERROR", "out_trade_no 格式不正确")
    description = data.get("description")
    if not isinstance(description, str) or not 1 <= len(description) <= 127:
        raise WxError(400, "PARAM_ERROR", "description 长度不正确")
    if not isinstance(total, int) or isinstance(total, bool) or total < 1:
        raise WxError(400, "PARAM_ERROR", "amount.total 必须是正整数(分)")
    if amount.get("currency", "CNY") != "CNY":
        raise WxError(400, "PARAM_ERROR", "currency 只支持 CNY")
    if not payer.get("openid"):
        raise WxError(400, "PARAM_ERROR", "JSAPI 下单 payer.openid 必填")
    notify_url = str(data.get("notify_url") or "")
    if not notify_url.startswith(("http://", "https://")) or len(notify_url) > 255:
        raise WxError(400, "PARAM_ERROR", "notify_url 格式不正确")
    time_expire = data.get("time_expire")
    if time_expire is not None:
        try:
            parsed = st.parse_rfc3339(str(time_expire))
        except ValueError:
            raise WxError(400, "PARAM_ERROR", "time_expire 格式不正确") from None
        if parsed.tzinfo is None:
            raise WxError(400, "PARAM_ERROR", "time_expire 需要带时区")
    attach = data.get("attach")
    if attach is not None and (not isinstance(attach, str) or len(attach) > 128):
        raise WxError(400, "PARAM_ERROR", "attach 过长")
    params = {
        "appid": data["appid"],
        "mchid": mchid,
        "description": description,
        "total": total,
        "openid": payer["openid"],
        "attach": attach,
    }

    def fn(tx: dict[str, Any] | None) -> tuple[dict[str, Any] | None, Any]:
        if tx is None:
            tx = {
                "out_trade_no": out_trade_no,
                **params,
                "params": params,
                "state": "NOTPAY",
                "prepay_id": st.new_prepay_id(),
                "notify_url": notify_url,
                "time_expire": time_expire,
                "created_at": st.now_rfc3339(),
                "refunds": {},
            }
            return tx, tx["prepay_id"]
        if tx["params"] != params:
            raise WxError(403, "OUT_TRADE_NO_USED", "商户订单号重复")
        if tx["state"] in ("SUCCESS", "REFUND"):
            raise WxError(400, "ORDERPAID", "该订单已支付")
        if tx["state"] == "CLOSED":
            raise WxError(400, "ORDER_CLOSED", "订单已关闭")
        tx["notify_url"] = notify_url
        tx["time_expire"] = time_expire
        return tx, tx["prepay_id"]

    prepay_id = await st.update(redis, st.k_tx(out_trade_no), fn)
    await redis.set(st.k_prepay(prepay_id), out_trade_no, ex=st.TTL)
    return 200, {"prepay_id": prepay_id}


def _check_mchid_query(request: Request, mchid: str) -> None:
    if request.args.get("mchid") != mchid:
        raise WxError(400, "PARAM_ERROR", "mchid 参数缺失或与签名不一致")


@bp.get("/v3/pay/transactions/out-trade-no/<out_trade_no>")
@gateway
async def query_by_out_trade_no(
    request: Request, cfg: PayConfig, redis: aioredis.Redis, mchid: str, out_trade_no: str
) -> tuple[int, Any]:
    _check_mchid_query(request, mchid)
    tx = _tx_of(await st.load_tx(redis, unquote(out_trade_no)), mchid)
    return 200, st.tx_view(tx)


@bp.get("/v3/pay/transactions/id/<transaction_id>")
@gateway
async def query_by_transaction_id(
    request: Request, cfg: PayConfig, redis: aioredis.Redis, mchid: str, transaction_id: str
) -> tuple[int, Any]:
    _check_mchid_query(request, mchid)
    out_trade_no = await redis.get(st.k_txid(transaction_id))
    tx = _tx_of(await st.load_tx(redis, out_trade_no) if out_trade_no else None, mchid)
    return 200, st.tx_view(tx)


@bp.post("/v3/pay/transactions/out-trade-no/<out_trade_no>/close")
@gateway
async def close(
    request: Request, cfg: PayConfig, redis: aioredis.Redis, mchid: str, out_trade_no: str
) -> tuple[int, Any]:
    if _json_body(request).get("mchid") != mchid:
        raise WxError(400, "PARAM_ERROR", "mchid 与签名不一致")

    def fn(tx: dict[str, Any] | None) -> tuple[dict[str, Any] | None, Any]:
        tx = _tx_of(tx, mchid)
        if tx["state"] in ("SUCCESS", "REFUND"):
            raise WxError(400, "ORDERPAID", "订单已支付，不能关闭")
        if tx["state"] == "CLOSED":
            return None, None
        tx["state"] = "CLOSED"
        tx["closed_at"] = st.now_rfc3339()
        return tx, None

    await st.update(redis, st.k_tx(unquote(out_trade_no)), fn)
    return 204, None


@bp.post("/v3/refund/domestic/refunds")
@gateway
async def create_refund(
    request: Request, cfg: PayConfig, redis: aioredis.Redis, mchid: str
) -> tuple[int, Any]:
    data = _json_body(request)
    out_refund_no = str(data.get("out_refund_no") or "")
    if not OUT_REFUND_NO.match(out_refund_no):
        raise WxError(400, "PARAM_ERROR", "out_refund_no 格式不正确")
    amount = data.get("amount") if isinstance(data.get("amount"), dict) else {}
    refund_fen, total_fen = amount.get("refund"), amount.get("total")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (refund_fen, total_fen)):
        raise WxError(400, "PARAM_ERROR", "amount.refund / amount.total 必须是整数(分)")
    if refund_fen < 1:
        raise WxError(400, "PARAM_ERROR", "退款金额必须大于0")
    if amount.get("currency", "CNY") != "CNY":
        raise WxError(400, "PARAM_ERROR", "currency 只支持 CNY")
    out_trade_no = data.get("out_trade_no")
    if not out_trade_no and data.get("transaction_id"):
        out_trade_no = await redis.get(st.k_txid(str(data["transaction_id"])))
    if not out_trade_no:
        raise WxError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
    notify_url = data.get("notify_url")
    if notify_url is not None and not str(notify_url).startswith(("http://", "https://")):
        raise WxError(400, "PARAM_ERROR", "notify_url 格式不正确")
    owner = await redis.get(st.k_refund_index(out_refund_no))
    if owner and owner != out_trade_no:
        raise WxError(400, "INVALID_REQUEST", "商户退款单号已被其他订单使用")

    def fn(tx: dict[str, Any] | None) -> tuple[dict[str, Any] | None, Any]:
        if tx is None or tx["mchid"] != mchid:
            raise WxError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        existing = tx["refunds"].get(out_refund_no)
        if existing:
            return None, (tx, existing, False)
        if tx["state"] not in ("SUCCESS", "REFUND"):
            raise WxError(400, "INVALID_REQUEST", "订单未支付，不能退款")
        if total_fen != tx["total"]:
            raise WxError(400, "PARAM_ERROR", "订单金额与原订单不一致")
        taken = sum(
            r["refund"] for r in tx["refunds"].values() if r["status"] in ("PROCESSING", "SUCCESS")
        )
        if taken + refund_fen > tx["total"]:
            raise WxError(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        refund = {
            "out_refund_no": out_refund_no,
            "refund_id": st.new_refund_id(),
            "notify_id": str(uuid.uuid4()),
            "refund": refund_fen,
            "status": "PROCESSING",
            "reason": data.get("reason"),
            "notify_url": notify_url,
            "create_time": st.now_rfc3339(),
        }
        tx["refunds"][out_refund_no] = refund
        return tx, (tx, refund, True)

    tx, refund, created = await st.update(redis, st.k_tx(str(out_trade_no)), fn)
    if created:
        await redis.set(st.k_refund_index(out_refund_no), tx["out_trade_no"], ex=st.TTL)
        st.spawn(st.auto_finish_refund(cfg, redis, tx["out_trade_no"], out_refund_no))
    return 200, st.refund_view(tx, refund)


async def _load_refund(
    redis: aioredis.Redis, out_refund_no: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    out_trade_no = await redis.get(st.k_refund_index(out_refund_no))
    tx = await st.load_tx(redis, out_trade_no) if out_trade_no else None
    if tx is None or out_refund_no not in tx["refunds"]:
        raise WxError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
    return tx, tx["refunds"][out_refund_no]


@bp.get("/v3/refund/domestic/refunds/<out_refund_no>")
@gateway
async def query_refund(
    request: Request, cfg: PayConfig, redis: aioredis.Redis, mchid: str, out_refund_no: str
) -> tuple[int, Any]:
    tx, refund = await _load_refund(redis, unquote(out_refund_no))
    _tx_of(tx, mchid)
    return 200, st.refund_view(tx, refund)


# -- phone side and test controls (our own envelope) ----------------------------------------------


def _flag(request: Request, name: str, default: bool) -> bool:
    value = request.args.get(name)
    if value is None:
        return default
    return value.lower() in ("1", "true", "yes")


def _int_arg(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise BadRequest(f"{name} must be within {lo}..{hi}")
    return value


@bp.post("/<out_trade_no>/complete")
async def complete(request: Request, out_trade_no: str) -> HTTPResponse:
    """The user pays: NOTPAY -> SUCCESS, then the TRANSACTION.SUCCESS notification (in the
    background; `?wait=1` waits for the first delivery and reports its answer)."""
    return await _complete(request, out_trade_no)


@bp.post("/request-payment")
async def request_payment(request: Request) -> HTTPResponse:
    """What the WeChat app does with `wx.requestPayment(params)`: check paySign with the
    merchant's public key (appId is in the body as the mini-program knows it), find the
    transaction by its prepay_id, and pay it like `/complete`."""
    cfg, redis = _cfg(request), redis_of(request)
    try:
        p = orjson.loads(request.body or b"")
        app_id, ts, nonce, package = p["appId"], p["timeStamp"], p["nonceStr"], p["package"]
        pay_sign, sign_type = p["paySign"], p.get("signType")
    except (ValueError, TypeError, KeyError):
        raise BadRequest("body: {appId, timeStamp, nonceStr, package, signType, paySign}") from None
    if sign_type != "RSA":
        raise BadRequest("signType must be RSA", code="SANDBOX_BAD_PAYSIGN")
    message = f"{app_id}\n{ts}\n{nonce}\n{package}\n"
    if not st.verify_merchant_signature(cfg, message, str(pay_sign)):
        raise BadRequest("paySign does not verify", code="SANDBOX_BAD_PAYSIGN")
    prepay_id = str(package).removeprefix("prepay_id=")
    out_trade_no = await redis.get(st.k_prepay(prepay_id))
    tx = await st.load_tx(redis, out_trade_no) if out_trade_no else None
    if tx is None or tx["prepay_id"] != prepay_id:
        raise NotFound("no transaction has this prepay_id", code="SANDBOX_NO_TX")
    if tx["appid"] != app_id:
        raise BadRequest("the prepay_id belongs to another appid", code="SANDBOX_BAD_PAYSIGN")
    return await _complete(request, tx["out_trade_no"])


async def _complete(request: Request, out_trade_no: str) -> HTTPResponse:
    cfg, redis = _cfg(request), redis_of(request)

    def fn(tx: dict[str, Any] | None) -> tuple[dict[str, Any] | None, Any]:
        if tx is None:
            raise NotFound(f"the sandbox has no transaction {out_trade_no}", code="SANDBOX_NO_TX")
        if tx["state"] in ("SUCCESS", "REFUND"):
            raise Conflict("this transaction is already paid", code="ORDERPAID")
        if tx["state"] == "CLOSED":
            raise Conflict("this transaction is closed", code="ORDER_CLOSED")
        if st.expired(tx):
            raise Conflict("this transaction has expired", code="ORDER_EXPIRED")
        tx["state"] = "SUCCESS"
        tx["transaction_id"] = st.new_transaction_id()
        tx["success_time"] = st.now_rfc3339()
        tx["notify_id"] = str(uuid.uuid4())
        return tx, tx

    tx = await st.update(redis, st.k_tx(out_trade_no), fn)
    await redis.set(st.k_txid(tx["transaction_id"]), out_trade_no, ex=st.TTL)
    note = st.payment_notification(cfg, redis, tx)
    out: dict[str, Any] = {
        "out_trade_no": out_trade_no,
        "trade_state": tx["state"],
        "transaction_id": tx["transaction_id"],
    }
    if _flag(request, "wait", False):
        out["notify_status"] = await note.deliver()
    else:
        st.spawn(note.deliver())
    return respond(out)


@bp.post("/<out_trade_no>/notify")
async def notify(request: Request, out_trade_no: str) -> HTTPResponse:
    """Deliver the payment notification again, `times` times (at once with `concurrent=1`),
    optionally forged (`forge=`) or with a tampered amount under a valid signature (`amount=`).
    Answers the status of each first attempt; failed genuine ones are retried in the background
    (`retry=0` turns that off; forged ones are not retried unless `retry=1`)."""
    cfg, redis = _cfg(request), redis_of(request)
    times = _int_arg(request, "times", 1, 1, 100)
    forge = request.args.get("forge")
    if forge is not None and forge not in st.FORGERIES:
        raise BadRequest(f"forge must be one of {', '.join(st.FORGERIES)}")
    amount = request.args.get("amount")
    amount_fen = _int_arg(request, "amount", 0, 0, 10**12) if amount is not None else None
    retry = _flag(request, "retry", forge is None and amount_fen is None)
    tx = await st.phone_tx(redis, out_trade_no)
    if tx["state"] not in ("SUCCESS", "REFUND"):
        if forge is None and amount_fen is None:
            raise Conflict("the transaction is not paid; nothing to notify", code="NOTPAY")
        # A forgery claims a payment that never happened.
        tx = {
            **tx,
            "state": "SUCCESS",
            "transaction_id": st.new_transaction_id(),
            "success_time": st.now_rfc3339(),
            "notify_id": str(uuid.uuid4()),
        }
    else:
        tx = {**tx, "state": "SUCCESS"}  # what the payment notification said
    note = st.payment_notification(cfg, redis, tx, forge=forge, amount=amount_fen)
    kind = "redeliver" if forge is None and amount_fen is None else "forged"
    if _flag(request, "concurrent", False):
        statuses = await asyncio.gather(*(note.deliver(kind, retry=retry) for _ in range(times)))
    else:
        statuses = [await note.deliver(kind, retry=retry) for _ in range(times)]
    return respond({"out_trade_no": out_trade_no, "statuses": list(statuses)})


@bp.get("/<out_trade_no>/deliveries")
async def deliveries(request: Request, out_trade_no: str) -> HTTPResponse:
    """Every notification attempt for this transaction (payment and refunds), oldest first."""
    raw = await redis_of(request).lrange(st.k_deliveries(out_trade_no), 0, -1)
    return respond({"items": [orjson.loads(r) for r in raw]})


@bp.get("/<out_trade_no>/state")
async def state(request: Request, out_trade_no: str) -> HTTPResponse:
    tx = await st.phone_tx(redis_of(request), out_trade_no)
    tx.pop("params", None)
    return respond(tx)


@bp.post("/refunds/<out_refund_no>/complete")
async def complete_refund(request: Request, out_refund_no: str) -> HTTPResponse:
    """Finish a PROCESSING refund by hand (with `refund_auto` off): SUCCESS, ABNORMAL or
    CLOSED, then its REFUND.* notification."""
    cfg, redis = _cfg(request), redis_of(request)
    status = (request.args.get("status") or "SUCCESS").upper()
    if status not in ("SUCCESS", "ABNORMAL", "CLOSED"):
        raise BadRequest("status must be SUCCESS, ABNORMAL or CLOSED")
    try:
        tx, _ = await _load_refund(redis, out_refund_no)
        refund = await st.finish_refund(cfg, redis, tx["out_trade_no"], out_refund_no, status)
    except WxError as exc:
        raise NotFound(exc.message, code="SANDBOX_NO_REFUND") from None
    return respond({"out_refund_no": out_refund_no, "status": refund["status"]})


@bp.post("/refunds/<out_refund_no>/notify")
async def notify_refund(request: Request, out_refund_no: str) -> HTTPResponse:
    cfg, redis = _cfg(request), redis_of(request)
    times = _int_arg(request, "times", 1, 1, 100)
    try:
        tx, refund = await _load_refund(redis, out_refund_no)
    except WxError as exc:
        raise NotFound(exc.message, code="SANDBOX_NO_REFUND") from None
    if refund["status"] == "PROCESSING" or not refund.get("notify_url"):
        raise Conflict("the refund is still processing or has no notify_url", code="NOT_FINAL")
    note = st.refund_notification(cfg, redis, tx, refund)
    statuses = [await note.deliver("redeliver") for _ in range(times)]
    return respond({"out_refund_no": out_refund_no, "statuses": statuses})


@bp.get("/config")
async def get_config(request: Request) -> HTTPResponse:
    return respond(await st.get_config(redis_of(request)))


@bp.post("/config")
async def set_config(request: Request) -> HTTPResponse:
    """Change sandbox behaviour for every worker: `notify_retry_scale` (WeChat's retry delays
    are multiplied by it), `refund_auto`, `refund_delay_ms`."""
    try:
        changes = orjson.loads(request.body or b"{}")
        if not isinstance(changes, dict):
            raise ValueError("body must be a JSON object")
        return respond(await st.set_config(redis_of(request), changes))
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"bad sandbox config: {exc}") from None


@bp.post("/fail-next")
async def fail_next(request: Request) -> HTTPResponse:
    """Make the next `count` gateway calls fail: `{status, code, message}` (default 500
    SYSTEM_ERROR), or `{"bad_signature": true}` for a 2xx answer whose signature is wrong."""
    try:
        spec = orjson.loads(request.body or b"{}")
        count = int(spec.pop("count", 1))
    except (ValueError, TypeError, AttributeError):
        raise BadRequest(
            "body must be {status?, code?, message?, count?, bad_signature?}"
        ) from None
    redis = redis_of(request)
    if count > 0:
        await redis.rpush(st.K_FAIL, *[orjson.dumps(spec)] * count)
    return respond({"queued": await redis.llen(st.K_FAIL)})


@bp.delete("/fail-next")
async def clear_fail_next(request: Request) -> HTTPResponse:
    await redis_of(request).delete(st.K_FAIL)
    return respond({"queued": 0})
