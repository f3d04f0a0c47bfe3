"""Stores and the locator: the rules. No Sanic here.

Writes go through `_write`, which changes the row and the locator index together:
inside one database transaction, with the row locked, the new version is written to
Redis; if Redis fails the transaction rolls back (503, nothing changed), so the index
never misses a committed change. Reads of nearby stores never touch the database.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.functions import Count
from tortoise.transactions import in_transaction

from server.infra.clock import utcnow
from server.infra.errors import AppError, Conflict, NotFound, Unavailable, ValidationFailed
from server.infra.http import validation_details
from server.stores import areas, index
from server.stores.hours import FeeRules, OpenState, open_state, week_minutes
from server.stores.models import Store
from server.stores.schemas import (
    SERVICE_NAMES,
    CloseIn,
    NearbyQuery,
    StoreCreate,
    StoreListQuery,
    StorePatch,
)

log = logging.getLogger("haodian.stores")

MAX_FETCH = 2000  # the most GEO hits one nearby query looks at while filtering


def _parse_dt(v: str | None) -> datetime | None:
    return datetime.fromisoformat(v) if v else None


# -- views -------------------------------------------------------------------------------------


def state_of(store: Store, at: datetime | None = None) -> OpenState:
    return open_state(
        week_minutes(store.hours or {}), at or utcnow(), store.closed_from, store.closed_until
    )


def store_view(store: Store, at: datetime | None = None, *, admin: bool = False) -> dict[str, Any]:
    st = state_of(store, at)
    open_now = st.open_now and not store.closed
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
        "services": index.services_of(store),
        "hours": store.hours,
        "delivery_radius_m": store.delivery_radius_m,
        "delivery_fee_rules": FeeRules.model_validate(store.delivery_fee_rules or {}).model_dump(),
        "delivery_areas": store.delivery_areas or [],
        "packing_fee_fen": store.packing_fee_fen,
        "closed": store.closed,
        "closed_from": store.closed_from,
        "closed_until": store.closed_until,
        "closure_reason": store.closure_reason if admin else "",
        "open_now": open_now,
        "next_open_at": None if store.closed else st.next_open_at,
        "closes_at": st.closes_at if open_now else None,
    }


# -- writes ------------------------------------------------------------------------------------


def _apply(store: Store, fields: dict[str, Any]) -> None:
    for key, value in fields.items():
        if key == "services":
            for s in SERVICE_NAMES:
                setattr(store, s, s in value)
        elif key == "delivery_fee_rules":
            setattr(store, key, FeeRules.model_validate(value).model_dump())
        elif key == "delivery_areas":
            store.delivery_areas = [
                areas.DeliveryArea.model_validate(a).model_dump(exclude_none=True) for a in value
            ]
        else:
            setattr(store, key, value)
    if why := areas.check_reach(store.lat, store.lng, store.delivery_areas or []):
        raise ValidationFailed(why, code="VALIDATION_ERROR")


async def _sync_in_tx(redis: Redis, store: Store) -> None:
    try:
        await index.sync(redis, store)
    except RedisError as exc:
        raise Unavailable(
            "the store locator index (Redis) is unavailable; nothing was changed, try again",
            code="LOCATOR_UNAVAILABLE",
        ) from exc


async def _after_failed_commit(redis: Redis, store_id: int | None) -> None:
    if store_id is None:
        return
    try:
        await index.resync(redis, store_id)
    except Exception:  # the next change or a rebuild fixes it
        log.warning("could not resync store %s into the locator index", store_id)


async def create_store(redis: Redis, data: StoreCreate) -> Store:
    if await Store.exists(code=data.code):
        raise Conflict(f"store code {data.code} is taken", code="STORE_CODE_TAKEN")
    fields = data.model_dump()
    store = Store(code=fields.pop("code"), lat=0, lng=0, name="", city="")
    _apply(store, fields)
    synced = False
    try:
        async with in_transaction() as conn:
            await store.save(using_db=conn)
            await _sync_in_tx(redis, store)
            synced = True
    except IntegrityError:
        raise Conflict(f"store code {data.code} is taken", code="STORE_CODE_TAKEN") from None
    except AppError:
        raise
    except Exception:
        if synced:
            await _after_failed_commit(redis, store.id)
        raise
    return store


async def _write(redis: Redis, store_id: int, change: Callable[[Store], None]) -> Store:
    synced = False
    try:
        async with in_transaction() as conn:
            store = await Store.filter(id=store_id).select_for_update().using_db(conn).first()
            if store is None:
                raise NotFound(f"no store {store_id}", code="STORE_NOT_FOUND")
            change(store)
            store.version += 1
            await store.save(using_db=conn)
            await _sync_in_tx(redis, store)
            synced = True
    except AppError:
        raise
    except Exception:
        if synced:
            await _after_failed_commit(redis, store_id)
        raise
    return store


async def update_store(redis: Redis, store_id: int, patch: StorePatch) -> Store:
    fields = patch.model_dump(exclude_unset=True)
    for key in ("name", "city", "lat", "lng", "hours", "services"):
        if key in fields and fields[key] is None:
            raise ValidationFailed(f"{key} cannot be null", code="VALIDATION_ERROR")
    return await _write(redis, store_id, lambda s: _apply(s, fields))


async def close_store(redis: Redis, store_id: int, data: CloseIn) -> Store:
    now = utcnow()
    if data.until is not None and data.until <= (data.from_ or now):
        raise ValidationFailed("until must be after from (and in the future)")

    def change(s: Store) -> None:
        s.closure_reason = data.reason
        if data.until is None and data.from_ is not None and data.from_ > now:
            # Closing for good at a future date: on the map until then, shown closed after.
            s.closed_from = data.from_
            s.closed_until = None
        elif data.until is None:
            s.closed = True
            s.closed_from = data.from_ or now
            s.closed_until = None
        else:
            s.closed_from = data.from_ or now
            s.closed_until = data.until

    return await _write(redis, store_id, change)


async def reopen_store(redis: Redis, store_id: int) -> Store:
    def change(s: Store) -> None:
        s.closed = False
        s.closed_from = None
        s.closed_until = None
        s.closure_reason = ""

    return await _write(redis, store_id, change)


# -- reads -------------------------------------------------------------------------------------


async def get_store(store_id: int) -> Store:
    store = await Store.get_or_none(id=store_id)
    if store is None:
        raise NotFound(f"no store {store_id}", code="STORE_NOT_FOUND")
    return store


async def list_stores(params: StoreListQuery, *, admin: bool = False) -> dict[str, Any]:
    qs = Store.all()
    status = params.status if admin else "open"
    if status == "open":
        qs = qs.filter(closed=False)
    elif status == "closed":
        qs = qs.filter(closed=True)
    if params.city:
        qs = qs.filter(city=params.city)
    if params.district:
        qs = qs.filter(district=params.district)
    if params.service:
        qs = qs.filter(**{params.service: True})
    if params.q:
        qs = qs.filter(
            Q(code__icontains=params.q)
            | Q(name__icontains=params.q)
            | Q(address__icontains=params.q)
        )
    total = await qs.count()
    rows = (
        await qs.order_by("city", "code")
        .offset((params.page - 1) * params.page_size)
        .limit(params.page_size)
    )
    now = utcnow()
    return {
        "items": [store_view(s, now, admin=admin) for s in rows],
        "total": total,
        "page": params.page,
        "page_size": params.page_size,
    }


async def cities() -> list[dict[str, Any]]:
    rows = (
        await Store.filter(closed=False)
        .annotate(n=Count("id"))
        .group_by("city")
        .order_by("-n", "city")
        .values("city", "n")
    )
    return [{"city": r["city"], "stores": r["n"]} for r in rows]


Keep = Callable[[int, float, dict[str, Any]], "dict[str, Any] | None"]


async def _scan(
    redis: Redis, lat: float, lng: float, radius_m: float, limit: int, keep: Keep, filtered: bool
) -> list[dict[str, Any]]:
    """Up to `limit` answers `keep(id, distance, card)` gives for the stores around a point,
    nearest first, from the Redis GEO index. When `keep` filters, the GEO search over-fetches
    (4x, then 16x, ... up to MAX_FETCH hits) so `limit` answers come back when they exist."""
    count = min(MAX_FETCH, max(limit * 4, 50)) if filtered else limit
    while True:
        try:
            hits = await index.search(redis, lat, lng, radius_m, count)
            if hits is None:  # index lost (Redis restarted or flushed): rebuild, then answer
                if not await index.ensure(redis):
                    raise Unavailable(
                        "the store locator is rebuilding; try again shortly",
                        code="LOCATOR_REBUILDING",
                        headers={"Retry-After": "2"},
                    )
                hits = await index.search(redis, lat, lng, radius_m, count) or []
        except RedisError as exc:
            raise Unavailable(
                "the store locator is unavailable", code="LOCATOR_UNAVAILABLE"
            ) from exc
        items: list[dict[str, Any]] = []
        for store_id, dist, c in hits:
            if c is None:
                continue
            item = keep(store_id, dist, c)
            if item is None:
                continue
            items.append(item)
            if len(items) == limit:
                return items
        if len(hits) < count or count >= MAX_FETCH:
            return items
        count = min(MAX_FETCH, count * 4)


def _card_state(c: dict[str, Any], at: datetime) -> OpenState:
    return open_state(c["week"], at, _parse_dt(c["closed_from"]), _parse_dt(c["closed_until"]))


def _card_area(c: dict[str, Any], lat: float, lng: float) -> dict[str, Any] | None:
    return areas.area_for(c["lat"], c["lng"], c.get("areas") or [], lat, lng)[0]


def _card_fields(c: dict[str, Any], store_id: int, dist: float, st: OpenState) -> dict[str, Any]:
    return {
        "id": store_id,
        "code": c["code"],
        "name": c["name"],
        "city": c["city"],
        "district": c["district"],
        "address": c["address"],
        "lat": c["lat"],
        "lng": c["lng"],
        "phone": c["phone"],
        "distance_m": round(dist, 1),
        "open_now": st.open_now,
        "next_open_at": st.next_open_at,
        "closes_at": st.closes_at,
    }


async def nearby(redis: Redis, q: NearbyQuery) -> list[dict[str, Any]]:
    """Stores around a point, nearest first, from the Redis GEO index."""
    at = q.at or utcnow()

    def keep(store_id: int, dist: float, c: dict[str, Any]) -> dict[str, Any] | None:
        if q.service and q.service not in c["services"]:
            return None
        st = _card_state(c, at)
        if q.open_now and not st.open_now:
            return None
        takeout = "takeout" in c["services"]
        return {
            **_card_fields(c, store_id, dist, st),
            "services": c["services"],
            "delivers_here": takeout and _card_area(c, q.lat, q.lng) is not None,
        }

    filtered = q.service is not None or q.open_now
    return await _scan(redis, q.lat, q.lng, q.radius_m, q.limit, keep, filtered)


async def delivering_to(
    redis: Redis, lat: float, lng: float, at: datetime, limit: int
) -> list[dict[str, Any]]:
    """Stores that take takeout, are open at `at` and whose delivery area holds the point,
    nearest first, each with its area's terms: from the locator index, no table scan."""

    def keep(store_id: int, dist: float, c: dict[str, Any]) -> dict[str, Any] | None:
        if "takeout" not in c["services"]:
            return None
        st = _card_state(c, at)
        if not st.open_now:
            return None
        area = _card_area(c, lat, lng)
        if area is None:
            return None
        return {
            **_card_fields(c, store_id, dist, st),
            "area": area,
            "packing_fee_fen": int(c.get("packing_fee_fen") or 0),
        }

    return await _scan(redis, lat, lng, areas.MAX_REACH_M, limit, keep, True)


