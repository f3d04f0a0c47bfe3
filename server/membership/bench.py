"""`haodian bench rfm`: RFM scores and a segment for N members (default 200,000), computed the
set-based way (what the worker runs: one aggregate, one ranking UPDATE, one INSERT ... SELECT
per segment) side by side with a naive per-member loop over the same data (a query per
member to aggregate, quintiles in Python, an UPDATE per member, a rule check per member).

Its data is its own: a fresh PostgreSQL database (on the loopback server's haodian role, or
next to HAODIAN_DATABASE_URL's), migrated, filled with growth events by generate_series, and
dropped at the end. The loop is timed on a sample (--loop-members) — at ~1 ms a member it
would take minutes at full size — and both are reported in members per second, so the ratio
compares like with like.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

NAME = "rfm"
HELP = "RFM + segment for N members: set-based SQL vs a per-member loop (members/s, ratio)"

EXTRAPOLATE_TO = 80_000_000


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--members", type=int, default=200_000, help="members with purchases (200,000)")
    p.add_argument("--events", type=int, default=6, help="purchases per member, on average (6)")
    p.add_argument(
        "--loop-members", type=int, default=3_000, help="members the naive loop is timed on (3,000)"
    )


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _fresh_database() -> tuple[str, str]:
    """(admin url, url of a new empty database)."""
    import os

    import asyncpg

    from server.bench.harness import bench_database_url

    base = os.environ.get("HAODIAN_DATABASE_URL") or await bench_database_url()
    admin = base.rsplit("/", 1)[0] + "/postgres"
    name = f"haodian_bench_rfm_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin, base.rsplit("/", 1)[0] + "/" + name


async def _drop(admin: str, url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


async def _fill(conn: Any, members: int, events: int) -> int:
    """Growth events over the last 12 months: member i buys 1..2*events-1 times (so frequency
    and money spread), amounts 5-300 yuan, some refunds."""
    await conn.execute_query(
        "INSERT INTO membership_growth (created_at, updated_at, member_id, fen, kind, ref, at)"
        " SELECT now(), now(), m, (500 + (m * 7919 + k * 104729) % 29500)"
        "   * (CASE WHEN (m + k) % 23 = 0 AND k > 1 THEN -1 ELSE 1 END),"
        "   CASE WHEN (m + k) % 23 = 0 AND k > 1 THEN 'refunded' ELSE 'paid' END,"
        "   'b' || m || '-' || k,"
        "   now() - ((m * 31 + k * 17) % 360) * interval '1 day'"
        " FROM generate_series(1, $1) AS m,"
        "  LATERAL generate_series(1, 1 + (m % (2 * $2 - 1))) AS k",
        [members, events],
    )
    rows = await conn.execute_query_dict("SELECT COUNT(*) AS n FROM membership_growth")
    return int(rows[0]["n"])


async def _set_based(segment: Any) -> float:
    from server.membership import segments

    start = time.perf_counter()
    await segments.compute_rfm(full=True)
    await segments.compute_segment(segment)
    return time.perf_counter() - start


async def _loop(conn: Any, member_ids: list[int]) -> tuple[float, int]:
    """What a per-member job does: aggregate each member, rank in Python, write each row,
    then test each member against the segment's rule. (seconds, members the rule held)"""
    from server.infra.clock import utcnow

    start = time.perf_counter()
    cutoff = utcnow() - timedelta(days=365)
    agg: dict[int, tuple[Any, int, int]] = {}
    for member_id in member_ids:
        row = await conn.execute_query_dict(
            "SELECT MAX(at) AS last_at, SUM(CASE WHEN fen > 0 THEN 1 ELSE 0 END) AS freq,"
            " SUM(fen) AS money FROM membership_growth WHERE member_id = $1 AND at > $2",
            [member_id, cutoff],
        )
        if row and row[0]["freq"]:
            agg[member_id] = (row[0]["last_at"], int(row[0]["freq"]), int(row[0]["money"]))
    n = len(agg)

    def quintiles(key: int) -> dict[int, int]:
        ordered = sorted(agg, key=lambda m: (agg[m][key], m))
        return {m: 1 + i * 5 // n for i, m in enumerate(ordered)}

    r, f, m = quintiles(0), quintiles(1), quintiles(2)
    held = 0
    for member_id, (last_at, freq, money) in agg.items():
        await conn.execute_query(
            "INSERT INTO bench_rfm_loop (member_id, last_at, frequency, monetary_fen, r, f, m)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (member_id) DO UPDATE SET"
            " r = EXCLUDED.r, f = EXCLUDED.f, m = EXCLUDED.m",
            [member_id, last_at, freq, money, r[member_id], f[member_id], m[member_id]],
        )
        spent = await conn.execute_query_dict(
            "SELECT COALESCE(SUM(fen), 0) AS s FROM membership_growth"
            " WHERE member_id = $1 AND at > $2",
            [member_id, utcnow() - timedelta(days=90)],
        )
        held += int(spent[0]["s"]) >= 50_000  # the segment's rule, member by member
    return time.perf_counter() - start, held


async def _run(args: argparse.Namespace) -> int:
    from tortoise import Tortoise

    from server.bench import print_report
    from server.infra import db
    from server.membership.models import MemberRfm, Segment
    from server.settings import Settings

    admin, url = await _fresh_database()
    settings = Settings(database_url=url)
    try:
        print(f"preparing: {args.members:,} members in a fresh database ...", flush=True)
        await db.migrate(settings)
        await db.init_db(settings)
        conn = Tortoise.get_connection("default")
        events = await _fill(conn, args.members, args.events)
        await conn.execute_query("ANALYZE membership_growth")
        await conn.execute_query(
            "CREATE TABLE bench_rfm_loop (member_id BIGINT PRIMARY KEY, last_at TIMESTAMPTZ,"
            " frequency INT, monetary_fen BIGINT, r INT, f INT, m INT)"
        )
        segment = await Segment.create(
            name="bench spenders", rule={"type": "spent", "min_fen": 50_000, "days": 90}
        )
        print(f"measuring: set-based over {args.members:,}, loop over {args.loop_members:,}")
        set_s = await _set_based(segment)
        sample = list(range(1, min(args.loop_members, args.members) + 1))
        loop_s, loop_held = await _loop(conn, sample)
        scored = await MemberRfm.all().count()
        await segment.refresh_from_db()
        set_rate = args.members / set_s
        loop_rate = len(sample) / loop_s
        rows = [
            {
                "method": "set_based",
                "members": args.members,
                "seconds": round(set_s, 2),
                "members_per_s": round(set_rate),
            },
            {
                "method": "per_member_loop",
                "members": len(sample),
                "seconds": round(loop_s, 2),
                "members_per_s": round(loop_rate),
            },
        ]
        summary = {
            "members": args.members,
            "growth_events": events,
            "scored": scored,
            "segment_size": segment.size,
            "loop_segment_size": loop_held,  # over the loop's sample
            "set_members_per_s": round(set_rate),
            "loop_members_per_s": round(loop_rate),
            "set_vs_loop": round(set_rate / loop_rate, 1),
            "set_80m_minutes": round(EXTRAPOLATE_TO / set_rate / 60, 1),
            "loop_80m_hours": round(EXTRAPOLATE_TO / loop_rate / 3600, 1),
        }
        print_report("RFM + one segment (PostgreSQL, this machine)", rows, summary)
        return 0 if scored == args.members else 1
    finally:
        await db.close_db()
        await _drop(admin, url)
