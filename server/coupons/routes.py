"""Coupon API: operators' templates and campaigns, the coupon centre, members' coupons and live
codes, clerks' write-offs, and the counter's scanner page at /staff/scan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from redis.exceptions import RedisError
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, html
from sanic_ext import openapi

from server.coupons import (
    baseline,
    claims,
    codes,
    issuance,
    stats,
    templates,
    wallet,
    write_offs,
)
from server.coupons import schemas as s
from server.infra.auth import authenticated, bearer
from server.infra.errors import AppError, NotFound, Unavailable
from server.infra.http import body, error_answer, query, respond, returns
from server.orders.idempotency import run_once

api = Blueprint("coupons", url_prefix="/api/v1")
CAMPAIGN_ROLES = ("admin", "marketing")  # who may make coupons; any operator may read them
page_bp = Blueprint("coupons_pages")
SCAN_PAGE = Path(__file__).parent / "static" / "scan.html"

CODE_RULE = "30/minute"  # per member: the page refreshes its code every ~45 s
WRITE_OFF_RULE = "60/minute"  # per clerk: a busy till, but no guessing of typed digits


def _revoke_minutes(request: Request) -> int:
    return int(request.app.ctx.settings.write_off_revoke_minutes)


# -- operators -----------------------------------------------------------------------------


@api.post("/admin/coupon-templates")
@authenticated("operator", roles=CAMPAIGN_ROLES)
@body(s.TemplateIn)
@returns(s.TemplateOut, 201)
async def create_template(request: Request, payload: s.TemplateIn) -> HTTPResponse:
    """Create a coupon template (stock, limit, validity, channel, stores)."""
    t = await templates.create_template(payload.model_dump())
    return respond(templates.template_out(t, t.total), status=201)


@api.get("/admin/coupon-templates")
@authenticated("operator")
@returns(s.TemplateListOut)
async def list_templates(request: Request) -> HTTPResponse:
    """Templates, newest first (the latest 200)."""
    scripts = request.app.ctx.scripts
    items = [await templates.template_view(scripts, t) for t in await templates.list_templates()]
    return respond({"items": items})


@api.get("/admin/coupon-templates/<template_id:int>")
@authenticated("operator")
@returns(s.TemplateOut)
async def get_template(request: Request, template_id: int) -> HTTPResponse:
    t = await templates.get_template(template_id)
    return respond(await templates.template_view(request.app.ctx.scripts, t))


@api.patch("/admin/coupon-templates/<template_id:int>")
@authenticated("operator", roles=CAMPAIGN_ROLES)
@body(s.TemplatePatch)
@returns(s.TemplateOut)
async def patch_template(
    request: Request, template_id: int, payload: s.TemplatePatch
) -> HTTPResponse:
    """Pause or resume a template, hide it from the centre, end its claim window."""
    t = await templates.update_template(template_id, payload.model_dump(exclude_unset=True))
    return respond(await templates.template_view(request.app.ctx.scripts, t))


@api.get("/admin/coupon-templates/<template_id:int>/stats")
@authenticated("operator")
@returns(s.CouponStatsOut)
async def template_stats(request: Request, template_id: int) -> HTTPResponse:
    """Issued, claimed, used online, written off in store, write-off rate, by store."""
    return respond(await stats.stats(template_id))


@api.post("/admin/coupon-issuances")
@authenticated("operator", roles=CAMPAIGN_ROLES)
@openapi.parameter("Idempotency-Key", str, location="header")
@body(s.IssuanceIn)
@returns(s.IssuanceOut, 202)
async def create_issuance(request: Request, payload: s.IssuanceIn) -> HTTPResponse:
    """Send a template to a list of members in the background; poll the returned id. Send an
    Idempotency-Key: a retried POST gets the first issuance, never a second one."""
    operator = request.ctx.principal.subject

    async def work() -> tuple[int, dict[str, Any]]:
        segment = payload.audience_segment_id
        i = await issuance.create_issuance(
            payload.template_id, payload.member_ids, operator, segment_id=segment
        )
        await request.app.ctx.jobs.enqueue_job("issue_coupons", i.id, _job_id=f"cp-issuance:{i.id}")
        return 202, issuance.issuance_out(i)

    key = request.headers.get("idempotency-key")
    status, answer = await run_once(
        f"operator:{operator}:POST /admin/coupon-issuances", key, payload.model_dump(), work
    )
    return respond(answer, status=status)


@api.post("/admin/coupon-issuances/<issuance_id:int>/run")
@authenticated("operator", roles=CAMPAIGN_ROLES)
@returns(s.IssuanceOut, 202)
async def rerun_issuance(request: Request, issuance_id: int) -> HTTPResponse:
    """Run an issuance again (after a crash or after adding stock); it resumes where it
    stopped and never gives a member a second coupon."""
    i = await issuance.get_issuance(issuance_id)
    await request.app.ctx.jobs.enqueue_job(
        "issue_coupons", i.id, _job_id=f"cp-issuance:{i.id}:{i.position}:{i.updated_at.timestamp()}"
    )
    return respond(issuance.issuance_out(i), status=202)


@api.get("/admin/coupon-issuances/<issuance_id:int>")
@authenticated("operator")
@returns(s.IssuanceOut)
async def get_issuance(request: Request, issuance_id: int) -> HTTPResponse:
    return respond(issuance.issuance_out(await issuance.get_issuance(issuance_id)))


# -- members -------------------------------------------------------------------------------


@api.get("/coupon-center")
@authenticated("member")
@returns(s.CenterOut)
async def coupon_center(request: Request) -> HTTPResponse:
    """What this member can claim now, with remaining stock and why not."""
    items = await claims.center(request.app.ctx.scripts, request.ctx.principal.subject)
    return respond({"items": items})


@api.post("/coupon-center/<template_id:int>/claim")
@openapi.secured("BearerAuth")
@openapi.parameter("Idempotency-Key", str, location="header")
@returns(s.ClaimOut, 201)
@returns(s.ClaimOut, 200)
async def claim(request: Request, template_id: int) -> HTTPResponse:
    """Claim one coupon from the centre.

    201 with the coupon (in your coupons at once); 200 with the same coupon for a retry
    with the same Idempotency-Key (`replayed: true`); 409 COUPON_SOLD_OUT, LIMIT_REACHED,
    CLAIM_NOT_STARTED, CLAIM_ENDED, CLAIM_NOT_FOR_YOU or CLAIM_NOT_AVAILABLE (paused,
    hidden from the centre, or given only by another scenario); 429 when you send more
    than 20 a second; 400 IDEMPOTENCY_KEY_INVALID for a key over 128 characters.

    A hot path, written like the flash-sale grab: the token answered by this worker's
    RevocationWatch, one Redis script, one grouped INSERT, errors rendered here."""
    app = request.app
    principal = await app.ctx.revocations.verify(app.ctx.settings, bearer(request), "member")
    try:
        got = await claims.claim(
            app.ctx.scripts,
            int(principal["sub"]),
            template_id,
            request.headers.get("idempotency-key", ""),
        )
    except RedisError:
        return error_answer(request, Unavailable("coupons cannot be reached now; try again"))
    except AppError as exc:
        return error_answer(request, exc)
    body = {"coupon": got.coupon, "replayed": got.replayed}
    return HTTPResponse(
        orjson.dumps(body), status=200 if got.replayed else 201, content_type="application/json"
    )


@api.post("/_bench/coupon-center/<template_id:int>/pg-claim")
@openapi.exclude()
async def pg_baseline_claim(request: Request, template_id: int) -> HTTPResponse:
    """The PostgreSQL-guarded claim `haodian bench coupons` compares against (baseline.py).
    Mounted only with HAODIAN_BENCH_ROUTES=1; a 404 otherwise."""
    app = request.app
    if not app.ctx.settings.bench_routes:
        raise NotFound(f"no such route: POST {request.path}")
    principal = await app.ctx.revocations.verify(app.ctx.settings, bearer(request), "member")
    try:
        coupon_id = await baseline.pg_claim(template_id, int(principal["sub"]))
    except AppError as exc:
        return error_answer(request, exc)
    return HTTPResponse(
        b'{"coupon_id":%d}' % coupon_id, status=201, content_type="application/json"
    )


@api.get("/me/coupons")
@authenticated("member")
@query(s.MyCouponsQuery)
@returns(s.CouponsOut)
async def my_coupons(request: Request, params: s.MyCouponsQuery) -> HTTPResponse:
    """The member's coupons: unused, locked (held by an unpaid order), used, expired."""
    items = await wallet.my_coupons(request.ctx.principal.subject, params.status)
    return respond({"items": items})


