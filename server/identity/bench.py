"""`haodian bench login`: WeChat sign-in through the sandbox against a running server.

Three phases, same concurrency: first logins (a member is made), returning logins
(identity found, session key re-sealed), and GET /api/v1/me (token check only: JWT
signature + one Redis MGET, no database query for the token).
Run a server with the sandbox first, e.g. `haodian serve --workers 2` (demo).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx

from server.bench import print_report, summarise_latencies

NAME = "login"
HELP = "member sign-in through the WeChat sandbox (first, returning) and token checks"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default="http://127.0.0.1:8000", help="a running server with sandbox")
    p.add_argument("--users", type=int, default=200, help="distinct WeChat users")
    p.add_argument("--concurrency", type=int, default=20)


async def _phase(n: int, concurrency: int, call: Any) -> tuple[list[float], float, int]:
    sem = asyncio.Semaphore(concurrency)
    lat: list[float] = []
    errors = 0

    async def one(i: int) -> None:
        nonlocal errors
        async with sem:
            t = time.perf_counter()
            ok = await call(i)
            lat.append(time.perf_counter() - t)
            errors += 0 if ok else 1

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return lat, time.perf_counter() - start, errors


async def _run(args: argparse.Namespace) -> int:
    sbx = "/_sandbox/wechat"
    limits = httpx.Limits(max_connections=args.concurrency + 5)
    async with httpx.AsyncClient(base_url=args.url, timeout=30, limits=limits) as http:
        openids = []
        for _ in range(args.users):
            r = await http.post(f"{sbx}/users", json={})
            r.raise_for_status()
            openids.append(r.json()["openid"])
        tokens: list[str] = [""] * args.users

        async def code(openid: str) -> str:
            return (await http.post(f"{sbx}/users/{openid}/login-code")).json()["code"]

        codes = [await code(o) for o in openids]

        async def first(i: int) -> bool:
            r = await http.post("/api/v1/auth/login", json={"code": codes[i]})
            if r.status_code == 200:
                tokens[i] = r.json()["token"]
            return r.status_code == 200

        codes2 = None
        rows = []
        lat, took, err = await _phase(args.users, args.concurrency, first)
        rows.append(
            {
                "phase": "first login",
                "n": len(lat),
                "errors": err,
                "per_s": len(lat) / took,
                **summarise_latencies(lat),
            }
        )
        codes2 = [await code(o) for o in openids]

        async def again(i: int) -> bool:
            r = await http.post("/api/v1/auth/login", json={"code": codes2[i]})
            return r.status_code == 200

        lat, took, err = await _phase(args.users, args.concurrency, again)
        rows.append(
            {
                "phase": "returning login",
                "n": len(lat),
                "errors": err,
                "per_s": len(lat) / took,
                **summarise_latencies(lat),
            }
        )

        async def me(i: int) -> bool:
            tok = tokens[i % args.users]
            r = await http.get("/api/v1/me", headers={"authorization": f"Bearer {tok}"})
            return r.status_code == 200

        lat, took, err = await _phase(args.users * 5, args.concurrency, me)
        rows.append(
            {
                "phase": "GET /me",
                "n": len(lat),
                "errors": err,
                "per_s": len(lat) / took,
                **summarise_latencies(lat),
            }
        )
    summary = {"bench": NAME, "url": args.url, "concurrency": args.concurrency, "rows": rows}
    print_report(f"login bench against {args.url}", rows, summary)
    return 0 if all(r["errors"] == 0 for r in rows) else 1


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
