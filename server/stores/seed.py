"""Demo stores: ~2,400 across real Chinese cities, most in Wuhan (as in the seed case).

Coordinates are GCJ-02, scattered around each district's or city's centre. The store with
code WH0001 (Wuhan, 江汉路) is the one other domains and the README rely on: open around
the clock, every service, sells the whole catalog (see catalog/seed.py).
Idempotent: only codes that do not exist yet are created; the locator index is rebuilt
when anything was added (or when it is missing).
"""

from __future__ import annotations

import random
from typing import Any

from redis.asyncio import Redis

from server.settings import Settings
from server.stores import index
from server.stores.hours import FeeRules, normalize_hours
from server.stores.models import Store

DEMO_STORE_CODE = "WH0001"

# Wuhan districts: (name, lat, lng, weight) — GCJ-02 centres.
WUHAN = [
    ("江岸区", 30.6000, 114.3090, 13),
    ("江汉区", 30.6010, 114.2700, 12),
    ("硚口区", 30.5820, 114.2150, 9),
    ("汉阳区", 30.5540, 114.2190, 9),
    ("武昌区", 30.5540, 114.3170, 14),
    ("青山区", 30.6400, 114.3850, 6),
    ("洪山区", 30.5000, 114.3440, 13),
    ("东湖高新区", 30.4780, 114.4100, 9),
    ("东西湖区", 30.6200, 114.1370, 5),
    ("蔡甸区", 30.5820, 114.0290, 3),
    ("江夏区", 30.3750, 114.3220, 3),
    ("黄陂区", 30.8820, 114.3750, 2),
    ("新洲区", 30.8410, 114.8010, 1),
    ("汉南区", 30.3090, 114.0850, 1),
]
WUHAN_STORES = 1500

# Other cities: (name, code prefix, lat, lng, stores, phone area code).
CITIES = [
    ("长沙", "CS", 28.2280, 112.9390, 90, "0731"),
    ("南昌", "NC", 28.6820, 115.8580, 75, "0791"),
    ("郑州", "ZZ", 34.7460, 113.6250, 70, "0371"),
    ("合肥", "HF", 31.8200, 117.2270, 60, "0551"),
    ("上海", "SH", 31.2300, 121.4740, 70, "021"),
    ("北京", "BJ", 39.9040, 116.4070, 50, "010"),
    ("广州", "GZ", 23.1290, 113.2640, 45, "020"),
    ("深圳", "SZ", 22.5430, 114.0580, 45, "0755"),
    ("成都", "CD", 30.5730, 104.0660, 40, "028"),
    ("重庆", "CQ", 29.5630, 106.5510, 40, "023"),
    ("杭州", "HZ", 30.2740, 120.1550, 35, "0571"),
    ("南京", "NJ", 32.0600, 118.7970, 35, "025"),
    ("西安", "XA", 34.3410, 108.9400, 30, "029"),
    ("襄阳", "XF", 32.0090, 112.1220, 40, "0710"),
    ("宜昌", "YC", 30.6910, 111.2860, 40, "0717"),
    ("荆州", "JZ", 30.3350, 112.2400, 30, "0716"),
    ("黄石", "HS", 30.2000, 115.0390, 25, "0714"),
    ("孝感", "XG", 30.9250, 113.9170, 25, "0712"),
    ("十堰", "SY", 32.6290, 110.7980, 20, "0719"),
    ("九江", "JJ", 29.7050, 116.0020, 20, "0792"),
    ("岳阳", "YY", 29.3570, 113.1290, 20, "0730"),
    ("信阳", "XY", 32.1470, 114.0910, 15, "0376"),
]

ROADS = [
    "中山大道",
    "解放大道",
    "建设大道",
    "武珞路",
    "珞喻路",
    "光谷大道",
    "汉阳大道",
    "江汉路",
    "徐东大街",
    "友谊大道",
    "和平大道",
    "民族大道",
    "雄楚大道",
    "发展大道",
    "青年路",
    "香港路",
    "黄浦大街",
    "鹦鹉大道",
    "古田路",
    "楚河汉街",
    "人民路",
    "新华路",
    "五一路",
    "建国路",
    "解放路",
    "长江路",
    "滨江路",
    "文化路",
    "学府路",
    "站前路",
]
PLACES = ["广场", "天地", "商场", "地铁站", "大学", "医院", "小区", "步行街", "万达", "中心"]

