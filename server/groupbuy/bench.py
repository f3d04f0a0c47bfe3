"""`haodian bench groupbuy`: joining a friend's group against a plain JSON endpoint, on the
same running server, in one run; then the full-group refusal.

With no arguments it prepares everything itself (through `server.bench.harness`): a bench
database on the configured PostgreSQL (HAODIAN_DATABASE_URL, else postgres://haodian:
haodian@127.0.0.1:5432/haodian_bench), a free logical database on the configured Redis
(HAODIAN_REDIS_URL, else redis://127.0.0.1:6379/<free db>), members and their tokens, one
activity (groups of 10) and enough open groups that every join of the run finds a free seat:
each opened by its leader through the seat script and made joinable by `open_group.lua`,
which is what the outbox does once a leader has paid. The join is Redis-only (the worker
would write its order later), so the server runs without one. Load comes from wrk (Debian
package `wrk`) at 64 connections; every join is a distinct (group, member) pair with its own
Idempotency-Key, and no group is offered more joins than it has free seats.

Afterwards the activity is read back from Redis: units reserved must be exactly groups x
size (`oversold`), and no group may hold more seats than its size, seats that disagree with
its count, its members or its stream entries (`groups_over_size`). Either one non-zero
makes the exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from server.bench import harness, load

NAME = "groupbuy"
HELP = "group-buy join vs plain JSON, and the full-group refusal (wrk, 64 connections)"

SIZE = 10
# Seats prepared per second of join load: twice the ~15k/s the flash-sale grab did on a
# 2-core machine. Each round's wrk builds requests for 1.5x the rate JSON just reached
# through the same script (a join does all a JSON request does, and more), within those
# seats: wrk's init() costs CPU per request built, and the machine has two cores. Past them
# wrk reuses pairs (409 ALREADY_IN_GROUP, never a false 201), counted as `join_refused`.
JOIN_CAPACITY_RPS = 30_000
JOIN_HEADROOM = 1.5
# Before measuring, every worker must have decoded every member's token once (a JWT check
# costs more than the join's own work; later requests find it cached): each token is sent
# this many times, over connections the workers share at random.
TOKEN_SENDS = 4
FULL_GROUPS = 50  # filled during preparation, for the GROUP_FULL path
FILLERS = SIZE  # members 0..9 fill every full group; the refusal path sends the others
MEMBER_LIMIT = 1_000_000  # each member joins many groups of the one activity
BATCH = 2_000  # seat scripts in flight at once while preparing (auto-pipelined)


def configure(p: argparse.ArgumentParser) -> None:
    load.add_wrk_options(p, "join", f"distinct members (tokens), at least {2 * SIZE}")


def _per_round(args: argparse.Namespace) -> int:
    return max(1, args.duration // args.rounds)


def _groups_for(joins: int) -> int:
    return math.ceil(joins / (SIZE - 1))


# -- preparation -------------------------------------------------------------------------------


async def _open_groups(redis: Any, scripts: Any, activity_id: int, leaders: list[int]) -> list[str]:
    """One group per leader, opened by the seat script and made joinable (the leader "paid"),
    BATCH at a time through the auto-pipeline; the group numbers, in the leaders' order."""
    from server.groupbuy import seats

    joinable = seats.activity_keys(activity_id)["joinable"]

    async def open_one(leader: int) -> str:
        got = await seats.take_seat(
            redis, scripts, mode="open", activity_id=activity_id,
            group_no=seats.new_group_no(activity_id), member_id=leader,
            idem_key=uuid.uuid4().hex,
        )  # fmt: skip
        group_key, _ = seats.group_keys(activity_id, got.group_no)
        if int(await scripts.fast(seats.OPEN, [group_key, joinable], [got.group_no])) != 1:
            raise RuntimeError(f"group {got.group_no} did not open")
        return got.group_no

    out: list[str] = []
    for i in range(0, len(leaders), BATCH):
        out += await asyncio.gather(*(open_one(m) for m in leaders[i : i + BATCH]))
    return out


