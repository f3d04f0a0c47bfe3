"""The one ledger on real PostgreSQL: postings once per fact, never below zero under
concurrent debits, and `haodian ledger check` — which fails naming a corrupted account,
and passes over everything the whole suite posted (the last test of the run)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from tortoise import Tortoise
from tortoise.exceptions import IntegrityError, OperationalError
from tortoise.transactions import in_transaction

from server.infra.errors import AppError
from server.ledger import service as ledger
from server.ledger.models import LedgerAccount, LedgerEntry
from server.settings import Settings
from tests.test_foundation import _cli


async def _account(balance: int = 0) -> LedgerAccount:
    async with in_transaction() as conn:
        account = await ledger.open_account("test", connection=conn)
        if balance:
            await ledger.post(account.id, balance, "seed", "seed", connection=conn)
    return account


async def _post(account_id: int, amount: int, reason: str, ref: str) -> Any:
    async with in_transaction() as conn:
        return await ledger.post(account_id, amount, reason, ref, connection=conn)


async def test_a_fact_posts_once_and_its_balance_after_comes_from_the_update(
    database: Settings,
) -> None:
    account = await _account(100)
    first = await _post(account.id, -30, "spend", "order-1")
    assert (first.balance_after, first.duplicate) == (70, False)
    replays = await asyncio.gather(*(_post(account.id, -30, "spend", "order-1") for _ in range(8)))
    assert all(r.duplicate and r.balance_after == 70 for r in replays)
    assert await ledger.balance(account.id) == 70
    assert await LedgerEntry.filter(account_id=account.id).count() == 2
    with pytest.raises(AppError) as refused:
        await _post(account.id, -71, "spend", "order-2")
    assert refused.value.code == "BALANCE_TOO_LOW"
    assert await ledger.balance(account.id) == 70  # nothing posted, nothing moved


async def test_concurrent_debits_never_go_below_zero(database: Settings) -> None:
    account = await _account(100)

    async def debit(i: int) -> bool:
        try:
            await _post(account.id, -60, "spend", f"order-{i}")
        except AppError as exc:
            assert exc.code == "BALANCE_TOO_LOW"
            return False
        return True

    results = await asyncio.gather(*(debit(i) for i in range(10)))
    assert sum(results) == 1
    assert await ledger.balance(account.id) == 40


async def test_two_first_opens_of_a_members_account_make_one(database: Settings) -> None:
    key = f"test:{uuid.uuid4().hex[:8]}"

    async def open_() -> int:
        async with in_transaction() as conn:
            return (await ledger.open_account("test", owner_key=key, connection=conn)).id

    ids = await asyncio.gather(*(open_() for _ in range(6)))
    assert len(set(ids)) == 1


async def test_the_database_itself_refuses_a_negative_balance(database: Settings) -> None:
    account = await _account(5)
    conn = Tortoise.get_connection("default")
    with pytest.raises((IntegrityError, OperationalError)):
        await conn.execute_query(
            "UPDATE ledger_account SET balance = -1 WHERE id = $1", [account.id]
        )


async def test_ledger_check_names_a_corrupted_account(
    database: Settings, env: dict[str, str]
) -> None:
    account = await _account(500)
    ok = _cli(env, "ledger", "check")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "passed" in ok.stdout
    await LedgerAccount.filter(id=account.id).update(balance=501)  # what a stray UPDATE does
    try:
        bad = _cli(env, "ledger", "check", "--chunk", "7")
        assert bad.returncode == 1, bad.stdout
        assert f"account {account.id} (test)" in bad.stdout
        assert "entries add up to 500" in bad.stdout
    finally:
        await LedgerAccount.filter(id=account.id).update(balance=500)


@pytest.mark.last
async def test_ledger_check_passes_after_the_whole_suite(
    database: Settings, env: dict[str, str]
) -> None:
    """Runs after every other test (conftest orders it last): all gift-card money the suite
    moved, through every race and refund, still adds up."""
    assert await LedgerEntry.all().count() > 0
    done = _cli(env, "ledger", "check")
    assert done.returncode == 0, done.stdout + done.stderr
