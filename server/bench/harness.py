"""What every wrk-driven bench shares: where its PostgreSQL and Redis come from, a
`haodian serve` of its own, and the data it is prepared with.

A bench using it (`server/flashsale/bench.py`, `server/groupbuy/bench.py`):

    need_tool("wrk", "wrk")                         # exits naming the Debian package
    with BenchRun() as bench:                       # undoes all below however it ends
        env = server_env(bench.workdir, asyncio.run(bench_database_url()), bench.redis_url())
        ...prepare in-process: `async with bench_backends(env) as (settings, redis,
        scripts)`, `make_sku()`, `make_members(settings, n)`...
        server = bench.start_server(env, workers)  # ready on return
        wrk = load.Wrk.on(server, args, redis_url)   # server/bench/load.py
        lua = load.write_scripts(bench.workdir)
        result = wrk.run(server.base + "/healthz", lua["get"], seconds=2)

The load itself (wrk, its scripts, CPU per request, results) is `server/bench/load.py`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

PG_DEFAULT = "postgres://haodian:haodian@127.0.0.1:5432"
REDIS_DEFAULT = "redis://127.0.0.1:6379"
SECRET = "bench-secret-key-not-for-production-0123456789"

# -- tools, PostgreSQL and Redis -----------------------------------------------------------------


def need_tool(tool: str, package: str) -> str:
    """The tool's path, or exit saying which Debian package brings it."""
    path = shutil.which(tool)
    if path is None:
        raise SystemExit(
            f"`{tool}` is not installed; install it with: apt-get install -y {package}"
            " (as root), then run the bench again"
        )
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def bench_database_url() -> str:
    """HAODIAN_DATABASE_URL, else the database haodian_bench of the loopback PostgreSQL role
    haodian (created if missing); exits saying how to get one when neither works."""
    import asyncpg

    url = os.environ.get("HAODIAN_DATABASE_URL")
    if url:
        return url
    name = "haodian_bench"
    try:
        conn = await asyncpg.connect(f"{PG_DEFAULT}/postgres")
    except (OSError, asyncpg.PostgresError) as exc:
        raise SystemExit(
            f"cannot reach PostgreSQL as {PG_DEFAULT} ({exc}). `bash scripts/test.sh` starts "
            "it and creates the haodian role; or set HAODIAN_DATABASE_URL to a database "
            "the bench may fill."
        ) from None
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"{PG_DEFAULT}/{name}"


def bench_redis_url(cleanup: ExitStack) -> str:
    """The configured Redis, or a free logical database claimed like the test runs do
    (released when `cleanup` closes)."""
    import redis as sync_redis

    from server.infra.redis import claimed_database

    url = os.environ.get("HAODIAN_REDIS_URL")
    if url:
        return url
    try:
        sync_redis.Redis.from_url(f"{REDIS_DEFAULT}/0").ping()
    except sync_redis.RedisError as exc:
        raise SystemExit(
            f"cannot reach Redis at {REDIS_DEFAULT} ({exc}). `bash scripts/test.sh` starts it; "
            "or set HAODIAN_REDIS_URL to a logical database the bench may fill."
        ) from None
    try:
        return cleanup.enter_context(
            claimed_database(REDIS_DEFAULT, owner="bench", from_top=True, ttl_s=3600)
        )
    except RuntimeError as exc:
        raise SystemExit(f"{exc} Set HAODIAN_REDIS_URL for the bench.") from None


def local_redis_pid(redis_url: str) -> int | None:
    """The Redis server's pid when it runs on this machine (for its CPU figure)."""
    import redis as sync_redis

    try:
        pid = int(sync_redis.Redis.from_url(redis_url).info("server")["process_id"])
        comm = Path(f"/proc/{pid}/comm").read_text()
    except (OSError, KeyError, ValueError, sync_redis.RedisError):
        return None
    return pid if comm.startswith("redis") else None


# -- preparing data in-process -------------------------------------------------------------------


