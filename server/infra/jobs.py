"""Background and delayed jobs on Redis through arq; `haodian worker` runs them.

Domains list their job functions in a module named in JOB_MODULES; that module
exposes `functions` (coroutines `async def job(ctx, ...)`), and optionally
`cron_jobs` (arq.cron(...)) and `consumers` (coroutines `async def run(ctx)` that
loop until cancelled, e.g. a Redis Streams consumer group).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import time
from typing import Any

from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError

from server.infra.clock import SHANGHAI
from server.settings import Settings

log = logging.getLogger("haodian.worker")

JOB_MODULES: list[str] = [
    "server.coupons.jobs",
    "server.payments.jobs",
    "server.flashsale.jobs",
    "server.outbox.jobs",
    "server.groupbuy.jobs",
    "server.giftcards.jobs",
    "server.membership.jobs",
    "server.infra.partitions",
]
QUEUE = "haodian:jobs"


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


async def job_pool(url: str) -> ArqRedis:
    """A client for enqueueing jobs; it connects lazily, so the API starts while Redis is down."""
    return ArqRedis(connection_pool=ConnectionPool.from_url(url), default_queue_name=QUEUE)


def _collect(attr: str) -> list[Any]:
    out: list[Any] = []
    for name in JOB_MODULES:
        out.extend(getattr(importlib.import_module(name), attr, []))
    return out


async def _startup(ctx: dict[str, Any]) -> None:
    from server.infra import db
    from server.infra.redis import Scripts, make_client, share_scripts

    settings: Settings = ctx["settings"]
    await db.init_db(settings)
    ctx["redis_client"] = make_client(settings.redis_url or "")
    ctx["scripts"] = Scripts(ctx["redis_client"])
    share_scripts(ctx["scripts"])
    ctx["consumer_tasks"] = [
        asyncio.create_task(fn(ctx), name=f"consumer:{fn.__module__}.{fn.__name__}")
        for fn in _collect("consumers")
    ]
    log.info("worker started", extra={"consumers": len(ctx["consumer_tasks"])})


async def _shutdown(ctx: dict[str, Any]) -> None:
    from server.infra import db

    for task in ctx.get("consumer_tasks", []):
        task.cancel()
    await asyncio.gather(*ctx.get("consumer_tasks", []), return_exceptions=True)
    if "redis_client" in ctx:
        await ctx["redis_client"].aclose()
    await db.close_db()


def _measured(coroutine: Any) -> Any:
    """The job counted and timed in the metrics, by outcome."""

    @functools.wraps(coroutine)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        from server.infra.metrics import metrics

        start = time.perf_counter()
        outcome = "failed"
        try:
            result = await coroutine(ctx, *args, **kwargs)
            outcome = "ok"
            return result
        finally:
            m = metrics()
            # Duration first: a scrape between the two then never sees more runs than timings.
            m.job_seconds.labels(coroutine.__name__).observe(time.perf_counter() - start)
            m.jobs.labels(coroutine.__name__, outcome).inc()

    return run


def build_worker(settings: Settings, **overrides: Any) -> Worker:
    functions = [_measured(f) for f in _collect("functions")]
    cron_jobs = _collect("cron_jobs")
    for job in cron_jobs:
        if not getattr(job.coroutine, "__wrapped__", None):
            job.coroutine = _measured(job.coroutine)
    if not functions:
        # arq refuses to start without a function; keep one harmless job so the worker runs.
        functions = [_noop]
    kwargs: dict[str, Any] = dict(
        functions=functions,
        cron_jobs=cron_jobs or None,
        redis_settings=redis_settings(settings.queue_redis_url),
        queue_name=QUEUE,
        on_startup=_startup,
        on_shutdown=_shutdown,
        ctx={"settings": settings},
        max_jobs=20,
        job_timeout=300,
        keep_result=3600,
        handle_signals=True,
        # Cron schedules read as the business's clock (the 1st, midnight), whatever the
        # machine's zone.
        timezone=SHANGHAI,
    )
    kwargs.update(overrides)
    return Worker(**kwargs)


async def _noop(ctx: dict[str, Any]) -> None:
    return None


def run_worker() -> None:
    """Entry point of `haodian worker` and of the demo's managed worker process."""
    from server.infra.logging import setup_logging
    from server.infra.metrics import use_directory
    from server.infra.redis import ensure_redis_url

    settings = Settings()
    settings.queue_redis_url  # noqa: B018  (a cluster URL needs the queue's own Redis)
    use_directory(settings.data_dir)
    setup_logging(settings.log_level)
    ensure_redis_url(settings)
    asyncio.run(_run(settings))


async def _run(settings: Settings) -> None:
    worker = build_worker(settings)
    try:
        # async_run (not main) records the task arq's SIGTERM/SIGINT handler cancels.
        await worker.async_run()
    except asyncio.CancelledError:
        pass
    finally:
        try:
            await worker.close()
        except RedisError:
            pass  # Redis is already gone (the demo stops its embedded server on the way out)
