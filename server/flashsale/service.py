"""Flash-sale rules: sales, the grab, warming Redis from the database, materialising
reservations into orders, releases and reconcile.

Redis holds the live inventory of each sale under one hash tag, `fs:{id}:...`:

    meta      hash   start/end (epoch ms), state, per-member limit, allowed tiers
    stock     int    units left; a missing key means "not warm", never 0 or full
    buyers    hash   member -> units held
    reqs      hash   member:idempotency-key -> "order_no|qty" (the first answer)
    released  set    order numbers whose units were given back (release is idempotent)
    stream    stream one entry per reservation; consumer group "fs" in `haodian worker`

PostgreSQL holds `FlashReservation` rows (written with the order, in one transaction),
so "units sold" is always countable from the database: warming sets stock to units
offered minus units held there minus reservations still in the stream, never to the
configured total.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from server.catalog.models import Sku
from server.flashsale.models import FlashReservation, FlashSale, ReservationState, SaleState
from server.infra.clock import utcnow
from server.infra.errors import Conflict, NotFound, RateLimited, Unavailable, ValidationFailed
from server.infra.redis import Scripts
from server.infra.streams import entry_fields
from server.infra.streams import text as _s
from server.infra.warming import WarmOnce
from server.orders import lifecycle
from server.orders.models import Order, OrderKind, OrderStatus
from server.orders.service import LineIn, create_order, new_order_no
from server.outbox import service as outbox

log = logging.getLogger("haodian.flashsale")

LUA = Path(__file__).resolve().parent / "lua"
GRAB = LUA / "grab.lua"
RELEASE = LUA / "release.lua"
WARM = LUA / "warm.lua"
SNAPSHOT = LUA / "snapshot.lua"
FIX = LUA / "fix.lua"
GROUP = "fs"
KEEP_AFTER_END = timedelta(days=7)  # Redis keys outlive the sale this long (drain, replays)


def sale_keys(sale_id: int) -> dict[str, str]:
    tag = f"fs:{{{sale_id}}}"
    return {
        "meta": f"{tag}:meta",
        "stock": f"{tag}:stock",
        "buyers": f"{tag}:buyers",
        "reqs": f"{tag}:reqs",
        "released": f"{tag}:released",
        "stream": f"{tag}:stream",
    }


def stream_key(sale_id: int) -> str:
    return f"fs:{{{sale_id}}}:stream"


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


# -- sales -------------------------------------------------------------------------------------


async def create_sale(
    redis: Any,
    scripts: Scripts,
    *,
    sku_id: int,
    price_fen: int,
    units: int,
    per_member_limit: int,
    starts_at: datetime,
    ends_at: datetime,
    title: str | None = None,
    store_ids: list[int] | None = None,
    member_tiers: list[str] | None = None,
    operator_id: int | None = None,
) -> FlashSale:
    if ends_at <= starts_at:
        raise ValidationFailed("ends_at must be after starts_at")
    if ends_at <= utcnow():
        raise ValidationFailed("ends_at is in the past")
    sku = await Sku.filter(id=sku_id).select_related("product").first()
    if sku is None:
        raise NotFound(f"no SKU {sku_id}", code="SKU_NOT_FOUND")
    if store_ids:
        from server.stores.models import Store

        found = set(await Store.filter(id__in=store_ids).values_list("id", flat=True))
        missing = sorted(set(store_ids) - found)
        if missing:
            raise NotFound(f"no store {missing[0]}", code="STORE_NOT_FOUND")
    sale = await FlashSale.create(
        sku_id=sku.id,
        title=title or f"{sku.product.name} {sku.name}".strip(),
        store_ids=sorted(set(store_ids or [])),
        price_fen=price_fen,
        units=units,
        per_member_limit=per_member_limit,
        starts_at=starts_at,
        ends_at=ends_at,
        member_tiers=sorted(set(member_tiers or [])),
        created_by=operator_id,
    )
    await warm(redis, scripts, sale)
    return sale


async def get_sale(sale_id: int) -> FlashSale:
    sale = await FlashSale.filter(id=sale_id).first()
    if sale is None:
        raise NotFound(f"no flash sale {sale_id}", code="SALE_NOT_FOUND")
    return sale


async def remaining(redis: Any, scripts: Scripts, sale: FlashSale) -> int:
    """Units left, from Redis; a sale whose keys are missing is warmed first."""
    value = await redis.get(sale_keys(sale.id)["stock"])
    if value is None:
        await warm(redis, scripts, sale)
        value = await redis.get(sale_keys(sale.id)["stock"])
    return max(0, int(value or 0))


def status_of(sale: FlashSale, left: int, now: datetime | None = None) -> str:
    now = now or utcnow()
    if sale.state == SaleState.CANCELLED:
        return "cancelled"
    if now >= sale.ends_at:
        return "ended"
    if now < sale.starts_at:
        return "upcoming"
    return "live" if left > 0 else "sold_out"


async def list_sales(redis: Any, scripts: Scripts) -> list[tuple[FlashSale, int]]:
    """Upcoming and live sales, soonest first, each with its units left."""
    now = utcnow()
    sales = await FlashSale.filter(state=SaleState.ON, ends_at__gt=now).order_by("starts_at", "id")
    return [(s, await remaining(redis, scripts, s)) for s in sales]


async def all_sales(limit: int = 200) -> list[FlashSale]:
    return await FlashSale.all().order_by("-id").limit(limit)


# -- the grab (hot path) -------------------------------------------------------------------------


class Grabbed(NamedTuple):  # a NamedTuple: the hot path builds one per grab, cheaply
    order_no: str
    quantity: int
    replayed: bool


_ERRORS: dict[bytes, tuple[type, str, str]] = {
    b"SOLD_OUT": (Conflict, "SOLD_OUT", "sold out"),
    b"NOT_ENOUGH": (Conflict, "SOLD_OUT", "fewer units are left than you asked for"),
    b"LIMIT_REACHED": (Conflict, "LIMIT_REACHED", "you have reached this sale's limit"),
    b"NOT_STARTED": (Conflict, "NOT_STARTED", "the sale has not started yet"),
    b"ENDED": (Conflict, "ENDED", "the sale has ended"),
    b"CLOSED": (Conflict, "ENDED", "the sale was called off"),
    b"TIER": (Conflict, "TIER_NOT_ELIGIBLE", "this sale is for other membership tiers"),
}

_warming = WarmOnce(lambda sale_id: NotFound(f"no flash sale {sale_id}", code="SALE_NOT_FOUND"))


_keys_cache: dict[tuple[int, int, int], tuple[int, list[str], tuple[Any, ...]]] = {}


def _grab_head(sale_id: int, member_rps: int, ip_rps: int) -> tuple[list[str], tuple[Any, ...]]:
    """The grab script's KEYS for this second (the rate counters are one hash per second)
    and its fixed ARGV (order-number prefix, rate limits), built once per sale per second
    and passed as the same objects, so `Scripts.fast` packs them once."""
    now = int(time.time())
    cache_key = (sale_id, member_rps, ip_rps)
    hit = _keys_cache.get(cache_key)
    if hit is not None and hit[0] == now:
        return hit[1], hit[2]
    if len(_keys_cache) > 10_000:
        _keys_cache.clear()
    tag = f"fs:{{{sale_id}}}"
    keys = [
        tag + ":meta",
        tag + ":stock",
        tag + ":buyers",
        tag + ":reqs",
        tag + ":stream",
        f"{tag}:rl:{now}",
    ]
    fixed = (f"FS{sale_id}-", member_rps, ip_rps)
    _keys_cache[cache_key] = (now, keys, fixed)
    return keys, fixed


async def grab(
    redis: Any,
    scripts: Scripts,
    *,
    sale_id: int,
    member_id: int,
    idem_key: str,
    quantity: int,
    ip: str,
    member_rps: int,
    ip_rps: int,
    tier: str | None = None,
) -> Grabbed:
    """Run the grab script once (one round trip); warm the sale and retry if its keys are
    missing; look the member's tier up only for a tier-restricted sale."""
    keys, fixed = _grab_head(sale_id, member_rps, ip_rps)
    args = [member_id, idem_key, quantity, tier or "", ip]
    for _ in range(3):
        res = await scripts.fast(GRAB, keys, args, fixed)
        if res[:3] == b"OK|":
            return Grabbed(res[3:].decode(), quantity, False)
        if res[:2] == b"R|":
            _, prev_no, prev_qty = res.decode().split("|")
            if int(prev_qty) != quantity:
                raise Conflict(
                    "this Idempotency-Key was used for a different quantity",
                    code="IDEMPOTENCY_KEY_REUSED",
                )
            return Grabbed(prev_no, int(prev_qty), True)
        err = _ERRORS.get(res)
        if err is not None:
            cls, code, message = err
            raise cls(message, code=code)
        if res == b"RATE_MEMBER" or res == b"RATE_IP":
            who = "you" if res == b"RATE_MEMBER" else "your address"
            raise RateLimited(
                f"{who} sent too many grabs; try again in a second",
                headers={"Retry-After": "1"},
            )
        if res == b"NOT_WARM":
            await _warming.run(sale_id, lambda: _load_and_warm(redis, scripts, sale_id))
            continue
        if res == b"NEED_TIER":
            from server.identity.models import Member

            member = await Member.filter(id=member_id).only("id", "tier").first()
            args[3] = (member.tier if member else "") or "regular"
            continue
        raise Unavailable(f"unexpected answer from the stock script: {res!r}")
    raise Unavailable("the sale could not be loaded; try again", code="SALE_NOT_READY")


