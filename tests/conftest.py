"""Test harness: real PostgreSQL, real Redis, the real `haodian serve` process.

Each pytest run gets a database of its own (created here, dropped at the end) and a
Redis logical database of its own (claimed with SET NX, flushed before use), so
several runs can share one machine's servers without seeing each other.

With HAODIAN_TEST_REDIS_CLUSTER=1 every server of the run uses a three-master Redis
Cluster started here on loopback instead (one per concurrent claim, reused once flushed),
with the job queue on a logical database of the single-node test Redis, as a cluster
deployment runs it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from server.infra import db
from server.infra.redis import claimed_database, make_client
from server.settings import Settings
from tests.redis_cluster import Cluster

PG_BASE = os.environ.get("HAODIAN_TEST_PG", "postgres://haodian:haodian@127.0.0.1:5432")
REDIS_BASE = os.environ.get("HAODIAN_TEST_REDIS", "redis://127.0.0.1:6379")
ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET = "test-secret-key-not-for-production-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def own_database() -> Iterator[str]:
    """A PostgreSQL database of its own, dropped afterwards."""
    name = f"haodian_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(f"{PG_BASE}/postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_BASE}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


ON_CLUSTER = os.environ.get("HAODIAN_TEST_REDIS_CLUSTER") == "1"
_idle_clusters: list[Cluster] = []
_all_clusters: list[Cluster] = []
_queues: dict[str, str] = {}  # cluster URL -> its job queue's single-node URL


@contextmanager
def own_redis_database() -> Iterator[str]:
    """A logical database of the test Redis to itself, flushed before and after use; or,
    on a cluster run, a whole cluster (see `redis_env` for the job queue's URL)."""
    if not ON_CLUSTER:
        with claimed_database(REDIS_BASE, owner="test") as url:
            yield url
        return
    if _idle_clusters:
        cluster = _idle_clusters.pop()
    else:
        cluster = Cluster()
        _all_clusters.append(cluster)
        cluster.start()
    cluster.flush_all()
    with claimed_database(REDIS_BASE, owner="test-queue") as queue:
        _queues[cluster.url] = queue
        try:
            yield cluster.url
        finally:
            del _queues[cluster.url]
            cluster.flush_all()
            _idle_clusters.append(cluster)


def redis_env(url: str) -> dict[str, str]:
    """The server environment for a URL from `own_redis_database`."""
    out = {"HAODIAN_REDIS_URL": url}
    if url in _queues:
        out["HAODIAN_JOBS_REDIS_URL"] = _queues[url]
    return out


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for cluster in _all_clusters:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with own_database() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with own_redis_database() as url:
        yield url


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("haodian-data")


@pytest.fixture(scope="session")
def env(pg_url: str, redis_url: str, data_dir: Path) -> dict[str, str]:
    """The environment of a production-like server on the test database and Redis."""
    return {
        "HAODIAN_DATABASE_URL": pg_url,
        **redis_env(redis_url),
        "HAODIAN_DATA_DIR": str(data_dir),
        "HAODIAN_SECRET_KEY": TEST_SECRET,
        "HAODIAN_SANDBOX": "1",
        "HAODIAN_DEMO": "0",
    }


@pytest.fixture(scope="session")
def settings(env: dict[str, str]) -> Settings:
    return Settings(
        database_url=env["HAODIAN_DATABASE_URL"],
        redis_url=env["HAODIAN_REDIS_URL"],
        jobs_redis_url=env.get("HAODIAN_JOBS_REDIS_URL"),
        data_dir=Path(env["HAODIAN_DATA_DIR"]),
        secret_key=TEST_SECRET,
        sandbox=True,
        demo=False,
    )


@pytest.fixture(scope="session")
async def database(settings: Settings) -> AsyncIterator[Settings]:
    """Migrated schema, and Tortoise initialised in the test process for direct checks."""
    await db.migrate(settings)
    await db.init_db(settings)
    yield settings
    await db.close_db()


@pytest.fixture(scope="session")
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = make_client(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
async def sandbox_redis(redis_url: str, redis: Any) -> AsyncIterator[Any]:
    """Where the WeChat sandbox keeps its state: the server's Redis, or on a cluster run
    the job queue's single node (as the app puts it there)."""
    queue = redis_env(redis_url).get("HAODIAN_JOBS_REDIS_URL")
    if queue is None:
        yield redis
        return
    client = make_client(queue)
    yield client
    await client.aclose()


_node_clients: dict[str, aioredis.Redis] = {}


def node_clients(redis: Any) -> list[aioredis.Redis]:
    """A plain client per master, for what is per server (CLIENT LIST, the script cache): the
    one server, or every master of a cluster (kept for the run, like the `redis` fixture)."""
    if not hasattr(redis, "get_primaries"):
        return [redis]
    out = []
    for n in redis.get_primaries():
        if n.name not in _node_clients:
            _node_clients[n.name] = aioredis.Redis(host=n.host, port=n.port, decode_responses=True)
        out.append(_node_clients[n.name])
    return out


def wait_http(proc: subprocess.Popen, url: str, timeout: float, logs: Any = lambda: "") -> float:
    """Seconds until `url` answers 200; an error with the process's output if it exits
    first or does not answer in `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited early:\n{logs()[-4000:]}")
        try:
            # The first answers after start-up can take seconds on a busy 2-core box.
            if httpx.get(url, timeout=10).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready in {timeout}s:\n{logs()[-4000:]}")


def stop_group(proc: subprocess.Popen, sig: int, timeout: float) -> None:
    """`sig` to the process's group, SIGKILL after `timeout` s; nothing if it has ended."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class ServerProcess:
    """A running `haodian ...` process on a free port, its output kept in a file."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        log_path: Path,
        cwd: Path,
        *,
        listen: bool = True,
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("HAODIAN_")}
        full_env.update(env)
        if listen:
            full_env.setdefault("HAODIAN_PUBLIC_URL", self.base_url)
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "server",
                *args,
                *(["--port", str(self.port)] if listen else []),
            ],
            env=full_env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60, path: str = "/readyz") -> float:
        return wait_http(self.proc, self.base_url + path, timeout, self.logs)

    def wait_exit(self, timeout: float) -> int:
        """The exit code, once the process ends by itself within `timeout` seconds."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running:\n{self.logs()[-3000:]}") from None

    def logs(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_group(self.proc, signal.SIGTERM, 15)
        self._log.close()


def start_worker(env: dict[str, str], log_path: Path, **extra: str) -> ServerProcess:
    """A real `haodian worker` process on the given environment (stop it with .stop())."""
    return ServerProcess(["worker"], env | extra, log_path, ROOT, listen=False)


@contextmanager
def sweeping_worker(
    env: dict[str, str], server: ServerProcess, log_path: Path, **extra: str
) -> Iterator[ServerProcess]:
    """A real worker beside `server` (its notify URL), sweeping unpaid orders every second."""
    proc = start_worker(
        env,
        log_path,
        HAODIAN_PUBLIC_URL=server.base_url,
        HAODIAN_PAYMENT_SWEEP_SECONDS="1",
        **extra,
    )
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def server(
    env: dict[str, str], database: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The real server, two workers, on the test PostgreSQL and Redis."""
    log_path = tmp_path_factory.mktemp("logs") / "server.log"
    proc = ServerProcess(
        ["serve", "--workers", "2"], env, log_path, cwd=tmp_path_factory.mktemp("cwd")
    )
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
async def api(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
async def worker_env(
    settings: Settings, server: ServerProcess, redis: aioredis.Redis
) -> AsyncIterator[Any]:
    """What `haodian worker` gives outbox handlers, in the test process: a test delivers the
    outbox itself (`drain`), so each step is deterministic."""
    from server.infra.redis import Scripts
    from server.outbox import service as outbox

    e = outbox.Env(
        settings.model_copy(update={"public_url": server.base_url}), redis, Scripts(redis)
    )
    yield e
    await e.aclose()


async def drain(env: Any, rounds: int = 60) -> None:
    """Deliver the outbox until nothing is due (refunds come back as notifications)."""
    from tortoise.expressions import Q

    from server.infra.clock import utcnow
    from server.outbox import service as outbox
    from server.outbox.models import OutboxEvent

    for _ in range(rounds):
        await outbox.deliver_due(env)
        now = utcnow()
        # An event leased by another deliverer is not this test's to wait for: no test
        # drains beside a running worker, so the lease is a stopped worker's, given up
        # when it runs out.
        if not await OutboxEvent.filter(
            Q(lease_until__isnull=True) | Q(lease_until__lt=now),
            delivered_at__isnull=True,
            available_at__lte=now,
        ).exists():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the outbox did not drain")


def error_code(resp: httpx.Response) -> Any:
    return resp.json()["error"]["code"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `last` (the whole-suite ledger check) run after all the others."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


def run_bench(
    name: str, *options: str, with_redis: bool = True
) -> subprocess.CompletedProcess[str]:
    """The real `haodian bench NAME` on a PostgreSQL database (and a Redis database) of its
    own, as its contract test runs it: short options, output captured."""
    with own_database() as pg, own_redis_database() if with_redis else nullcontext("") as r:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HAODIAN_")}
        env["HAODIAN_DATABASE_URL"] = pg
        if r:
            env.update(redis_env(r))
        cmd = [sys.executable, "-m", "server", "bench", name, *options]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
