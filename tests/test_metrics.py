"""`/metrics`: Prometheus text that the client's own parser reads, summed over the server's
workers and the job worker, and moving when requests are made."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from server.settings import Settings
from tests.conftest import ServerProcess, sweeping_worker
from tests.test_coupons import claim, make_template, new_member, operator_headers

PRODUCT_ROUTE = "/api/v1/products/<product_id:int>"


async def scrape(api: httpx.AsyncClient) -> dict[tuple[str, frozenset], float]:
    r = await api.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: dict, name: str, **labels: str) -> float:
    """Summed over the labels not given."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


async def test_requests_are_counted_by_route_template_and_status_with_latency(
    api: httpx.AsyncClient,
) -> None:
    before = await scrape(api)
    for i in range(12):  # over a keep-alive and fresh connections: both workers answer some
        async with httpx.AsyncClient(base_url=str(api.base_url)) as fresh:
            await fresh.get(f"/api/v1/products/{10**12 + i}")
    after = await scrape(api)
    labels = {"route": PRODUCT_ROUTE, "method": "GET", "status": "404"}
    assert (
        value(after, "haodian_http_requests_total", **labels)
        - value(before, "haodian_http_requests_total", **labels)
        == 12
    )
    timed = {"route": PRODUCT_ROUTE, "method": "GET"}
    count = value(after, "haodian_http_request_seconds_count", **timed) - value(
        before, "haodian_http_request_seconds_count", **timed
    )
    assert count == 12
    assert value(after, "haodian_http_request_seconds_bucket", **timed, le="+Inf") >= count
    # a path matching no route is one series, not one per path
    await api.get("/no/such/thing")
    assert (
        value(
            await scrape(api),
            "haodian_http_requests_total",
            route="unmatched",
            method="GET",
            status="404",
        )
        >= 1
    )


async def test_lua_scripts_are_timed(api: httpx.AsyncClient, database: Settings) -> None:
    op = await operator_headers(database)
    template = await make_template(api, op, total=5)
    _, member = await new_member(database)
    before = await scrape(api)
    await claim(api, member, template["id"])
    after = await scrape(api)
    name = "haodian_lua_script_seconds_count"
    assert value(after, name, script="coupons/claim") > value(before, name, script="coupons/claim")


async def test_the_job_worker_reports_jobs_streams_and_outbox_lag(
    env: dict[str, str], server: ServerProcess, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    with sweeping_worker(env, server, tmp_path / "worker.log"):
        for _ in range(120):
            samples = await scrape(api)
            runs = value(samples, "haodian_job_runs_total", job="payments_sweep", outcome="ok")
            kinds = {dict(ls).get("kind") for n, ls in samples if n == "haodian_stream_lag"}
            if runs >= 2 and {"flash-sale", "group-buy"} <= kinds:
                break
            await asyncio.sleep(0.5)
        assert runs >= 2, "the sweep ran every second but was not counted"
        assert {"flash-sale", "group-buy"} <= kinds
        assert ("haodian_outbox_lag_seconds", frozenset()) in samples
        assert total(samples, "haodian_job_seconds_count", job="payments_sweep") >= runs
