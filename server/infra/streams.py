"""A Redis Streams consumer-group reader for `haodian worker`: one way to turn the entries a
hot-path script appended into database rows.

For every source (a flash sale, a group-buy activity) it reads the source's stream through
a consumer group, hands each entry to `handle_entry` (an idempotent insert), and
acknowledges the entry only after that returned. On start it re-reads its own pending
entries (a crash between commit and XACK leaves them there), and it regularly claims entries
that a dead consumer left pending for longer than `claim_idle_ms` (XAUTOCLAIM).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any

from redis.exceptions import ResponseError

from server.infra.metrics import metrics

log = logging.getLogger("haodian.streams")

BATCH = 200
FAULT_ENV = "HAODIAN_FAULT"


def fault(point: str) -> None:
    """Tests crash the worker at a named point (HAODIAN_FAULT=<point>): exit at once, like
    kill -9, with nothing flushed or acknowledged."""
    if os.environ.get(FAULT_ENV) == point:
        log.warning("fault injected: exiting", extra={"point": point})
        os._exit(137)


def entry_fields(fields: Any) -> dict[str, str]:
    if isinstance(fields, dict):
        return {text(k): text(v) for k, v in fields.items()}
    it = iter(fields)
    return {text(k): text(v) for k, v in zip(it, it, strict=False)}


def text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class StreamConsumer:
    """Subclasses say which streams to read (`refresh`), what an entry becomes
    (`handle_entry`) and what to do when a stream has no consumer group yet (`no_group`)."""

    group = ""
    kind = "stream"

    def __init__(self, redis: Any, name: str | None, claim_idle_ms: int) -> None:
        self.redis = redis
        self.name = name or socket.gethostname()
        self.claim_idle_ms = claim_idle_ms
        self.streams: dict[Any, str] = {}  # source id -> stream key
        self.own_pending_done: set[Any] = set()
        self.refresh_at = 0.0
        self.claim_at = 0.0

    async def refresh(self) -> None:
        raise NotImplementedError

    async def handle_entry(self, source: Any, fields: dict[str, str]) -> str:
        raise NotImplementedError

    async def no_group(self, source: Any) -> None:
        await self.ensure_group(self.streams[source])

    async def before_entries(self, source: Any) -> None:
        """Called before a batch of a source's entries is handled."""

    async def ensure_group(self, key: str) -> None:
        try:
            await self.redis.xgroup_create(key, self.group, id="0", mkstream=True)
        except ResponseError as busy:
            if "BUSYGROUP" not in str(busy):
                raise

    async def handle(self, source: Any, entries: list[Any]) -> int:
        key = self.streams[source]
        if entries:
            await self.before_entries(source)
        for entry_id, fields in entries:
            if fields is None:  # deleted entry still listed as pending
                await self.redis.xack(key, self.group, entry_id)
                continue
            outcome = await self.handle_entry(source, entry_fields(fields))
            fault("after_insert_before_ack")
            await self.redis.xack(key, self.group, entry_id)
            log.debug("%s entry %s", self.kind, outcome, extra={"source": source})
        return len(entries)

    async def read(self, source: Any) -> int:
        key = self.streams[source]
        # Our own pending entries first (a crash between commit and XACK), then new ones.
        start = ">" if source in self.own_pending_done else "0"
        try:
            reply = await self.redis.xreadgroup(self.group, self.name, {key: start}, count=BATCH)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.no_group(source)
            return 0
        entries = reply[0][1] if reply else []
        if start == "0" and not entries:
            self.own_pending_done.add(source)
        return await self.handle(source, entries)

    async def claim(self, source: Any) -> int:
        try:
            reply = await self.redis.xautoclaim(
                self.streams[source],
                self.group,
                self.name,
                min_idle_time=self.claim_idle_ms,
                start_id="0-0",
                count=BATCH,
            )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                return 0
            raise
        entries = reply[1]
        if entries:
            log.info(
                "claimed entries of a dead consumer", extra={"source": source, "n": len(entries)}
            )
        return await self.handle(source, entries)

    async def report(self) -> None:
        """This kind's entries not yet read and read but not acknowledged, for /metrics."""
        lag = pending = 0
        for key in self.streams.values():
            try:
                groups = await self.redis.xinfo_groups(key)
            except ResponseError:  # no stream yet
                continue
            for g in groups:
                name = g.get("name")
                if (name.decode() if isinstance(name, bytes) else name) == self.group:
                    lag += int(g.get("lag") or 0)
                    pending += int(g.get("pending") or 0)
        m = metrics()
        m.stream_lag.labels(self.kind).set(lag)
        m.stream_pending.labels(self.kind).set(pending)

    async def step(self) -> int:
        now = time.monotonic()
        if now >= self.refresh_at:
            await self.refresh()
            await self.report()
            self.refresh_at = now + 2
        done = 0
        for source in list(self.streams):
            done += await self.read(source)
        if now >= self.claim_at:
            for source in list(self.streams):
                done += await self.claim(source)
            self.claim_at = now + max(0.5, self.claim_idle_ms / 4000)
        return done

    async def run(self) -> None:
        """Loop until cancelled; a failing step is logged and retried a second later."""
        log.info("%s consumer started", self.kind, extra={"consumer": self.name})
        while True:
            try:
                done = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s consumer step failed; retrying", self.kind)
                await asyncio.sleep(1)
                continue
            if not done:
                await asyncio.sleep(0.05)