async def _load_and_warm(redis: Any, scripts: Scripts, sale_id: int) -> bool:
    sale = await FlashSale.filter(id=sale_id).first()
    if sale is None:
        return False
    await warm(redis, scripts, sale)
    return True


# -- warming -----------------------------------------------------------------------------------


async def _stream_entries(redis: Any, sale_id: int) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for _id, fields in await redis.xrange(stream_key(sale_id), "-", "+"):
        out.append(entry_fields(fields))
    return out


@dataclass
class _Figures:
    stock: int
    buyers: dict[str, int]
    reqs: dict[str, str]
    given_back: list[str]


async def _figures(sale: FlashSale, inflight: list[dict[str, str]], given_back: Any) -> _Figures:
    """What Redis should hold: stock = units - held in PostgreSQL - still in the stream.

    `given_back(order_no)` tells whether a released row's units are already back in Redis.
    """
    rows = await FlashReservation.filter(sale_id=sale.id).values(
        "order_no", "member_id", "quantity", "idem_key", "state"
    )
    known = {r["order_no"] for r in rows}
    taken = 0
    buyers: dict[str, int] = {}
    reqs: dict[str, str] = {}
    back: list[str] = []
    for r in rows:
        reqs[f"{r['member_id']}:{r['idem_key']}"] = f"{r['order_no']}|{r['quantity']}"
        if r["state"] != ReservationState.HELD and given_back(r["order_no"]):
            back.append(r["order_no"])
            continue
        taken += r["quantity"]
        m = str(r["member_id"])
        buyers[m] = buyers.get(m, 0) + r["quantity"]
    for e in inflight:
        if e["o"] in known:
            continue
        q = int(e["q"])
        taken += q
        buyers[e["m"]] = buyers.get(e["m"], 0) + q
        reqs[f"{e['m']}:{e['k']}"] = f"{e['o']}|{q}"
    return _Figures(max(0, sale.units - taken), buyers, reqs, back)


