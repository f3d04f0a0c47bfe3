"""Request and response models of takeout: addresses, stores that deliver, quotes, the board."""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from server.stores.geo import MAX_LAT
from server.stores.schemas import sane_at

_PHONE = re.compile(r"^1[3-9]\d{9}$|^0\d{2,3}-?\d{7,8}$")


def _phone(v: str | None) -> str | None:
    if v is None:
        return v
    v = v.strip().replace(" ", "")
    if not _PHONE.match(v):
        raise ValueError("a mainland mobile (11 digits) or a landline like 027-85551234")
    return v


class AddressIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    contact: str = Field(min_length=1, max_length=32)
    phone: str = Field(description="mobile or landline; stored sealed, answered masked")
    text: str = Field(min_length=1, max_length=255, description="street, building, door")
    lat: float = Field(ge=-MAX_LAT, le=MAX_LAT, allow_inf_nan=False, description="GCJ-02")
    lng: float = Field(ge=-180, le=180, allow_inf_nan=False, description="GCJ-02")

    _check_phone = field_validator("phone")(_phone)


class AddressPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    contact: str | None = Field(default=None, min_length=1, max_length=32)
    phone: str | None = None
    text: str | None = Field(default=None, min_length=1, max_length=255)
    lat: float | None = Field(default=None, ge=-MAX_LAT, le=MAX_LAT, allow_inf_nan=False)
    lng: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)

    _check_phone = field_validator("phone")(_phone)

    @model_validator(mode="after")
    def _both_coordinates(self) -> AddressPatch:
        if (self.lat is None) != (self.lng is None):
            raise ValueError("lat and lng change together")
        return self


class AddressOut(BaseModel):
    id: int
    contact: str
    phone: str = Field(description="masked, e.g. 138****5678")
    text: str
    lat: float
    lng: float
    updated_at: dt.datetime


class AddressListOut(BaseModel):
    items: list[AddressOut]


class TakeoutStoresQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address_id: int | None = Field(default=None, gt=0, le=2**63 - 1)
    lat: float | None = Field(default=None, ge=-MAX_LAT, le=MAX_LAT, allow_inf_nan=False)
    lng: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)
    at: AwareDatetime | None = Field(default=None, description="open at this time; default now")
    limit: int = Field(default=20, ge=1, le=50)

    _sane_at = field_validator("at")(sane_at)

    @model_validator(mode="after")
    def _where(self) -> TakeoutStoresQuery:
        if self.address_id is None and (self.lat is None or self.lng is None):
            raise ValueError("give address_id, or lat and lng")
        return self


class TakeoutStoreOut(BaseModel):
    id: int
    code: str
    name: str
    address: str
    lat: float
    lng: float
    phone: str
    distance_m: float
    closes_at: dt.datetime | None
    area: str = Field(description="the delivery area's name that holds the address")
    delivery_fee_fen: int = Field(description="for an order at the minimum")
    free_over_fen: int | None
    min_order_fen: int
    packing_fee_fen: int
    eta_minutes: int


class TakeoutStoresOut(BaseModel):
    items: list[TakeoutStoreOut]


class CartItem(BaseModel):
    sku_id: int = Field(gt=0, le=2**63 - 1)
    quantity: int = Field(gt=0, le=99)


class QuoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store_id: int = Field(gt=0, le=2**63 - 1)
    address_id: int = Field(gt=0, le=2**63 - 1)
    items: list[CartItem] = Field(min_length=1, max_length=50)
    coupon_ids: list[int] = Field(default_factory=list, max_length=5)

    @field_validator("items")
    @classmethod
    def _distinct_skus(cls, items: list[CartItem]) -> list[CartItem]:
        if len({i.sku_id for i in items}) != len(items):
            raise ValueError("each sku_id may appear once; put the total in quantity")
        return items


class TakeoutOrderIn(QuoteIn):
    note: str = Field(default="", max_length=140, description="for the store, e.g. 少辣")


class QuoteLine(BaseModel):
    sku_id: int
    name: str
    quantity: int
    unit_price_fen: int
    line_fen: int


class QuoteOut(BaseModel):
    store_id: int
    goods_fen: int
    discount_fen: int
    packing_fee_fen: int
    delivery_fee_fen: int
    free_delivery: bool = Field(description="waived by the shopper's paid membership card")
    payable_fen: int
    lines: list[QuoteLine]
    distance_m: int
    eta_minutes: int


class BoardQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal[
        "active", "new", "accepted", "ready", "dispatched", "delivered", "rejected", "cancelled"
    ] = Field(default="active", description="active = new, accepted, ready and dispatched")
    store_id: int | None = Field(default=None, gt=0, le=2**63 - 1)
    limit: int = Field(default=100, ge=1, le=200)


class BoardLine(BaseModel):
    name: str
    quantity: int


class BoardItem(BaseModel):
    order_no: str
    store_id: int
    status: str
    paid_fen: int | None
    contact: str
    phone: str
    address: str
    distance_m: int
    note: str
    lines: list[BoardLine]
    paid_at: dt.datetime | None
    accept_by: dt.datetime | None
    eta_at: dt.datetime | None
    courier: str | None
    courier_status: str | None
    rider_name: str | None
    flag: str | None


class BoardOut(BaseModel):
    items: list[BoardItem]
    cursor: str = Field(description="send as Last-Event-ID to the events feed: nothing is missed")


class AcceptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prep_minutes: int = Field(ge=1, le=120)


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=140, description="e.g. 售罄 sold out")


class DispatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    courier: Literal["store", "platform"]


class PushAnswer(BaseModel):
    resultcode: int
    resultmsg: str
