"""Sign-in and accounts for the three audiences: members (WeChat), staff (clerks, store
managers) and operators (HQ). Each audience has its own token; one never opens another's
routes."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from server.identity import service
from server.identity.schemas import (
    IdOut,
    LoginOut,
    LogoutIn,
    MemberAdminOut,
    MemberOut,
    MePatch,
    OperatorOut,
    PasswordLogin,
    PhoneIn,
    PhoneOut,
    RefreshIn,
    StaffCreate,
    StaffMeOut,
    StaffOut,
    StaffPatch,
    TokenOut,
    WxLogin,
)
from server.infra import auth
from server.infra.auth import Audience
from server.infra.http import body, client_address, respond, returns
from server.infra.openapi import OkOut
from server.wechat.client import client_for

bp = Blueprint("identity", url_prefix="/api/v1")

LOGIN_RULE = "10/minute"  # per username
LOGIN_IP_RULE = "100/minute"  # per address: a store's clerks may share one NAT
MEMBER_LOGIN_IP_RULE = "600/minute"  # per address: a mall's Wi-Fi is one address
ADMIN_ROLES = ("admin",)
STAFF_ADMIN_ROLES = ("admin", "store_ops")


async def _password_limits(request: Request, kind: str, username: str) -> None:
    limits = request.app.ctx.limits
    await limits.hit(LOGIN_RULE, f"login:{kind}:user", username.lower(), what="sign-ins")
    await limits.hit(LOGIN_IP_RULE, f"login:{kind}:ip", client_address(request), what="sign-ins")


async def _logout(request: Request, payload: LogoutIn, audience: Audience) -> HTTPResponse:
    redis, settings = request.app.ctx.redis, request.app.ctx.settings
    principal = request.ctx.principal
    if payload.everywhere:
        await auth.revoke_all(redis, settings, audience, principal.subject)
    else:
        await auth.revoke_access(redis, principal.claims)
    if payload.refresh_token:
        await auth.revoke_refresh(redis, payload.refresh_token)
    return respond(OkOut())


# -- operators ------------------------------------------------------------------------------------


@bp.post("/admin/auth/login")
@body(PasswordLogin)
@returns(TokenOut)
async def operator_login(request: Request, payload: PasswordLogin) -> HTTPResponse:
    """Operator sign-in; 10 tries a minute per username, 100 per address."""
    await _password_limits(request, "operator", payload.username)
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


@bp.post("/admin/auth/logout")
@auth.authenticated("operator")
@body(LogoutIn)
@returns(OkOut)
async def operator_logout(request: Request, payload: LogoutIn) -> HTTPResponse:
    return await _logout(request, payload, "operator")


@bp.get("/admin/me")
@auth.authenticated("operator")
@returns(OperatorOut)
async def operator_me(request: Request) -> HTTPResponse:
    op = await service.get_operator(request.ctx.principal.subject)
    return respond(OperatorOut(id=op.id, username=op.username, roles=op.roles))


# -- members --------------------------------------------------------------------------------------


@bp.post("/auth/login")
@body(WxLogin)
@returns(LoginOut)
async def member_login(request: Request, payload: WxLogin) -> HTTPResponse:
    """Trade a wx.login() code for our tokens. The first login makes the member; a unionid
    already held by another member ties this app's identity to that member (merging a member
    made before the unionid was known)."""
    await request.app.ctx.limits.hit(
        MEMBER_LOGIN_IP_RULE,
        "login:member:ip",
        client_address(request),
        what="sign-ins",
    )
    ctx = request.app.ctx
    member, tokens, created = await service.login_member(
        client_for(ctx), ctx.redis, ctx.settings, payload.code, payload.appid
    )
    return respond({**tokens, "member": service.member_view(member), "created": created})


@bp.post("/auth/refresh")
@body(RefreshIn)
@returns(TokenOut)
async def member_refresh(request: Request, payload: RefreshIn) -> HTTPResponse:
    tokens = await auth.rotate_refresh(
        request.app.ctx.redis, request.app.ctx.settings, payload.refresh_token, "member"
    )
    return respond(tokens)


@bp.post("/auth/logout")
@auth.authenticated("member")
@body(LogoutIn)
@returns(OkOut)
async def member_logout(request: Request, payload: LogoutIn) -> HTTPResponse:
    """End this session (the access token and the given refresh token), or every session."""
    return await _logout(request, payload, "member")


@bp.post("/auth/phone")
@auth.authenticated("member")
@body(PhoneIn)
@returns(PhoneOut)
async def member_phone(request: Request, payload: PhoneIn) -> HTTPResponse:
    """Bind the phone number behind a getPhoneNumber code; it is answered masked only."""
    ctx = request.app.ctx
    principal = request.ctx.principal
    member = await service.bind_phone(
        client_for(ctx),
        ctx.settings,
        principal.subject,
        principal.claims.get("appid"),
        payload.code,
    )
    return respond({"phone": member.phone_masked})


@bp.get("/me")
@auth.authenticated("member")
@returns(MemberOut)
async def me(request: Request) -> HTTPResponse:
    member = await service.get_member(request.ctx.principal.subject)
    return respond(service.member_view(member))


@bp.route("/me", methods=["PATCH", "PUT"])  # PUT: the mini-program's wx.request has no PATCH
@auth.authenticated("member")
@body(MePatch)
@returns(MemberOut)
async def patch_me(request: Request, payload: MePatch) -> HTTPResponse:
    """Change nickname (1-32 characters, checked by WeChat moderation), avatar_url (https),
    birthday (at most once a year: it decides when the birthday pack comes), gender (0 unknown,
    1 male, 2 female). PUT takes the same partial body: WeChat's wx.request cannot send
    PATCH."""
    principal = request.ctx.principal
    member = await service.update_profile(
        client_for(request.app.ctx),
        principal.subject,
        principal.claims.get("appid"),
        payload.model_dump(exclude_unset=True),
    )
    return respond(service.member_view(member))


# -- staff ----------------------------------------------------------------------------------------


@bp.post("/staff/auth/login")
@body(PasswordLogin)
@returns(TokenOut)
async def staff_login(request: Request, payload: PasswordLogin) -> HTTPResponse:
    """Clerk / store manager sign-in; 10 tries a minute per username, 100 per address."""
    await _password_limits(request, "staff", payload.username)
    staff = await service.authenticate_staff(payload.username, payload.password)
    tokens = await auth.issue_tokens(
        request.app.ctx.redis, request.app.ctx.settings, "staff", staff.id, [staff.role.value]
    )
    return respond(tokens)


@bp.post("/staff/auth/refresh")
@body(RefreshIn)
@returns(TokenOut)
async def staff_refresh(request: Request, payload: RefreshIn) -> HTTPResponse:
    tokens = await auth.rotate_refresh(
        request.app.ctx.redis, request.app.ctx.settings, payload.refresh_token, "staff"
    )
    return respond(tokens)


@bp.post("/staff/auth/logout")
@auth.authenticated("staff")
@body(LogoutIn)
@returns(OkOut)
async def staff_logout(request: Request, payload: LogoutIn) -> HTTPResponse:
    return await _logout(request, payload, "staff")


@bp.get("/staff/me")
@auth.authenticated("staff")
@returns(StaffMeOut)
async def staff_me(request: Request) -> HTTPResponse:
    """Who I am and the stores I work at."""
    return respond(await service.staff_profile(request.ctx.principal.subject))


# -- operators manage staff and members -----------------------------------------------------------


@bp.post("/admin/staff")
@auth.authenticated("operator", roles=STAFF_ADMIN_ROLES)
@body(StaffCreate)
@returns(IdOut, status=201)
async def admin_create_staff(request: Request, payload: StaffCreate) -> HTTPResponse:
    """A clerk or store manager account bound to one or more stores."""
    staff = await service.create_staff(
        payload.username, payload.password, payload.role, payload.store_ids, payload.name
    )
    return respond({"id": staff.id}, status=201)


@bp.get("/admin/staff/<staff_id:int>")
@auth.authenticated("operator", roles=STAFF_ADMIN_ROLES)
@returns(StaffOut)
async def admin_get_staff(request: Request, staff_id: int) -> HTTPResponse:
    return respond(await service.staff_profile(staff_id, include_disabled=True))


@bp.patch("/admin/staff/<staff_id:int>")
@auth.authenticated("operator", roles=STAFF_ADMIN_ROLES)
@body(StaffPatch)
@returns(StaffOut)
async def admin_patch_staff(request: Request, staff_id: int, payload: StaffPatch) -> HTTPResponse:
    """Change stores, role, name, password; disable (its tokens stop working at once)."""
    ctx = request.app.ctx
    await service.update_staff(
        ctx.redis, ctx.settings, staff_id, payload.model_dump(exclude_unset=True)
    )
    return respond(await service.staff_profile(staff_id, include_disabled=True))


@bp.get("/admin/members/<member_id:int>")
@auth.authenticated("operator", roles=ADMIN_ROLES)
@returns(MemberAdminOut)
async def admin_get_member(request: Request, member_id: int) -> HTTPResponse:
    return respond(await service.member_admin_view(member_id))


@bp.post("/admin/members/<member_id:int>/disable")
@auth.authenticated("operator", roles=ADMIN_ROLES)
@returns(MemberAdminOut)
async def admin_disable_member(request: Request, member_id: int) -> HTTPResponse:
    """The member can no longer sign in; every token it holds stops working now."""
    ctx = request.app.ctx
    await service.set_member_disabled(ctx.redis, ctx.settings, member_id, True)
    return respond(await service.member_admin_view(member_id))


@bp.post("/admin/members/<member_id:int>/enable")
@auth.authenticated("operator", roles=ADMIN_ROLES)
@returns(MemberAdminOut)
async def admin_enable_member(request: Request, member_id: int) -> HTTPResponse:
    ctx = request.app.ctx
    await service.set_member_disabled(ctx.redis, ctx.settings, member_id, False)
    return respond(await service.member_admin_view(member_id))
