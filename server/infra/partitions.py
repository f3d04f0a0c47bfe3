"""Append-only tables partitioned by month of `created_at` (PostgreSQL), and the daily job
that keeps months ahead ready.

Why these and not others (docs/CAPACITY.md): a partitioned table's unique keys must carry
the partition key, so only a table whose guarantees do not rest on a unique key without
`created_at`, and that no foreign key points at, is partitioned by month. `order_event` (five
rows an order) and `share_open` (every open of a share link) are; `ledger_entry` is not (its
unique (account, reason, reference) is what makes a retried money move apply once), nor
`coupon` (its unit and claim keys), nor `order` while six tables reference its id.

Months follow the business's clock (Asia/Shanghai), as reports and archiving do. The rows
from before the conversion stay in one partition, `<table>_before_<yyyymm>`, attached for
everything earlier than the month after the conversion's (a live table has rows of the
current month: they stay where they are): the conversion rewrites no row and holds its lock
for the time a primary-key rebuild takes. A DEFAULT partition takes a row no month covers
yet (a worker down for months), so writes never fail for want of a partition; the job then
cannot create that month until an operator moves those rows (it fails, and says so).
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any

from arq import cron

from server.infra.clock import SHANGHAI, utcnow

log = logging.getLogger("haodian.partitions")

MONTHLY = ("order_event", "share_open")
AHEAD = 3  # months created beyond the current one; the daily job keeps it so


def month_of(moment: datetime) -> date:
    local = moment.astimezone(SHANGHAI)
    return date(local.year, local.month, 1)


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _bound(month: date) -> str:
    return f"TIMESTAMPTZ '{month.isoformat()} 00:00:00+08'"


async def _rows(client: Any, sql: str, values: list[Any] | None = None) -> list[dict[str, Any]]:
    return list(await client.execute_query_dict(sql, values or []))


async def is_partitioned(client: Any, table: str) -> bool:
    rows = await _rows(
        client, "SELECT relkind::text AS relkind FROM pg_class WHERE oid = to_regclass($1)", [table]
    )
    return bool(rows) and rows[0]["relkind"] == "p"


async def partition_by_month(client: Any, table: str, now: datetime | None = None) -> None:
    """Turn `table` (id bigint key, created_at timestamptz) into a table partitioned by month:
    the old table becomes the partition of everything before next month, the parent keeps the
    name, its columns, defaults, indexes (under their old names), foreign keys and sequence.
    Run inside one transaction (a migration's); does nothing on a table already partitioned."""
    if await is_partitioned(client, table):
        return
    first = next_month(month_of(now or utcnow()))
    before = f"{table}_before_{first:%Y%m}"
    indexes = await _rows(
        client,
        "SELECT i.relname AS name FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = to_regclass($1) AND NOT x.indisprimary",
        [table],
    )
    foreign = await _rows(
        client,
        "SELECT conname AS name, pg_get_constraintdef(oid) AS definition FROM pg_constraint "
        "WHERE conrelid = to_regclass($1) AND contype = 'f'",
        [table],
    )
    pk = await _rows(
        client,
        "SELECT conname AS name FROM pg_constraint WHERE conrelid = to_regclass($1) "
        "AND contype = 'p'",
        [table],
    )
    sequences = await _rows(
        client, "SELECT pg_get_serial_sequence($1, 'id') AS name", [f'"{table}"']
    )
    script = [f'ALTER TABLE "{table}" RENAME TO "{before}"']
    script += [f'ALTER TABLE "{before}" DROP CONSTRAINT "{row["name"]}"' for row in pk]
    script += [
        f'ALTER TABLE "{before}" ADD CONSTRAINT "{before}_pkey" PRIMARY KEY (id, created_at)',
        # The old indexes keep serving their partition; the parent's get their names.
        *(f'ALTER INDEX "{i["name"]}" RENAME TO "{i["name"]}_b"' for i in indexes),
        f'CREATE TABLE "{table}" (LIKE "{before}" INCLUDING DEFAULTS INCLUDING INDEXES) '
        "PARTITION BY RANGE (created_at)",
        *(f'ALTER TABLE "{table}" ADD CONSTRAINT "{f["name"]}" {f["definition"]}' for f in foreign),
        # A proven bound lets ATTACH skip its scan of the old rows.
        f'ALTER TABLE "{before}" ADD CONSTRAINT "{before}_range" '
        f"CHECK (created_at < {_bound(first)})",
        f'ALTER TABLE "{table}" ATTACH PARTITION "{before}" '
        f"FOR VALUES FROM (MINVALUE) TO ({_bound(first)})",
        f'CREATE TABLE "{table}_default" PARTITION OF "{table}" DEFAULT',
    ]
    if sequences and sequences[0]["name"]:
        script.append(f'ALTER SEQUENCE {sequences[0]["name"]} OWNED BY "{table}".id')
    for sql in script:
        await client.execute_script(sql)
    # LIKE named the parent's indexes after their columns; give them the old names back, so
    # the schema reads as the models declare it.
    renamed = await _rows(
        client,
        "SELECT parent.relname AS parent, child.relname AS child FROM pg_inherits h "
        "JOIN pg_class parent ON parent.oid = h.inhparent "
        "JOIN pg_class child ON child.oid = h.inhrelid "
        "WHERE child.relname = ANY($1::text[])",
        [[f"{i['name']}_b" for i in indexes]],
    )
    for row in renamed:
        if row["parent"] == row["child"].removesuffix("_b"):
            continue  # LIKE chose the same name
        await client.execute_script(
            f'ALTER INDEX "{row["parent"]}" RENAME TO "{row["child"].removesuffix("_b")}"'
        )
    await ensure_months(client, table, now)
    log.info("table partitioned by month", extra={"table": table, "first": str(first)})


async def _covered_until(client: Any, table: str) -> date | None:
    """The month the rows from before the conversion end at (the `_before_` partition's name)."""
    rows = await _rows(
        client,
        "SELECT c.relname AS name FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid "
        "WHERE h.inhparent = to_regclass($1) AND c.relname LIKE $2",
        [table, f"{table}_before_%"],
    )
    if not rows:
        return None
    stamp = rows[0]["name"].rsplit("_", 1)[1]
    return date(int(stamp[:4]), int(stamp[4:]), 1)


async def ensure_months(client: Any, table: str, now: datetime | None = None) -> list[str]:
    """The partitions of this month and AHEAD more, where missing (and not covered by the
    rows from before the conversion); the names created. Run in a transaction holding
    `LOCK_KEY` (`ensure_all_months`) or the conversion's."""
    month = month_of(now or utcnow())
    end = month
    for _ in range(AHEAD):
        end = next_month(end)
    covered = await _covered_until(client, table)
    if covered is not None and covered > month:
        month = covered
    made: list[str] = []
    while month <= end:
        name = f"{table}_{month:%Y%m}"
        exists = await _rows(client, "SELECT to_regclass($1) IS NOT NULL AS e", [name])
        if not exists[0]["e"]:
            await client.execute_script(
                f'CREATE TABLE "{name}" PARTITION OF "{table}" '
                f"FOR VALUES FROM ({_bound(month)}) TO ({_bound(next_month(month))})"
            )
            made.append(name)
        month = next_month(month)
    return made


LOCK_KEY = 7_104_202_612  # pg_advisory_xact_lock: one maker of partitions at a time
LOCK_TIMEOUT = "5s"  # CREATE ... PARTITION OF locks the parent: never queue writes for long


async def ensure_all_months(ctx: dict[str, Any] | None = None) -> list[str]:
    """The daily job: every monthly table has its next months (PostgreSQL only). One job at a
    time (an advisory lock: two workers starting together, or a migrate beside a worker);
    a parent busy past LOCK_TIMEOUT fails this run, and tomorrow's, with months to spare,
    tries again."""
    from tortoise import connections
    from tortoise.transactions import in_transaction

    if connections.get("default").capabilities.dialect != "postgres":
        return []
    made: list[str] = []
    async with in_transaction() as conn:
        await conn.execute_script(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        await conn.execute_query("SELECT pg_advisory_xact_lock($1)", [LOCK_KEY])
        for table in MONTHLY:
            if await is_partitioned(conn, table):
                made += await ensure_months(conn, table)
    if made:
        log.info("month partitions created", extra={"partitions": made})
    return made


# Daily, and at start: a worker that was down over a month's end makes the months it missed.
cron_jobs = [cron(ensure_all_months, hour={4}, minute={10}, run_at_startup=True)]
