"""Sign-in for operators (admin audience)."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from server.identity import service
from server.identity.schemas import OperatorOut, PasswordLogin, RefreshIn, TokenOut
from server.infra import auth
from server.infra.http import body, respond, returns

bp = Blueprint("identity", url_prefix="/api/v1")

LOGIN_RULE = "10/minute"  # per username
LOGIN_IP_RULE = "100/minute"  # per address: a store's clerks may share one NAT


@bp.post("/admin/auth/login")
@body(PasswordLogin)
@returns(TokenOut)
async def operator_login(request: Request, payload: PasswordLogin) -> HTTPResponse:
    """Operator sign-in; 10 tries a minute per username, 100 per address."""
    limits = request.app.ctx.limits
    await limits.hit(LOGIN_RULE, "login:operator:user", payload.username.lower(), what="sign-ins")
    await limits.hit(
        LOGIN_IP_RULE, "login:operator:ip", request.remote_addr or request.ip, what="sign-ins"
    )
    op = await service.authenticate_operator(payload.username, payload.password)
    tokens = await auth.issue_tokens(
        request.app.ctx.redis, request.app.ctx.settings, "operator", op.id, op.roles
    )
    return respond(tokens)


@bp.post("/admin/auth/refresh")
@body(RefreshIn)
@returns(TokenOut)
async def operator_refresh(request: Request, payload: RefreshIn) -> HTTPResponse:
    tokens = await auth.rotate_refresh(
        request.app.ctx.redis, request.app.ctx.settings, payload.refresh_token, "operator"
    )
    return respond(tokens)


@bp.get("/admin/me")
@auth.authenticated("operator")
@returns(OperatorOut)
async def operator_me(request: Request) -> HTTPResponse:
    op = await service.get_operator(request.ctx.principal.subject)
    return respond(OperatorOut(id=op.id, username=op.username, roles=op.roles))
