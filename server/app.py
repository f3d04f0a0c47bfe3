"""create_app(settings) -> Sanic: the one place the API is assembled."""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from typing import Any

from sanic import HTTPResponse, Request, Sanic
from sanic.exceptions import SanicException
from sanic_ext import Extend, openapi

from server.infra import db
from server.infra.auth import RevocationWatch
from server.infra.errors import AppError, Unavailable, ValidationFailed
from server.infra.http import respond, returns, trusted_networks
from server.infra.jobs import job_pool
from server.infra.logging import request_id_var, setup_logging
from server.infra.metrics import exposition, metrics
from server.infra.openapi import (
    HealthOut,
    ReadyOut,
    register_path_types,
    serve_fixed_document,
)
from server.infra.ratelimit import RateLimits
from server.infra.redis import (
    Scripts,
    ensure_redis_url,
    is_cluster,
    make_client,
    share_scripts,
)
from server.settings import Settings

log = logging.getLogger("haodian.app")

# Domains whose `routes.py` exposes a blueprint `bp`. Order is the OpenAPI order.
DOMAIN_ROUTES: list[str] = [
    "identity",
    "stores",
    "catalog",
    "coupons",
    "orders",
    "payments",
    "flashsale",
    "share",
    "groupbuy",
    "giftcards",
    "membership",
    "takeout",
]

_SANIC_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    413: "PAYLOAD_TOO_LARGE",
    416: "RANGE_NOT_SATISFIABLE",
    429: "RATE_LIMITED",
    503: "SERVICE_UNAVAILABLE",
}


def _error_response(request: Request, exc: Exception) -> HTTPResponse:
    rid = str(getattr(request, "id", "") or request_id_var.get() or "")
    if not isinstance(exc, AppError) and db.database_unreachable(exc):
        log.warning(
            "database unreachable", extra={"path": request.path, "error": type(exc).__name__}
        )
        exc = Unavailable(
            "the database cannot be reached now; try again",
            code="DATABASE_UNAVAILABLE",
            headers={"Retry-After": "1"},
        )
    elif not isinstance(exc, AppError) and db.value_beyond_storage(exc):
        log.warning("value beyond storage", extra={"path": request.path, "error": str(exc)[:200]})
        exc = ValidationFailed("a number or a text in the request is beyond what can be stored")
    if isinstance(exc, AppError):
        resp = respond(exc.body(rid), status=exc.status, headers=exc.headers)
    elif isinstance(exc, SanicException) and exc.status_code < 500:
        status = exc.status_code
        message = str(exc) or "request failed"
        if status == 404:
            message = f"no such route: {request.method} {request.path}"
        elif status == 405:
            message = f"method {request.method} is not allowed on {request.path}"
        code = _SANIC_CODES.get(status, "BAD_REQUEST")
        resp = respond(
            {"error": {"code": code, "message": message, "request_id": rid}},
            status=status,
            headers=getattr(exc, "headers", None) or None,
        )
    else:
        log.exception("unhandled error", extra={"path": request.path})
        resp = respond(
            {
                "error": {
                    "code": "INTERNAL_ERROR",
                    "message": "something went wrong on our side",
                    "request_id": rid,
                }
            },
            status=500,
        )
    resp.headers["X-Request-ID"] = rid
    return resp