def _meta_args(sale: FlashSale) -> list[Any]:
    tiers = f",{','.join(sale.member_tiers)}," if sale.member_tiers else ""
    ttl = max(60_000, _ms(sale.ends_at + KEEP_AFTER_END) - int(time.time() * 1000))
    return [
        _ms(sale.starts_at),
        _ms(sale.ends_at),
        sale.state.value,
        sale.per_member_limit,
        tiers,
        ttl,
    ]


async def warm(redis: Any, scripts: Scripts, sale: FlashSale) -> bool:
    """Load the sale into Redis if its stock key is missing; refresh its meta always.

    Safe to run concurrently and at any time: the counters are written only when the
    stock key is absent (then no grab can run), and releases committed after our
    database read are not in the released set, so the sweeper still gives them back.
    """
    inflight = await _stream_entries(redis, sale.id)  # the stream first, then the database
    fig = await _figures(sale, inflight, lambda _order_no: True)
    start, end, state, limit, tiers, ttl = _meta_args(sale)
    args: list[Any] = [start, end, state, limit, tiers, fig.stock, ttl, len(fig.buyers)]
    for m, q in fig.buyers.items():
        args += [m, q]
    args.append(len(fig.reqs))
    for f, a in fig.reqs.items():
        args += [f, a]
    args.append(len(fig.given_back))
    args += fig.given_back
    k = sale_keys(sale.id)
    keys = [k["meta"], k["stock"], k["buyers"], k["reqs"], k["released"], k["stream"]]
    loaded = int(await scripts.run(WARM, keys, args))
    if loaded:
        log.info("flash sale warmed", extra={"sale": sale.id, "stock": fig.stock})
    return bool(loaded)