@api.get("/me/coupons/<coupon_id:int>/code")
@authenticated("member")
@returns(s.CodeOut)
async def coupon_code(request: Request, coupon_id: int) -> HTTPResponse:
    """A live write-off code (QR text) and a 12-digit fallback, both valid 60 s."""
    member_id = request.ctx.principal.subject
    await request.app.ctx.limits.hit(CODE_RULE, "cp:code", str(member_id), what="codes")
    out = await codes.issue_code(
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
    out = await write_offs.write_off(
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
    out = await write_offs.revoke_write_off(
        request.ctx.principal.subject, write_off_id, payload.reason, _revoke_minutes(request)
    )
    return respond({"write_off": out})


@api.get("/staff/write-offs")
@authenticated("staff")
@query(s.WriteOffsQuery)
@returns(s.WriteOffListOut)
async def list_write_offs(request: Request, params: s.WriteOffsQuery) -> HTTPResponse:
    """The day's write-offs at the clerk's store(s) (day in Asia/Shanghai)."""
    out = await write_offs.list_write_offs(
        request.ctx.principal.subject, params.date, params.store_id
    )
    return respond(out)


# -- the counter's scanner page ------------------------------------------------------------


@page_bp.get("/staff/scan")
@openapi.response(200, {"text/html": str}, "the clerk's scanner page")
async def scan_page(request: Request) -> HTTPResponse:
    """The clerk's scanner page (plain HTML + JS, no build step)."""
    return html(
        SCAN_PAGE.read_text(encoding="utf-8"),
        headers={"Cache-Control": "no-cache", "X-Frame-Options": "DENY"},
    )


bp = Blueprint.group(api, page_bp)