def server_env(workdir: Path, database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The HAODIAN_* settings of the bench's server (and of its in-process preparation):
    production-like, no demo, no sandbox, no embedded worker (the hot paths measured are
    Redis-only; what the worker would write later is not part of them)."""
    return {
        "HAODIAN_DATABASE_URL": database_url,
        "HAODIAN_REDIS_URL": redis_url,
        "HAODIAN_SECRET_KEY": SECRET,
        "HAODIAN_DEMO": "0",
        "HAODIAN_SANDBOX": "0",
        "HAODIAN_EMBEDDED_WORKER": "0",
        "HAODIAN_LOG_LEVEL": "WARNING",
        "HAODIAN_DATA_DIR": str(workdir / "data"),
        **extra,
    }


@asynccontextmanager
async def bench_backends(env: dict[str, str]) -> AsyncIterator[tuple[Any, Any, Any]]:
    """(settings, redis client, Scripts) on the bench's database (migrated) and Redis."""
    from server.infra import db
    from server.infra.redis import Scripts, make_client
    from server.settings import Settings

    settings = Settings(
        database_url=env["HAODIAN_DATABASE_URL"],
        redis_url=env["HAODIAN_REDIS_URL"],
        secret_key=SECRET,
        demo=False,
        access_token_ttl=3600,
    )
    await db.migrate(settings)
    await db.init_db(settings)
    redis = make_client(settings.redis_url or "")
    scripts = Scripts(redis)
    try:
        yield settings, redis, scripts
    finally:
        await scripts.aclose()
        await redis.aclose()
        await db.close_db()


async def make_sku() -> Any:
    """A SKU of its own (a category and product named for this run)."""
    from server.catalog.models import Category, Product, Sku

    cat = await Category.create(name=f"bench-{uuid.uuid4().hex[:8]}")
    product = await Product.create(category=cat, name="Bench snack box")
    return await Sku.create(product=product, name="500 g", price_fen=3990)


async def make_members(settings: Any, count: int) -> list[tuple[int, str]]:
    """`count` new members, in id order, each with an access token: [(id, token)]."""
    from tortoise.transactions import in_transaction

    from server.identity.models import Member
    from server.infra.auth import encode_access

    async with in_transaction() as conn:
        first = await Member.create(nickname="bench-0", using_db=conn)
        await Member.bulk_create(
            [Member(nickname=f"bench-{i}") for i in range(1, count)], using_db=conn
        )
    query = Member.filter(id__gte=first.id).order_by("id").values_list("id", flat=True)
    ids = list(await query)[:count]
    return [(i, encode_access(settings, "member", i)) for i in ids]


# -- the server ----------------------------------------------------------------------------------


class BenchServer:
    """`haodian serve --workers N` on a free loopback port, in a session of its own (so its
    processes form one group: stopped together, their CPU summed); its log in the workdir."""

    def __init__(self, proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
        self.proc, self.base, self.log = proc, base, log

    @property
    def group(self) -> int:
        return self.proc.pid  # its own session: the workers share its process group

    @classmethod
    def start(cls, env: dict[str, str], workers: int, workdir: Path) -> BenchServer:
        port = free_port()
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("HAODIAN_")}
        full_env.update(env)
        log_path = workdir / "server.log"
        log = open(log_path, "wb")  # the child writes it until it stops
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--workers", str(workers),
             "--port", str(port)],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        server = cls(proc, f"http://127.0.0.1:{port}", log_path)
        try:
            server.wait_ready()
        except BaseException:
            server.stop()
            raise
        return server

    def wait_ready(self) -> None:
        import httpx

        for _ in range(300):
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"the server exited:\n{self.log.read_text(errors='replace')[-3000:]}"
                )
            try:
                if httpx.get(self.base + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit("the server did not become ready in 60 s")

    def stop(self) -> None:
        """SIGTERM to the whole group, SIGKILL after 15 s; calling it again does nothing."""
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class BenchRun:
    """One bench run's working folder and what it must undo, in this order, however it
    ends: its progress bar, its server, its claimed Redis database."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="haodian-bench-"))
        self.server: BenchServer | None = None
        self.bar: Any = None
        self._cleanup = ExitStack()

    def __enter__(self) -> BenchRun:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
        self.stop_server()
        self._cleanup.close()

    def redis_url(self) -> str:
        return bench_redis_url(self._cleanup)

    def start_server(self, env: dict[str, str], workers: int) -> BenchServer:
        self.server = BenchServer.start(env, workers, self.workdir)
        return self.server

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
