"""The catalog: categories, products, SKUs, and what each store sells at what price with
what stock. No Sanic here.

For the orders domain:

    prices = await store_menu_prices(store_id, [sku_id, ...])   # {sku_id: (name, price_fen)}
    await hold_store_stock(store_id, {sku_id: qty, ...})        # all lines or none (409)
    await release_store_stock(store_id, {sku_id: qty, ...})     # give them back (cancel)

Stock never goes below zero, under any concurrency: every decrement is one conditional
`UPDATE store_sku SET stock = stock - q WHERE ... AND stock >= q`, all lines of an order in
one transaction (rolled back when any line is short), rows touched in SKU-id order so two
multi-line orders cannot deadlock. PostgreSQL re-checks the WHERE on the latest row
version after waiting for a concurrent writer, so two holds can never both take the last
unit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q
from tortoise.functions import Count
from tortoise.transactions import in_transaction

from server.catalog.models import Category, Product, Sku, StoreSku
from server.catalog.schemas import (
    CategoryIn,
    CategoryPatch,
    MenuQuery,
    ProductIn,
    ProductListQuery,
    ProductPatch,
    SkuCreate,
    SkuPatch,
    StoreSkuBulkItem,
    StoreSkuIn,
)
from server.infra.errors import Conflict, NotFound, ValidationFailed
from server.stores.models import Store


def display_name(product_name: str, sku_name: str) -> str:
    if not sku_name or sku_name == product_name:
        return product_name
    return f"{product_name} {sku_name}"


# -- categories --------------------------------------------------------------------------------


def category_view(c: Category, products: int = 0) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "sort": c.sort, "visible": c.visible, "products": products}


async def list_categories(*, include_hidden: bool = False) -> list[dict[str, Any]]:
    qs = Category.all() if include_hidden else Category.filter(visible=True)
    cats = await qs.order_by("sort", "id")
    product_filter = {} if include_hidden else {"on_sale": True}
    counts = dict(
        await Product.filter(**product_filter)
        .annotate(n=Count("id"))
        .group_by("category_id")
        .values_list("category_id", "n")
    )
    return [category_view(c, counts.get(c.id, 0)) for c in cats]


async def get_category(category_id: int) -> Category:
    c = await Category.get_or_none(id=category_id)
    if c is None:
        raise NotFound(f"no category {category_id}", code="CATEGORY_NOT_FOUND")
    return c


async def create_category(data: CategoryIn) -> Category:
    try:
        return await Category.create(**data.model_dump())
    except IntegrityError:
        raise Conflict(f"a category named {data.name} exists", code="CATEGORY_EXISTS") from None


async def update_category(category_id: int, patch: CategoryPatch) -> Category:
    c = await get_category(category_id)
    fields = {k: v for k, v in patch.model_dump(exclude_unset=True).items() if v is not None}
    c.update_from_dict(fields)
    try:
        await c.save()
    except IntegrityError:
        raise Conflict("a category with that name exists", code="CATEGORY_EXISTS") from None
    return c


async def delete_category(category_id: int) -> None:
    c = await get_category(category_id)
    if await Product.exists(category_id=c.id):
        raise Conflict(
            "the category still has products; move or delete them first", code="CATEGORY_IN_USE"
        )
    await c.delete()


# -- products and SKUs -------------------------------------------------------------------------


def sku_view(s: Sku) -> dict[str, Any]:
    return {
        "id": s.id,
        "product_id": s.product_id,  # type: ignore[attr-defined]
        "name": s.name,
        "price_fen": s.price_fen,
        "code": s.code,
        "images": s.images or [],
        "attributes": s.attributes or {},
        "on_sale": s.on_sale,
    }


def product_view(p: Product, skus: Iterable[Sku]) -> dict[str, Any]:
    sku_list = [sku_view(s) for s in skus]
    prices = [s["price_fen"] for s in sku_list if s["on_sale"]]
    return {
        "id": p.id,
        "category_id": p.category_id,  # type: ignore[attr-defined]
        "name": p.name,
        "description": p.description,
        "images": p.images or [],
        "sort": p.sort,
        "on_sale": p.on_sale,
        "min_price_fen": min(prices) if prices else None,
        "skus": sku_list,
    }


async def list_products(params: ProductListQuery, *, admin: bool = False) -> dict[str, Any]:
    qs = Product.all()
    if not (admin and params.include_off_sale):
        qs = qs.filter(on_sale=True, category__visible=True)
    if params.category_id is not None:
        qs = qs.filter(category_id=params.category_id)
    if params.q:
        qs = qs.filter(Q(name__icontains=params.q) | Q(description__icontains=params.q))
    total = await qs.count()
    rows = (
        await qs.order_by("sort", "id")
        .offset((params.page - 1) * params.page_size)
        .limit(params.page_size)
    )
    sku_qs = Sku.filter(product_id__in=[p.id for p in rows])
    if not (admin and params.include_off_sale):
        sku_qs = sku_qs.filter(on_sale=True)
    by_product: dict[int, list[Sku]] = {}
    for s in await sku_qs.order_by("price_fen", "id"):
        by_product.setdefault(s.product_id, []).append(s)  # type: ignore[attr-defined]
    return {
        "items": [product_view(p, by_product.get(p.id, [])) for p in rows],
        "total": total,
        "page": params.page,
        "page_size": params.page_size,
    }


async def get_product(product_id: int, *, admin: bool = False) -> dict[str, Any]:
    p = await Product.filter(id=product_id).select_related("category").first()
    if p is None or (not admin and (not p.on_sale or not p.category.visible)):
        raise NotFound(f"no product {product_id}", code="PRODUCT_NOT_FOUND")
    qs = Sku.filter(product_id=p.id)
    if not admin:
        qs = qs.filter(on_sale=True)
    return product_view(p, await qs.order_by("price_fen", "id"))


async def create_product(data: ProductIn) -> dict[str, Any]:
    await get_category(data.category_id)
    fields = data.model_dump(exclude={"skus"})
    try:
        async with in_transaction() as conn:
            p = await Product.create(**fields, using_db=conn)
            skus = [
                await Sku.create(product_id=p.id, **s.model_dump(), using_db=conn)
                for s in data.skus
            ]
    except IntegrityError:
        raise Conflict("a SKU code is already used", code="SKU_CODE_TAKEN") from None
    return product_view(p, skus)


async def update_product(product_id: int, patch: ProductPatch) -> dict[str, Any]:
    p = await Product.get_or_none(id=product_id)
    if p is None:
        raise NotFound(f"no product {product_id}", code="PRODUCT_NOT_FOUND")
    fields = {k: v for k, v in patch.model_dump(exclude_unset=True).items() if v is not None}
    if "category_id" in fields:
        await get_category(fields["category_id"])
    p.update_from_dict(fields)
    await p.save()
    return await get_product(p.id, admin=True)


async def delete_product(product_id: int) -> None:
    p = await Product.get_or_none(id=product_id)
    if p is None:
        raise NotFound(f"no product {product_id}", code="PRODUCT_NOT_FOUND")
    try:
        async with in_transaction() as conn:
            await StoreSku.filter(sku__product_id=p.id).using_db(conn).delete()
            await Sku.filter(product_id=p.id).using_db(conn).delete()
            await p.delete(using_db=conn)
    except IntegrityError:
        raise Conflict(
            "a SKU of this product is used elsewhere (e.g. a flash sale); take it off sale instead",
            code="PRODUCT_IN_USE",
        ) from None


async def get_sku(sku_id: int) -> Sku:
    s = await Sku.get_or_none(id=sku_id)
    if s is None:
        raise NotFound(f"no SKU {sku_id}", code="SKU_NOT_FOUND")
    return s


async def create_sku(data: SkuCreate) -> Sku:
    if not await Product.exists(id=data.product_id):
        raise NotFound(f"no product {data.product_id}", code="PRODUCT_NOT_FOUND")
    try:
        return await Sku.create(**data.model_dump())
    except IntegrityError:
        raise Conflict(f"SKU code {data.code} is taken", code="SKU_CODE_TAKEN") from None


async def update_sku(sku_id: int, patch: SkuPatch) -> Sku:
    s = await get_sku(sku_id)
    fields = patch.model_dump(exclude_unset=True)
    fields = {k: v for k, v in fields.items() if v is not None or k == "code"}
    s.update_from_dict(fields)
    try:
        await s.save()
    except IntegrityError:
        raise Conflict("that SKU code is taken", code="SKU_CODE_TAKEN") from None
    return s


async def delete_sku(sku_id: int) -> None:
    s = await get_sku(sku_id)
    try:
        async with in_transaction() as conn:
            await StoreSku.filter(sku_id=s.id).using_db(conn).delete()
            await s.delete(using_db=conn)
    except IntegrityError:
        raise Conflict(
            "the SKU is used elsewhere (e.g. a flash sale); take it off sale instead",
            code="SKU_IN_USE",
        ) from None


# -- what a store sells ------------------------------------------------------------------------


async def _require_store(store_id: int) -> None:
    if not await Store.exists(id=store_id):
        raise NotFound(f"no store {store_id}", code="STORE_NOT_FOUND")


def _store_sku_view(row: dict[str, Any]) -> dict[str, Any]:
    override = row["price_override_fen"]
    return {
        "store_id": row["store_id"],
        "sku_id": row["sku_id"],
        "name": display_name(row["sku__product__name"], row["sku__name"]),
        "available": row["available"],
        "list_price_fen": row["sku__price_fen"],
        "price_override_fen": override,
        "price_fen": override if override is not None else row["sku__price_fen"],
        "stock": row["stock"],
    }


_SS_FIELDS = (
    "store_id",
    "sku_id",
    "available",
    "price_override_fen",
    "stock",
    "sku__name",
    "sku__price_fen",
    "sku__product__name",
)


async def get_store_sku(store_id: int, sku_id: int) -> dict[str, Any]:
    row = await StoreSku.filter(store_id=store_id, sku_id=sku_id).values(*_SS_FIELDS)
    if not row:
        raise NotFound(f"store {store_id} does not sell SKU {sku_id}", code="STORE_SKU_NOT_FOUND")
    return _store_sku_view(row[0])


async def list_store_skus(store_id: int, page: int, page_size: int) -> dict[str, Any]:
    await _require_store(store_id)
    qs = StoreSku.filter(store_id=store_id)
    total = await qs.count()
    rows = (
        await qs.order_by("sku_id")
        .offset((page - 1) * page_size)
        .limit(page_size)
        .values(*_SS_FIELDS)
    )
    return {
        "items": [_store_sku_view(r) for r in rows],
        "total": total,
        "page": page,
        "page_size": page_size,
    }


async def set_store_sku(store_id: int, sku_id: int, data: StoreSkuIn) -> dict[str, Any]:
    """Start selling a SKU at a store, or change its availability, price or stock."""
    await _require_store(store_id)
    await get_sku(sku_id)
    if data.stock is not None and data.stock_delta is not None:
        raise ValidationFailed("give stock (a stocktake) or stock_delta, not both")
    async with in_transaction() as conn:
        row = await StoreSku.get_or_none(store_id=store_id, sku_id=sku_id).using_db(conn)
        if row is None:
            try:
                row = await StoreSku.create(store_id=store_id, sku_id=sku_id, using_db=conn)
            except IntegrityError:  # created concurrently: use that one
                row = await StoreSku.get(store_id=store_id, sku_id=sku_id).using_db(conn)
        fields: dict[str, Any] = {}
        if data.available is not None:
            fields["available"] = data.available
        if data.clear_price_override:
            fields["price_override_fen"] = None
        elif data.price_override_fen is not None:
            fields["price_override_fen"] = data.price_override_fen
        if data.stock is not None:
            fields["stock"] = data.stock
        if fields:
            await StoreSku.filter(id=row.id).using_db(conn).update(**fields)
        if data.stock_delta:
            qs = StoreSku.filter(id=row.id)
            if data.stock_delta < 0:
                qs = qs.filter(stock__gte=-data.stock_delta)
            if not await qs.using_db(conn).update(stock=F("stock") + data.stock_delta):
                raise Conflict("stock cannot go below zero", code="STOCK_BELOW_ZERO")
    return await get_store_sku(store_id, sku_id)


async def set_store_skus(store_id: int, items: list[StoreSkuBulkItem]) -> int:
    """Set many SKUs of one store at once (all or nothing); returns how many were set."""
    await _require_store(store_id)
    wanted = {i.sku_id: i for i in items}
    found = set(await Sku.filter(id__in=list(wanted)).values_list("id", flat=True))
    missing = sorted(set(wanted) - found)
    if missing:
        raise NotFound(f"no SKU {missing[0]}", code="SKU_NOT_FOUND", details={"missing": missing})
    async with in_transaction() as conn:
        existing = dict(
            await StoreSku.filter(store_id=store_id, sku_id__in=list(wanted))
            .using_db(conn)
            .values_list("sku_id", "id")
        )
        new = [
            StoreSku(
                store_id=store_id,
                sku_id=i.sku_id,
                available=i.available,
                price_override_fen=i.price_override_fen,
                stock=i.stock,
            )
            for sid, i in sorted(wanted.items())
            if sid not in existing
        ]
        if new:
            await StoreSku.bulk_create(new, using_db=conn)
        for sid, row_id in sorted(existing.items()):
            i = wanted[sid]
            await (
                StoreSku.filter(id=row_id)
                .using_db(conn)
                .update(
                    available=i.available, price_override_fen=i.price_override_fen, stock=i.stock
                )
            )
    return len(wanted)


async def delete_store_sku(store_id: int, sku_id: int) -> None:
    n = await StoreSku.filter(store_id=store_id, sku_id=sku_id).delete()
    if not n:
        raise NotFound(f"store {store_id} does not sell SKU {sku_id}", code="STORE_SKU_NOT_FOUND")


_MENU_FIELDS = (
    "sku_id",
    "stock",
    "price_override_fen",
    "sku__name",
    "sku__price_fen",
    "sku__images",
    "sku__attributes",
    "sku__product_id",
    "sku__product__name",
    "sku__product__images",
    "sku__product__category_id",
)


def _sellable(store_id: int) -> Any:
    return StoreSku.filter(
        store_id=store_id,
        available=True,
        sku__on_sale=True,
        sku__product__on_sale=True,
    )


async def store_menu(store_id: int, params: MenuQuery) -> list[dict[str, Any]]:
    """What a store sells now: its price (override or list price) and stock."""
    await _require_store(store_id)
    qs = _sellable(store_id).filter(sku__product__category__visible=True)
    if params.category_id is not None:
        qs = qs.filter(sku__product__category_id=params.category_id)
    if params.in_stock:
        qs = qs.filter(stock__gt=0)
    rows = await qs.order_by(
        "sku__product__category__sort", "sku__product__sort", "sku__product_id", "sku_id"
    ).values(*_MENU_FIELDS)
    out = []
    for r in rows:
        override = r["price_override_fen"]
        out.append(
            {
                "sku_id": r["sku_id"],
                "product_id": r["sku__product_id"],
                "category_id": r["sku__product__category_id"],
                "name": display_name(r["sku__product__name"], r["sku__name"]),
                "product_name": r["sku__product__name"],
                "sku_name": r["sku__name"],
                "price_fen": override if override is not None else r["sku__price_fen"],
                "list_price_fen": r["sku__price_fen"],
                "stock": r["stock"],
                "sold_out": r["stock"] <= 0,
                "images": (r["sku__images"] or []) or (r["sku__product__images"] or []),
                "attributes": r["sku__attributes"] or {},
            }
        )
    return out


# -- for the orders domain ---------------------------------------------------------------------


async def store_menu_prices(store_id: int, sku_ids: Iterable[int]) -> dict[int, tuple[str, int]]:
    """{sku_id: (display name, price in fen at this store)} for the SKUs the store sells now
    (available, on sale). A SKU missing from the answer is not sold there: refuse the line."""
    ids = sorted({int(i) for i in sku_ids})
    if not ids:
        return {}
    rows = (
        await _sellable(store_id)
        .filter(sku_id__in=ids)
        .values("sku_id", "price_override_fen", "sku__price_fen", "sku__name", "sku__product__name")
    )
    return {
        r["sku_id"]: (
            display_name(r["sku__product__name"], r["sku__name"]),
            r["price_override_fen"] if r["price_override_fen"] is not None else r["sku__price_fen"],
        )
        for r in rows
    }


async def short_lines(store_id: int, lines: Mapping[int, int]) -> list[dict[str, int]]:
    """The lines this store cannot fill now (requested, available), holding nothing: what a
    quote shows before the order takes the stock."""
    have = dict(
        await StoreSku.filter(
            store_id=store_id, sku_id__in=list(lines), available=True
        ).values_list("sku_id", "stock")
    )
    return [
        {"sku_id": sku_id, "requested": qty, "available": int(have.get(sku_id, 0))}
        for sku_id, qty in sorted(lines.items())
        if have.get(sku_id, 0) < qty
    ]


def _lines(lines: Mapping[int, int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for sku_id, qty in lines.items():
        if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
            raise ValidationFailed(f"quantity of SKU {sku_id} must be a positive integer")
        out[int(sku_id)] = out.get(int(sku_id), 0) + qty
    if not out:
        raise ValidationFailed("no lines to hold")
    return out


async def hold_store_stock(
    store_id: int, lines: Mapping[int, int], *, using_db: Any = None
) -> None:
    """Take `qty` of each SKU from the store's stock: every line or none.

    Raises Conflict OUT_OF_STOCK (details: sku_id, requested, available) when a line is
    short or the SKU is not available at the store; nothing is taken then. Pass `using_db`
    to run inside the caller's transaction (the order insert), else it opens its own."""
    wanted = _lines(lines)
    if using_db is not None:
        await _hold(store_id, wanted, using_db)
        return
    async with in_transaction() as conn:
        await _hold(store_id, wanted, conn)


