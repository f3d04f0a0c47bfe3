"""The one ledger: open accounts, post changes exactly once, prove the books add up.

A balance moves only here, by one conditional UPDATE (`balance + amount >= 0`, re-checked
by PostgreSQL on the newest row version after any wait, so two spends at once can never
both pass) whose RETURNING gives the entry its `balance_after` — never a value read before.
The entry's unique (account, reason, reference) makes a replayed fact a no-op: the UPDATE
and the insert share a savepoint, and a duplicate undoes both.

Scenarios call `open_account`, `post` and `transfer` inside their own transaction; the
check `check()` (`haodian ledger check`) verifies balance = sum of entries = the last
balance_after, and balance >= 0, for every account.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tortoise import Tortoise
from tortoise.exceptions import IntegrityError

from server.identity import merge
from server.infra.db import dialect_sql
from server.infra.errors import Conflict, NotFound
from server.ledger.models import LedgerAccount, LedgerEntry


class BalanceTooLow(Conflict):
    """The account does not hold enough for this debit (nothing was posted)."""

    def __init__(self, account_id: int, amount: int) -> None:
        super().__init__(
            "the balance is too low for this",
            code="BALANCE_TOO_LOW",
            details={"account_id": account_id, "wanted_fen": -amount},
        )


@dataclass(frozen=True)
class Posting:
    entry_id: int
    balance_after: int
    duplicate: bool  # the same (account, reason, reference) was posted before: nothing moved


async def open_account(
    kind: str, *, member_id: int | None = None, owner_key: str | None = None, connection: Any
) -> LedgerAccount:
    """A new account with balance 0; with `owner_key`, the one account of that key (two first
    opens at once make one: the unique key decides, the loser reads the winner's row)."""
    if owner_key is None:
        return await LedgerAccount.create(kind=kind, member_id=member_id, using_db=connection)
    found = await LedgerAccount.filter(owner_key=owner_key).using_db(connection).first()
    if found is not None:
        return found
    try:
        async with connection._in_transaction() as sp:
            return await LedgerAccount.create(
                kind=kind, member_id=member_id, owner_key=owner_key, using_db=sp
            )
    except IntegrityError:
        return await LedgerAccount.get(owner_key=owner_key).using_db(connection)


async def member_account(kind: str, member_id: int, *, connection: Any) -> LedgerAccount:
    """The member's one account of `kind` (points, stored value...), opened on first use."""
    return await open_account(
        kind, member_id=member_id, owner_key=f"{kind}:{member_id}", connection=connection
    )


async def find_member_account(kind: str, member_id: int) -> LedgerAccount | None:
    return await LedgerAccount.get_or_none(owner_key=f"{kind}:{member_id}")


async def member_balance(kind: str, member_id: int) -> int:
    account = await find_member_account(kind, member_id)
    return int(account.balance) if account else 0


async def lock(account_id: int, connection: Any) -> LedgerAccount:
    """The account row, locked until the caller's transaction ends (read, then post)."""
    return await LedgerAccount.filter(id=account_id).select_for_update().using_db(connection).get()


async def post(
    account_id: int, amount: int, reason: str, reference: str, *, connection: Any
) -> Posting:
    """Move the account by `amount` (signed fen or points) for (reason, reference), once.

    Raises BalanceTooLow (and posts nothing) when a debit would go below zero. Inside the
    caller's transaction: the entry commits or rolls back with the caller's change."""
    if amount == 0:
        raise ValueError("a ledger entry moves something")
    reference = reference[:64]
    earlier = (
        await LedgerEntry.filter(account_id=account_id, reason=reason, reference=reference)
        .using_db(connection)
        .first()
    )
    if earlier is not None:
        return Posting(earlier.id, earlier.balance_after, duplicate=True)
    try:
        async with connection._in_transaction() as sp:
            rows = await sp.execute_query_dict(
                dialect_sql(
                    sp,
                    "UPDATE ledger_account SET balance = balance + $1"
                    " WHERE id = $2 AND balance + $3 >= 0 RETURNING balance, member_id",
                ),
                [amount, account_id, amount],
            )
            if not rows:
                if not await LedgerAccount.filter(id=account_id).using_db(sp).exists():
                    raise NotFound(f"no ledger account {account_id}", code="ACCOUNT_NOT_FOUND")
                raise BalanceTooLow(account_id, amount)
            entry = await LedgerEntry.create(
                account_id=account_id,
                member_id=rows[0]["member_id"],
                amount=amount,
                balance_after=int(rows[0]["balance"]),
                reason=reason,
                reference=reference,
                using_db=sp,
            )
    except IntegrityError:
        # A simultaneous copy of this fact posted first; our UPDATE was undone with the insert.
        earlier = await LedgerEntry.get(
            account_id=account_id, reason=reason, reference=reference
        ).using_db(connection)
        return Posting(earlier.id, earlier.balance_after, duplicate=True)
    return Posting(entry.id, entry.balance_after, duplicate=False)


async def transfer(
    account_id: int, to_member_id: int, reason: str, reference: str, *, connection: Any
) -> int:
    """The whole account changes hands (a gift card claimed): an `<reason>_out` entry for the
    old holder and an `<reason>_in` for the new one, so each holder's history is whole.
    Returns the balance moved (0: nothing to move, only the holder changes)."""
    account = await lock(account_id, connection)
    balance = int(account.balance)
    if balance > 0:
        await post(account_id, -balance, f"{reason}_out", reference, connection=connection)
    await LedgerAccount.filter(id=account_id).using_db(connection).update(member_id=to_member_id)
    if balance > 0:
        await post(account_id, balance, f"{reason}_in", reference, connection=connection)
    return balance


async def balance(account_id: int, connection: Any = None) -> int:
    account = await LedgerAccount.filter(id=account_id).using_db(connection).first()
    if account is None:
        raise NotFound(f"no ledger account {account_id}", code="ACCOUNT_NOT_FOUND")
    return int(account.balance)


async def entries(
    account_id: int, *, member_id: int | None = None, limit: int = 50, before_id: int | None = None
) -> list[LedgerEntry]:
    """An account's entries, newest first (only those posted while `member_id` held it)."""
    query = LedgerEntry.filter(account_id=account_id)
    if member_id is not None:
        query = query.filter(member_id=member_id)
    if before_id is not None:
        query = query.filter(id__lt=before_id)
    return await query.order_by("-id").limit(limit)


async def sums_by_reason(kind: str) -> dict[str, tuple[int, int]]:
    """(Σ amount, entries) per reason over every account of `kind`: operators' figures are
    these sums, so they cannot drift from the balances."""
    conn = Tortoise.get_connection("default")
    rows = await conn.execute_query_dict(
        dialect_sql(
            conn,
            "SELECT e.reason AS reason, COALESCE(SUM(e.amount), 0) AS total, COUNT(*) AS n"
            " FROM ledger_entry e JOIN ledger_account a ON a.id = e.account_id"
            " WHERE a.kind = $1 GROUP BY e.reason",
        ),
        [kind],
    )
    return {str(r["reason"]): (int(r["total"]), int(r["n"])) for r in rows}


# -- the check ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    account_id: int
    kind: str
    balance: int
    entries_sum: int
    last_balance_after: int | None

    def describe(self) -> str:
        wrong = []
        if self.balance < 0:
            wrong.append("balance below zero")
        if self.balance != self.entries_sum:
            wrong.append(f"balance {self.balance} but its entries add up to {self.entries_sum}")
        if self.last_balance_after is not None and self.last_balance_after != self.balance:
            wrong.append(f"last entry says {self.last_balance_after}")
        return f"account {self.account_id} ({self.kind}): " + "; ".join(wrong)


_CHECK = (
    "SELECT a.id AS id, a.kind AS kind, a.balance AS balance,"
    " COALESCE(s.total, 0) AS total, l.balance_after AS last_after"
    " FROM ledger_account a"
    " LEFT JOIN (SELECT account_id, SUM(amount) AS total, MAX(id) AS last_id"
    "   FROM ledger_entry WHERE account_id BETWEEN $1 AND $2 GROUP BY account_id) s"
    "   ON s.account_id = a.id"
    " LEFT JOIN ledger_entry l ON l.id = s.last_id"
    " WHERE a.id BETWEEN $3 AND $4"
    "   AND (a.balance < 0 OR a.balance <> COALESCE(s.total, 0)"
    "        OR (l.balance_after IS NOT NULL AND l.balance_after <> a.balance))"
    " ORDER BY a.id"
)


async def check(
    *, chunk: int = 50_000, progress: Callable[[int, int], None] | None = None
) -> tuple[int, list[Problem]]:
    """Every account, in id ranges of `chunk` (so 80 M accounts neither load at once nor hold
    one long query): (accounts checked, what is wrong). `progress(done, total)` per range."""
    conn = Tortoise.get_connection("default")
    bounds = await conn.execute_query_dict(
        "SELECT COALESCE(MIN(id), 0) AS lo, COALESCE(MAX(id), 0) AS hi, COUNT(*) AS n"
        " FROM ledger_account"
    )
    lo, hi, total = int(bounds[0]["lo"]), int(bounds[0]["hi"]), int(bounds[0]["n"])
    problems: list[Problem] = []
    start = lo
    while total and start <= hi:
        end = start + chunk - 1
        rows = await conn.execute_query_dict(dialect_sql(conn, _CHECK), [start, end, start, end])
        problems.extend(
            Problem(
                account_id=int(r["id"]),
                kind=str(r["kind"]),
                balance=int(r["balance"]),
                entries_sum=int(r["total"]),
                last_balance_after=None if r["last_after"] is None else int(r["last_after"]),
            )
            for r in rows
        )
        if progress is not None:
            progress(min(end, hi) - lo + 1, hi - lo + 1)
        start = end + 1
    return total, problems


async def accounts_of(ids: Iterable[int], connection: Any = None) -> dict[int, LedgerAccount]:
    rows = await LedgerAccount.filter(id__in=list(ids)).using_db(connection)
    return {int(a.id): a for a in rows}


async def move_member_accounts(from_id: int, into_id: int, connection: Any) -> int:
    """A merge: the absorbed member's one-per-member accounts pour their balance into the
    surviving member's account of the same kind (a `merge_out` / `merge_in` pair, so not a
    fen or a point is lost or made); every other account (a gift card) changes holder."""
    moved = 0
    own = await LedgerAccount.filter(member_id=from_id).using_db(connection).order_by("id")
    for account in own:
        if account.owner_key != f"{account.kind}:{from_id}":
            moved += (
                await LedgerAccount.filter(id=account.id)
                .using_db(connection)
                .update(member_id=into_id)
            )
            continue
        target = await member_account(account.kind, into_id, connection=connection)
        ref = f"merge:{from_id}"
        amount = int(account.balance)
        if amount > 0:
            await post(account.id, -amount, "merge_out", ref, connection=connection)
            await post(target.id, amount, "merge_in", ref, connection=connection)
        moved += 1
    return moved


# Merges: the accounts a member holds, and the history of what they held, move with them.
merge.register_member_owned(LedgerAccount, "member_id", mover=move_member_accounts)
merge.register_member_owned(LedgerEntry, "member_id")
