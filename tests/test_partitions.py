"""Monthly partitions of the append-only tables (PostgreSQL): the migration's conversion keeps
every row, key, index and foreign key; new rows land in their month; the daily job makes the
months ahead; and the order page still reads its events."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from server.identity.models import Member
from server.infra import partitions
from server.infra.jobs import _collect
from server.settings import Settings
from tests.test_orders_payments import place, shop, shopper  # noqa: F401  (shop: a fixture)


async def _rows(sql: str, *values: Any) -> list[dict[str, Any]]:
    return list(await connections.get("default").execute_query_dict(sql, list(values)))


async def _partitions(table: str) -> list[str]:
    rows = await _rows(
        "SELECT c.relname AS name FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid "
        "WHERE h.inhparent = to_regclass($1) ORDER BY 1",
        table,
    )
    return [r["name"] for r in rows]


def _months_from(now: datetime, n: int) -> list[str]:
    month = partitions.month_of(now)
    out = []
    for _ in range(n):
        out.append(f"{month:%Y%m}")
        month = partitions.next_month(month)
    return out


async def test_the_monthly_tables_are_partitioned_with_months_ahead(database: Settings) -> None:
    assert connections.get("default").capabilities.dialect == "postgres"
    now = datetime.now(UTC)
    for table in partitions.MONTHLY:
        assert await partitions.is_partitioned(connections.get("default"), table)
        names = await _partitions(table)
        (before,) = [n for n in names if "_before_" in n]  # the rows from before
        assert f"{table}_default" in names  # a row no month covers yet still has a place
        covered = before.rsplit("_", 1)[1]
        for month in _months_from(now, partitions.AHEAD + 1):
            assert month < covered or f"{table}_{month}" in names, (month, names)
    # The ledger keeps its unique (account, reason, reference): not partitioned.
    assert not await partitions.is_partitioned(connections.get("default"), "ledger_entry")
    # The worker keeps the months ahead ready every day.
    daily = {getattr(job.coroutine, "__wrapped__", job.coroutine) for job in _collect("cron_jobs")}
    assert partitions.ensure_all_months in daily


async def test_an_orders_events_land_in_their_month_and_show_on_its_page(
    api: httpx.AsyncClient,
    shop: dict[str, Any],  # noqa: F811
) -> None:
    who = await shopper(api)
    r = await place(api, who, shop, qty_a=1)
    assert r.status_code == 201, r.text
    order_no = r.json()["order_no"]
    cancel = await api.post(f"/api/v1/orders/{order_no}/cancel", headers=who["headers"])
    assert cancel.status_code == 200, cancel.text
    page = await api.get(f"/api/v1/orders/{order_no}", headers=who["headers"])
    assert [e["to_status"] for e in page.json()["events"]] == ["pending_payment", "cancelled"]
    where = await _rows(
        'SELECT e.tableoid::regclass::text AS part FROM order_event e JOIN "order" o '
        "ON o.id = e.order_id WHERE o.order_no = $1",
        order_no,
    )
    month, following = _months_from(datetime.now(UTC), 2)
    parts = await _partitions("order_event")
    # Converted this month (the suite's database), the month is still the old table's.
    here = f"order_event_before_{following}"
    assert {w["part"] for w in where} == {here if here in parts else f"order_event_{month}"}


async def test_converting_a_table_keeps_its_rows_keys_indexes_and_foreign_keys(
    database: Settings,
) -> None:
    table = f"conv_{uuid.uuid4().hex[:8]}"
    db = connections.get("default")
    member = (await Member.create(nickname="conv")).id
    await db.execute_script(
        f'CREATE TABLE "{table}" (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL, '
        f"member_id bigint NOT NULL REFERENCES member (id), note text)"
    )
    await db.execute_script(f'CREATE INDEX "{table}_by_member" ON "{table}" (member_id)')
    now = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
    old = [datetime(2026, month, day, tzinfo=UTC) for month in (8, 9, 10, 11) for day in (1, 15)]
    old += [datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 3, tzinfo=UTC)]  # this month
    for moment in old:
        await db.execute_query(
            f'INSERT INTO "{table}" (created_at, member_id, note) VALUES ($1, $2, $3)',
            [moment, member, "old"],
        )
    async with in_transaction() as conn:
        await partitions.partition_by_month(conn, table, now)
        await partitions.partition_by_month(conn, table, now)  # a second run changes nothing

    # The live month stays with the old rows (nothing is rewritten); months follow.
    assert await _partitions(table) == [
        f"{table}_202701", f"{table}_202702", f"{table}_202703",
        f"{table}_before_202701", f"{table}_default",
    ]  # fmt: skip
    count = await _rows(
        f'SELECT tableoid::regclass::text AS part, count(*) AS n FROM "{table}" GROUP BY 1'
    )
    assert count == [{"part": f"{table}_before_202701", "n": len(old)}]

    async def insert(moment: datetime) -> dict[str, Any]:
        rows = await _rows(
            f'INSERT INTO "{table}" (created_at, member_id) VALUES ($1, $2) '
            "RETURNING id, tableoid::regclass::text AS part",
            moment,
            member,
        )
        return rows[0]

    # The sequence carries on; each row lands where its month is; one beyond every month
    # still goes in (the default partition) rather than failing the write.
    new = await insert(now)
    assert new["id"] == len(old) + 1 and new["part"] == f"{table}_before_202701"
    assert (await insert(datetime(2027, 1, 15, tzinfo=UTC)))["part"] == f"{table}_202701"
    assert (await insert(datetime(2028, 6, 1, tzinfo=UTC)))["part"] == f"{table}_default"
    indexes = await _rows("SELECT indexname FROM pg_indexes WHERE tablename = $1", table)
    assert {i["indexname"] for i in indexes} == {f"{table}_pkey", f"{table}_by_member"}
    try:
        await db.execute_query(
            f'INSERT INTO "{table}" (created_at, member_id) VALUES ($1, $2)', [now, 2**62]
        )
    except IntegrityError:
        pass
    else:
        raise AssertionError("the foreign key to member did not survive the conversion")
    # Months ahead, as the daily job makes them when the clock moves on.
    made = await partitions.ensure_months(db, table, now + timedelta(days=95))
    assert made == [f"{table}_202704", f"{table}_202705", f"{table}_202706"]
    await db.execute_script(f'DROP TABLE "{table}"')


async def test_two_daily_jobs_at_once_make_a_missing_month_once(database: Settings) -> None:
    """Two workers starting together (or a migrate beside a worker) run the job at the same
    time: the advisory lock lets one make the month, the other finds it made."""
    last = _months_from(datetime.now(UTC), partitions.AHEAD + 1)[-1]
    await connections.get("default").execute_script(f'DROP TABLE "share_open_{last}"')
    made = await asyncio.gather(partitions.ensure_all_months(), partitions.ensure_all_months())
    assert sorted(made[0] + made[1]) == [f"share_open_{last}"]
    assert f"share_open_{last}" in await _partitions("share_open")
