"""Stores and the locator over HTTP: parse -> service -> respond."""

from __future__ import annotations

import asyncio
import logging

from sanic import Blueprint, Request, Sanic
from sanic.response import HTTPResponse

from server.app import on_startup
from server.infra.auth import authenticated
from server.infra.errors import ValidationFailed
from server.infra.http import body, query, respond, returns
from server.stores import index, service
from server.stores.schemas import (
    CitiesOut,
    CloseIn,
    ImportReport,
    NearbyOut,
    NearbyQuery,
    StoreCreate,
    StoreListQuery,
    StoreOut,
    StorePage,
    StorePatch,
)

log = logging.getLogger("haodian.stores")

bp = Blueprint("stores", url_prefix="/api/v1")

READ_ROLES = ("admin", "store_ops", "marketing")
WRITE_ROLES = ("admin", "store_ops")


@on_startup
async def _warm_locator(app: Sanic) -> None:
    """Rebuild the GEO index when it is missing; a Redis that is down must not stop start-up
    (the first nearby query rebuilds it once Redis is back)."""
    try:
        await asyncio.wait_for(index.ensure(app.ctx.redis), timeout=60)
    except Exception as exc:
        log.warning("store locator index not checked at start-up: %s", type(exc).__name__)


# -- public --------------------------------------------------------------------------------------


@bp.get("/stores/nearby")
@query(NearbyQuery)
@returns(NearbyOut)
async def stores_nearby(request: Request, params: NearbyQuery) -> HTTPResponse:
    """Stores around a GCJ-02 point, nearest first, with distance and open-now state."""
    items = await service.nearby(request.app.ctx.redis, params)
    return respond({"items": items})


@bp.get("/stores")
@query(StoreListQuery)
@returns(StorePage)
async def stores_list(request: Request, params: StoreListQuery) -> HTTPResponse:
    """Stores by city / district / service / text, paged (stores closed for good left out)."""
    return respond(await service.list_stores(params))


@bp.get("/stores/<store_id:int>")
@returns(StoreOut)
async def store_detail(request: Request, store_id: int) -> HTTPResponse:
    return respond(service.store_view(await service.get_store(store_id)))


@bp.get("/cities")
@returns(CitiesOut)
async def cities(request: Request) -> HTTPResponse:
    """Cities that have stores, most stores first."""
    return respond({"items": await service.cities()})


# -- operators -----------------------------------------------------------------------------------


@bp.get("/admin/stores")
@authenticated("operator", roles=READ_ROLES)
@query(StoreListQuery)
@returns(StorePage)
async def admin_stores(request: Request, params: StoreListQuery) -> HTTPResponse:
    return respond(await service.list_stores(params, admin=True))


@bp.post("/admin/stores")
@authenticated("operator", roles=WRITE_ROLES)
@body(StoreCreate)
@returns(StoreOut, status=201)
async def admin_store_create(request: Request, payload: StoreCreate) -> HTTPResponse:
    store = await service.create_store(request.app.ctx.redis, payload)
    return respond(service.store_view(store, admin=True), status=201)


@bp.get("/admin/stores/<store_id:int>")
@authenticated("operator", roles=READ_ROLES)
@returns(StoreOut)
async def admin_store_get(request: Request, store_id: int) -> HTTPResponse:
    return respond(service.store_view(await service.get_store(store_id), admin=True))


@bp.patch("/admin/stores/<store_id:int>")
@authenticated("operator", roles=WRITE_ROLES)
@body(StorePatch)
@returns(StoreOut)
async def admin_store_update(request: Request, store_id: int, payload: StorePatch) -> HTTPResponse:
    """Change any field; moving a store (lat/lng) shows in the next nearby query."""
    store = await service.update_store(request.app.ctx.redis, store_id, payload)
    return respond(service.store_view(store, admin=True))


@bp.post("/admin/stores/<store_id:int>/close")
@authenticated("operator", roles=WRITE_ROLES)
@body(CloseIn)
@returns(StoreOut)
async def admin_store_close(request: Request, store_id: int, payload: CloseIn) -> HTTPResponse:
    """Without `until`: closed for good (off the locator). With `until`: a temporary closure."""
    store = await service.close_store(request.app.ctx.redis, store_id, payload)
    return respond(service.store_view(store, admin=True))


@bp.post("/admin/stores/<store_id:int>/reopen")
@authenticated("operator", roles=WRITE_ROLES)
@returns(StoreOut)
async def admin_store_reopen(request: Request, store_id: int) -> HTTPResponse:
    store = await service.reopen_store(request.app.ctx.redis, store_id)
    return respond(service.store_view(store, admin=True))


@bp.post("/admin/stores/import")
@authenticated("operator", roles=WRITE_ROLES)
@returns(ImportReport)
async def admin_store_import(request: Request) -> HTTPResponse:
    """Bulk create/update stores from CSV: a multipart upload (field `file`) or a text/csv
    body. Header: code,name,city,lat,lng[,district,address,phone,hours,services,
    delivery_radius_m,delivery_base_fen,delivery_base_km,delivery_per_km_fen,
    delivery_free_over_fen,delivery_min_order_fen]. Each row is created or updated (by code)
    on its own; the report lists every bad row with its line number and reason."""
    ctype = (request.content_type or "").lower()
    if ctype.startswith("multipart/form-data"):
        upload = request.files.get("file") if request.files else None
        if upload is None and request.files:
            upload = next(iter(request.files.values()))[0]
        if upload is None:
            raise ValidationFailed("upload the CSV as the form field `file`", code="CSV_MISSING")
        raw = upload.body
    else:
        raw = request.body or b""
    if not raw.strip():
        raise ValidationFailed("the CSV file is empty", code="CSV_EMPTY")
    report = await service.import_csv(request.app.ctx.redis, service.decode_csv(raw))
    return respond(report)