def create_app(settings: Settings | None = None) -> Sanic:
    settings = settings or Settings()
    setup_logging(settings.log_level)
    app = Sanic("haodian", configure_logging=False)
    measured = metrics()
    register_path_types(app)  # before any route: ids and numbers as the database has them
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.OAS_UI_DEFAULT = "swagger"
    app.config.OAS_URL_PREFIX = "/docs"
    app.config.OAS_UI_REDOC = False
    app.config.API_TITLE = "haodian API"
    app.config.API_VERSION = "v1"
    app.config.API_DESCRIPTION = (
        "Backend of a chain retailer's WeChat mini-program. Errors: "
        '{"error": {"code", "message", "request_id"}}. Money in integer fen.'
    )
    app.config.CORS = False
    app.config.REQUEST_MAX_SIZE = 8 * 1024 * 1024
    Extend(app)
    app.ext.openapi.add_security_scheme("BearerAuth", "http", scheme="bearer")
    app.ctx.settings = settings

    @app.before_server_start
    async def _start(app: Sanic) -> None:
        ensure_redis_url(settings)
        serve_fixed_document(app)
        # Client addresses come from X-Forwarded-For only when our own proxy sent it
        # (infra.http.client_address); with none configured, hot paths skip the parsing.
        app.ctx.trusted_proxies = trusted_networks(settings.trusted_proxies)
        await db.init_db(settings)
        try:
            # Open this worker's connection before requests arrive: Tortoise does not release
            # its connection lock when a first open is cancelled (by /readyz's timeout, say),
            # which would leave every later query of the worker waiting for good.
            await db.ping_db()
        except Exception as exc:
            log.warning("database not reachable at start-up: %s", type(exc).__name__)
        app.ctx.redis = make_client(settings.redis_url or "")
        # The sandbox stands in for WeChat's servers, which keep their state apart from ours:
        # on a cluster deployment it lives on the queue's single node (its read-modify-writes
        # WATCH one document, which a cluster client cannot).
        app.ctx.sandbox_redis = (
            make_client(settings.queue_redis_url) if is_cluster(app.ctx.redis) else app.ctx.redis
        )
        app.ctx.scripts = Scripts(app.ctx.redis)
        share_scripts(app.ctx.scripts)
        app.ctx.revocations = RevocationWatch(
            app.ctx.scripts, token_ttl_s=settings.access_token_ttl + 60
        )
        app.ctx.revocations.start()
        app.ctx.limits = RateLimits(settings.redis_url or "")
        app.ctx.jobs = await job_pool(settings.queue_redis_url)
        for hook in _startup_hooks:
            await hook(app)

    @app.after_server_stop
    async def _stop(app: Sanic) -> None:
        for hook in _shutdown_hooks:
            await hook(app)
        await app.ctx.jobs.aclose()
        await app.ctx.revocations.close()
        await app.ctx.scripts.aclose()
        await app.ctx.redis.aclose()
        if app.ctx.sandbox_redis is not app.ctx.redis:
            await app.ctx.sandbox_redis.aclose()
        await db.close_db()

    if settings.runs_embedded_worker:

        @app.main_process_ready
        async def _worker(app: Sanic) -> None:
            from server.infra.jobs import run_worker

            app.manager.manage("haodian-worker", run_worker, {}, transient=False)

    @app.on_request
    async def _request_id(request: Request) -> None:
        request.ctx.started = time.perf_counter()
        request_id_var.set(str(request.id))

    @app.on_response
    async def _response_id(request: Request, response: HTTPResponse) -> None:
        response.headers.setdefault("X-Request-ID", str(request.id))
        started = getattr(request.ctx, "started", None)
        if started is not None:
            route = request.route
            measured.request_done(
                "/" + route.path if route is not None else "unmatched",
                request.method,
                response.status,
                time.perf_counter() - started,
            )

    app.error_handler.add(Exception, _error_response)

    @app.get("/healthz")
    @returns(HealthOut)
    async def healthz(request: Request) -> HTTPResponse:
        """The process is alive."""
        return respond({"status": "ok"})

    @app.get("/metrics")
    @openapi.response(200, {"text/plain": str}, "Prometheus text format, every process's values")
    async def prometheus_metrics(request: Request) -> HTTPResponse:
        """Requests, latencies, Lua scripts, streams, jobs and the outbox (infra/metrics.py)."""
        body, content_type = exposition()
        return HTTPResponse(body, content_type=content_type)

    @app.get("/readyz")
    @returns(ReadyOut)
    @returns(ReadyOut, 503)
    async def readyz(request: Request) -> HTTPResponse:
        """The database and Redis both answer; 503 when one does not."""
        checks: dict[str, Any] = {}

        async def check(name: str, probe: Any) -> None:
            try:
                # shield: a slow probe is reported, not cancelled half-way (see _start).
                await asyncio.wait_for(asyncio.shield(probe()), timeout=2)
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"down: {type(exc).__name__}"

        await check("database", db.ping_db)
        await check("redis", request.app.ctx.redis.ping)
        ok = all(v == "ok" for v in checks.values())
        return respond({"status": "ok" if ok else "degraded", **checks}, status=200 if ok else 503)

    for name in DOMAIN_ROUTES:
        module = importlib.import_module(f"server.{name}.routes")
        app.blueprint(module.bp)
    if settings.sandbox_enabled:
        from server.wechat.sandbox import blueprints

        for sandbox_bp in blueprints():
            app.blueprint(sandbox_bp)
    return app


_startup_hooks: list[Any] = []
_shutdown_hooks: list[Any] = []


def on_startup(fn: Any) -> Any:
    """Domains register per-worker start-up work here (warm caches, rebuild indexes)."""
    _startup_hooks.append(fn)
    return fn


def on_shutdown(fn: Any) -> Any:
    _shutdown_hooks.append(fn)
    return fn


def app_factory() -> Sanic:
    """Used by each Sanic worker process; reads the settings from the environment."""
    return create_app(Settings())