async def _hold(store_id: int, wanted: dict[int, int], conn: Any) -> None:
    for sku_id in sorted(wanted):  # one lock order for everybody: no deadlocks
        qty = wanted[sku_id]
        took = (
            await StoreSku.filter(store_id=store_id, sku_id=sku_id, available=True, stock__gte=qty)
            .using_db(conn)
            .update(stock=F("stock") - qty)
        )
        if not took:
            have = (
                await StoreSku.filter(store_id=store_id, sku_id=sku_id, available=True)
                .using_db(conn)
                .values_list("stock", flat=True)
            )
            available = have[0] if have else 0
            raise Conflict(
                f"SKU {sku_id}: {qty} wanted, {available} left at this store",
                code="OUT_OF_STOCK",
                details={"sku_id": sku_id, "requested": qty, "available": available},
            )


async def release_store_stock(
    store_id: int, lines: Mapping[int, int], *, using_db: Any = None
) -> None:
    """Give held units back (order cancelled or expired). Call it once per hold: the caller
    records that it released (e.g. in the same transaction as the order's state change).
    Nothing to give back (no lines) is a no-op."""
    if not lines:
        return
    wanted = _lines(lines)

    async def run(conn: Any) -> None:
        for sku_id in sorted(wanted):
            await (
                StoreSku.filter(store_id=store_id, sku_id=sku_id)
                .using_db(conn)
                .update(stock=F("stock") + wanted[sku_id])
            )

    if using_db is not None:
        await run(using_db)
        return
    async with in_transaction() as conn:
        await run(conn)
