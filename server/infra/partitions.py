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
everything earlier than the first month: the conversion rewrites no row and holds its lock
for the time a primary-key rebuild takes.
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
    the old table becomes the partition of everything before this month, the parent keeps the
    name, its columns, defaults, indexes (under their old names), foreign keys and sequence.
    Run inside one transaction (a migration's); does nothing on a table already partitioned."""
    if await is_partitioned(client, table):
        return
    first = month_of(now or utcnow())
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


async def ensure_months(client: Any, table: str, now: datetime | None = None) -> list[str]:
    """The partitions of this month and AHEAD more, where missing; the names created."""
    month = month_of(now or utcnow())
    made: list[str] = []
    for _ in range(AHEAD + 1):
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


async def ensure_all_months(ctx: dict[str, Any] | None = None) -> list[str]:
    """The daily job: every monthly table has its next months (PostgreSQL only)."""
    from tortoise import connections

    client = connections.get("default")
    if client.capabilities.dialect != "postgres":
        return []
    made: list[str] = []
    for table in MONTHLY:
        if await is_partitioned(client, table):
            made += await ensure_months(client, table)
    if made:
        log.info("month partitions created", extra={"partitions": made})
    return made


# Daily, and at start: a worker that was down over a month's end makes the months it missed.
cron_jobs = [cron(ensure_all_months, hour={4}, minute={10}, run_at_startup=True)]
