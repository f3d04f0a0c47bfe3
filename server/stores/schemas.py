"""Request and response models of the stores domain and the locator."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from server.stores.areas import MAX_AREAS, DeliveryArea
from server.stores.geo import MAX_LAT
from server.stores.hours import FeeRules, normalize_hours

Service = Literal["takeout", "pickup", "write_off"]
SERVICE_NAMES: tuple[str, ...] = ("takeout", "pickup", "write_off")

_HOURS_DOC = (
    'weekly hours in Asia/Shanghai: {"mon": ["08:00-22:00"], ...} or a spec string '
    '"mon-fri 08:00-22:00; sat,sun 10:00-02:00" (a close time at or before the open time '
    "runs past midnight; a day not given is closed)"
)


def _hours(v: Any) -> Any:
    if v is None:
        return v
    try:
        return normalize_hours(v)
    except ValueError as exc:
        raise ValueError(f"hours: {exc}") from None


class StoreFields(BaseModel):
    """Every writable store field; in a PATCH only the ones given change."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=128)
    city: str = Field(min_length=1, max_length=32)
    district: str = Field(default="", max_length=32)
    address: str = Field(default="", max_length=255)
    lat: float = Field(ge=-MAX_LAT, le=MAX_LAT, allow_inf_nan=False, description="GCJ-02")
    lng: float = Field(ge=-180, le=180, allow_inf_nan=False, description="GCJ-02")
    phone: str = Field(default="", max_length=32)
    hours: dict[str, list[str]] = Field(
        default_factory=lambda: normalize_hours("08:00-22:00"), description=_HOURS_DOC
    )
    services: list[Service] = Field(default_factory=lambda: ["pickup", "write_off"])
    delivery_radius_m: int = Field(default=3000, ge=0, le=50_000)
    delivery_fee_rules: FeeRules = Field(default_factory=FeeRules)
    delivery_areas: list[DeliveryArea] = Field(
        default_factory=list,
        max_length=MAX_AREAS,
        description="takeout areas, tried in order; none: delivery_radius_m on delivery_fee_rules",
    )
    packing_fee_fen: int = Field(default=0, ge=0, le=100_000, description="per takeout order")

    @field_validator("hours", mode="before")
    @classmethod
    def norm_hours(cls, v: Any) -> Any:
        return _hours(v)

    @field_validator("services")
    @classmethod
    def _dedupe(cls, v: list[str]) -> list[str]:
        return sorted(set(v))


class StoreCreate(StoreFields):
    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")


class StorePatch(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, min_length=1, max_length=128)
    city: str | None = Field(default=None, min_length=1, max_length=32)
    district: str | None = Field(default=None, max_length=32)
    address: str | None = Field(default=None, max_length=255)
    lat: float | None = Field(default=None, ge=-MAX_LAT, le=MAX_LAT, allow_inf_nan=False)
    lng: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)
    phone: str | None = Field(default=None, max_length=32)
    hours: dict[str, list[str]] | None = Field(default=None, description=_HOURS_DOC)
    services: list[Service] | None = None
    delivery_radius_m: int | None = Field(default=None, ge=0, le=50_000)
    delivery_fee_rules: FeeRules | None = None
    delivery_areas: list[DeliveryArea] | None = Field(default=None, max_length=MAX_AREAS)
    packing_fee_fen: int | None = Field(default=None, ge=0, le=100_000)

    @field_validator("hours", mode="before")
    @classmethod
    def norm_hours(cls, v: Any) -> Any:
        return _hours(v)


class CloseIn(BaseModel):
    """No `until`: closed for good (off the map) until reopened; with a future `from`, the
    store stays on the map and shows closed from then on. With `until`: a temporary closure
    from `from` (default now); the store stays on the map, shown closed."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: AwareDatetime | None = Field(default=None, alias="from")
    until: AwareDatetime | None = None
    reason: str = Field(default="", max_length=255)


AT_WINDOW = dt.timedelta(days=400)


def sane_at(v: dt.datetime | None) -> dt.datetime | None:
    """An instant to judge opening hours at: within about a year of now."""
    if v is not None and abs(v - dt.datetime.now(dt.UTC)) > AT_WINDOW:
        raise ValueError("at must be within 400 days of now")
    return v


class NearbyQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: float = Field(ge=-MAX_LAT, le=MAX_LAT, allow_inf_nan=False, description="GCJ-02")
    lng: float = Field(ge=-180, le=180, allow_inf_nan=False, description="GCJ-02")
    radius_m: int = Field(default=5000, ge=1, le=50_000, description="metres (≤ 50 km)")
    limit: int = Field(default=20, ge=1, le=100)
    service: Service | None = None
    open_now: bool = Field(default=False, description="only stores open at `at`")
    at: AwareDatetime | None = Field(
        default=None, description="judge opening at this instant (e.g. a pickup time); default now"
    )

    _sane_at = field_validator("at")(sane_at)


class StoreListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    page: int = Field(default=1, ge=1, le=10_000)
    page_size: int = Field(default=20, ge=1, le=200)
    city: str | None = Field(default=None, max_length=32)
    district: str | None = Field(default=None, max_length=32)
    service: Service | None = None
    q: str | None = Field(default=None, max_length=64, description="code, name or address")
    status: Literal["open", "closed", "all"] = Field(
        default="open", description="open = not closed for good (operators only)"
    )


class StoreOut(BaseModel):
    id: int
    code: str
    name: str
    city: str
    district: str
    address: str
    lat: float
    lng: float
    phone: str
    services: list[str]
    hours: dict[str, list[str]]
    delivery_radius_m: int
    delivery_fee_rules: dict[str, Any] | None = None
    delivery_areas: list[dict[str, Any]] = Field(default_factory=list)
    packing_fee_fen: int = 0
    closed: bool
    closed_from: dt.datetime | None = None
    closed_until: dt.datetime | None = None
    closure_reason: str = ""
    open_now: bool
    next_open_at: dt.datetime | None
    closes_at: dt.datetime | None
    distance_m: float | None = None


class NearbyItem(BaseModel):
    id: int
    code: str
    name: str
    city: str
    district: str
    address: str
    lat: float
    lng: float
    phone: str
    services: list[str]
    distance_m: float
    open_now: bool
    next_open_at: dt.datetime | None
    closes_at: dt.datetime | None
    delivers_here: bool = Field(description="takeout offered and this point is in its radius")


class NearbyOut(BaseModel):
    items: list[NearbyItem]


class StorePage(BaseModel):
    items: list[StoreOut]
    total: int
    page: int
    page_size: int


class CityOut(BaseModel):
    city: str
    stores: int


class CitiesOut(BaseModel):
    items: list[CityOut]


class ImportError_(BaseModel):
    line: int
    code: str | None
    reason: str


class ImportReport(BaseModel):
    rows: int
    created: int
    updated: int
    failed: int
    errors: list[ImportError_]
    ignored_columns: list[str] = []
