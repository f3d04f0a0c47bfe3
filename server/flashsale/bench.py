"""`haodian bench flashsale`: the grab against a plain JSON endpoint and a PostgreSQL-only
baseline, on the same running server, in one run.

With no arguments it prepares everything itself: a bench database on the configured
PostgreSQL (HAODIAN_DATABASE_URL, else postgres://haodian:haodian@127.0.0.1:5432/
haodian_bench, created if missing), a free logical database on the configured Redis
(HAODIAN_REDIS_URL, else redis://127.0.0.1:6379/<free db>), members and their tokens,
three sales, and `haodian serve --workers 2` with the bench-only baseline route. Load
comes from wrk (Debian package `wrk`), a separate process, at 64 connections; the Redis
ceiling from `redis-benchmark` running EVALSHA of the same grab script.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from server.bench import harness, load

NAME = "flashsale"
HELP = "flash-sale grab vs plain JSON vs a PostgreSQL-only grab (wrk, 64 connections)"


def configure(p: argparse.ArgumentParser) -> None:
    load.add_wrk_options(p, "grab")


async def _prepare(env: dict[str, str], members: int, workdir: Path) -> dict[str, Any]:
    from server.flashsale import service
    from server.flashsale.models import BaselineStock

    async with harness.bench_backends(env) as (settings, redis, scripts):
        sku = await harness.make_sku()
        tokens = workdir / "tokens.txt"
        made = await harness.make_members(settings, members)
        tokens.write_text("\n".join(token for _, token in made) + "\n")
        now = datetime.now(UTC)
        common = dict(
            sku_id=sku.id,
            price_fen=990,
            starts_at=now - timedelta(seconds=1),
            ends_at=now + timedelta(hours=2),
        )
        big = await service.create_sale(
            redis, scripts, units=5_000_000, per_member_limit=1000, **common
        )
        small = await service.create_sale(redis, scripts, units=100, per_member_limit=1, **common)
        ceiling = await service.create_sale(
            redis, scripts, units=50_000_000, per_member_limit=1000, **common
        )
        base = await service.create_sale(
            redis, scripts, units=5_000_000, per_member_limit=1000, **common
        )
        await BaselineStock.create(sale_id=base.id, stock=base.units)
        return {
            "tokens": str(tokens),
            "big": big.id,
            "small": small.id,
            "ceiling": ceiling.id,
            "base": base.id,
            "units": {big.id: big.units, small.id: small.units},
            "limits": {big.id: big.per_member_limit, small.id: small.per_member_limit},
        }


def _prepared(args: argparse.Namespace, seconds: int) -> str:
    return load.prepared_requests(args.threads, seconds)


def _redis_benchmark(redis_url: str, sale_id: int, n: int) -> float:
    import redis as sync_redis
    from redis.connection import parse_url

    from server.flashsale import service

    kw = parse_url(redis_url)
    client = sync_redis.Redis.from_url(redis_url)
    sha = client.script_load(service.GRAB.read_text())
    k = service.sale_keys(sale_id)
    tag = f"fs:{{{sale_id}}}"
    cmd = [
        "redis-benchmark",
        "-h",
        kw.get("host", "127.0.0.1"),
        "-p",
        str(kw.get("port", 6379)),
        "--dbnum",
        str(kw.get("db", 0)),
        "-n",
        str(n),
        "-c",
        "64",
        "-r",
        "1000000",
        "-q",
    ]
    if kw.get("password"):
        cmd += ["-a", kw["password"]]
    cmd += [
        "EVALSHA", sha, "6", k["meta"], k["stock"], k["buyers"], k["reqs"], k["stream"],
        f"{tag}:rl:bench", f"FS{sale_id}-", "1000000000", "1000000000",
        "__rand_int__", "__rand_int__", "1", "", "127.0.0.1",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    m = re.search(r"([\d.]+) requests per second", out)
    return float(m.group(1)) if m else float("nan")


async def _check(env: dict[str, str], info: dict[str, Any]) -> dict[str, Any]:
    """Correctness counters from Redis: units taken vs units offered, limits held."""
    from server.flashsale import service
    from server.infra.redis import make_client

    redis = make_client(env["HAODIAN_REDIS_URL"])
    try:
        oversold = 0
        over_limit = 0
        taken = {}
        for sale_id, units in info["units"].items():
            k = service.sale_keys(sale_id)
            left = int(await redis.get(k["stock"]))
            stream = await redis.xlen(k["stream"])
            took = units - left
            taken[sale_id] = took
            oversold += max(0, took - units) + max(0, -left) + abs(stream - took)
            limit = info["limits"][sale_id]
            buyers = await redis.hgetall(k["buyers"])
            over_limit += sum(1 for v in buyers.values() if int(v) > limit)
        return {"oversold": oversold, "over_limit": over_limit, "taken": taken}
    finally:
        await redis.aclose()


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from server.bench import print_report

    harness.need_tool("wrk", "wrk")
    harness.need_tool("redis-benchmark", "redis-tools")
    with harness.BenchRun() as bench:
        workdir, redis_url = bench.workdir, bench.redis_url()
        env = harness.server_env(
            workdir,
            asyncio.run(harness.bench_database_url()),
            redis_url,
            HAODIAN_BENCH_ROUTES="1",
            # The bench sends every grab from one address and reuses members: lift the
            # per-member and per-address rate limits (the grab still runs both checks).
            HAODIAN_FLASHSALE_MEMBER_RPS="1000000000",
            HAODIAN_FLASHSALE_IP_RPS="1000000000",
        )
        load.say_preparing(env, args.members)
        info = asyncio.run(_prepare(env, args.members, workdir))
        server = bench.start_server(env, args.workers)
        base, wrk = server.base, load.Wrk.on(server, args, redis_url)
        lua = load.write_scripts(workdir)
        grab_lua, get_lua = lua["tokens"], lua["get"]
        tokens = info["tokens"]
        body = '{"quantity":1}'
        load.say_measuring(args)
        # A bar on stderr across the steps (about a minute with the defaults); stdout keeps
        # the table and the JSON line only.
        bench.bar = bar = tqdm(
            total=3 * args.rounds + 4, desc="bench flashsale", unit="step", leave=False
        )
        bar.set_postfix_str("warm-up")
        # Warm-up: both workers connect and cache what they cache.
        load.warm_up(f"{base}/healthz")
        ceiling_path = f"/api/v1/flash-sales/{info['ceiling']}/orders"
        load.warm_up(base + ceiling_path, grab_lua, ceiling_path, tokens, body)

        def grabs(path: str, seconds: int | None = None) -> dict[str, Any]:
            prepared = _prepared(args, seconds or args.duration)
            run_id = load.run_id()
            return wrk.run(
                base + path, grab_lua, path, tokens, body, "POST", prepared, run_id, seconds=seconds
            )

        # The plain JSON endpoint and the grab alternate in rounds, so a burst of load from
        # anything else on the machine weighs on both sides of the ratio alike.
        grab_path = f"/api/v1/flash-sales/{info['big']}/orders"
        # Both go through the same wrk script (a token and a key per request, statuses
        # counted), so the load generator costs the same per request on either side; the
        # static-request JSON figure is reported too.
        json_parts, grab_parts, static_parts = [], [], []
        per_round = max(1, args.duration // args.rounds)
        bar.update()
        for round_no in range(1, args.rounds + 1):
            bar.set_postfix_str(f"round {round_no}/{args.rounds}: JSON, grab, plain JSON")
            json_parts.append(
                wrk.run(f"{base}/healthz", grab_lua, "/healthz", tokens, "", "GET",
                        _prepared(args, per_round), load.run_id(), seconds=per_round)
            )  # fmt: skip
            bar.update()
            grab_parts.append(grabs(grab_path, per_round))
            bar.update()
            static_parts.append(wrk.run(f"{base}/healthz", get_lua, seconds=per_round))
            bar.update()
        bar.set_postfix_str("sold-out path")
        json_r, grab_r = load.merge(json_parts), load.merge(grab_parts)
        static_r = load.merge(static_parts)
        sold_r = grabs(f"/api/v1/flash-sales/{info['small']}/orders")
        bar.update()
        bar.set_postfix_str("PostgreSQL-only grab")
        pg_r = grabs(f"/api/v1/_bench/flash-sales/{info['base']}/pg-orders")
        bar.update()
        bar.set_postfix_str("redis-benchmark EVALSHA")
        bench.stop_server()
        # About as many calls as the success path's rounds make, so the ceiling takes
        # seconds, not minutes, at any --duration.
        evalsha = _redis_benchmark(redis_url, info["ceiling"], n=20_000 * max(1, args.duration))
        bar.update()
        checks = asyncio.run(_check(env, info))

    row = load.table_row
    rows = [
        row("(a) plain JSON GET /healthz", static_r, 0),
        row("(a') same, through the grab's wrk script", json_r, 0),
        row("(b) grab, success path", grab_r, 0),
        row("(c) grab, sold-out path (100 units)", sold_r, 400),
        row("(d) PostgreSQL-only grab", pg_r, 0),
    ]
    grab_ok = grab_r["statuses"].get(0, 0) / grab_r["seconds"]
    pg_ok = pg_r["statuses"].get(0, 0) / pg_r["seconds"]
    successes = sold_r["statuses"].get(0, 0)
    summary = {
        # The headline compares with plain JSON measured the cheapest way (static wrk
        # requests); the same-generator ratio is reported beside it.
        "json_rps": round(static_r["rps"]),
        "grab_rps": round(grab_ok),
        "soldout_rps": round(sold_r["rps"]),
        "pg_baseline_rps": round(pg_ok),
        "evalsha_ops": round(evalsha),
        "grab_vs_json": round(grab_ok / static_r["rps"], 3),
        "json_same_generator_rps": round(json_r["rps"]),
        "grab_vs_json_same_generator": round(grab_ok / json_r["rps"], 3),
        "grab_vs_pg": round(grab_ok / pg_ok, 1) if pg_ok else None,
        "oversold": checks["oversold"],
        # Every 2xx of the success-path runs took one unit (no replays): units taken may
        # exceed the 2xx count only by grabs still in flight when wrk stopped.
        "grab_2xx": grab_r["statuses"].get(0, 0),
        "grab_units_taken": checks["taken"][info["big"]],
        "grab_answers_match_units_taken": 0
        <= checks["taken"][info["big"]] - grab_r["statuses"].get(0, 0)
        <= args.connections * args.rounds,
        "over_limit": checks["over_limit"],
        "successes": successes,
        "units": info["units"][info["small"]],
        # CPU per request (µs) of the server, Redis and wrk: JSON vs grab, and their ratio.
        **load.measured_facts("grab", static_r, grab_r),
        **load.run_facts(args),
    }
    print_report("haodian bench flashsale", rows, summary)
    ok = checks["oversold"] == 0 and successes <= summary["units"]
    return 0 if ok and summary["grab_answers_match_units_taken"] else 1