# -- for other domains -------------------------------------------------------------------------


async def require_store(
    store_id: int, service: str | None = None, *, open_at: datetime | None = None
) -> Store:
    """The store, if it exists, is not closed for good, offers `service` and (with `open_at`)
    is open then. Raises NotFound / Conflict with stable codes otherwise."""
    store = await get_store(store_id)
    if store.closed:
        raise Conflict(f"store {store_id} is closed", code="STORE_CLOSED")
    if service is not None and not getattr(store, service, False):
        raise Conflict(f"store {store_id} does not offer {service}", code="SERVICE_NOT_OFFERED")
    if open_at is not None and not state_of(store, open_at).open_now:
        raise Conflict(f"store {store_id} is not open then", code="STORE_NOT_OPEN")
    return store


def delivery_area(store: Store, lat: float, lng: float) -> tuple[dict[str, Any], float]:
    """The delivery area of this store holding (lat, lng) and the distance, or a 409
    OUT_OF_DELIVERY_AREA."""
    area, distance = areas.area_for(
        store.lat,
        store.lng,
        areas.store_areas(store.delivery_radius_m, store.delivery_fee_rules, store.delivery_areas),
        lat,
        lng,
    )
    if area is None:
        raise Conflict(
            f"this address ({distance:.0f} m from the store) is outside its delivery area",
            code="OUT_OF_DELIVERY_AREA",
            details={"distance_m": round(distance, 1)},
        )
    return area, distance


