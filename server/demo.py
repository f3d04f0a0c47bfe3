"""Demo data. Every seeder is idempotent: running `haodian seed` twice adds nothing twice."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from server.settings import Settings

DEMO_OPERATOR = ("admin", "haodian-demo")

# Domains that own demo data expose `async def seed(settings, redis, progress)` in
# `server/<domain>/seed.py`; they run in this order (later ones may use earlier ones).
# identity runs again last: its demo clerk needs the demo stores.
SEEDERS: list[str] = [
    "identity",
    "stores",
    "catalog",
    "identity",
    "coupons",
    "groupbuy",
    "giftcards",
    "membership",
    "takeout",
]

Progress = Callable[[str, int], Any]


async def seed_all(settings: Settings, redis: Redis, *, quiet: bool = False) -> None:
    from tqdm import tqdm

    for name in SEEDERS:
        module = importlib.import_module(f"server.{name}.seed")
        fn: Callable[..., Awaitable[Any]] = module.seed
        bar = tqdm(desc=f"seed {name}", unit="row", disable=quiet, leave=True)
        try:
            await fn(settings, redis, bar.update)
        finally:
            bar.close()
