"""`haodian sandbox`: the WeChat sandbox as a server of its own (no database needed)."""

from __future__ import annotations

from sanic import Sanic

from server.infra.redis import ensure_redis_url, make_client
from server.settings import Settings


def sandbox_app() -> Sanic:
    from server.app import _error_response
    from server.wechat.sandbox import blueprints

    settings = Settings()
    app = Sanic("haodian_sandbox", configure_logging=False)
    app.ctx.settings = settings
    app.error_handler.add(Exception, _error_response)

    @app.before_server_start
    async def _start(app: Sanic) -> None:
        ensure_redis_url(settings)
        app.ctx.redis = app.ctx.sandbox_redis = make_client(settings.queue_redis_url)

    for bp in blueprints():
        app.blueprint(bp)
    return app


def run_sandbox(host: str, port: int) -> None:
    from sanic.worker.loader import AppLoader

    ensure_redis_url(Settings())
    loader = AppLoader(factory=sandbox_app)
    app = loader.load()
    app.prepare(host=host, port=port, single_process=True, motd=False, access_log=False)
    print(f"WeChat sandbox on http://{host}:{port}/_sandbox/wechat", flush=True)
    Sanic.serve(primary=app, app_loader=loader)
