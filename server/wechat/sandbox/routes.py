"""The local WeChat sandbox, mounted under /_sandbox/wechat (demo mode or HAODIAN_SANDBOX=1)."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from server.infra.http import respond

bp = Blueprint("wechat_sandbox", url_prefix="/_sandbox/wechat")


@bp.get("/apps")
async def list_apps(request: Request) -> HTTPResponse:
    """The configured appids, the default first."""
    return respond({"items": [a.appid for a in request.app.ctx.settings.apps]})
