"""Takeout delivery areas: where a store delivers, and on what terms. Pure functions, no I/O.

A store delivers within a radius or within a polygon (GCJ-02 vertices, as Meituan's store
areas are), each area with its own fee rules and minimum order. Areas are tried in the
order the operator gave them (put the inner, cheaper ring first); a store with no areas
delivers within `delivery_radius_m` on `delivery_fee_rules`. The polygon test runs on
plain longitude/latitude, which is exact enough at a city's scale (a store's reach is at
most MAX_REACH_M).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from server.stores.geo import MAX_LAT, haversine_m
from server.stores.hours import FeeRules

MAX_REACH_M = 50_000  # no area reaches further from its store; the GEO search radius
MAX_AREAS = 10


class Point(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: float = Field(ge=-MAX_LAT, le=MAX_LAT, allow_inf_nan=False)
    lng: float = Field(ge=-180, le=180, allow_inf_nan=False)


class DeliveryArea(FeeRules):
    """One area: a `radius_m` around the store or a `polygon`, with its own fee rules
    (`base_fen` is the delivery fee) and `min_order_fen`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=32)
    radius_m: int | None = Field(default=None, ge=1, le=MAX_REACH_M)
    polygon: list[Point] | None = Field(
        default=None, min_length=3, max_length=200, description="GCJ-02 vertices, in order"
    )

    @model_validator(mode="after")
    def _one_shape(self) -> DeliveryArea:
        if (self.radius_m is None) == (self.polygon is None):
            raise ValueError("an area has either radius_m or polygon")
        return self


def inside_polygon(lat: float, lng: float, polygon: list[tuple[float, float]]) -> bool:
    """Ray casting on (lng, lat); a point on an edge counts as inside."""
    inside = False
    n = len(polygon)
    for i in range(n):
        y1, x1 = polygon[i]
        y2, x2 = polygon[(i + 1) % n]
        if (x1, y1) == (lng, lat):
            return True
        if (y1 > lat) != (y2 > lat):
            x = x1 + (lat - y1) * (x2 - x1) / (y2 - y1)
            if abs(x - lng) < 1e-12:
                return True
            if x > lng:
                inside = not inside
    return inside


def store_areas(
    radius_m: int, fee_rules: dict[str, Any] | None, areas: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """The store's areas as plain dicts (what the locator card carries)."""
    if areas:
        return [DeliveryArea.model_validate(a).model_dump(exclude_none=True) for a in areas]
    rules = FeeRules.model_validate(fee_rules or {}).model_dump()
    return [{**rules, "name": "", "radius_m": radius_m}]


def check_reach(lat: float, lng: float, areas: list[dict[str, Any]]) -> str | None:
    """Why these areas cannot belong to a store at (lat, lng), or None."""
    for a in areas:
        for p in a.get("polygon") or []:
            if haversine_m(lat, lng, p["lat"], p["lng"]) > MAX_REACH_M:
                return f"area '{a.get('name', '')}' reaches beyond {MAX_REACH_M} m of the store"
    return None


def area_for(
    store_lat: float, store_lng: float, areas: list[dict[str, Any]], lat: float, lng: float
) -> tuple[dict[str, Any] | None, float]:
    """The first area holding (lat, lng), and the distance from the store."""
    distance = haversine_m(store_lat, store_lng, lat, lng)
    for a in areas:
        if a.get("radius_m") is not None:
            if distance <= a["radius_m"]:
                return a, distance
        elif inside_polygon(lat, lng, [(p["lat"], p["lng"]) for p in a["polygon"]]):
            return a, distance
    return None, distance


def fee_rules(area: dict[str, Any]) -> FeeRules:
    return FeeRules.model_validate(
        {k: area[k] for k in FeeRules.model_fields if k in area and area[k] is not None}
    )
