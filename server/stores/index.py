"""The locator index: a Redis GEO set of listed stores plus a hash of their cards.

    {stores}:geo       GEO set, member = store id            (GEOSEARCH ... BYRADIUS ... ASC)
    {stores}:cards     hash id -> JSON card (name, coordinates, services, hours, closure)
    {stores}:versions  hash id -> the store version the index holds
    {stores}:built     set once a full build finished; missing = rebuild before answering

One hash tag, so the scripts and the MULTI of a rebuild run on Redis Cluster.

Kept in step with PostgreSQL: every store write runs `sync` inside its database
transaction (a Redis failure rolls the write back) with the row locked, and the script
keeps the newest version, so a slow writer never overwrites a newer card. A store closed
for good leaves the index; a temporary closure stays on the map, shown closed. A full
rebuild (at start-up when missing, on a lost Redis, `haodian reindex stores`) builds into
temporary keys and swaps them in with RENAME, then re-syncs the rows that changed while
it ran.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from server.infra.clock import utcnow
from server.infra.redis import scripts_for
from server.stores import areas
from server.stores.hours import week_minutes
from server.stores.models import Store

log = logging.getLogger("haodian.stores.index")

TAG = "{stores}"
GEO_KEY = f"{TAG}:geo"
CARDS_KEY = f"{TAG}:cards"
VERSIONS_KEY = f"{TAG}:versions"
BUILT_KEY = f"{TAG}:built:v2"  # v2: cards carry delivery areas; an older index is rebuilt
LOCK_KEY = f"{TAG}:rebuilding"
LUA = Path(__file__).parent / "lua"

SERVICES = ("takeout", "pickup", "write_off")


def services_of(store: Store) -> list[str]:
    return [s for s in SERVICES if getattr(store, s)]


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def card(store: Store) -> dict[str, Any]:
    """What a nearby answer needs about a store, without a database query."""
    return {
        "id": store.id,
        "code": store.code,
        "name": store.name,
        "city": store.city,
        "district": store.district,
        "address": store.address,
        "lat": store.lat,
        "lng": store.lng,
        "phone": store.phone,
        "services": services_of(store),
        "delivery_radius_m": store.delivery_radius_m,
        "areas": areas.store_areas(
            store.delivery_radius_m, store.delivery_fee_rules, store.delivery_areas
        ),
        "packing_fee_fen": store.packing_fee_fen,
        "week": week_minutes(store.hours or {}),
        "closed_from": _iso(store.closed_from),
        "closed_until": _iso(store.closed_until),
    }


def listed(store: Store) -> bool:
    return not store.closed


async def sync(redis: Redis, store: Store, *, force: bool = False) -> bool:
    """Bring one store's entry in line with this row; False if the index holds a newer one."""
    done = await scripts_for(redis).run(
        LUA / "sync.lua",
        [GEO_KEY, CARDS_KEY, VERSIONS_KEY],
        [
            store.id,
            store.version,
            "1" if listed(store) else "0",
            store.lng,
            store.lat,
            orjson.dumps(card(store)).decode(),
            "1" if force else "0",
        ],
    )
    return bool(done)


async def resync(redis: Redis, store_id: int) -> None:
    """Force the entry to what the database holds now (after a failed commit)."""
    store = await Store.get_or_none(id=store_id)
    if store is None:
        await redis.zrem(GEO_KEY, str(store_id))
        await redis.hdel(CARDS_KEY, str(store_id))
        await redis.hdel(VERSIONS_KEY, str(store_id))
    else:
        await sync(redis, store, force=True)


async def search(
    redis: Redis, lat: float, lng: float, radius_m: float, count: int
) -> list[tuple[int, float, dict[str, Any] | None]] | None:
    """Nearest first: (id, distance_m, card). None when the index is missing."""
    raw = await scripts_for(redis).run(
        LUA / "nearby.lua", [GEO_KEY, CARDS_KEY, BUILT_KEY], [lng, lat, radius_m, count]
    )
    if not raw or int(raw[0]) == 0:
        return None
    out = []
    for i in range(1, len(raw), 3):
        c = raw[i + 2]
        out.append((int(raw[i]), float(raw[i + 1]), orjson.loads(c) if c else None))
    return out


async def rebuild(
    redis: Redis, progress: Callable[[int], Any] | None = None, batch: int = 2000
) -> int:
    """Build the whole index from the database and swap it in; returns the stores listed."""
    started = utcnow()
    suffix = uuid.uuid4().hex[:8]
    tmp = {k: f"{k}:tmp:{suffix}" for k in (GEO_KEY, CARDS_KEY, VERSIONS_KEY)}
    listed_count = 0
    last_id = 0
    try:
        while True:
            rows = await Store.filter(id__gt=last_id).order_by("id").limit(batch)
            if not rows:
                break
            last_id = rows[-1].id
            pipe = redis.pipeline(transaction=False)
            for st in rows:
                pipe.hset(tmp[VERSIONS_KEY], str(st.id), st.version)
                if listed(st):
                    pipe.geoadd(tmp[GEO_KEY], (st.lng, st.lat, str(st.id)))
                    pipe.hset(tmp[CARDS_KEY], str(st.id), orjson.dumps(card(st)).decode())
                    listed_count += 1
            await pipe.execute()
            if progress:
                progress(len(rows))
        await scripts_for(redis).run(
            LUA / "swap.lua", [*tmp, *tmp.values(), BUILT_KEY], [started.isoformat()]
        )
    finally:
        await redis.delete(*tmp.values())
    # Rows written while the build ran may have been read before they changed.
    changed = await Store.filter(updated_at__gte=started - timedelta(seconds=2))
    for st in changed:
        await sync(redis, st)
    return listed_count


async def ensure(redis: Redis, wait_s: float = 10.0) -> bool:
    """Rebuild when the index is missing; one process builds, the others wait for it.

    Returns True when the index is (now) there."""
    if await redis.exists(BUILT_KEY):
        return True
    token = uuid.uuid4().hex
    if await redis.set(LOCK_KEY, token, nx=True, ex=120):
        try:
            n = await rebuild(redis)
            log.info("store locator index rebuilt", extra={"stores": n})
            return True
        finally:
            if await redis.get(LOCK_KEY) == token:
                await redis.delete(LOCK_KEY)
    deadline = asyncio.get_running_loop().time() + wait_s
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
        if await redis.exists(BUILT_KEY):
            return True
    return False


async def drop(redis: Redis) -> None:
    await redis.delete(GEO_KEY, CARDS_KEY, VERSIONS_KEY, BUILT_KEY)
