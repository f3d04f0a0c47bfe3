"""Two API instances and one job worker behind nginx (Debian's package), on loopback, the
topology of deploy/: a flash sale and coupon claims driven through nginx while one API
process is killed with SIGKILL mid-load. Clients see answers, or errors for requests in
flight on the dead one (nginx's 502 / a dropped connection), never a 5xx of ours; retried
with the same Idempotency-Key they get the same order or coupon. Stock and orders come out
exact. Rate limits key on the client's own address, which only our proxy may tell."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.coupons.models import Coupon
from server.orders.models import Order
from server.settings import Settings
from tests.conftest import (
    ServerProcess,
    free_port,
    own_redis_database,
    redis_env,
    start_worker,
    stop_group,
    wait_http,
)
from tests.test_coupons import make_template, operator_headers
from tests.test_flashsale import _create_sale, _members

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CLIENTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]  # loopback source addresses
MEMBERS = 240
UNITS = 150  # flash-sale units: fewer than members, so it sells out under the kill
COUPONS = 180  # coupon total: fewer than the claims sent


def nginx_conf(prefix: Path, port: int, upstreams: list[int]) -> Path:
    servers = "\n".join(
        f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;" for p in upstreams
    )
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
user root;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream haodian_api {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://haodian_api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            # The edge proxy says who connected; whatever the client sent is replaced.
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Request-ID $request_id;
        }}
    }}
}}
"""
    )
    return conf


