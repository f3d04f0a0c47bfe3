"""Raw RESP connections for the hot paths: packing commands, opening a connection, the
auto-pipeline (every command of an event-loop tick in one write, replies parsed by hiredis
straight into futures) and the protocol a pub/sub subscription reads with. `Scripts` and
`Subscription` (server/infra/redis.py) are their only users."""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import Any

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError


def pack(args: tuple[Any, ...] | list[Any]) -> bytes:
    return b"*%d\r\n" % len(args) + pack_items(args)


def pack_items(args: tuple[Any, ...] | list[Any]) -> bytes:
    parts = []
    for a in args:
        t = type(a)
        if t is bytes:
            b = a
        elif t is str:
            b = a.encode()
        else:
            b = b"%d" % a if t is int else str(a).encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(b), b))
    return b"".join(parts)


async def open_connection(kw: dict[str, Any], factory: Any) -> tuple[Any, Any]:
    """A raw connection to the Redis of these connection kwargs (unix socket or TCP)."""
    loop = asyncio.get_running_loop()
    timeout = kw.get("socket_connect_timeout") or 5
    if kw.get("path"):
        coro = loop.create_unix_connection(factory, kw["path"])
    else:
        coro = loop.create_connection(factory, kw.get("host", "localhost"), kw.get("port", 6379))
    return await asyncio.wait_for(coro, timeout)


def auth_commands(kw: dict[str, Any]) -> list[bytes]:
    """The AUTH command a new raw connection sends first, if the URL has a password."""
    if not kw.get("password"):
        return []
    if kw.get("username"):
        return [pack(("AUTH", kw["username"], kw["password"]))]
    return [pack(("AUTH", kw["password"]))]


MOVING = ("MOVED ", "ASK ")  # a cluster's answer for a slot served elsewhere


class RespProtocol(asyncio.Protocol):
    def __init__(self, owner: AutoPipeline) -> None:
        self.owner = owner
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Small pipelined writes must not wait for Nagle (a 40 ms stall per batch).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiters = self.owner.waiters
        while True:
            reply = reader.gets()
            if reply is False:
                return
            fut, retry = waiters.popleft()
            if fut.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                msg = str(reply)
                if retry is not None and msg.startswith("NOSCRIPT"):
                    # Redis lost its script cache (a restart): EVAL runs the script and
                    # caches it again; the caller's future gets that answer.
                    script, keys, fixed, args = retry
                    self.owner.queue(
                        fut, pack(("EVAL", script.script, len(keys), *keys, *fixed, *args))
                    )
                    continue
                if retry is not None and self.owner.on_redirect and msg.startswith(MOVING):
                    self.owner.on_redirect(fut, retry)
                    continue
                exc_type = NoScriptError if msg.startswith("NOSCRIPT") else ResponseError
                fut.set_exception(exc_type(msg))
            else:
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.lost(self, exc)


class AutoPipeline:
    """One connection; commands issued in the same loop tick go out in one write."""

    def __init__(self, kwargs: dict[str, Any], on_redirect: Any = None) -> None:
        self.kwargs = kwargs
        self.on_redirect = on_redirect  # (future, retry) of a script sent to the wrong node
        # One (reply future, EVAL fallback or None) per command written, in order.
        self.waiters: deque[tuple[asyncio.Future[Any], Any]] = deque()
        self.buffer: list[bytes] = []
        self.protocol: RespProtocol | None = None
        self.connecting: asyncio.Future[None] | None = None
        self.flush_scheduled = False
        self.loop: asyncio.AbstractEventLoop | None = None

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        kw = self.kwargs
        try:
            _, protocol = await open_connection(kw, lambda: RespProtocol(self))
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc}") from exc
        hello = auth_commands(kw)
        if kw.get("db"):
            hello.append(pack(("SELECT", kw["db"])))
        futs = [loop.create_future() for _ in hello]
        self.waiters.extend((f, None) for f in futs)
        if hello:
            assert protocol.transport is not None
            protocol.transport.write(b"".join(hello))
            await asyncio.gather(*futs)
        self.protocol = protocol

    async def call(self, *args: Any) -> Any:
        return await self.send(pack(args))

    async def send(self, packed: bytes, retry: Any = None) -> Any:
        """Connect if need be, then `submit` and await the reply."""
        if self.protocol is None:
            if self.connecting is None:
                self.connecting = asyncio.ensure_future(self._connect())
            try:
                await asyncio.shield(self.connecting)
            except BaseException:
                self.connecting = None
                raise
            self.connecting = None
        return await self.submit(packed, retry)

    def submit(self, packed: bytes, retry: Any = None) -> asyncio.Future[Any]:
        """Queue one RESP-encoded command for this tick's write (connected only); the
        future gets its reply."""
        fut = (self.loop or asyncio.get_running_loop()).create_future()
        self.queue(fut, packed, retry)
        return fut

    def queue(self, fut: asyncio.Future[Any], packed: bytes, retry: Any = None) -> None:
        self.waiters.append((fut, retry))
        self.buffer.append(packed)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            (self.loop or asyncio.get_running_loop()).call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        if not self.buffer:
            return
        data = b"".join(self.buffer)
        self.buffer.clear()
        if self.protocol is None or self.protocol.transport is None:
            self._fail(RedisConnectionError("connection to Redis lost"))
            return
        self.protocol.transport.write(data)

    def _fail(self, exc: Exception) -> None:
        while self.waiters:
            fut, _retry = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(exc)
        self.buffer.clear()

    def lost(self, protocol: RespProtocol, exc: Exception | None) -> None:
        if self.protocol is protocol:
            self.protocol = None
        self._fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def close(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()
        self.protocol = None


class SubProtocol(asyncio.Protocol):
    def __init__(self, reply: Any, gone: Any) -> None:
        self.reply = reply
        self.gone = gone
        self.reader = hiredis.Reader()

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            value = self.reader.gets()
            if value is False:
                return
            self.reply(value)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone()