# -- materialisation (the worker's stream consumer) ---------------------------------------------


async def materialise(sale: FlashSale, sku_name: str, entry: dict[str, str]) -> str:
    """Insert the reservation and its order in one transaction; idempotent by order number.

    Returns "created", "duplicate" (already there: a redelivery) or "rejected" (the
    database refused it, e.g. a second live order of a limit-1 member; its units are
    given back by the release sweeper).
    """
    order_no, member_id, qty = entry["o"], int(entry["m"]), int(entry["q"])
    key = entry.get("k", "")[:128]
    try:
        async with in_transaction() as conn:
            await FlashReservation.create(
                sale_id=sale.id,
                order_no=order_no,
                member_id=member_id,
                quantity=qty,
                idem_key=key,
                member_slot=member_id if sale.per_member_limit == 1 else None,
                using_db=conn,
            )
            await create_order(
                kind=OrderKind.FLASHSALE,
                member_id=member_id,
                lines=[LineIn(sale.sku_id, sku_name, qty, sale.price_fen)],
                order_no=order_no,
                source=f"fs:{sale.id}",
                connection=conn,
            )
        return "created"
    except IntegrityError:
        if await FlashReservation.filter(order_no=order_no).exists():
            return "duplicate"
        if await Order.filter(order_no=order_no).exists():
            log.error("order number taken by another order", extra={"order_no": order_no})
        async with in_transaction() as conn:
            await FlashReservation.create(
                sale_id=sale.id,
                order_no=order_no,
                member_id=member_id,
                quantity=qty,
                idem_key=key,
                member_slot=None,
                state=ReservationState.REJECTED,
                released_at=utcnow(),
                using_db=conn,
            )
            await _emit_release(order_no, conn)
        log.warning("reservation rejected by the database", extra={"order_no": order_no})
        return "rejected"


# -- releases ----------------------------------------------------------------------------------


RELEASED_TOPIC = "flashsale.released"


async def _emit_release(order_no: str, conn: Any) -> None:
    await outbox.emit(
        RELEASED_TOPIC, {"order_no": order_no}, key=f"fs-release:{order_no}", connection=conn
    )


@lifecycle.on(OrderStatus.CANCELLED, kinds=[OrderKind.FLASHSALE])
async def _release_on_cancel(move: lifecycle.Move) -> None:
    """The reservation is marked released in the cancelling transaction (so it is released
    exactly once, or not at all); the Redis side (stock and quota back) follows through the
    outbox, idempotently."""
    order = move.order
    if not (order.source or "").startswith("fs:"):
        return
    changed = await (
        FlashReservation.filter(order_no=order.order_no, state=ReservationState.HELD)
        .using_db(move.conn)
        .update(state=ReservationState.RELEASED, released_at=utcnow(), member_slot=None)
    )
    if changed:
        await _emit_release(order.order_no, move.conn)


async def _give_back_in_redis(redis: Any, scripts: Scripts, r: FlashReservation) -> bool:
    """Apply one release's Redis side (at most once: the script records the order number).
    False when the sale's keys were not warm (warming from the database counts it)."""
    k = sale_keys(r.sale_id)  # type: ignore[attr-defined]
    res = int(
        await scripts.run(
            RELEASE, [k["stock"], k["buyers"], k["released"]], [r.order_no, r.member_id, r.quantity]
        )
    )
    if res < 0:
        sale = await FlashSale.filter(id=r.sale_id).first()  # type: ignore[attr-defined]
        if sale is not None:
            await warm(redis, scripts, sale)  # counts this release as given back
        return False
    await FlashReservation.filter(id=r.id).update(redis_released=True)
    return True