class Nginx:
    def __init__(self, prefix: Path, upstreams: list[int]) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        conf = nginx_conf(prefix, self.port, upstreams)
        self.proc = subprocess.Popen(
            [NGINX, "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        stop_group(self.proc, signal.SIGQUIT, 10)  # nginx's graceful stop


@pytest.fixture(scope="module")
def topology(
    env: dict[str, str], server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """nginx -> two `haodian serve` (one worker process each) + one `haodian worker`, on
    the test database and a Redis database of their own."""
    if not Path(NGINX).exists():
        pytest.fail("nginx is missing: the README test command installs Debian's nginx")
    logs = tmp_path_factory.mktemp("scale-out")
    with own_redis_database() as redis_url:
        own = env | redis_env(redis_url) | {"HAODIAN_TRUSTED_PROXIES": "127.0.0.1/32"}
        apis = [
            ServerProcess(["serve", "--workers", "1"], own, logs / f"api{i}.log", cwd=logs)
            for i in (1, 2)
        ]
        worker = None
        proxy = None
        try:
            for api in apis:
                api.wait_ready()
            worker = start_worker(
                own,
                logs / "worker.log",
                HAODIAN_PUBLIC_URL=apis[1].base_url,
                HAODIAN_WORKER_NAME=f"scale-{uuid.uuid4().hex[:6]}",
            )
            (logs / "nginx").mkdir()
            proxy = Nginx(logs / "nginx", [a.port for a in apis])
            wait_http(proxy.proc, proxy.base_url + "/healthz", 30)
            yield {"apis": apis, "nginx": proxy, "worker": worker, "env": own}
        finally:
            if proxy is not None:
                proxy.stop()
            if worker is not None:
                worker.stop()
            for api in apis:
                api.stop()


def client(base_url: str, source: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=30,
        transport=httpx.AsyncHTTPTransport(local_address=source),
        limits=httpx.Limits(max_connections=8),
    )


async def send(c: httpx.AsyncClient, path: str, token: str, key: str, body: Any) -> Any:
    """(status, json) or ("error", kind) for a request that got no answer of ours."""
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
    try:
        r = await c.post(path, headers=headers, json=body)
    except httpx.TransportError as exc:
        return ("error", type(exc).__name__)
    if r.status_code in (502, 504) and "error" not in r.text[:20]:
        return ("error", f"nginx {r.status_code}")  # in flight on the dead instance
    return (r.status_code, r.json())


async def test_a_killed_instance_loses_no_order_and_sells_no_extra_unit(
    topology: dict[str, Any], api: httpx.AsyncClient, env: dict[str, str], database: Settings
) -> None:
    proxy: Nginx = topology["nginx"]
    sale = await _create_sale(api, env, units=UNITS)
    template = await make_template(
        api, await operator_headers(database), total=COUPONS, per_member_limit=1
    )
    members = await _members(database, MEMBERS)
    clients = [client(proxy.base_url, src) for src in CLIENTS]
    grab = f"/api/v1/flash-sales/{sale['id']}/orders"
    take = f"/api/v1/coupon-center/{template['id']}/claim"
    jobs = []
    for n, (mid, token) in enumerate(members):
        c = clients[n % len(clients)]
        jobs.append(("grab", mid, token, f"g-{mid}", c, grab, {"quantity": 1}))
        jobs.append(("claim", mid, token, f"c-{mid}", c, take, None))
    gate = asyncio.Semaphore(24)
    victim: ServerProcess = topology["apis"][0]

    async def one(job: tuple) -> tuple:
        kind, mid, token, key, c, path, body = job
        async with gate:
            return (kind, mid, key, await send(c, path, token, key, body))

    killer_started = asyncio.Event()

    async def kill_mid_load() -> None:
        await killer_started.wait()
        await asyncio.sleep(0.3)
        os.killpg(victim.proc.pid, signal.SIGKILL)  # the serve process and its worker

    tasks = [asyncio.create_task(one(j)) for j in jobs]
    killer = asyncio.create_task(kill_mid_load())
    done: list[tuple] = []
    after_kill = 0
    for fut in asyncio.as_completed(tasks):
        done.append(await fut)
        if len(done) == len(jobs) // 5:
            killer_started.set()
        after_kill += killer.done()
    await killer
    assert after_kill > len(jobs) // 4  # the load went on through the surviving instance
    assert victim.proc.wait(timeout=10) == -signal.SIGKILL

    answers = Counter(a[3][0] for a in done)
    assert set(answers) <= {202, 201, 409, "error"}, answers  # no 5xx of ours, nothing else
    assert answers[202] + answers[201] > 0

    # A client retries what got no answer, with the same key: through the live instance.
    final: dict[str, Any] = {}
    for kind, mid, key, got in done:
        final[key] = (kind, mid, got)
    retried = 0
    for key, (kind, mid, got) in list(final.items()):
        if got[0] == "error":
            token = dict(members)[mid]
            path = grab if kind == "grab" else take
            body = {"quantity": 1} if kind == "grab" else None
            again = await send(clients[0], path, token, key, body)
            assert again[0] in (200, 201, 202, 409), again
            final[key] = (kind, mid, again)
            retried += 1

    # Flash sale: the worker materialises every unit Redis handed out; each answered order
    # exists once; never more orders than units.
    answered = {
        got[1]["order_no"]
        for kind, _, got in final.values()
        if kind == "grab" and got[0] in (200, 202)
    }
    for _ in range(300):
        shown = (await clients[0].get(f"/api/v1/flash-sales/{sale['id']}")).json()
        orders = await Order.filter(source=f"fs:{sale['id']}").values_list("order_no", flat=True)
        if len(orders) >= UNITS - shown["remaining"]:
            break
        await asyncio.sleep(0.1)
    # every unit Redis handed out is one order, each answered order among them, none beyond
    assert len(orders) == len(set(orders)) == UNITS - shown["remaining"] <= UNITS
    assert answered <= set(orders)
    # Coupons: every answered coupon is a row, no member has two, never beyond the total.
    coupons = await Coupon.filter(template_id=template["id"]).values_list("id", "member_id")
    assert len(coupons) <= COUPONS
    assert max(Counter(m for _, m in coupons).values()) == 1
    kept = {c for c, _ in coupons}
    claimed = {
        got[1]["coupon"]["id"]
        for kind, _, got in final.values()
        if kind == "claim" and got[0] in (200, 201)
    }
    assert claimed <= kept
    assert len(claimed) == len(coupons)  # and every row is a coupon someone was answered with
    for c in clients:
        await c.aclose()


async def test_rate_limits_key_on_the_client_behind_our_proxy_only(
    topology: dict[str, Any],
) -> None:
    """Operator sign-ins are limited to 100 a minute per address. Through nginx, one loopback
    address runs out while another does not; a client's own X-Forwarded-For changes nothing,
    through nginx or straight to an instance."""
    proxy: Nginx = topology["nginx"]
    direct = topology["apis"][1].base_url
    a, b = client(proxy.base_url, "127.0.0.6"), client(proxy.base_url, "127.0.0.7")
    bypass = client(direct, "127.0.0.6")

    async def sign_in(c: httpx.AsyncClient, spoof: str | None = None) -> int:
        headers = {"X-Forwarded-For": spoof} if spoof else {}
        body = {"username": f"nobody-{uuid.uuid4().hex[:8]}", "password": "wrong-password-1"}
        r = await c.post("/api/v1/admin/auth/login", json=body, headers=headers)
        return r.status_code

    statuses = [await sign_in(a) for _ in range(100)]
    assert 429 not in statuses
    assert await sign_in(a) == 429
    assert await sign_in(a, spoof="198.51.100.9") == 429  # nginx replaces what it was told
    assert await sign_in(bypass, spoof="198.51.100.9") == 429  # not our proxy: not believed
    assert await sign_in(b) == 401  # another address still may try
    for c in (a, b, bypass):
        await c.aclose()