# -- CSV import --------------------------------------------------------------------------------

CSV_REQUIRED = ("code", "name", "city", "lat", "lng")
CSV_OPTIONAL = (
    "district",
    "address",
    "phone",
    "hours",
    "services",
    "delivery_radius_m",
    "delivery_base_fen",
    "delivery_base_km",
    "delivery_per_km_fen",
    "delivery_free_over_fen",
    "delivery_min_order_fen",
)
MAX_IMPORT_ROWS = 5_000  # ~10 s of work; split bigger files


def decode_csv(raw: bytes) -> str:
    """UTF-8 (with or without BOM), else GB18030 (what Excel on a Chinese Windows saves)."""
    for enc in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise ValidationFailed("the file is neither UTF-8 nor GB18030 text", code="CSV_ENCODING")


def _row_to_fields(row: dict[str, str]) -> dict[str, Any]:
    def val(key: str) -> str:
        return (row.get(key) or "").strip()

    out: dict[str, Any] = {k: val(k) for k in CSV_REQUIRED}
    for k in ("district", "address", "phone"):
        if val(k):
            out[k] = val(k)
    if val("hours"):
        out["hours"] = val("hours")
    if val("services"):
        out["services"] = [
            s for s in val("services").replace(",", " ").replace("|", " ").replace(";", " ").split()
        ]
    if val("delivery_radius_m"):
        out["delivery_radius_m"] = val("delivery_radius_m")
    rules = {
        "base_fen": val("delivery_base_fen"),
        "base_km": val("delivery_base_km"),
        "per_km_fen": val("delivery_per_km_fen"),
        "free_over_fen": val("delivery_free_over_fen"),
        "min_order_fen": val("delivery_min_order_fen"),
    }
    rules = {k: v for k, v in rules.items() if v}
    if rules:
        out["delivery_fee_rules"] = rules
    return out


