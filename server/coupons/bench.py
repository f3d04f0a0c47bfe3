"""`haodian bench coupons`: the coupon-centre claim against a plain JSON endpoint and the
PostgreSQL-guarded claim it replaced, on the same running server, in one run; then a
campaign issuance of a million coupons.

With no arguments it prepares everything itself (through `server.bench.harness`): the bench
database (HAODIAN_DATABASE_URL, else haodian_bench on the loopback PostgreSQL role haodian),
a free logical Redis database, members and their tokens, four templates (one big enough
for the whole run, one of 100 units for the sold-out path, one with the baseline's stock
row, one the warm-up claims from), and `haodian serve --workers 2` with the bench-only
baseline route. Load comes from wrk at 64 connections, each request with a token and its
own Idempotency-Key; plain JSON and the claim alternate in rounds.

Then, with the server stopped, an issuance to `--issue` members (created once and kept in
the bench database) runs in this process, batch by batch, under a progress bar; its
coupons are deleted afterwards so the database does not grow run after run.

Afterwards the database is read back: coupons beyond a template's total or sharing a unit
(`over_issued`), members over a template's limit (`over_limit`), and members of the issuance
with other than one coupon (`issuance_wrong`). Any of them non-zero: exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from server.bench import harness, load

NAME = "coupons"
HELP = "coupon claim vs plain JSON vs the PostgreSQL-guarded claim, and a 1M-coupon issuance"

BIG_TOTAL = 50_000_000
BIG_LIMIT = 1_000_000  # each member claims many times in the run
ISSUE_NICK = "bench-issuance"


def configure(p: argparse.ArgumentParser) -> None:
    load.add_wrk_options(p, "claim")
    p.add_argument(
        "--issue", type=int, default=1_000_000, help="members the issuance sends to (0: skip)"
    )


async def _prepare(env: dict[str, str], members: int, workdir: Any) -> dict[str, Any]:
    from tortoise import connections

    from server.coupons import baseline, templates

    async with harness.bench_backends(env) as (settings, _redis, _scripts):
        conn = connections.get("default")
        if conn.capabilities.dialect == "postgres":
            # Earlier runs' issuances were deleted: their dead rows slow every insert of this
            # run (three runs in a row took the issuance from 71,000 to 33,000 coupons/s).
            await conn.execute_script("VACUUM (ANALYZE) coupon, coupon_issuance_member")
        made = await harness.make_members(settings, members)
        tokens = workdir / "tokens.txt"
        tokens.write_text("\n".join(token for _, token in made) + "\n")
        common: dict[str, Any] = {"kind": "amount_off", "amount_off_fen": 500, "valid_days": 30}
        big = await templates.create_template(
            {**common, "name": "bench big", "total": BIG_TOTAL, "per_member_limit": BIG_LIMIT}
        )
        small = await templates.create_template(
            {**common, "name": "bench sold out", "total": 100, "per_member_limit": 1}
        )
        pg = await templates.create_template(
            {**common, "name": "bench baseline", "total": BIG_TOTAL, "per_member_limit": BIG_LIMIT}
        )
        warm = await templates.create_template(
            {**common, "name": "bench warm-up", "total": BIG_TOTAL, "per_member_limit": BIG_LIMIT}
        )
        await baseline.create_baseline(pg.id, BIG_TOTAL)
        return {
            "tokens": str(tokens),
            "big": big.id,
            "small": small.id,
            "pg": pg.id,
            "warm": warm.id,
        }


async def _issue(env: dict[str, str], count: int, bar: Any) -> dict[str, Any]:
    """A million-member issuance, timed from its first batch to done (members and the
    issuance's member list are made before the clock starts)."""
    from tortoise import connections

    from server.coupons import issuance, templates
    from server.coupons.models import Coupon
    from server.identity.models import Member

    async with harness.bench_backends(env) as (_settings, _redis, scripts):
        conn = connections.get("default")
        have = await Member.filter(nickname=ISSUE_NICK).count()
        if have < count:
            bar.set_postfix_str(f"issuance: creating {count - have:,} members")
            await conn.execute_query(
                "INSERT INTO member (nickname, avatar_url, gender, phone_masked, points, tier,"
                " disabled, created_at, updated_at)"
                " SELECT $1, '', 0, '', 0, 'regular', false, now(), now()"
                " FROM generate_series(1, $2)",
                [ISSUE_NICK, count - have],
            )
        ids = list(
            await Member.filter(nickname=ISSUE_NICK)
            .order_by("id")
            .limit(count)
            .values_list("id", flat=True)
        )
        t = await templates.create_template(
            {
                "name": "bench campaign",
                "kind": "amount_off",
                "amount_off_fen": 300,
                "valid_days": 7,
                "total": count,
                "in_center": False,
            }
        )
        bar.set_postfix_str("issuance: listing members")
        i = await issuance.create_issuance(t.id, ids, None)
        bar.set_postfix_str(f"issuance: {count:,} coupons")
        started = time.perf_counter()
        done = await issuance.run_issuance(
            scripts, i.id, progress=lambda b: bar.set_postfix_str(f"issuance: +{b.issued:,}")
        )
        seconds = time.perf_counter() - started
        rows = await conn.execute_query_dict(
            "SELECT count(*) AS n, count(DISTINCT member_id) AS members,"
            " count(DISTINCT unit) AS units FROM coupon WHERE issuance_id = $1",
            [i.id],
        )
        n, members, units = rows[0]["n"], rows[0]["members"], rows[0]["units"]
        bar.set_postfix_str("issuance: cleaning up")
        await Coupon.filter(issuance_id=i.id).delete()
        await conn.execute_query(
            "DELETE FROM coupon_issuance_member WHERE issuance_id = $1", [i.id]
        )
        return {
            "issued": done.issued,
            "seconds": seconds,
            "status": done.status,
            # every member exactly one coupon, every coupon its own unit
            "wrong": abs(count - members) + (n - members) + (n - units),
            "over_total": max(0, n - count),
        }


async def _check(env: dict[str, str], info: dict[str, Any]) -> dict[str, Any]:
    """Correctness from the database: totals, units, limits."""
    from tortoise import connections

    async with harness.bench_backends(env):
        conn = connections.get("default")
        over_issued = over_limit = 0
        counts = {}
        for key, total, limit in (
            ("big", BIG_TOTAL, BIG_LIMIT),
            ("small", 100, 1),
            ("pg", BIG_TOTAL, BIG_LIMIT),
        ):
            tid = info[key]
            row = (
                await conn.execute_query_dict(
                    "SELECT count(*) AS n, count(DISTINCT unit) AS units,"
                    " count(unit) AS with_unit FROM coupon WHERE template_id = $1",
                    [tid],
                )
            )[0]
            counts[key] = row["n"]
            over_issued += max(0, row["n"] - total) + (row["with_unit"] - row["units"])
            over = await conn.execute_query_dict(
                "SELECT count(*) AS n FROM (SELECT member_id FROM coupon WHERE template_id = $1"
                " GROUP BY member_id HAVING count(*) > $2) x",
                [tid, limit],
            )
            over_limit += over[0]["n"]
        return {"over_issued": over_issued, "over_limit": over_limit, "counts": counts}


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from server.bench import print_report

    harness.need_tool("wrk", "wrk")
    with harness.BenchRun() as bench:
        workdir, redis_url = bench.workdir, bench.redis_url()
        env = harness.server_env(
            workdir, asyncio.run(harness.bench_database_url()), redis_url, HAODIAN_BENCH_ROUTES="1"
        )
        load.say_preparing(env, args.members)
        info = asyncio.run(_prepare(env, args.members, workdir))
        server = bench.start_server(env, args.workers)
        base, wrk = server.base, load.Wrk.on(server, args, redis_url)
        lua = load.write_scripts(workdir)
        tokens_lua, get_lua = lua["tokens"], lua["get"]
        tokens = info["tokens"]
        load.say_measuring(args)
        bench.bar = bar = tqdm(
            total=3 * args.rounds + 4, desc="bench coupons", unit="step", leave=False
        )
        bar.set_postfix_str("warm-up")
        load.warm_up(f"{base}/healthz")
        big = f"/api/v1/coupon-center/{info['big']}/claim"
        warm = f"/api/v1/coupon-center/{info['warm']}/claim"  # keeps `big` counted exactly
        load.warm_up(base + warm, tokens_lua, warm, tokens, "")

        def claims(path: str, seconds: int | None = None) -> dict[str, Any]:
            seconds = seconds or args.duration
            return wrk.run(
                base + path,
                tokens_lua,
                path,
                tokens,
                "",
                "POST",
                load.prepared_requests(args.threads, seconds),
                load.run_id(),
                seconds=seconds,
            )

        json_parts, claim_parts, static_parts = [], [], []
        per_round = max(1, args.duration // args.rounds)
        bar.update()
        for round_no in range(1, args.rounds + 1):
            bar.set_postfix_str(f"round {round_no}/{args.rounds}: JSON, claim, plain JSON")
            json_parts.append(
                wrk.run(f"{base}/healthz", tokens_lua, "/healthz", tokens, "", "GET",
                        load.prepared_requests(args.threads, per_round), load.run_id(),
                        seconds=per_round)
            )  # fmt: skip
            bar.update()
            claim_parts.append(claims(big, per_round))
            bar.update()
            static_parts.append(wrk.run(f"{base}/healthz", get_lua, seconds=per_round))
            bar.update()
        json_r, claim_r = load.merge(json_parts), load.merge(claim_parts)
        static_r = load.merge(static_parts)
        bar.set_postfix_str("sold-out path")
        sold_r = claims(f"/api/v1/coupon-center/{info['small']}/claim")
        bar.update()
        bar.set_postfix_str("PostgreSQL-guarded claim")
        pg_r = claims(f"/api/v1/_bench/coupon-center/{info['pg']}/pg-claim")
        bar.update()
        bench.stop_server()
        checks = asyncio.run(_check(env, info))
        bar.update()
        issued = (
            asyncio.run(_issue(env, args.issue, bar))
            if args.issue
            else {"issued": 0, "seconds": 0.0, "status": "skipped", "wrong": 0, "over_total": 0}
        )
        bar.update()

    row = load.table_row
    rows = [
        row("(a) plain JSON GET /healthz", static_r, 0),
        row("(a') same, through the claim's wrk script", json_r, 0),
        row("(b) claim, success path (201)", claim_r, 0),
        row("(c) claim, sold-out path (100 units)", sold_r, 400),
        row("(d) PostgreSQL-guarded claim (hot stock row)", pg_r, 0),
    ]
    claim_ok = claim_r["statuses"].get(0, 0) / claim_r["seconds"]
    pg_ok = pg_r["statuses"].get(0, 0) / pg_r["seconds"]
    claim_2xx = claim_r["statuses"].get(0, 0)
    summary = {
        "json_rps": round(static_r["rps"]),
        "claim_rps": round(claim_ok),
        "soldout_rps": round(sold_r["rps"]),
        "pg_claim_rps": round(pg_ok),
        "claim_vs_json": round(claim_ok / static_r["rps"], 3),
        "claim_vs_pg": round(claim_ok / pg_ok, 1) if pg_ok else None,
        "json_same_generator_rps": round(json_r["rps"]),
        "claim_vs_json_same_generator": round(claim_ok / json_r["rps"], 3),
        "issued": issued["issued"],
        "issued_per_s": round(issued["issued"] / issued["seconds"]) if issued["seconds"] else 0,
        "issuance_status": issued["status"],
        "issuance_wrong": issued["wrong"],
        "over_issued": checks["over_issued"] + issued["over_total"],
        "over_limit": checks["over_limit"],
        # Every 201 is a coupon in the database; rows may exceed the 2xx count only by claims
        # still in flight when wrk stopped.
        "claim_2xx": claim_2xx,
        "claim_rows": checks["counts"]["big"],
        "claim_answers_match_rows": 0
        <= checks["counts"]["big"] - claim_2xx
        <= args.connections * args.rounds,
        "soldout_successes": sold_r["statuses"].get(0, 0),
        **load.measured_facts("claim", static_r, claim_r),
        **load.run_facts(args),
    }
    print_report("haodian bench coupons", rows, summary)
    ok = (
        summary["over_issued"] == 0
        and summary["over_limit"] == 0
        and summary["issuance_wrong"] == 0
        and summary["claim_answers_match_rows"]
    )
    return 0 if ok else 1
