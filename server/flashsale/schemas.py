from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, Field


class FlashSaleIn(BaseModel):
    sku_id: int = Field(gt=0)
    price_fen: int = Field(ge=0)
    units: int = Field(gt=0, le=10_000_000)
    per_member_limit: int = Field(default=1, ge=1, le=1000)
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    title: str | None = Field(default=None, max_length=128)
    store_ids: list[int] = Field(default_factory=list, description="empty: online sale")
    member_tiers: list[str] = Field(default_factory=list, description="empty: every member")


class FlashSaleOut(BaseModel):
    id: int
    sku_id: int
    title: str
    store_ids: list[int]
    price_fen: int
    units: int
    per_member_limit: int
    starts_at: datetime
    ends_at: datetime
    member_tiers: list[str]
    remaining: int
    status: str = Field(description="upcoming | live | sold_out | ended | cancelled")


class SaleList(BaseModel):
    items: list[FlashSaleOut]


class GrabIn(BaseModel):
    quantity: int = Field(default=1, ge=1, le=100)


class GrabOut(BaseModel):
    order_no: str
    sale_id: int
    quantity: int
    status: str = Field(description="reserved: the order appears as pending payment shortly")
    replayed: bool


class ReconcileOut(BaseModel):
    sale_id: int
    changes: list[str]