def _reason(exc: ValidationError) -> str:
    parts = []
    for d in validation_details(exc):
        field = d["field"].split(".")[0]
        msg = d["message"].removeprefix("Value error, ")
        parts.append(msg if msg.startswith(f"{field}:") else f"{field}: {msg}")
    return "; ".join(parts)


async def import_csv(redis: Redis, text: str) -> dict[str, Any]:
    """Create or update (by code) one store per row. Each row is all-or-nothing (its own
    transaction, index included); a bad row is reported with its line number and reason and
    never stops the good ones."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if not header:
        raise ValidationFailed("the CSV file is empty (expected a header row)", code="CSV_EMPTY")
    reader.fieldnames = header
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise ValidationFailed(
            f"the header lacks the column(s): {', '.join(missing)}; "
            f"required: {', '.join(CSV_REQUIRED)}",
            code="CSV_BAD_HEADER",
        )
    ignored = [h for h in header if h not in CSV_REQUIRED and h not in CSV_OPTIONAL]
    report: dict[str, Any] = {
        "rows": 0,
        "created": 0,
        "updated": 0,
        "failed": 0,
        "errors": [],
        "ignored_columns": ignored,
    }
    seen: dict[str, int] = {}

    def fail(line: int, code: str | None, reason: str) -> None:
        report["failed"] += 1
        report["errors"].append({"line": line, "code": code or None, "reason": reason})

    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            fail(reader.line_num, None, f"unreadable CSV: {exc}")
            break
        line = reader.line_num
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue  # blank line
        report["rows"] += 1
        if report["rows"] > MAX_IMPORT_ROWS:
            raise ValidationFailed(f"at most {MAX_IMPORT_ROWS} rows per file", code="CSV_TOO_BIG")
        if row.get(None):  # type: ignore[call-overload]
            fail(line, row.get("code"), f"the row has more fields than the header ({len(header)})")
            continue
        fields = _row_to_fields(row)
        code = fields.get("code") or None
        try:
            data = StoreCreate.model_validate(fields)
        except ValidationError as exc:
            fail(line, code, _reason(exc))
            continue
        if data.code in seen:
            fail(line, code, f"code {data.code} already appears on line {seen[data.code]}")
            continue
        seen[data.code] = line
        try:
            existing = await Store.get_or_none(code=data.code)
            if existing is None:
                await create_store(redis, data)
                report["created"] += 1
            else:
                given = set(fields) - {"code"}
                patch = StorePatch.model_validate(data.model_dump(include=given))
                await update_store(redis, existing.id, patch)
                report["updated"] += 1
        except AppError as exc:
            fail(line, code, exc.message)
        except Exception as exc:  # a database error on this row only
            log.warning("store import row failed", extra={"line": line, "error": repr(exc)})
            fail(line, code, f"could not be saved ({type(exc).__name__})")
    return report
