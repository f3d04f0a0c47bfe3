"""Tortoise ORM set-up, migrations and the drift check.

Each domain is its own Tortoise app with its own folder under the top-level `migrations/`
(installed as `server.migrations.<domain>`), so two domains can grow their schemas without
renumbering each other's migration files, and `haodian migrate` works from an installed
wheel as well as from a checkout.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any

from tortoise import Tortoise
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.migrations.api import migrate as migrate_api
from tortoise.migrations.autodetector import MigrationAutodetector

from server.settings import Settings

# Order matters only for readability; Tortoise resolves cross-app references.
DOMAIN_APPS: list[str] = [
    "identity",
    "stores",
    "catalog",
    "orders",
    "coupons",
    "payments",
    "flashsale",
    "outbox",
    "share",
    "groupbuy",
    "ledger",
    "giftcards",
    "membership",
    "takeout",
]


def _apps_config() -> dict[str, dict[str, Any]]:
    apps: dict[str, dict[str, Any]] = {}
    for label in DOMAIN_APPS:
        if importlib.util.find_spec(f"server.{label}.models") is None:
            continue
        apps[label] = {
            "models": [f"server.{label}.models"],
            "migrations": f"server.migrations.{label}",
            "default_connection": "default",
        }
    return apps


def tortoise_config(settings: Settings) -> dict[str, Any]:
    url = settings.db_url
    connection: str | dict[str, Any] = url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # Tortoise's SQLite engine, with transactions that queue for the write lock: the demo's
        # API and job worker are two processes writing one file (server/infra/sqlite.py).
        connection = {**expand_db_url(url), "engine": "server.infra.sqlite"}
    else:
        connection = expand_db_url(url)
        credentials = connection["credentials"]
        # A small pool per worker: 2,000 stores x N workers must not exhaust PostgreSQL.
        if "maxsize" not in credentials:
            credentials.update(minsize=1, maxsize=20)
        credentials["reset"] = _keep_session
    return {
        "connections": {"default": connection},
        "apps": _apps_config(),
        "use_tz": True,
        "timezone": "UTC",
    }


async def _keep_session(connection: Any) -> None:
    """What a pooled connection gets before its next borrower: nothing beyond asyncpg's own
    rollback of a transaction a cancelled request left open. Its default reset also sends
    RESET ALL, UNLISTEN * and an advisory unlock, a round trip on every release (per claim
    batch, per request) for session state this app never sets: no SET outside a transaction,
    no LISTEN, no session-level advisory lock."""


async def init_db(settings: Settings) -> None:
    await Tortoise.init(config=tortoise_config(settings), _enable_global_fallback=True)


async def close_db() -> None:
    await Tortoise.close_connections()


async def migrate(settings: Settings, *, progress: Any = None) -> None:
    """Apply every pending migration of every domain (idempotent)."""
    try:
        await migrate_api(config=tortoise_config(settings), progress=progress)
    finally:
        # Without this a failed migration leaves aiosqlite's thread alive and the CLI hangs.
        await Tortoise.close_connections()


async def pending_model_changes(settings: Settings) -> list[str]:
    """Names of migrations `makemigrations` would write now; empty means no drift."""
    cfg = tortoise_config(settings)
    await Tortoise.init(config=cfg, _enable_global_fallback=True)
    try:
        detector = MigrationAutodetector(Tortoise.apps, cfg["apps"])
        writers = await detector.changes()
        return [f"{w.app_label}.{w.name}" for w in writers]
    finally:
        await Tortoise.close_connections()


async def make_migrations(settings: Settings, app_labels: list[str] | None = None) -> list[str]:
    """Write migration files for model changes (a developer command), for some apps or all."""
    cfg = tortoise_config(settings)
    await Tortoise.init(config=cfg, _enable_global_fallback=True)
    try:
        detector = MigrationAutodetector(Tortoise.apps, cfg["apps"])
        writers = await detector.changes()
        return [str(w.write()) for w in writers if not app_labels or w.app_label in app_labels]
    finally:
        await Tortoise.close_connections()


_PLACEHOLDER = re.compile(r"\$\d+")


def dialect_sql(conn: Any, text: str) -> str:
    """Raw SQL is written for asyncpg ($1, $2...); SQLite (the demo) takes ? by position, so
    the numbers must appear as 1, 2, 3... in the text — checked on every dialect, so a query
    that would bind the wrong values on SQLite fails the PostgreSQL tests too."""
    used = [int(p[1:]) for p in _PLACEHOLDER.findall(text)]
    if used != list(range(1, len(used) + 1)):
        raise ValueError(f"placeholders must appear as $1, $2, ... in order: {used}")
    if conn.capabilities.dialect == "sqlite":
        return _PLACEHOLDER.sub("?", text)
    return text


async def ping_db() -> None:
    conn = Tortoise.get_connection("default")
    await conn.execute_query("SELECT 1")


def rows_source(
    conn: Any, columns: list[tuple[str, str]], rows: list[tuple[Any, ...]]
) -> tuple[str, list[Any]]:
    """Many rows as one FROM item `r(col, ...)`, for one INSERT ... SELECT of a whole batch.

    PostgreSQL: `unnest` of one array parameter per column ($1..$n, typed by `columns`'
    PostgreSQL types), so a batch of any size is n parameters. SQLite (the demo): a VALUES
    list, one ? per value (keep batches under its 32,766-parameter limit). Put it first in
    the statement's parameters: nothing else in the SQL may take one."""
    names = ", ".join(name for name, _ in columns)
    if conn.capabilities.dialect == "sqlite":
        one = "(" + ", ".join("?" * len(columns)) + ")"
        values = ", ".join([one] * len(rows))
        picked = ", ".join(f"column{i + 1} AS {name}" for i, (name, _) in enumerate(columns))
        return f"(SELECT {picked} FROM (VALUES {values})) AS r", [v for row in rows for v in row]
    arrays = ", ".join(f"${i + 1}::{kind}[]" for i, (_, kind) in enumerate(columns))
    return f"unnest({arrays}) AS r({names})", [list(col) for col in zip(*rows, strict=True)]


def value_beyond_storage(exc: BaseException) -> bool:
    """The database (or asyncpg encoding for it) refused a value as data: a number beyond its
    column, text it cannot hold. Input no schema bounded: a 422, the transaction rolled back."""
    try:
        import asyncpg.exceptions as pg
    except ImportError:
        return False
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return False
        if isinstance(seen, pg.DataError):
            return True
        seen = seen.__cause__
    return False


def database_unreachable(exc: BaseException) -> bool:
    """The database could not take the query (down, restarting, out of connection slots,
    the connection dropped): the request may be retried, so a 503, not a 500."""
    from tortoise.exceptions import DBConnectionError

    try:
        import asyncpg.exceptions as pg
    except ImportError:  # the SQLite-only install
        return isinstance(exc, (ConnectionError, DBConnectionError))
    return isinstance(
        exc,
        (
            ConnectionError,
            DBConnectionError,
            pg.InsufficientResourcesError,  # TooManyConnectionsError among them
            pg.OperatorInterventionError,  # shutting down, cannot connect now
            pg.PostgresConnectionError,
            pg.InterfaceError,  # e.g. the connection was closed mid-query
        ),
    )
