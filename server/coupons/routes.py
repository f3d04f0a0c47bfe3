"""Coupon API: operators' templates and campaigns, the coupon centre, members' coupons and live
codes, clerks' write-offs, and the counter's scanner page at /staff/scan."""

from __future__ import annotations

from pathlib import Path

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, html

from server.coupons import schemas as s
from server.coupons import service
from server.infra.auth import authenticated
from server.infra.http import body, query, respond, returns

api = Blueprint("coupons", url_prefix="/api/v1")
page_bp = Blueprint("coupons_pages")
SCAN_PAGE = Path(__file__).parent / "static" / "scan.html"

CLAIM_RULE = "20/second"  # per member: a tap-happy shopper, not a script
CODE_RULE = "30/minute"  # per member: the page refreshes its code every ~45 s
WRITE_OFF_RULE = "60/minute"  # per clerk: a busy till, but no guessing of typed digits


def _revoke_minutes(request: Request) -> int:
    return int(request.app.ctx.settings.write_off_revoke_minutes)


# -- operators -----------------------------------------------------------------------------


@api.post("/admin/coupon-templates")
@authenticated("operator")
@body(s.TemplateIn)
@returns(s.TemplateOut, 201)
async def create_template(request: Request, payload: s.TemplateIn) -> HTTPResponse:
    """Create a coupon template (stock, limit, validity, channel, stores)."""
    t = await service.create_template(payload.model_dump())
    return respond(service.template_out(t), status=201)


@api.get("/admin/coupon-templates")
@authenticated("operator")
@returns(s.TemplateListOut)
async def list_templates(request: Request) -> HTTPResponse:
    """Templates, newest first (the latest 200)."""
    return respond({"items": [service.template_out(t) for t in await service.list_templates()]})


@api.get("/admin/coupon-templates/<template_id:int>")
@authenticated("operator")
@returns(s.TemplateOut)
async def get_template(request: Request, template_id: int) -> HTTPResponse:
    return respond(service.template_out(await service.get_template(template_id)))


@api.patch("/admin/coupon-templates/<template_id:int>")
@authenticated("operator")
@body(s.TemplatePatch)
@returns(s.TemplateOut)
async def patch_template(
    request: Request, template_id: int, payload: s.TemplatePatch
) -> HTTPResponse:
    """Pause or resume a template, hide it from the centre, end its claim window."""
    t = await service.update_template(template_id, payload.model_dump())
    return respond(service.template_out(t))


@api.get("/admin/coupon-templates/<template_id:int>/stats")
@authenticated("operator")
@returns(s.StatsOut)
async def template_stats(request: Request, template_id: int) -> HTTPResponse:
    """Issued, claimed, used online, written off in store, write-off rate, by store."""
    return respond(await service.stats(template_id))


@api.post("/admin/coupon-issuances")
@authenticated("operator")
@body(s.IssuanceIn)
@returns(s.IssuanceOut, 202)
async def create_issuance(request: Request, payload: s.IssuanceIn) -> HTTPResponse:
    """Send a template to a list of members in the background; poll the returned id."""
    i = await service.create_issuance(
        payload.template_id,
        payload.member_ids,
        request.ctx.principal.subject,
        segment_id=payload.audience_segment_id,
    )
    await request.app.ctx.jobs.enqueue_job("issue_coupons", i.id, _job_id=f"cp-issuance:{i.id}")
    return respond(service.issuance_out(i), status=202)


@api.post("/admin/coupon-issuances/<issuance_id:int>/run")
@authenticated("operator")
@returns(s.IssuanceOut, 202)
async def rerun_issuance(request: Request, issuance_id: int) -> HTTPResponse:
    """Run an issuance again (after a crash or after adding stock); it resumes where it
    stopped and never gives a member a second coupon."""
    i = await service.get_issuance(issuance_id)
    await request.app.ctx.jobs.enqueue_job(
        "issue_coupons", i.id, _job_id=f"cp-issuance:{i.id}:{i.position}:{i.updated_at.timestamp()}"
    )
    return respond(service.issuance_out(i), status=202)


@api.get("/admin/coupon-issuances/<issuance_id:int>")
@authenticated("operator")
@returns(s.IssuanceOut)
async def get_issuance(request: Request, issuance_id: int) -> HTTPResponse:
    return respond(service.issuance_out(await service.get_issuance(issuance_id)))