@outbox.handler(RELEASED_TOPIC)
async def _released(event: Any, env: outbox.Env) -> None:
    r = await FlashReservation.get_or_none(order_no=event.payload["order_no"])
    if r is not None and not r.redis_released:
        await _give_back_in_redis(env.redis, env.scripts, r)


async def sweep_releases(redis: Any, scripts: Scripts, limit: int = 500) -> int:
    """Catch up on releases whose Redis side is not applied yet (reconcile runs it first);
    returns how many it applied."""
    rows = (
        await FlashReservation.filter(
            state__in=[ReservationState.RELEASED, ReservationState.REJECTED],
            redis_released=False,
        )
        .order_by("id")
        .limit(limit)
    )
    done = 0
    for r in rows:
        done += await _give_back_in_redis(redis, scripts, r)
    return done


# -- reconcile ----------------------------------------------------------------------------------


async def reconcile(redis: Any, scripts: Scripts, sale_id: int) -> list[str]:
    """Compare Redis with PostgreSQL for one sale and repair Redis; returns what changed."""
    sale = await get_sale(sale_id)
    changes: list[str] = []
    await sweep_releases(redis, scripts)
    k = sale_keys(sale.id)
    keys = [k["stock"], k["buyers"], k["released"], k["stream"]]
    for _attempt in range(10):
        stock_raw, buyers_flat, released, entries, xlen = await scripts.run(SNAPSHOT, keys, [])
        if stock_raw is None:
            await warm(redis, scripts, sale)
            left = await redis.get(k["stock"])
            changes.append(f"stock key was missing: warmed from the database to {left}")
            return changes
        released_set = {_s(x) for x in released}
        inflight = [entry_fields(f) for _id, f in entries]
        fig = await _figures(sale, inflight, released_set.__contains__)
        it = iter(buyers_flat)
        have = {_s(m): int(_s(q)) for m, q in zip(it, it, strict=False)}
        stock = int(_s(stock_raw))
        member_fix: list[Any] = []
        for m in sorted(set(have) | set(fig.buyers), key=lambda x: int(x)):
            want = fig.buyers.get(m, 0)
            if have.get(m, 0) != want:
                member_fix += [m, want]
                changes.append(f"member {m}: units held in Redis {have.get(m, 0)} -> {want}")
        if stock == fig.stock and not member_fix:
            return changes
        ok = await scripts.run(
            FIX,
            keys,
            [_s(stock_raw), xlen, len(released_set), fig.stock, len(member_fix) // 2, *member_fix],
        )
        if int(ok):
            if stock != fig.stock:
                changes.insert(0, f"stock: {stock} -> {fig.stock}")
            return changes
        changes.clear()  # something moved while we looked: take a new snapshot
    raise Unavailable("the sale kept changing; run reconcile again", code="RECONCILE_BUSY")


# -- bench only: the PostgreSQL-only baseline ------------------------------------------------------


async def pg_baseline_grab(sale_id: int, member_id: int) -> str:
    """What peer malls do: a conditional UPDATE on the hot stock row, then the order."""
    from server.flashsale.models import BaselineStock

    sale = _baseline_sales.get(sale_id)
    if sale is None:
        sale = await FlashSale.filter(id=sale_id).select_related("sku").first()
        if sale is None or not await BaselineStock.filter(sale_id=sale_id).exists():
            raise NotFound(f"no baseline stock for sale {sale_id}", code="SALE_NOT_FOUND")
        _baseline_sales[sale_id] = sale
    order_no = new_order_no()
    async with in_transaction() as conn:
        changed, _ = await conn.execute_query(
            "UPDATE flash_baseline_stock SET stock = stock - 1 WHERE sale_id = $1 AND stock > 0",
            [sale_id],
        )
        if not changed:
            raise Conflict("sold out", code="SOLD_OUT")
        await create_order(
            kind=OrderKind.FLASHSALE,
            member_id=member_id,
            lines=[LineIn(sale.sku_id, sale.title, 1, sale.price_fen)],
            order_no=order_no,
            source=f"fsbase:{sale_id}",
            connection=conn,
        )
    return order_no


_baseline_sales: dict[int, FlashSale] = {}
