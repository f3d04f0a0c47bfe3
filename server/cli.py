"""haodian — the command line: serve | worker | migrate | seed | admin | sandbox | bench."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from server.infra.metrics import use_directory as use_metrics_directory
from server.settings import Settings, SettingsError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable[[Callable[[argparse.Namespace], int]], Any]:
    def wrap(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = fn
        return fn

    return wrap


# -- serve -------------------------------------------------------------------------------------


async def _prepare(settings: Settings, seed: bool) -> None:
    from server.infra import db
    from server.infra.redis import make_client

    await db.migrate(settings)
    if seed:
        from server.demo import seed_all

        await db.init_db(settings)
        redis = make_client(settings.redis_url or "")
        try:
            await seed_all(settings, redis, quiet=True)
        finally:
            await redis.aclose()
            await db.close_db()


def _let_a_stop_signal_end_the_start_up_wait() -> None:
    """Sanic 25.12's main process spins on a core forever when SIGTERM or SIGINT arrives
    before every worker has acknowledged its start (a deploy stopping a fresh instance,
    Ctrl-C right after `serve`): its shutdown handler posts None to the monitor pipe, and
    `WorkerManager.wait_for_ack` reads it and posts it back to itself, again and again
    (sanic-org/sanic#2997; the fix proposed upstream, #3063, is not released). Counting a
    shutting-down manager as acknowledged ends that wait; the None is still in the pipe,
    so `monitor()` reads it next and stops the server as it does after start-up."""
    from sanic.worker.manager import WorkerManager

    acked = WorkerManager._all_workers_ack
    if getattr(acked, "haodian_patched", False):
        return

    def all_workers_ack(self: WorkerManager) -> bool:
        return bool(self._shutting_down) or acked(self)

    all_workers_ack.haodian_patched = True  # type: ignore[attr-defined]
    WorkerManager._all_workers_ack = all_workers_ack  # type: ignore[method-assign]


@command("serve")
def cmd_serve(args: argparse.Namespace) -> int:
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from server.app import app_factory
    from server.infra.redis import ensure_redis_url, stop_embedded_redis

    # Workers are spawned, not forked: a fork would inherit the embedded Redis handle.
    # Fix it now, before a library (tqdm's lock) makes the default context 'fork'.
    multiprocessing.set_start_method("spawn", force=True)
    Sanic.START_METHOD_SET = True
    url_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    os.environ.setdefault("HAODIAN_PUBLIC_URL", f"http://{url_host}:{args.port}")
    settings = Settings()
    settings.secret  # noqa: B018  (fail early, and make the demo secret once, before workers)
    settings.queue_redis_url  # noqa: B018  (a cluster URL needs the queue's own Redis)
    use_metrics_directory(settings.data_dir)  # before workers start, before prometheus_client
    try:
        # From here the embedded Redis may run: it stops with us however we stop, a stop
        # signal during the first run's seeding included (see main).
        ensure_redis_url(settings)
        seed = settings.is_demo and not args.no_seed
        asyncio.run(_prepare(settings, seed))

        loader = AppLoader(factory=app_factory)
        app = loader.load()
        app.prepare(
            host=args.host,
            port=args.port,
            workers=args.workers,
            motd=False,
            access_log=False,
            single_process=args.workers == 1 and args.single_process,
        )
        base = settings.public_base()
        mode = "demo" if settings.is_demo else "production"
        print(
            f"haodian ({mode}) on {base}\n"
            f"  API            {base}/api/v1\n"
            f"  OpenAPI        {base}/docs/openapi.json  (UI: {base}/docs)\n"
            f"  health         {base}/healthz  {base}/readyz\n"
            f"  database       {settings.db_url.split('@')[-1]}\n"
            f"  redis          {settings.redis_url}\n"
            + (f"  WeChat sandbox {base}/_sandbox/wechat\n" if settings.sandbox_enabled else ""),
            flush=True,
        )
        _let_a_stop_signal_end_the_start_up_wait()
        _give_workers_time_to_start()
        Sanic.serve(primary=app, app_loader=loader)
    finally:
        stop_embedded_redis()
    return 0


def _give_workers_time_to_start() -> None:
    """Sanic shuts everything down when a worker has not said it started within 30 s (a
    class constant, in tenths of a second, with no setting). A cold start on a busy 2-core
    machine (first imports compiling, another server starting beside it) can take longer;
    two minutes still catches a worker that will never start."""
    from sanic.worker.manager import WorkerManager
    from sanic.worker.process import WorkerProcess

    WorkerManager.THRESHOLD = WorkerProcess.THRESHOLD = 1200


# -- worker --------------------------------------------------------------------------------------


@command("worker")
def cmd_worker(args: argparse.Namespace) -> int:
    from server.infra.jobs import run_worker

    run_worker()
    return 0


# -- migrate -------------------------------------------------------------------------------------


@command("migrate")
def cmd_migrate(args: argparse.Namespace) -> int:
    from server.infra import db

    def progress(event: str, app_label: str, name: str) -> None:
        if event == "apply_done":
            print(f"applied {app_label}.{name}", flush=True)

    asyncio.run(db.migrate(Settings(), progress=progress))
    print("database is up to date")
    return 0


@command("makemigrations")
def cmd_makemigrations(args: argparse.Namespace) -> int:
    from server.infra import db

    written = asyncio.run(db.make_migrations(Settings(), args.apps or None))
    for path in written:
        print(f"wrote {path}")
    if not written:
        print("no changes")
    return 0


# -- seed ----------------------------------------------------------------------------------------


async def _with_runtime(settings: Settings, fn: Callable[[Any], Any]) -> Any:
    """Migrate, then run fn(redis) with the database and Redis of the settings."""
    from server.infra import db
    from server.infra.redis import ensure_redis_url, make_client

    ensure_redis_url(settings)
    await db.migrate(settings)
    await db.init_db(settings)
    redis = make_client(settings.redis_url or "")
    try:
        return await fn(redis)
    finally:
        await redis.aclose()
        await db.close_db()


@command("seed")
def cmd_seed(args: argparse.Namespace) -> int:
    from server.demo import seed_all

    settings = Settings()
    asyncio.run(_with_runtime(settings, lambda r: seed_all(settings, r, quiet=False)))
    return 0


# -- admin ---------------------------------------------------------------------------------------


@command("admin")
def cmd_admin(args: argparse.Namespace) -> int:
    from server.identity.service import create_or_reset_operator
    from server.infra.errors import AppError

    settings = Settings()
    if args.admin_command == "create-operator":
        password = args.password
        if password is None:
            password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else ""
            if not password:
                import getpass

                password = getpass.getpass("password: ")

        async def run(_redis: Any) -> Any:
            return await create_or_reset_operator(args.username, password, args.role or None)

        try:
            op, created = asyncio.run(_with_runtime(settings, run))
        except AppError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 2
        print(f"operator {op.username} (id {op.id}) {'created' if created else 'reset'}")
        return 0
    return 2


# -- sandbox -------------------------------------------------------------------------------------


@command("sandbox")
def cmd_sandbox(args: argparse.Namespace) -> int:
    from server.wechat.sandbox.standalone import run_sandbox

    run_sandbox(args.host, args.port)
    return 0


# -- bench ---------------------------------------------------------------------------------------


@command("bench")
def cmd_bench(args: argparse.Namespace) -> int:
    from server import bench

    return bench.run(args)


# -- parser --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="haodian",
        description="Backend of a chain retailer's WeChat mini-program. "
        "Configuration comes from HAODIAN_* environment variables (see README); with none "
        "set, everything runs as a self-contained demo under ./.haodian.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the API (the demo, with no configuration)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    s.add_argument("--no-seed", action="store_true", help="do not seed demo data")
    s.add_argument(
        "--single-process",
        action="store_true",
        help="with --workers 1, run in this process (no worker manager)",
    )

    sub.add_parser("worker", help="run background jobs and stream consumers (arq on Redis)")
    sub.add_parser("migrate", help="apply pending database migrations")
    mm = sub.add_parser("makemigrations", help="write migrations for model changes (developers)")
    mm.add_argument("apps", nargs="*", help="only these domains (default: all)")
    sub.add_parser("seed", help="add demo data (idempotent)")

    a = sub.add_parser("admin", help="account administration")
    asub = a.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    co = asub.add_parser(
        "create-operator",
        help="create an operator account, or reset its password if it exists",
        description="Non-interactive with --password; otherwise the password is read from "
        "stdin (or prompted on a terminal).",
    )
    co.add_argument("--username", required=True)
    co.add_argument("--password", help="at least 8 characters")
    co.add_argument(
        "--role", action="append", help="admin | marketing | store_ops (repeatable; default admin)"
    )

    sb = sub.add_parser("sandbox", help="run the WeChat sandbox on its own")
    sb.add_argument("--host", default="127.0.0.1")
    sb.add_argument("--port", type=int, default=8100)

    from server import bench

    bench.add_parsers(sub)
    for extra in _EXTRA_PARSERS:
        extra(sub)
    return p


# Domains add their own sub-commands (bench, reindex, worker, ...) here.
_EXTRA_PARSERS: list[Callable[[Any], None]] = []


def _stop_signal_unwinds(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    # SIGTERM (a deploy, `kill`, a test harness) unwinds like Ctrl-C does, so every finally
    # and exit hook runs: the embedded Redis stops, the bench stops the servers it started.
    # Sanic's process manager and arq's worker set their own handlers once they run.
    signal.signal(signal.SIGTERM, _stop_signal_unwinds)
    _load_extensions()
    args = build_parser().parse_args(argv)
    try:
        code = COMMANDS[args.command](args)
    except SettingsError as exc:
        print(f"haodian: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)


def _load_extensions() -> None:
    import importlib

    for module in _EXTENSIONS:
        importlib.import_module(module)


# Modules that register extra commands through `command` and `_EXTRA_PARSERS`.
_EXTENSIONS: list[str] = [
    "server.stores.cli",
    "server.flashsale.cli",
    "server.ledger.cli",
    "server.coupons.cli",
]
