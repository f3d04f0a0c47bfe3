"""Demo accounts: the operator the README names, and a clerk at a demo store.

Runs twice in `demo.SEEDERS` (first and last): the operator first, the clerk once the
stores exist. Idempotent: nothing is added twice, a changed password is left alone.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from server.demo import DEMO_OPERATOR
from server.identity.models import Operator, Staff
from server.identity.service import create_or_reset_operator, create_staff
from server.settings import Settings

DEMO_CLERK = ("clerk", "haodian-clerk")
DEMO_MANAGER = ("manager", "haodian-manager")
# The demo store the clerk works at (WH0001 is the stores seed's demo store): the first of these
# codes that exists, else the first
# open store.
DEMO_STORE_CODES = ("WH0001", "SH0001", "SH001")


async def _demo_store_id() -> int | None:
    from server.stores.models import Store

    for code in DEMO_STORE_CODES:
        store = await Store.get_or_none(code=code)
        if store is not None:
            return store.id
    store = await Store.filter(closed=False).order_by("id").first()
    return store.id if store else None


async def seed(settings: Settings, redis: Redis, progress: Any) -> None:
    username, password = DEMO_OPERATOR
    if not await Operator.exists(username=username):
        await create_or_reset_operator(username, password, ["admin"])
    progress(1)
    store_id = await _demo_store_id()
    if store_id is None:
        return  # no stores yet: the second run (after the stores seeder) adds the clerk
    for (name, pw), role in ((DEMO_CLERK, "clerk"), (DEMO_MANAGER, "manager")):
        if not await Staff.exists(username=name):
            await create_staff(name, pw, role, [store_id], name=f"demo {role}")
            progress(1)
