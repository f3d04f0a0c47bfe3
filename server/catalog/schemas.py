"""Request and response models of the catalog."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_STRICT = ConfigDict(extra="forbid", str_strip_whitespace=True)
Images = list[str]


class CategoryIn(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1, max_length=64)
    sort: int = Field(default=0, ge=-(2**31), le=2**31 - 1)
    visible: bool = True


class CategoryPatch(BaseModel):
    model_config = _STRICT
    name: str | None = Field(default=None, min_length=1, max_length=64)
    sort: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    visible: bool | None = None


class CategoryOut(BaseModel):
    id: int
    name: str
    sort: int
    visible: bool
    products: int = 0


class CategoriesOut(BaseModel):
    items: list[CategoryOut]


class SkuIn(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1, max_length=128)
    price_fen: int = Field(ge=0, le=100_000_000)
    code: str | None = Field(default=None, min_length=1, max_length=64)
    images: Images = Field(default_factory=list, max_length=20)
    attributes: dict[str, str] = Field(default_factory=dict)
    on_sale: bool = True


class SkuCreate(SkuIn):
    product_id: int


class SkuPatch(BaseModel):
    model_config = _STRICT
    name: str | None = Field(default=None, min_length=1, max_length=128)
    price_fen: int | None = Field(default=None, ge=0, le=100_000_000)
    code: str | None = Field(default=None, min_length=1, max_length=64)
    images: Images | None = Field(default=None, max_length=20)
    attributes: dict[str, str] | None = None
    on_sale: bool | None = None


class ProductIn(BaseModel):
    model_config = _STRICT
    category_id: int
    name: str = Field(min_length=1, max_length=128)
    description: str = Field(default="", max_length=10_000)
    images: Images = Field(default_factory=list, max_length=20)
    sort: int = Field(default=0, ge=-(2**31), le=2**31 - 1)
    on_sale: bool = True
    skus: list[SkuIn] = Field(default_factory=list, max_length=50, description="created with it")


class ProductPatch(BaseModel):
    model_config = _STRICT
    category_id: int | None = None
    name: str | None = Field(default=None, min_length=1, max_length=128)
    description: str | None = Field(default=None, max_length=10_000)
    images: Images | None = Field(default=None, max_length=20)
    sort: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    on_sale: bool | None = None


class SkuOut(BaseModel):
    id: int
    product_id: int
    name: str
    price_fen: int
    code: str | None
    images: list[str]
    attributes: dict[str, Any]
    on_sale: bool


class ProductOut(BaseModel):
    id: int
    category_id: int
    name: str
    description: str
    images: list[str]
    sort: int
    on_sale: bool
    min_price_fen: int | None
    skus: list[SkuOut]


class ProductPage(BaseModel):
    items: list[ProductOut]
    total: int
    page: int
    page_size: int


class ProductListQuery(BaseModel):
    model_config = _STRICT
    category_id: int | None = None
    q: str | None = Field(default=None, max_length=64)
    page: int = Field(default=1, ge=1, le=10_000)
    page_size: int = Field(default=20, ge=1, le=200)
    include_off_sale: bool = Field(default=False, description="operators only")


class StoreSkuIn(BaseModel):
    model_config = _STRICT
    available: bool | None = None
    price_override_fen: int | None = Field(default=None, ge=0, le=100_000_000)
    clear_price_override: bool = False
    stock: int | None = Field(default=None, ge=0, le=10_000_000, description="set (stocktake)")
    stock_delta: int | None = Field(
        default=None, ge=-10_000_000, le=10_000_000, description="add or remove (never below 0)"
    )


class StoreSkuBulkItem(BaseModel):
    model_config = _STRICT
    sku_id: int
    available: bool = True
    price_override_fen: int | None = Field(default=None, ge=0, le=100_000_000)
    stock: int = Field(default=0, ge=0, le=10_000_000)


class StoreSkusSet(BaseModel):
    ok: bool = True
    set: int = Field(description="SKUs of the store set")


class StoreSkuBulkIn(BaseModel):
    model_config = _STRICT
    items: list[StoreSkuBulkItem] = Field(min_length=1, max_length=2000)


class StoreSkuOut(BaseModel):
    store_id: int
    sku_id: int
    name: str
    available: bool
    list_price_fen: int
    price_override_fen: int | None
    price_fen: int
    stock: int


class StoreSkuPage(BaseModel):
    items: list[StoreSkuOut]
    total: int
    page: int
    page_size: int


class PageQuery(BaseModel):
    model_config = _STRICT
    page: int = Field(default=1, ge=1, le=10_000)
    page_size: int = Field(default=50, ge=1, le=500)


class MenuQuery(BaseModel):
    model_config = _STRICT
    category_id: int | None = None
    in_stock: bool = Field(default=False, description="only SKUs with stock > 0")


class MenuItem(BaseModel):
    sku_id: int
    product_id: int
    category_id: int
    name: str = Field(description="product and SKU name")
    product_name: str
    sku_name: str
    price_fen: int = Field(description="what this store charges")
    list_price_fen: int
    stock: int
    sold_out: bool
    images: list[str]
    attributes: dict[str, Any]


class MenuOut(BaseModel):
    store_id: int
    items: list[MenuItem]
