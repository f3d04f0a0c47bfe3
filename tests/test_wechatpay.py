"""WeChat Pay v3: our adapter against the sandbox over real HTTP (two server workers).

Notifications go to a small HTTP receiver started here; it runs them through the adapter's
`parse_notification` and answers 204 when they verify, 401 when they are rejected (or a
planned status, to exercise WeChat's retries).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from wechatpayv3.utils import build_authorization, load_private_key, rsa_verify

from server.settings import Settings
from server.wechat.pay import (
    PayBadResponse,
    PayNotConfigured,
    PayNotFound,
    PayNotificationRejected,
    PayOrderPaid,
    PayOutTradeNoUsed,
    PayRejected,
    PaySignError,
    PayUnavailable,
    WeChatPay,
    get_wechatpay,
)
from server.wechat.pay_keys import pay_config
from tests.conftest import ROOT, ServerProcess, free_port

APPID = "wxdemo0000000001"
OPENID = "o-sandbox-payer-0001"


class Receiver:
    """Our notify endpoint stand-in: verifies with the adapter, records what it saw."""

    def __init__(self, pay: WeChatPay) -> None:
        self.pay = pay
        self.seen: list[dict[str, Any]] = []
        self.plan: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                record: dict[str, Any] = {"path": self.path}
                with receiver.lock:
                    planned = receiver.plan.get(self.path) or []
                    status = planned.pop(0) if planned else None
                if status is None:
                    try:
                        record["event"] = receiver.pay.parse_notification(self.headers, body)
                        status = 204
                    except PayNotificationRejected as exc:
                        record["rejected"] = exc.reason
                        status = 401
                record["status"] = status
                with receiver.lock:
                    receiver.seen.append(record)
                self.send_response(status)
                if status == 204:
                    self.end_headers()
                    return
                answer = json.dumps({"code": "FAIL", "message": "rejected"}).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def at(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.seen if r["path"] == path]

    async def wait(self, path: str, count: int, within: float = 15) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            got = self.at(path)
            if len(got) >= count:
                return got
            await asyncio.sleep(0.05)
        raise AssertionError(f"{path}: {len(self.at(path))} notifications, wanted {count}")

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def pay_settings(settings: Settings, server: ServerProcess) -> Settings:
    """The test process's view: the same data dir (keys) and the server's sandbox gateway."""
    return settings.model_copy(update={"public_url": server.base_url})


@pytest.fixture(scope="module")
async def pay(pay_settings: Settings) -> AsyncIterator[WeChatPay]:
    adapter = get_wechatpay(pay_settings)
    yield adapter
    await adapter.aclose()


@pytest.fixture(scope="module")
def receiver(pay: WeChatPay) -> Iterator[Receiver]:
    r = Receiver(pay)
    yield r
    r.stop()


def new_no() -> str:
    return "T" + uuid.uuid4().hex[:24]


async def create(pay: WeChatPay, receiver: Receiver, no: str, total: int = 1234, **kw: Any) -> str:
    return await pay.create_jsapi(
        out_trade_no=no,
        description=kw.pop("description", "好店 门店自提"),
        total_fen=total,
        openid=kw.pop("openid", OPENID),
        appid=APPID,
        notify_url=receiver.url(f"/notify/{no}"),
        time_expire=datetime.now(UTC) + timedelta(minutes=15),
        **kw,
    )


async def paid(api: httpx.AsyncClient, pay: WeChatPay, receiver: Receiver, total: int) -> str:
    no = new_no()
    await create(pay, receiver, no, total)
    r = await api.post(f"/_sandbox/wechat/pay/{no}/complete")
    assert r.status_code == 200, r.text
    await receiver.wait(f"/notify/{no}", 1)
    return no


async def deliveries(api: httpx.AsyncClient, no: str) -> list[dict[str, Any]]:
    r = await api.get(f"/_sandbox/wechat/pay/{no}/deliveries")
    assert r.status_code == 200
    return r.json()["items"]


# -- the happy path -------------------------------------------------------------------------------


async def test_create_pay_and_the_notification_verifies_and_decrypts(
    api: httpx.AsyncClient, pay: WeChatPay, receiver: Receiver
) -> None:
    no = new_no()
    prepay_id = await create(pay, receiver, no, 2590, attach="order:42")
    assert prepay_id.startswith("wx")

    params = pay.request_payment_params(APPID, prepay_id)
    assert params["package"] == f"prepay_id={prepay_id}" and params["signType"] == "RSA"
    assert params["timeStamp"].isdigit() and abs(int(params["timeStamp"]) - time.time()) < 60
    message = f"{APPID}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
    merchant_public = serialization.load_pem_public_key(pay.config.merchant_public_key.encode())
    merchant_public.verify(  # raises InvalidSignature when paySign is wrong
        base64.b64decode(params["paySign"]), message.encode(), padding.PKCS1v15(), hashes.SHA256()
    )

    before = await pay.query(no)
    assert before["trade_state"] == "NOTPAY" and "transaction_id" not in before

    # The phone: wx.requestPayment(params) checks paySign and pays.
    tampered = {**params, "package": "prepay_id=wx-someone-else", "appId": APPID}
    r = await api.post("/_sandbox/wechat/pay/request-payment", json=tampered)
    assert r.status_code == 400 and r.json()["error"]["code"] == "SANDBOX_BAD_PAYSIGN"
    r = await api.post("/_sandbox/wechat/pay/request-payment", json={**params, "appId": APPID})
    assert r.status_code == 200, r.text
    assert r.json()["out_trade_no"] == no and r.json()["trade_state"] == "SUCCESS"
    transaction_id = r.json()["transaction_id"]

    (got,) = await receiver.wait(f"/notify/{no}", 1)
    assert got["status"] == 204
    event = got["event"]
    assert event["event_type"] == "TRANSACTION.SUCCESS"
    tx = event["resource"]
    assert tx["out_trade_no"] == no and tx["trade_state"] == "SUCCESS"
    assert tx["amount"]["total"] == 2590 and tx["amount"]["payer_total"] == 2590
    assert tx["mchid"] == pay.mchid and tx["appid"] == APPID
    assert tx["payer"]["openid"] == OPENID and tx["attach"] == "order:42"
    assert tx["transaction_id"] == transaction_id

    after = await pay.query(no)
    assert after["trade_state"] == "SUCCESS" and after["transaction_id"] == transaction_id

    # The sandbox recorded the delivery and our answer.
    (d,) = await deliveries(api, no)
    assert d["status"] == 204 and d["kind"] == "initial" and d["forged"] is None

    # Paying twice is not possible.
    r = await api.post(f"/_sandbox/wechat/pay/{no}/complete")
    assert r.status_code == 409 and r.json()["error"]["code"] == "ORDERPAID"


async def test_same_out_trade_no_same_params_same_prepay_id_else_409(
    pay: WeChatPay, receiver: Receiver
) -> None:
    no = new_no()
    first = await create(pay, receiver, no, 500)
    assert await create(pay, receiver, no, 500) == first
    # Concurrent identical creates agree too.
    again = await asyncio.gather(*(create(pay, receiver, no, 500) for _ in range(5)))
    assert set(again) == {first}
    with pytest.raises(PayOutTradeNoUsed) as err:
        await create(pay, receiver, no, 501)
    assert err.value.status == 409 and err.value.http_status == 403
    assert err.value.wechat_code == "OUT_TRADE_NO_USED"
    with pytest.raises(PayOutTradeNoUsed):
        await create(pay, receiver, no, 500, openid="someone-else")


async def test_out_trade_no_with_every_allowed_character(
    api: httpx.AsyncClient, pay: WeChatPay, receiver: Receiver
) -> None:
    no = "Ab9_-|*" + uuid.uuid4().hex[:10]
    await create(pay, receiver, no, 88)
    assert (await pay.query(no))["out_trade_no"] == no
    await pay.close(no)
    assert (await pay.query(no))["trade_state"] == "CLOSED"
    with pytest.raises(ValueError):
        await create(pay, receiver, "bad no!", 88)


# -- notifications: forged, duplicated, retried ---------------------------------------------------


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        ("signature", "signature"),
        ("signtest", "probe"),
        ("serial", "serial"),
        ("stale", "stale"),
        ("key", "decrypt"),
    ],
)
async def test_forged_notifications_are_rejected(
    api: httpx.AsyncClient, pay: WeChatPay, receiver: Receiver, forge: str, reason: str
) -> None:
    no = new_no()
    await create(pay, receiver, no, 800)  # never paid: the forgery claims it was
    r = await api.post(f"/_sandbox/wechat/pay/{no}/notify", params={"forge": forge})
    assert r.status_code == 200, r.text
    assert r.json()["statuses"] == [401]
    (got,) = receiver.at(f"/notify/{no}")
    assert got["rejected"] == reason and "event" not in got
    (d,) = await deliveries(api, no)
    assert d["forged"] == forge and d["status"] == 401
    await asyncio.sleep(0.3)  # forgeries are not retried
    assert len(await deliveries(api, no)) == 1
    assert (await pay.query(no))["trade_state"] == "NOTPAY"


async def test_tampered_amount_with_a_valid_signature_reaches_the_caller(
    api: httpx.AsyncClient, pay: WeChatPay, receiver: Receiver
) -> None:
    """The signature is genuine, so the adapter accepts it; the amount is what the caller must
    compare with the order (WECHAT.md: check amount and mchid against the order)."""
    no = await paid(api, pay, receiver, 9900)
    r = await api.post(f"/_sandbox/wechat/pay/{no}/notify", params={"amount": "1"})
    assert r.json()["statuses"] == [204]
    genuine, tampered = await receiver.wait(f"/notify/{no}", 2)
    assert genuine["event"]["resource"]["amount"]["total"] == 9900
    assert tampered["event"]["resource"]["amount"]["total"] == 1
    assert (await deliveries(api, no))[-1]["forged"] == "amount"


def test_parse_notification_rejects_missing_and_tampered_input(pay: WeChatPay) -> None:
    with pytest.raises(PayNotificationRejected) as err:
        pay.parse_notification({}, b"{}")
    assert err.value.reason == "signature" and err.value.status == 401
    # A body changed after signing no longer verifies.
    ts, nonce = str(int(time.time())), "N" * 32
    headers = {
        "wechatpay-timestamp": ts,
        "wechatpay-nonce": nonce,
        "wechatpay-serial": pay.config.public_key_id,
        "wechatpay-signature": base64.b64encode(b"x" * 256).decode(),
        "wechatpay-signature-type": "WECHATPAY2-SHA256-RSA2048",
    }
    with pytest.raises(PayNotificationRejected) as err:
        pay.parse_notification(headers, b'{"id": "1"}')
    assert err.value.reason == "signature"


async def test_duplicate_notifications_sequential_and_concurrent(
    api: httpx.AsyncClient, pay: WeChatPay, receiver: Receiver
) -> None:
    no = await paid(api, pay, receiver, 1500)
    r = await api.post(f"/_sandbox/wechat/pay/{no}/notify", params={"times": "3"})
    assert r.json()["statuses"] == [204, 204, 204]
    r = await api.post(
        f"/_sandbox/wechat/pay/{no}/notify", params={"times": "10", "concurrent": "1"}
    )
    assert r.json()["statuses"] == [204] * 10
    got = await receiver.wait(f"/notify/{no}", 14)
    assert len(got) == 14
    # Every copy is the same event (same id) for the same payment.
    assert len({g["event"]["id"] for g in got}) == 1
    assert {g["event"]["resource"]["transaction_id"] for g in got} == {
        (await pay.query(no))["transaction_id"]
    }


async def test_a_non_2xx_answer_is_retried_on_the_compressed_schedule(
    api: httpx.AsyncClient, pay: WeChatPay, receiver: Receiver
) -> None:
    no = new_no()
    path = f"/notify/{no}"
    receiver.plan[path] = [500, 503]
    await create(pay, receiver, no, 700)
    r = await api.post(f"/_sandbox/wechat/pay/{no}/complete")
    assert r.status_code == 200
    got = await receiver.wait(path, 3)
    assert [g["status"] for g in got] == [500, 503, 204]
    assert got[2]["event"]["resource"]["amount"]["total"] == 700
    await asyncio.sleep(0.3)  # accepted: no more retries
    ds = await deliveries(api, no)
    assert [d["status"] for d in ds] == [500, 503, 204]
    assert [d["kind"] for d in ds] == ["initial", "retry-1", "retry-2"]


# -- query, close, refund -------------------------------------------------------------------------


async def test_close_query_and_paying_a_closed_transaction(
    api: httpx.AsyncClient, pay: WeChatPay, receiver: Receiver
) -> None:
    no = new_no()
    await create(pay, receiver, no, 300)
    await pay.close(no)
    assert (await pay.query(no))["trade_state"] == "CLOSED"
    await pay.close(no)  # closing again is fine
    r = await api.post(f"/_sandbox/wechat/pay/{no}/complete")
    assert r.status_code == 409 and r.json()["error"]["code"] == "ORDER_CLOSED"

    done = await paid(api, pay, receiver, 300)
    with pytest.raises(PayOrderPaid) as err:
        await pay.close(done)
    assert err.value.wechat_code == "ORDERPAID" and err.value.status == 409
    with pytest.raises(PayNotFound):
        await pay.query(new_no())
    with pytest.raises(PayNotFound):
        await pay.close(new_no())


async def test_refund_flow_with_its_notification(
    api: httpx.AsyncClient, pay: WeChatPay, receiver: Receiver
) -> None:
    no = await paid(api, pay, receiver, 1000)
    notify = receiver.url(f"/refund/{no}")
    refund = await pay.refund(
        out_trade_no=no,
        out_refund_no=f"R{no}",
        refund_fen=300,
        total_fen=1000,
        reason="缺货",
        notify_url=notify,
    )
    assert refund["status"] == "PROCESSING" and refund["amount"]["refund"] == 300
    # The same out_refund_no again is the same refund, not a second one.
    same = await pay.refund(
        out_trade_no=no, out_refund_no=f"R{no}", refund_fen=300, total_fen=1000, notify_url=notify
    )
    assert same["refund_id"] == refund["refund_id"]
    # More than what is left is refused.
    with pytest.raises(PayRejected) as err:
        await pay.refund(out_trade_no=no, out_refund_no=f"S{no}", refund_fen=701, total_fen=1000)
    assert err.value.http_status == 400 and err.value.wechat_code == "INVALID_REQUEST"

    (got,) = await receiver.wait(f"/refund/{no}", 1)
    event = got["event"]
    assert event["event_type"] == "REFUND.SUCCESS"
    assert event["resource"]["refund_status"] == "SUCCESS"
    assert event["resource"]["out_refund_no"] == f"R{no}"
    assert event["resource"]["amount"] == {
        "total": 1000,
        "refund": 300,
        "payer_total": 1000,
        "payer_refund": 300,
    }
    assert (await pay.query_refund(f"R{no}"))["status"] == "SUCCESS"
    assert (await pay.query(no))["trade_state"] == "REFUND"
    # The rest (700) can still be refunded.
    rest = await pay.refund(out_trade_no=no, out_refund_no=f"S{no}", refund_fen=700, total_fen=1000)
    assert rest["status"] == "PROCESSING"


async def test_refunds_finished_by_hand_and_refused_when_unpaid(
    api: httpx.AsyncClient, pay: WeChatPay, receiver: Receiver
) -> None:
    unpaid = new_no()
    await create(pay, receiver, unpaid, 400)
    with pytest.raises(PayRejected):
        await pay.refund(
            out_trade_no=unpaid, out_refund_no=f"R{unpaid}", refund_fen=1, total_fen=400
        )
    with pytest.raises(PayNotFound):
        await pay.query_refund(f"R{unpaid}")

    no = await paid(api, pay, receiver, 400)
    r = await api.post("/_sandbox/wechat/pay/config", json={"refund_auto": False})
    assert r.json()["refund_auto"] is False
    try:
        await pay.refund(
            out_trade_no=no,
            out_refund_no=f"R{no}",
            refund_fen=400,
            total_fen=400,
            notify_url=receiver.url(f"/refund/{no}"),
        )
        await asyncio.sleep(0.4)
        assert (await pay.query_refund(f"R{no}"))["status"] == "PROCESSING"
        r = await api.post(f"/_sandbox/wechat/pay/refunds/R{no}/complete?status=ABNORMAL")
        assert r.status_code == 200 and r.json()["status"] == "ABNORMAL"
        (got,) = await receiver.wait(f"/refund/{no}", 1)
        assert got["event"]["event_type"] == "REFUND.ABNORMAL"
        r = await api.post(f"/_sandbox/wechat/pay/refunds/R{no}/notify?times=2")
        assert r.json()["statuses"] == [204, 204]
    finally:
        await api.post("/_sandbox/wechat/pay/config", json={"refund_auto": True})


# -- the gateway's side: signatures and errors ----------------------------------------------------


async def test_the_sandbox_checks_our_request_signature(
    server: ServerProcess, pay: WeChatPay, receiver: Receiver
) -> None:
    cfg = pay.config
    path = f"/v3/pay/transactions/out-trade-no/X123456?mchid={cfg.mchid}"
    url = f"{server.base_url}/_sandbox/wechat/pay{path}"
    async with httpx.AsyncClient() as http:
        r = await http.get(url)
        assert r.status_code == 401 and r.json()["code"] == "SIGN_ERROR"
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        other_pem = other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        forged = build_authorization(
            path, "GET", cfg.mchid, cfg.cert_serial_no, load_private_key(other_pem)
        )
        r = await http.get(url, headers={"Authorization": forged})
        assert r.status_code == 401 and r.json()["code"] == "SIGN_ERROR"
        good = build_authorization(
            path, "GET", cfg.mchid, cfg.cert_serial_no, load_private_key(cfg.merchant_private_key)
        )
        r = await http.get(url, headers={"Authorization": good})
        assert r.status_code == 404 and r.json()["code"] == "ORDERNOTEXIST"
        r = await http.get(url, headers={"Authorization": good})  # replayed nonce
        assert r.status_code == 401 and r.json()["code"] == "SIGN_ERROR"

    wrong_key = WeChatPay(dataclasses.replace(cfg, merchant_private_key=other_pem))
    try:
        with pytest.raises(PaySignError) as err:
            await create(wrong_key, receiver, new_no())
        assert err.value.http_status == 401
    finally:
        await wrong_key.aclose()


async def test_answers_are_signed_and_the_adapter_checks_them(
    server: ServerProcess, api: httpx.AsyncClient, pay: WeChatPay, receiver: Receiver
) -> None:
    cfg = pay.config
    no = new_no()
    await create(pay, receiver, no, 100)
    # A 204 (close) is signed too, over an empty body, with the PUB_KEY_ID_ serial.
    path = f"/v3/pay/transactions/out-trade-no/{no}/close"
    body = json.dumps({"mchid": cfg.mchid})
    auth = build_authorization(
        path,
        "POST",
        cfg.mchid,
        cfg.cert_serial_no,
        load_private_key(cfg.merchant_private_key),
        data=body,
    )
    async with httpx.AsyncClient() as http:
        r = await http.post(
            f"{server.base_url}/_sandbox/wechat/pay{path}",
            content=body,
            headers={"Authorization": auth, "Content-Type": "application/json"},
        )
    assert r.status_code == 204
    assert r.headers["wechatpay-serial"] == cfg.public_key_id
    assert r.headers["wechatpay-serial"].startswith("PUB_KEY_ID_")
    assert r.headers["wechatpay-signature-type"] == "WECHATPAY2-SHA256-RSA2048"
    assert rsa_verify(
        r.headers["wechatpay-timestamp"],
        r.headers["wechatpay-nonce"],
        "",
        r.headers["wechatpay-signature"],
        serialization.load_pem_public_key(cfg.public_key.encode()),
    )

    # A 2xx whose signature is wrong is refused by the library, surfaced as PayBadResponse.
    r = await api.post("/_sandbox/wechat/pay/fail-next", json={"bad_signature": True})
    assert r.status_code == 200
    with pytest.raises(PayBadResponse):
        await pay.query(no)
    # Also for a 204 without a body (close).
    await api.post("/_sandbox/wechat/pay/fail-next", json={"bad_signature": True})
    with pytest.raises(PayBadResponse):
        await pay.close(no)
    # And an adapter that trusts another WeChat Pay key refuses the sandbox's genuine answers.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    other_pem = other.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    distrustful = WeChatPay(dataclasses.replace(cfg, public_key=other_pem))
    try:
        with pytest.raises(PayBadResponse):
            await distrustful.query(no)
    finally:
        await distrustful.aclose()
    assert (await pay.query(no))["trade_state"] == "CLOSED"


@pytest.mark.parametrize(
    ("spec", "exc", "status"),
    [
        ({"status": 500, "code": "SYSTEM_ERROR"}, PayUnavailable, 503),
        ({"status": 429, "code": "FREQUENCY_LIMITED"}, PayUnavailable, 503),
        ({"status": 400, "code": "PARAM_ERROR"}, PayRejected, 422),
        ({"status": 403, "code": "NO_AUTH"}, PayRejected, 422),
    ],
)
async def test_gateway_errors_become_typed_errors(
    api: httpx.AsyncClient,
    pay: WeChatPay,
    receiver: Receiver,
    spec: dict[str, Any],
    exc: type[Exception],
    status: int,
) -> None:
    r = await api.post("/_sandbox/wechat/pay/fail-next", json=spec)
    assert r.json()["queued"] == 1
    with pytest.raises(exc) as err:
        await create(pay, receiver, new_no())
    assert err.value.status == status  # type: ignore[attr-defined]
    assert err.value.wechat_code == spec["code"]  # type: ignore[attr-defined]


async def test_an_unreachable_gateway_is_unavailable(pay: WeChatPay, receiver: Receiver) -> None:
    cfg = dataclasses.replace(pay.config, gateway=f"http://127.0.0.1:{free_port()}")
    down = WeChatPay(cfg)
    try:
        with pytest.raises(PayUnavailable) as err:
            await create(down, receiver, new_no())
        assert err.value.status == 503 and err.value.retryable
    finally:
        await down.aclose()


def test_demo_keys_are_made_once_even_by_racing_processes(tmp_path: Path) -> None:
    code = (
        "from server.settings import Settings\n"
        "from server.wechat.pay_keys import pay_config\n"
        f"c = pay_config(Settings(sandbox=True, data_dir={str(tmp_path)!r}))\n"
        "print(c.public_key_id, c.cert_serial_no, c.apiv3_key)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE)
        for _ in range(4)
    ]
    outs = {p.communicate(timeout=60)[0] for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(outs) == 1  # every process ended up with the same keys
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [
        "wechatpay_apiv3_key",
        "wechatpay_merchant_key.pem",
        "wechatpay_platform_key.pem",
    ]
    assert all((tmp_path / f).stat().st_mode & 0o777 == 0o600 for f in files)
    assert pay_config(Settings(sandbox=True, data_dir=tmp_path)).apiv3_key in outs.pop().decode()


def test_outside_the_sandbox_missing_settings_are_an_error(tmp_path: Path) -> None:
    settings = Settings(sandbox=False, demo=False, data_dir=tmp_path)
    with pytest.raises(PayNotConfigured) as err:
        pay_config(settings)
    assert err.value.code == "WECHATPAY_NOT_CONFIGURED" and err.value.status == 503
    assert settings.wechatpay_gateway_url == "https://api.mch.weixin.qq.com"
    assert list(tmp_path.iterdir()) == []  # nothing generated in production mode
