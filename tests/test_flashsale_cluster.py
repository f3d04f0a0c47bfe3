"""The flash-sale scripts on a three-master Redis Cluster started here on loopback: the
same grab, warm, release and consumer code, the same results as on one node."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from server.catalog.models import Category, Product, Sku
from server.flashsale import service
from server.flashsale.jobs import Consumer
from server.flashsale.models import FlashReservation
from server.identity.models import Member
from server.infra.errors import AppError
from server.infra.redis import Scripts
from server.orders.models import Order
from server.settings import Settings
from tests.redis_cluster import Cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture
async def rc(cluster: Cluster) -> AsyncIterator[RedisCluster]:
    client = RedisCluster(host="127.0.0.1", port=cluster.ports[0], decode_responses=True)
    await client.initialize()
    yield client
    await client.aclose()


async def _sale(rc: RedisCluster, scripts: Scripts, units: int) -> Any:
    cat = await Category.create(name=f"cluster-{uuid.uuid4().hex[:8]}")
    product = await Product.create(category=cat, name="Beef jerky")
    sku = await Sku.create(product=product, name="100 g", price_fen=1990)
    now = datetime.now(UTC)
    return await service.create_sale(
        rc,
        scripts,
        sku_id=sku.id,
        price_fen=990,
        units=units,
        per_member_limit=1,
        starts_at=now - timedelta(seconds=1),
        ends_at=now + timedelta(hours=1),
    )


async def _member_ids(n: int) -> list[int]:
    tag = uuid.uuid4().hex[:8]
    await Member.bulk_create([Member(nickname=f"cl-{tag}-{i}") for i in range(n)])
    return list(
        await Member.filter(nickname__startswith=f"cl-{tag}-")
        .order_by("id")
        .values_list("id", flat=True)
    )


async def _grab_all(
    rc: RedisCluster, scripts: Scripts, sale_id: int, members: list[int], key: str = "k"
) -> list[Any]:
    gate = asyncio.Semaphore(64)

    async def one(mid: int) -> Any:
        async with gate:
            try:
                return await service.grab(
                    rc,
                    scripts,
                    sale_id=sale_id,
                    member_id=mid,
                    idem_key=f"{key}-{mid}",
                    quantity=1,
                    ip="127.0.0.1",
                    member_rps=5,
                    ip_rps=1_000_000,
                )
            except AppError as exc:
                return exc.code

    return await asyncio.gather(*(one(m) for m in members))


async def _drain(consumer: Consumer, sale_id: int, expected: int) -> int:
    count = 0
    for _ in range(200):
        await consumer.step()
        count = await Order.filter(source=f"fs:{sale_id}").count()
        if count >= expected:
            break
        await asyncio.sleep(0.05)
    await consumer.step()
    return await Order.filter(source=f"fs:{sale_id}").count()


async def test_grab_on_a_three_master_cluster(
    cluster: Cluster, rc: RedisCluster, database: Settings
) -> None:
    scripts = Scripts(rc)
    assert scripts.pipelined  # one auto-pipelined connection per master
    sales = [await _sale(rc, scripts, units=100) for _ in range(3)]
    # All keys of a sale live on one master; different sales spread over the masters.
    for sale in sales:
        keys = service.sale_keys(sale.id)
        assert len({cluster.node_of(k) for k in (keys["meta"], keys["stock"])}) == 1
    sale = sales[0]

    members = await _member_ids(2000)
    results = await _grab_all(rc, scripts, sale.id, members)
    won = [r for r in results if isinstance(r, service.Grabbed)]
    assert len(won) == 100
    assert [r for r in results if not isinstance(r, service.Grabbed)] == ["SOLD_OUT"] * 1900
    assert int(await rc.get(service.sale_keys(sale.id)["stock"])) == 0

    # A replayed key answers the same order and takes nothing.
    winner = members[results.index(won[0])]
    again = await service.grab(
        rc, scripts, sale_id=sale.id, member_id=winner, idem_key=f"k-{winner}", quantity=1,
        ip="127.0.0.1", member_rps=5, ip_rps=1_000_000,
    )  # fmt: skip
    assert again.replayed and again.order_no == won[0].order_no

    consumer = Consumer(rc, scripts, database.model_copy(update={"worker_name": "cluster-1"}))
    assert await _drain(consumer, sale.id, 100) == 100
    owners = await Order.filter(source=f"fs:{sale.id}").values_list("member_id", flat=True)
    assert len(set(owners)) == 100
    pending = await rc.xpending(service.stream_key(sale.id), service.GROUP)
    assert pending["pending"] == 0


async def test_cluster_flushed_mid_sale_rewarms_without_oversell(
    cluster: Cluster, rc: RedisCluster, database: Settings
) -> None:
    scripts = Scripts(rc)
    sale = await _sale(rc, scripts, units=50)
    members = await _member_ids(300)
    consumer = Consumer(rc, scripts, database.model_copy(update={"worker_name": "cluster-2"}))
    first = await _grab_all(rc, scripts, sale.id, members[:30])
    assert all(isinstance(r, service.Grabbed) for r in first)
    assert await _drain(consumer, sale.id, 30) == 30

    cluster.flush_all()  # every master restarted without persistence
    assert await rc.get(service.sale_keys(sale.id)["stock"]) is None
    rest = await _grab_all(rc, scripts, sale.id, members, key="k")  # everyone, again
    won = [r for r in rest if isinstance(r, service.Grabbed)]
    replays = [r for r in won if r.replayed]
    fresh = [r for r in won if not r.replayed]
    assert len(replays) == 30  # the first thirty's keys still answer their orders
    assert {r.order_no for r in replays} == {r.order_no for r in first}
    assert len(fresh) == 20  # units - sold, never the configured total
    assert await _drain(consumer, sale.id, 50) == 50
    assert int(await rc.get(service.sale_keys(sale.id)["stock"])) == 0
    assert await FlashReservation.filter(sale_id=sale.id).count() == 50
    assert await service.reconcile(rc, scripts, sale.id) == []


async def test_a_slot_moved_mid_sale_is_followed_by_the_fast_path(
    cluster: Cluster, rc: RedisCluster, database: Settings
) -> None:
    """The auto-pipelined grab goes to the master redis-py's slot map names; when the slot
    moves (a reshard), the MOVED answer is run again through redis-py, which updates the
    map, and the next grabs go to the new owner: no error seen, no unit lost or sold twice."""
    scripts = Scripts(rc)
    sale = await _sale(rc, scripts, units=100)
    members = await _member_ids(200)
    first = await _grab_all(rc, scripts, sale.id, members[:40])
    assert all(isinstance(r, service.Grabbed) for r in first)
    stock_key = service.sale_keys(sale.id)["stock"]
    before = cluster.node_of(stock_key)
    target = next(p for p in cluster.ports if p != before)
    assert cluster.move_slot(stock_key, target) == before

    rest = await _grab_all(rc, scripts, sale.id, members[40:])
    won = [r for r in rest if isinstance(r, service.Grabbed)]
    assert len(won) == 60
    assert [r for r in rest if not isinstance(r, service.Grabbed)] == ["SOLD_OUT"] * 100
    assert cluster.node_of(stock_key) == target
    assert f"127.0.0.1:{target}" in scripts._pipes  # later grabs went straight there
    consumer = Consumer(rc, scripts, database.model_copy(update={"worker_name": "cluster-3"}))
    assert await _drain(consumer, sale.id, 100) == 100
    assert await service.reconcile(rc, scripts, sale.id) == []
    await scripts.aclose()