HOURS_MIX = [
    ("08:00-22:00", 58),
    ("09:00-23:00", 15),
    ("10:00-02:00", 10),  # night-market stores run past midnight
    ("00:00-24:00", 8),
    ("mon-fri 08:00-20:00; sat,sun 09:00-22:00", 6),
    ("tue-sun 09:00-21:00", 3),  # closed on Mondays
]


def _weighted(rng: random.Random, items: list[tuple[Any, int]]) -> Any:
    return rng.choices([i for i, _ in items], weights=[w for _, w in items])[0]


def _scatter(rng: random.Random, lat: float, lng: float, sigma_m: float) -> tuple[float, float]:
    import math

    dn, de = rng.gauss(0, sigma_m), rng.gauss(0, sigma_m)
    return (
        round(lat + dn / 111_320, 6),
        round(lng + de / (111_320 * math.cos(math.radians(lat))), 6),
    )


def _store(
    rng: random.Random, code: str, city: str, district: str, lat: float, lng: float, phone: str
) -> Store:
    road = rng.choice(ROADS)
    takeout = rng.random() < 0.65
    rules = FeeRules(
        base_fen=rng.choice([300, 400, 500]),
        base_km=3,
        per_km_fen=rng.choice([0, 100, 200]),
        free_over_fen=rng.choice([3900, 4900, 5900, None]),
        min_order_fen=rng.choice([1500, 2000, 2900]),
    )
    return Store(
        code=code,
        name=f"好店 {district or city}{road}{rng.choice(PLACES)}店",
        city=city,
        district=district,
        address=f"{city}市{district}{road}{rng.randint(1, 999)}号",
        lat=lat,
        lng=lng,
        phone=phone,
        hours=normalize_hours(_weighted(rng, HOURS_MIX)),
        takeout=takeout,
        pickup=True,
        write_off=rng.random() < 0.92,
        delivery_radius_m=rng.choice([2000, 3000, 3000, 4000, 5000]),
        delivery_fee_rules=rules.model_dump(),
    )


DEMO_AREAS: list[dict[str, Any]] = [
    {
        "name": "3 km",
        "radius_m": 3000,
        "base_fen": 300,
        "min_order_fen": 2000,
        "free_over_fen": 4900,
    },
    {
        "name": "汉口沿江",
        "polygon": [
            {"lat": 30.560, "lng": 114.270},
            {"lat": 30.560, "lng": 114.330},
            {"lat": 30.640, "lng": 114.330},
            {"lat": 30.640, "lng": 114.270},
        ],
        "base_fen": 600,
        "min_order_fen": 3000,
    },
]


def demo_stores() -> list[Store]:
    """The same list every time (fixed random seed)."""
    rng = random.Random(20261123)
    out = [
        Store(
            code=DEMO_STORE_CODE,
            name="好店 江汉路旗舰店",
            city="武汉",
            district="江汉区",
            address="武汉市江汉区江汉路118号",
            lat=30.5810,
            lng=114.2870,
            phone="027-85550001",
            hours=normalize_hours("00:00-24:00"),
            takeout=True,
            pickup=True,
            write_off=True,
            delivery_radius_m=5000,
            delivery_fee_rules=FeeRules(
                base_fen=400, per_km_fen=100, free_over_fen=4900, min_order_fen=2000
            ).model_dump(),
            # An inner ring and the Hankou riverside beyond it, as Meituan store areas are.
            delivery_areas=DEMO_AREAS,
            packing_fee_fen=100,
        )
    ]
    districts = [((d, lat, lng), w) for d, lat, lng, w in WUHAN]
    for n in range(2, WUHAN_STORES + 1):
        district, dlat, dlng = _weighted(rng, districts)
        lat, lng = _scatter(rng, dlat, dlng, 2500)
        phone = f"027-8{rng.randint(0, 9999999):07d}"
        out.append(_store(rng, f"WH{n:04d}", "武汉", district, lat, lng, phone))
    for city, prefix, clat, clng, count, area in CITIES:
        for n in range(1, count + 1):
            lat, lng = _scatter(rng, clat, clng, 6000)
            phone = f"{area}-{rng.randint(2000000, 8999999)}"
            out.append(_store(rng, f"{prefix}{n:04d}", city, "", lat, lng, phone))
    return out


async def seed(settings: Settings, redis: Redis, progress: Any) -> None:
    wanted = demo_stores()
    have = set(await Store.all().values_list("code", flat=True))
    new = [s for s in wanted if s.code not in have]
    for i in range(0, len(new), 500):
        chunk = new[i : i + 500]
        await Store.bulk_create(chunk)
        progress(len(chunk))
    if new:
        await index.rebuild(redis)
    else:
        await index.ensure(redis)
