"""The clerk's scanner page at /staff/scan, driven end to end in headless Chromium (Debian's
package, through Playwright's driver; no browser download): sign in, scan, see the result."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.coupons import codes
from server.coupons.models import Coupon, CouponStatus
from server.settings import Settings
from tests.conftest import TEST_SECRET, ServerProcess
from tests.test_coupons import (
    claim,
    live_code,
    make_template,
    new_member,
    new_staff,
    new_store,
    operator_headers,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    profile = tempfile.mkdtemp(prefix="hd-chromium-")
    async with async_playwright() as p:
        context = await p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        try:
            yield context
        finally:
            await context.close()
            shutil.rmtree(profile, ignore_errors=True)


async def test_scanner_page_sign_in_scan_and_already_used(
    api: httpx.AsyncClient, server: ServerProcess, database: Settings, browser: Any, tmp_path: Path
) -> None:
    store = await new_store()
    staff, _ = await new_staff(database, [store], password="counter-pass-1")
    op = await operator_headers(database)
    t = await make_template(api, op, name="Spicy duck neck", amount_off_fen=1000)
    _, m = await new_member(database, phone_masked="139****5678")
    c = await claim(api, m, t["id"])
    code = (await live_code(api, m, c["id"]))["code"]

    page = await browser.new_page()
    await page.goto(server.base_url + "/staff/scan")
    await page.fill("#username", staff.username)
    await page.fill("#password", "wrong-password")
    await page.click("#login-btn")
    await page.wait_for_function("document.querySelector('#login-error').textContent.length > 0")
    assert "wrong" in (await page.text_content("#login-error") or "").lower()

    await page.fill("#password", "counter-pass-1")
    await page.click("#login-btn")
    await page.wait_for_selector("#code", state="visible")
    # The scanner types into whatever has focus: the code input must have it.
    assert await page.evaluate("document.activeElement.id") == "code"

    await page.keyboard.type(code)
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#result.ok")
    text = await page.text_content("#result") or ""
    assert "Written off" in text and "Spicy duck neck" in text and "¥10 off" in text
    assert "139****5678" in text
    await page.wait_for_function("document.querySelectorAll('#list tr').length === 1")
    assert "Spicy duck neck" in (await page.text_content("#list") or "")
    await page.screenshot(path=str(tmp_path / "scan-ok.png"))

    # The same code again: a clear "already used", and the input is ready for the next scan.
    await page.keyboard.type(code)
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#result.fail")
    text = await page.text_content("#result") or ""
    assert "Already used" in text and "COUPON_ALREADY_USED" in text
    assert await page.evaluate("document.activeElement.id") == "code"
    assert await page.input_value("#code") == ""

    # An old (screenshotted) code of another coupon: expired, not written off.
    member2, m2 = await new_member(database)
    c2 = await claim(api, m2, t["id"])
    stale = codes.sign_code(TEST_SECRET.encode(), c2["id"], member2.id, int(time.time()) - 90)
    await page.keyboard.type(stale)
    await page.keyboard.press("Enter")
    await page.wait_for_function(
        "document.querySelector('#result').textContent.includes('expired')"
    )
    assert "CODE_EXPIRED" in (await page.text_content("#result") or "")
    await page.screenshot(path=str(tmp_path / "scan-expired.png"))
    assert (await Coupon.get(id=c2["id"])).status == CouponStatus.UNUSED

    # The typed 12 digits work as well.
    _, m3 = await new_member(database)
    c3 = await claim(api, m3, t["id"])
    digits = (await live_code(api, m3, c3["id"]))["digits"]
    await page.keyboard.type(digits)
    await page.keyboard.press("Enter")
    await page.wait_for_function("document.querySelectorAll('#list tr').length === 2")
    assert "ok" in (await page.get_attribute("#result", "class") or "")


async def test_member_tab_identifies_the_member_and_records_a_sale_paid_with_stored_value(
    api: httpx.AsyncClient, server: ServerProcess, database: Settings, browser: Any, tmp_path: Path
) -> None:
    from server.identity.models import Member
    from server.ledger import service as ledger
    from server.membership import service as membership
    from tests.test_orders_payments import PAY, shopper

    store = await new_store()
    staff, _ = await new_staff(database, [store], password="counter-pass-2")
    op = await operator_headers(database)
    plan = (
        await api.post(
            "/api/v1/admin/stored-value/plans",
            headers=op,
            json={"pay_fen": 5000, "credit_fen": 5000},
        )
    ).json()
    who = await shopper(api)
    await Member.filter(id=who["member_id"]).update(nickname="李小龙")
    top = (
        await api.post(
            "/api/v1/stored-value/top-ups",
            headers={**who["headers"], "idempotency-key": f"k{time.time_ns()}"},
            json={"plan_id": plan["id"]},
        )
    ).json()["order_no"]
    await api.post(f"/api/v1/orders/{top}/pay", headers=who["headers"], json={})
    assert (await api.post(f"{PAY}/{top}/complete?wait=1")).json()["notify_status"] == 204
    code = (await api.get("/api/v1/me/member-code", headers=who["headers"])).json()["code"]

    page = await browser.new_page()
    await page.goto(server.base_url + "/staff/scan")
    await page.fill("#username", staff.username)
    await page.fill("#password", "counter-pass-2")
    await page.click("#login-btn")
    await page.wait_for_selector("#code", state="visible")
    await page.keyboard.type(code)  # a member code switches to the member tab by itself
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#member-card", state="visible")
    info = await page.text_content("#member-info") or ""
    assert "李**" in info and "¥50.00" in info
    assert "on" in (await page.get_attribute("#tab-member", "class") or "")
    assert await page.evaluate("document.activeElement.id") == "receipt"
    await page.fill("#receipt", f"T{time.time_ns()}")
    await page.fill("#amount", "12.34")
    await page.select_option("#pay-with", "stored_value")
    await page.click("#sale-btn")
    await page.wait_for_function(
        "document.querySelector('#sale-result').textContent.startsWith('Recorded')"
    )
    text = await page.text_content("#sale-result") or ""
    assert "¥12.34" in text and "+12 points" in text and "¥37.66" in text
    await page.screenshot(path=str(tmp_path / "member-sale.png"))
    # The same receipt again (a double click): recorded once.
    await page.click("#sale-btn")
    await page.wait_for_function(
        "document.querySelector('#sale-result').textContent.startsWith('Already recorded')"
    )
    assert (
        await ledger.member_balance(membership.PRINCIPAL, who["member_id"])
        + (await ledger.member_balance(membership.BONUS, who["member_id"]))
        == 3766
    )