def _write_lines(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _join_path(group_no: str) -> str:
    return f"/api/v1/groups/{group_no}/join"


async def _prepare(
    env: dict[str, str], args: argparse.Namespace, workdir: Path, bar: Any
) -> dict[str, Any]:
    """Members, the activity, its groups, and one wrk lines file per run ("path\\ttoken")."""
    from server.groupbuy import seats, service

    per_round_joins = _per_round(args) * JOIN_CAPACITY_RPS
    runs = {f"round-{r}": _groups_for(per_round_joins) for r in range(1, args.rounds + 1)}
    join_groups = sum(runs.values())
    async with harness.bench_backends(env) as (settings, redis, scripts):
        bar.set_postfix_str(f"{args.members} members")
        sku = await harness.make_sku()
        members = await harness.make_members(settings, args.members)
        ids = [m for m, _ in members]
        now = datetime.now(UTC)
        activity = await service.create_activity(
            scripts,
            operator_id=None,
            sku_id=sku.id,
            group_price_fen=990,
            group_size=SIZE,
            units=(join_groups + FULL_GROUPS) * SIZE,
            starts_at=now - timedelta(seconds=1),
            ends_at=now + timedelta(hours=2),
            group_minutes=120,
            per_member_limit=MEMBER_LIMIT,
        )
        aid = activity.id
        # Group j's leader is member 10j (mod the members), its joiners the next nine: ten
        # distinct members per group, and no member offered the same group twice.
        bar.set_postfix_str(f"opening {join_groups + FULL_GROUPS:,} groups")
        leaders = [ids[(SIZE * j) % len(ids)] for j in range(join_groups)]
        groups = await _open_groups(redis, scripts, aid, leaders)
        full = await _open_groups(redis, scripts, aid, [ids[0]] * FULL_GROUPS)

        async def fill(group_no: str, member: int) -> None:
            await seats.take_seat(
                redis, scripts, mode="join", activity_id=aid, group_no=group_no,
                member_id=member, idem_key=uuid.uuid4().hex,
            )  # fmt: skip

        await asyncio.gather(*(fill(g, m) for g in full for m in ids[1:FILLERS]))

        bar.set_postfix_str("writing wrk's request lines")
        plan: dict[str, dict[str, Any]] = {}
        start = 0
        for name, count in runs.items():
            mine = groups[start : start + count]
            lines = [
                f"{_join_path(g)}\t{members[(SIZE * (start + j) + seat) % len(ids)][1]}"
                for j, g in enumerate(mine)
                for seat in range(1, SIZE)
            ]
            plan[name] = {
                "file": _write_lines(workdir / f"join-{name}.tsv", lines),
                "lines": len(lines),
                "groups": mine,
            }
            start += count
        # The refusal path: members who are in none of the full groups, a fresh key each.
        others = members[FILLERS:]
        full_lines = [
            f"{_join_path(full[i % FULL_GROUPS])}\t{others[i % len(others)][1]}"
            for i in range(max(len(others), 2 * FULL_GROUPS))
        ]
        # Every member's token, on the full groups (a 409, Redis unchanged): the warm-up.
        every = [f"{_join_path(full[i % FULL_GROUPS])}\t{t}" for i, (_, t) in enumerate(members)]
        return {
            "tokens_file": _write_lines(workdir / "tokens.tsv", every),
            "activity": aid,
            "units": activity.units,
            "runs": plan,
            "full": full,
            "full_file": _write_lines(workdir / "full.tsv", full_lines),
        }


# -- correctness, read back from Redis ---------------------------------------------------------


async def _check(env: dict[str, str], info: dict[str, Any]) -> dict[str, Any]:
    """Units reserved vs groups opened, and every group's seats, members and stream entries
    against its size and its `taken` count; seats taken by each run's joins."""
    from server.groupbuy import seats
    from server.infra.redis import make_client

    aid = info["activity"]
    k = seats.activity_keys(aid)
    redis = make_client(env["HAODIAN_REDIS_URL"])
    try:
        left = int(await redis.get(k["units"]))
        group_nos = [key.rsplit(":", 1)[1] async for key in redis.scan_iter(
            match=f"{seats.tag(aid)}:g:*", count=10_000
        )]  # fmt: skip
        # The stream: one entry per seat taken (no seat was freed during the run).
        entries: dict[str, list[str]] = {}
        cursor = "-"
        while True:
            batch = await redis.xrange(k["stream"], min=cursor, count=20_000)
            for _, fields in batch:
                entries.setdefault(fields["g"], []).append(fields["m"])
            if len(batch) < 20_000:
                break
            cursor = "(" + batch[-1][0]
        taken: dict[str, int] = {}
        over_size = 0
        for i in range(0, len(group_nos), 1_000):
            chunk = group_nos[i : i + 1_000]
            pipe = redis.pipeline(transaction=False)
            for no in chunk:
                g, gm = seats.group_keys(aid, no)
                pipe.hgetall(g)
                pipe.hgetall(gm)
            replies = await pipe.execute()
            for no, g, gm in zip(chunk, replies[::2], replies[1::2], strict=True):
                size, took = int(g["size"]), int(g["taken"])
                taken[no] = took
                held = {int(f[1:]): v for f, v in g.items() if f[:1] == "s" and f[1:].isdigit()}
                stream = entries.get(no, [])
                bad = (
                    took > size
                    or len(held) != took
                    or any(not 1 <= s <= size for s in held)
                    or len(set(held.values())) != len(held)
                    or len(gm) > size
                    or len(gm) != took
                    or set(gm.values()) != set(held.values())
                    or len(stream) > size
                    or len(stream) != took
                    or max(Counter(stream).values(), default=0) > 1
                    or set(stream) != set(gm)
                )
                over_size += bad
        reserved = info["units"] - left
        oversold = (
            max(0, -left) + max(0, reserved - info["units"]) + abs(reserved - len(group_nos) * SIZE)
        )
        joined = {
            name: sum(taken.get(no, 0) - 1 for no in run["groups"])
            for name, run in info["runs"].items()
        }
        return {
            "oversold": oversold,
            "groups_over_size": over_size,
            "groups": len(group_nos),
            "units_left": left,
            "seats_taken": sum(taken.values()),
            "joined": joined,
            "full_groups_full": sum(taken.get(no, 0) == SIZE for no in info["full"]),
        }
    finally:
        await redis.aclose()


def _probe_full(base: str, info: dict[str, Any]) -> str:
    """The error code a full group answers (GROUP_FULL is what the refusal path measures)."""
    import httpx

    path, token = Path(info["full_file"]).read_text().split("\n", 1)[0].split("\t")
    answer = httpx.post(
        base + path,
        content=b"{}",
        headers={
            "Authorization": f"Bearer {token}",
            "Idempotency-Key": uuid.uuid4().hex,
            "Content-Type": "application/json",
        },
        timeout=10,
    )
    try:
        return f"{answer.status_code} {answer.json()['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return f"{answer.status_code} ?"


# -- the run ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from server.bench import print_report

    if args.members < 2 * SIZE:
        raise SystemExit(f"--members must be at least {2 * SIZE}")
    harness.need_tool("wrk", "wrk")
    with harness.BenchRun() as bench:
        workdir, redis_url = bench.workdir, bench.redis_url()
        env = harness.server_env(workdir, asyncio.run(harness.bench_database_url()), redis_url)
        load.say_preparing(env, args.members)
        # A bar on stderr across the steps; stdout keeps the table and the JSON line only.
        bench.bar = bar = tqdm(
            total=3 * args.rounds + 4, desc="bench groupbuy", unit="step", leave=False
        )
        info = asyncio.run(_prepare(env, args, workdir, bar))
        bar.update()
        bar.set_postfix_str("starting the server")
        server = bench.start_server(env, args.workers)
        base, wrk = server.base, load.Wrk.on(server, args, redis_url)
        lines_lua, get_lua = (load.write_scripts(workdir)[n] for n in ("lines", "get"))
        load.say_measuring(args)
        runs = info["runs"]

        def lines(file: str, per_thread: int, threads: int, *how: str) -> tuple[str, ...]:
            """The lines script's arguments; `how` is method, body[, fixed path]."""
            return (file, str(per_thread), str(threads), how[0], how[1], load.run_id(),
                    *how[2:])  # fmt: skip

        def joins(run: dict[str, Any], threads: int, wanted: float) -> tuple[str, ...]:
            per_thread = min(run["lines"] // threads, math.ceil(wanted / threads))
            return lines(run["file"], per_thread, threads, "POST", "{}")

        def others(seconds: int, *how: str) -> tuple[str, ...]:  # JSON, the full groups
            per_thread = int(load.prepared_requests(args.threads, seconds))
            return lines(info["full_file"], per_thread, args.threads, *how)

        # Warm-up: both workers connect, and learn every token (see TOKEN_SENDS).
        bar.set_postfix_str("warm-up")
        load.warm_up(f"{base}/healthz")
        sent = 0
        for _ in range(5):
            per_thread = math.ceil(TOKEN_SENDS * args.members / args.threads)
            got = wrk.run(base + "/", lines_lua, *lines(info["tokens_file"], per_thread,
                          args.threads, "POST", "{}"), seconds=2)  # fmt: skip
            sent += got["rps"] * got["seconds"]
            if sent >= TOKEN_SENDS * args.members:
                break
        bar.update()
        # The plain JSON endpoint and the join alternate in rounds, so a burst of load from
        # anything else on the machine weighs on both sides of the ratio alike. JSON also
        # goes through the join's wrk script (a token and a key per request), so the load
        # generator costs the same per request on either side.
        json_parts, join_parts, static_parts = [], [], []
        per_round = _per_round(args)
        for round_no in range(1, args.rounds + 1):
            bar.set_postfix_str(f"round {round_no}/{args.rounds}: JSON, join, plain JSON")
            json_lines = others(per_round, "GET", "", "/healthz")
            json_parts.append(wrk.run(f"{base}/healthz", lines_lua, *json_lines, seconds=per_round))
            bar.update()
            wanted = JOIN_HEADROOM * json_parts[-1]["rps"] * per_round
            join_lines = joins(runs[f"round-{round_no}"], args.threads, wanted)
            join_parts.append(wrk.run(base + "/", lines_lua, *join_lines, seconds=per_round))
            bar.update()
            static_parts.append(wrk.run(f"{base}/healthz", get_lua, seconds=per_round))
            bar.update()
        bar.set_postfix_str("full-group path")
        full_code = _probe_full(base, info)
        full_r = wrk.run(base + "/", lines_lua, *others(args.duration, "POST", "{}"))
        bar.update()
        bar.set_postfix_str("checking Redis")
        bench.stop_server()
        checks = asyncio.run(_check(env, info))
        bar.update()

    json_r, join_r = load.merge(json_parts), load.merge(join_parts)
    static_r = load.merge(static_parts)
    row = load.table_row
    rows = [
        row("(a) plain JSON GET /healthz", static_r, 0),
        row("(a') same, through the join's wrk script", json_r, 0),
        row("(b) join, success path (201)", join_r, 0),
        row(f"(c) join a full group ({full_code})", full_r, 400),
    ]
    join_2xx = join_r["statuses"].get(0, 0)
    join_ok = join_2xx / join_r["seconds"]
    full_ok = full_r["statuses"].get(400, 0) / full_r["seconds"]
    seats_joined = sum(checks["joined"][f"round-{r}"] for r in range(1, args.rounds + 1))
    summary = {
        "json_rps": round(static_r["rps"]),
        "join_rps": round(join_ok),
        "full_rps": round(full_ok),
        "join_vs_json": round(join_ok / static_r["rps"], 3),
        "full_vs_json": round(full_ok / static_r["rps"], 3),
        "json_same_generator_rps": round(json_r["rps"]),
        "join_vs_json_same_generator": round(join_ok / json_r["rps"], 3),
        "oversold": checks["oversold"],
        "groups_over_size": checks["groups_over_size"],
        # Every 201 of the measured rounds took one seat (no replays): seats taken may
        # exceed the 201s only by joins still in flight when wrk stopped.
        "join_2xx": join_2xx,
        "join_seats_taken": seats_joined,
        "join_answers_match_seats_taken": 0
        <= seats_joined - join_2xx
        <= args.connections * args.rounds,
        # Joins refused in the measured rounds: wrk ran past the prepared pairs (should be 0).
        "join_refused": join_r["statuses"].get(400, 0) + join_r["statuses"].get(-1, 0),
        "full_answer": full_code,
        "full_groups": len(info["full"]),
        "full_groups_full": checks["full_groups_full"],
        "groups": checks["groups"],
        "group_size": SIZE,
        "units": info["units"],
        "units_left": checks["units_left"],
        "seats_taken": checks["seats_taken"],
        # CPU per request (µs) of the server, Redis and wrk: the refusal, JSON vs join.
        "full_cpu_us": load.cpu_columns(full_r),
        **load.measured_facts("join", static_r, join_r),
        **load.run_facts(args),
    }
    print_report("haodian bench groupbuy", rows, summary)
    if summary["join_refused"]:
        print(
            f"note: {summary['join_refused']} joins were refused: wrk ran past the joins "
            "prepared for a round (JOIN_CAPACITY_RPS, JOIN_HEADROOM)",
            file=sys.stderr,
        )
    correct = checks["oversold"] == 0 and checks["groups_over_size"] == 0
    measured = summary["join_answers_match_seats_taken"] and full_code == "409 GROUP_FULL"
    return 0 if correct and measured else 1
