"""The catalog over HTTP: public reads for the mini-program, CRUD for operators."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from server.catalog import service
from server.catalog.schemas import (
    CategoriesOut,
    CategoryIn,
    CategoryOut,
    CategoryPatch,
    MenuOut,
    MenuQuery,
    PageQuery,
    ProductIn,
    ProductListQuery,
    ProductOut,
    ProductPage,
    ProductPatch,
    SkuCreate,
    SkuOut,
    SkuPatch,
    StoreSkuBulkIn,
    StoreSkuIn,
    StoreSkuOut,
    StoreSkuPage,
    StoreSkusSet,
)
from server.infra.auth import authenticated
from server.infra.http import body, query, respond, returns
from server.infra.openapi import OkOut

bp = Blueprint("catalog", url_prefix="/api/v1")

READ_ROLES = ("admin", "marketing", "store_ops")
CATALOG_ROLES = ("admin", "marketing")  # what is sold, at what list price
STORE_ROLES = ("admin", "store_ops")  # what one store sells, its price and stock


# -- public --------------------------------------------------------------------------------------


@bp.get("/categories")
@returns(CategoriesOut)
async def categories(request: Request) -> HTTPResponse:
    return respond({"items": await service.list_categories()})


@bp.get("/products")
@query(ProductListQuery)
@returns(ProductPage)
async def products(request: Request, params: ProductListQuery) -> HTTPResponse:
    """Products on sale, by category or text, with their SKUs."""
    return respond(await service.list_products(params))


@bp.get("/products/<product_id:int>")
@returns(ProductOut)
async def product_detail(request: Request, product_id: int) -> HTTPResponse:
    return respond(await service.get_product(product_id))


@bp.get("/stores/<store_id:int>/menu")
@query(MenuQuery)
@returns(MenuOut)
async def store_menu(request: Request, store_id: int, params: MenuQuery) -> HTTPResponse:
    """What a store sells itself (pickup, takeout): its price and stock per SKU."""
    items = await service.store_menu(store_id, params)
    return respond({"store_id": store_id, "items": items})


# -- operators: categories -----------------------------------------------------------------------


@bp.get("/admin/categories")
@authenticated("operator", roles=READ_ROLES)
@returns(CategoriesOut)
async def admin_categories(request: Request) -> HTTPResponse:
    return respond({"items": await service.list_categories(include_hidden=True)})


@bp.post("/admin/categories")
@authenticated("operator", roles=CATALOG_ROLES)
@body(CategoryIn)
@returns(CategoryOut, status=201)
async def admin_category_create(request: Request, payload: CategoryIn) -> HTTPResponse:
    c = await service.create_category(payload)
    return respond(service.category_view(c), status=201)


@bp.patch("/admin/categories/<category_id:int>")
@authenticated("operator", roles=CATALOG_ROLES)
@body(CategoryPatch)
@returns(CategoryOut)
async def admin_category_update(
    request: Request, category_id: int, payload: CategoryPatch
) -> HTTPResponse:
    c = await service.update_category(category_id, payload)
    return respond(service.category_view(c))


@bp.delete("/admin/categories/<category_id:int>")
@authenticated("operator", roles=CATALOG_ROLES)
@returns(OkOut)
async def admin_category_delete(request: Request, category_id: int) -> HTTPResponse:
    await service.delete_category(category_id)
    return respond({"ok": True})


# -- operators: products and SKUs ----------------------------------------------------------------


@bp.get("/admin/products")
@authenticated("operator", roles=READ_ROLES)
@query(ProductListQuery)
@returns(ProductPage)
async def admin_products(request: Request, params: ProductListQuery) -> HTTPResponse:
    return respond(await service.list_products(params, admin=True))


@bp.post("/admin/products")
@authenticated("operator", roles=CATALOG_ROLES)
@body(ProductIn)
@returns(ProductOut, status=201)
async def admin_product_create(request: Request, payload: ProductIn) -> HTTPResponse:
    return respond(await service.create_product(payload), status=201)


@bp.get("/admin/products/<product_id:int>")
@authenticated("operator", roles=READ_ROLES)
@returns(ProductOut)
async def admin_product_get(request: Request, product_id: int) -> HTTPResponse:
    return respond(await service.get_product(product_id, admin=True))


@bp.patch("/admin/products/<product_id:int>")
@authenticated("operator", roles=CATALOG_ROLES)
@body(ProductPatch)
@returns(ProductOut)
async def admin_product_update(
    request: Request, product_id: int, payload: ProductPatch
) -> HTTPResponse:
    return respond(await service.update_product(product_id, payload))


@bp.delete("/admin/products/<product_id:int>")
@authenticated("operator", roles=CATALOG_ROLES)
@returns(OkOut)
async def admin_product_delete(request: Request, product_id: int) -> HTTPResponse:
    await service.delete_product(product_id)
    return respond({"ok": True})


@bp.post("/admin/skus")
@authenticated("operator", roles=CATALOG_ROLES)
@body(SkuCreate)
@returns(SkuOut, status=201)
async def admin_sku_create(request: Request, payload: SkuCreate) -> HTTPResponse:
    return respond(service.sku_view(await service.create_sku(payload)), status=201)


@bp.patch("/admin/skus/<sku_id:int>")
@authenticated("operator", roles=CATALOG_ROLES)
@body(SkuPatch)
@returns(SkuOut)
async def admin_sku_update(request: Request, sku_id: int, payload: SkuPatch) -> HTTPResponse:
    return respond(service.sku_view(await service.update_sku(sku_id, payload)))


@bp.delete("/admin/skus/<sku_id:int>")
@authenticated("operator", roles=CATALOG_ROLES)
@returns(OkOut)
async def admin_sku_delete(request: Request, sku_id: int) -> HTTPResponse:
    await service.delete_sku(sku_id)
    return respond({"ok": True})


# -- operators: what a store sells ---------------------------------------------------------------


@bp.get("/admin/stores/<store_id:int>/skus")
@authenticated("operator", roles=READ_ROLES)
@query(PageQuery)
@returns(StoreSkuPage)
async def admin_store_skus(request: Request, store_id: int, params: PageQuery) -> HTTPResponse:
    return respond(await service.list_store_skus(store_id, params.page, params.page_size))


@bp.post("/admin/stores/<store_id:int>/skus")
@authenticated("operator", roles=STORE_ROLES)
@body(StoreSkuBulkIn)
@returns(StoreSkusSet)
async def admin_store_skus_set(
    request: Request, store_id: int, payload: StoreSkuBulkIn
) -> HTTPResponse:
    """Set many SKUs of a store at once (availability, price override, stock): all or none."""
    n = await service.set_store_skus(store_id, payload.items)
    return respond({"ok": True, "set": n})


@bp.put("/admin/stores/<store_id:int>/skus/<sku_id:int>")
@authenticated("operator", roles=STORE_ROLES)
@body(StoreSkuIn)
@returns(StoreSkuOut)
async def admin_store_sku_set(
    request: Request, store_id: int, sku_id: int, payload: StoreSkuIn
) -> HTTPResponse:
    """Sell a SKU at a store, or change availability, price override, stock (set or delta)."""
    return respond(await service.set_store_sku(store_id, sku_id, payload))


@bp.delete("/admin/stores/<store_id:int>/skus/<sku_id:int>")
@authenticated("operator", roles=STORE_ROLES)
@returns(OkOut)
async def admin_store_sku_delete(request: Request, store_id: int, sku_id: int) -> HTTPResponse:
    await service.delete_store_sku(store_id, sku_id)
    return respond({"ok": True})