# -- members -------------------------------------------------------------------------------


@api.get("/coupon-center")
@authenticated("member")
@returns(s.CenterOut)
async def coupon_center(request: Request) -> HTTPResponse:
    """What this member can claim now, with remaining stock and why not."""
    items = await service.center(request.app.ctx.scripts, request.ctx.principal.subject)
    return respond({"items": items})


@api.post("/coupon-center/<template_id:int>/claim")
@authenticated("member")
@returns(s.ClaimOut, 201)
async def claim(request: Request, template_id: int) -> HTTPResponse:
    """Claim one coupon. Send an Idempotency-Key: a retry gets the same coupon."""
    member_id = request.ctx.principal.subject
    await request.app.ctx.limits.hit(CLAIM_RULE, "cp:claim", str(member_id), what="claims")
    coupon, t, replayed = await service.claim(
        request.app.ctx.scripts,
        member_id,
        template_id,
        request.headers.get("idempotency-key", ""),
    )
    return respond(
        {"coupon": service.coupon_out(coupon, t), "replayed": replayed},
        status=200 if replayed else 201,
    )


@api.get("/me/coupons")
@authenticated("member")
@query(s.MyCouponsQuery)
@returns(s.CouponsOut)
async def my_coupons(request: Request, params: s.MyCouponsQuery) -> HTTPResponse:
    """The member's coupons: unused, locked (held by an unpaid order), used, expired."""
    items = await service.my_coupons(request.ctx.principal.subject, params.status)
    return respond({"items": items})


@api.get("/me/coupons/<coupon_id:int>/code")
@authenticated("member")
@returns(s.CodeOut)
async def coupon_code(request: Request, coupon_id: int) -> HTTPResponse:
    """A live write-off code (QR text) and a 12-digit fallback, both valid 60 s."""
    member_id = request.ctx.principal.subject
    await request.app.ctx.limits.hit(CODE_RULE, "cp:code", str(member_id), what="codes")
    out = await service.issue_code(
        request.app.ctx.redis, request.app.ctx.settings.secret, member_id, coupon_id
    )
    return respond(out, headers={"Cache-Control": "no-store"})


# -- staff ---------------------------------------------------------------------------------


@api.post("/staff/write-offs")
@authenticated("staff")
@body(s.WriteOffIn)
@returns(s.WriteOffWrap, 201)
async def write_off(request: Request, payload: s.WriteOffIn) -> HTTPResponse:
    """Write off a shopper's coupon from its live code (or the 12 digits)."""
    staff_id = request.ctx.principal.subject
    await request.app.ctx.limits.hit(WRITE_OFF_RULE, "cp:writeoff", str(staff_id), what="scans")
    out = await service.write_off(
        request.app.ctx.redis,
        request.app.ctx.settings.secret,
        request.ctx.principal.subject,
        payload.code,
        payload.store_id,
    )
    return respond({"write_off": out}, status=201)


@api.post("/staff/write-offs/<write_off_id:int>/revoke")
@authenticated("staff")
@body(s.RevokeIn)
@returns(s.WriteOffWrap)
async def revoke(request: Request, write_off_id: int, payload: s.RevokeIn) -> HTTPResponse:
    """A store manager undoes a write-off made by mistake, within the configured window."""
    out = await service.revoke_write_off(
        request.ctx.principal.subject, write_off_id, payload.reason, _revoke_minutes(request)
    )
    return respond({"write_off": out})


@api.get("/staff/write-offs")
@authenticated("staff")
@query(s.WriteOffsQuery)
@returns(s.WriteOffListOut)
async def list_write_offs(request: Request, params: s.WriteOffsQuery) -> HTTPResponse:
    """The day's write-offs at the clerk's store(s) (day in Asia/Shanghai)."""
    out = await service.list_write_offs(request.ctx.principal.subject, params.date, params.store_id)
    return respond(out)


# -- the counter's scanner page ------------------------------------------------------------


@page_bp.get("/staff/scan")
async def scan_page(request: Request) -> HTTPResponse:
    """The clerk's scanner page (plain HTML + JS, no build step)."""
    return html(
        SCAN_PAGE.read_text(encoding="utf-8"),
        headers={"Cache-Control": "no-cache", "X-Frame-Options": "DENY"},
    )


bp = Blueprint.group(api, page_bp)
