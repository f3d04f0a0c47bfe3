"""The demo's SQLite engine: Tortoise's, with transactions that take the write lock first.

In the demo the API worker and the embedded job worker are two processes writing one SQLite
file. Tortoise opens a transaction with a deferred `BEGIN`: its snapshot is taken at the
first read, and when another process commits before the transaction's first write, SQLite
refuses that write at once ("database is locked", SQLITE_BUSY_SNAPSHOT) — the busy timeout
never applies, so a payment notification and a seat the worker writes meanwhile fail each
other. `BEGIN IMMEDIATE` takes the write lock up front, waiting up to the busy timeout, so
transactions queue instead. PostgreSQL is not affected (`db.tortoise_config`).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from tortoise.backends.base.client import TransactionContext
from tortoise.backends.sqlite.client import (
    SqliteClient,
    SqliteTransactionContext,
    SqliteTransactionWrapper,
)
from tortoise.connection import get_connections
from tortoise.exceptions import OperationalError


class _ImmediateTransaction(SqliteTransactionWrapper):
    async def begin(self) -> None:
        try:
            await self._connection.commit()
            await self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:  # the lock was not free within the timeout
            raise OperationalError(exc) from exc


class _ImmediateContext(SqliteTransactionContext):
    async def __aenter__(self) -> Any:
        # Tortoise's own version keeps the connection lock (and the context variable) when
        # BEGIN fails, and every later query of the process would then wait for good.
        await self._trxlock.acquire()
        try:
            await self.ensure_connection()
            self.token = get_connections().set(self.connection_name, self.connection)
            try:
                await self.connection.begin()
            except BaseException:
                get_connections().reset(self.token)
                raise
        except BaseException:
            self._trxlock.release()
            raise
        return self.connection


class ImmediateSqliteClient(SqliteClient):
    def _in_transaction(self) -> TransactionContext:
        return _ImmediateContext(_ImmediateTransaction(self), self._lock)


client_class = ImmediateSqliteClient
