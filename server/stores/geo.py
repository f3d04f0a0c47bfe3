"""Distances on the sphere, with the same earth radius Redis GEO uses.

Coordinates are GCJ-02 (what `wx.getLocation({type: 'gcj02'})` and the Chinese map
providers give). GCJ-02 shifts WGS-84 by a few hundred metres in a smoothly varying
way, so distances between two GCJ-02 points are correct to well under a metre at
city scale; ranking stores by distance needs no conversion. Redis GEO treats the
coordinates as plain longitude/latitude on a sphere (radius 6372797.560856 m), and so
does `haversine_m`, so the test checks and the SQL baseline agree with Redis exactly.
"""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6372797.560856  # Redis geohelper.c
# Redis refuses points outside the Web-Mercator band.
MAX_LAT = 85.05112878


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))
