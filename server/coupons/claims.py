"""The coupon centre: what a member may claim now, and the claim itself.

A claim is one Redis script (`lua/claim.lua`: limit, rate, replay and the unit number, see
`stock`) and one row. The row is written with the rows of every other claim of that moment
in one INSERT (`infra.batching.GroupWriter`), before the 201: a coupon answered is a coupon
in the database, whatever Redis forgets afterwards. The insert takes nothing from a shared
row; the database refuses a unit above the total, a unit another coupon holds, or a member's
n-th claim twice, and a refused row is looked into (a replay, a unit Redis handed out twice
after a re-warm, a member Redis under-counted) before the member gets an answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise import connections
from tortoise.functions import Count

from server.coupons import stock
from server.coupons.errors import LimitReached, SoldOut
from server.coupons.models import Coupon, CouponStatus, CouponTemplate
from server.coupons.templates import (
    audience,
    cached_template,
    claim_window_reason,
    member_tier,
    validity,
    value_text,
)
from server.coupons.wallet import coupon_out, template_part
from server.infra.batching import GroupWriter
from server.infra.clock import iso_local, utcnow
from server.infra.db import rows_source
from server.infra.errors import BadRequest, Conflict, RateLimited, Unavailable
from server.infra.models import IDEMPOTENCY_KEY_MAX

CLAIM_RPS = 20  # claims a member may send a second, per template: a tap-happy shopper

_REFUSALS = {
    "NOT_STARTED": "claiming this coupon has not started yet",
    "ENDED": "claiming this coupon has ended",
    "NOT_FOR_YOU": "this coupon is for other members",
    "NOT_AVAILABLE": "this coupon is not offered",
}


@dataclass(slots=True)
class ClaimRow:
    template_id: int
    member_id: int
    claim_seq: int
    unit: int
    valid_from: datetime
    valid_until: datetime
    at: datetime
    request_key: str  # "" = none


_COLUMNS = [
    ("template_id", "bigint"),
    ("member_id", "bigint"),
    ("claim_seq", "int"),
    ("unit", "int"),
    ("valid_from", "timestamptz"),
    ("valid_until", "timestamptz"),
    ("at", "timestamptz"),
    ("request_key", "text"),
]


_INSERT = (
    "INSERT INTO coupon (template_id, member_id, claim_seq, unit, valid_from, valid_until,"
    " request_key, status, created_at, updated_at)"
    " SELECT r.template_id, r.member_id, r.claim_seq, r.unit, r.valid_from, r.valid_until,"
    " NULLIF(r.request_key, ''), 'unused', r.at, r.at FROM {src}"
    " JOIN coupon_template t ON t.id = r.template_id"
    " AND r.unit <= t.total AND r.claim_seq <= t.per_member_limit"
    " WHERE true ON CONFLICT DO NOTHING"
    " RETURNING id, template_id, member_id, claim_seq, unit"
)


async def write_claims(rows: list[ClaimRow]) -> list[int | None]:
    """One INSERT for a batch of claims; each row's coupon id, or None where the database
    refused it (a conflict, a unit above the total, a claim above the limit)."""
    conn = connections.get("default")
    src, params = rows_source(
        conn,
        _COLUMNS,
        [
            (
                r.template_id,
                r.member_id,
                r.claim_seq,
                r.unit,
                r.valid_from,
                r.valid_until,
                r.at,
                r.request_key,
            )
            for r in rows
        ],
    )
    sql = _INSERT.format(src=src)
    if conn.capabilities.dialect == "postgres":
        # asyncpg itself: its records as they come, no dicts made of them (the hot path)
        async with conn.acquire_connection() as raw:
            got = [tuple(g) for g in await raw.fetch(sql, *params)]
    else:
        got = [tuple(g.values()) for g in await conn.execute_query_dict(sql, params)]
    ids = {(g[1], g[2], g[3], g[4]): g[0] for g in got}
    return [ids.get((r.template_id, r.member_id, r.claim_seq, r.unit)) for r in rows]


_writer: GroupWriter[ClaimRow, int | None] = GroupWriter(write_claims, max_in_flight=1)


async def _refusal(
    t: CouponTemplate, now: datetime, tier: str | None, member_id: int
) -> str | None:
    """Why this member may not claim the template now (None: they may): the window, the
    tiers, then the segment (a set lookup, only for a template limited to one)."""
    reason = claim_window_reason(t, now, tier)
    if reason is None and t.audience_segment_id:
        if not await audience().contains(t.audience_segment_id, member_id):
            reason = "NOT_FOR_YOU"
    return reason


@dataclass(slots=True)
class Claimed:
    coupon: dict[str, Any]  # as `wallet.coupon_out` shows it
    replayed: bool


async def claim(scripts: Any, member_id: int, template_id: int, request_key: str = "") -> Claimed:
    """Claim one coupon from the centre; a replayed request key gets the first coupon.

    A disabled member's tokens are revoked by identity, so the member row is read only when
    the template is limited to some tiers."""
    t = await cached_template(template_id)
    now = utcnow()
    tier = await member_tier(member_id) if t.audience_tiers else None
    reason = await _refusal(t, now, tier, member_id)
    req = request_key
    if len(req) > IDEMPOTENCY_KEY_MAX:
        raise BadRequest(
            f"Idempotency-Key must be at most {IDEMPOTENCY_KEY_MAX} characters",
            code="IDEMPOTENCY_KEY_INVALID",
        )
    if reason:
        # A retry of a claim that got its coupon (its answer lost on the way) is answered with
        # that coupon, even once the template is paused or its window has closed.
        first = await claimed_with(t.id, member_id, req) if req else None
        if first is not None:
            return Claimed(coupon_out(first, t), True)
        raise Conflict(_REFUSALS[reason], code=f"CLAIM_{reason}")
    keys, fixed = stock.claim_head(t, CLAIM_RPS)
    valid_from, valid_until = validity(t, now)
    for _ in range(4):
        res = await scripts.fast(stock.CLAIM, keys, [member_id, req], fixed)
        if res[:3] == b"OK|" or res[:2] == b"R|":
            word, answer = res.split(b"|")
            seq_s, unit_s = answer.split(b":")
            seq, unit, replayed = int(seq_s), int(unit_s), word == b"R"
        elif res == b"COLD":
            await stock.warm(scripts, t.id)
            continue
        elif res == b"SOLD_OUT":
            raise SoldOut("this coupon is all gone")
        elif res[:6] == b"LIMIT|":
            raise LimitReached(
                f"you already hold {int(res[6:])} of this coupon (limit {t.per_member_limit})"
            )
        elif res == b"RATE":
            raise RateLimited(
                "you sent too many claims; try again in a second", headers={"Retry-After": "1"}
            )
        else:
            raise Unavailable(f"unexpected answer from the claim script: {res!r}")
        row = ClaimRow(t.id, member_id, seq, unit, valid_from, valid_until, now, req)
        coupon_id = await _writer.submit(row)
        if coupon_id is not None:
            return Claimed(_written(coupon_id, row, t), replayed)
        settled = await _refused(scripts, t, row, req, replayed)
        if settled is not None:
            return Claimed(coupon_out(settled, t), True)
    raise Unavailable("coupon stock is being reloaded; try again", code="TRY_AGAIN")


_parts: dict[int, tuple[CouponTemplate, dict[str, Any]]] = {}


def _written(coupon_id: int, r: ClaimRow, t: CouponTemplate) -> dict[str, Any]:
    """`coupon_out` of the row just written, without making a model of it (the hot path)."""
    part = _parts.get(t.id)
    if part is None or part[0] is not t:  # the cached template was reloaded
        if len(_parts) > 10_000:
            _parts.clear()
        part = _parts[t.id] = (t, template_part(t))
    return {
        "id": coupon_id,
        **part[1],
        "status": CouponStatus.UNUSED.value,
        "valid_from": iso_local(r.valid_from),
        "valid_until": iso_local(r.valid_until),
        "used_at": None,
        "used_channel": None,
    }


async def _refused(
    scripts: Any, t: CouponTemplate, r: ClaimRow, req: str, replayed: bool
) -> Coupon | None:
    """Why the database did not keep a claim. Returns the coupon to answer with (a replay
    whose first request wrote it), None to take again, or raises."""
    mine = await Coupon.get_or_none(template_id=t.id, member_id=r.member_id, claim_seq=r.claim_seq)
    if mine is not None and (replayed or mine.unit == r.unit):
        return mine
    if mine is None:
        if await Coupon.exists(template_id=t.id, unit=r.unit):
            # Redis handed this unit out twice (it was re-warmed while a claim was in flight):
            # the unit is someone's, the member's count goes back, and we take again.
            await stock.give_back_claim(scripts, t.id, r.member_id, req, None)
            return None
        await stock.give_back_claim(scripts, t.id, r.member_id, req, None)
        raise SoldOut("this coupon is all gone")  # unit above the total: the template shrank
    # The member holds more claims than Redis counted (coupons moved in by a merge, or a
    # re-warm that raced a claim): the database's number wins, then decide once more.
    await stock.give_back_claim(scripts, t.id, r.member_id, req, r.unit)
    held = await member_claims(t.id, r.member_id)
    await stock.set_member_claims(scripts, t.id, r.member_id, held)
    if held >= t.per_member_limit:
        raise LimitReached(f"you already hold {held} of this coupon (limit {t.per_member_limit})")
    return None


async def claimed_with(template_id: int, member_id: int, request_key: str) -> Coupon | None:
    """The member's coupon of this template claimed with this Idempotency-Key, if any."""
    return await Coupon.get_or_none(
        template_id=template_id,
        member_id=member_id,
        claim_seq__not_isnull=True,
        request_key=request_key,
    )


async def member_claims(template_id: int, member_id: int) -> int:
    """The member's highest claim number of the template (their next claim is one above)."""
    top = (
        await Coupon.filter(
            template_id=template_id, member_id=member_id, claim_seq__not_isnull=True
        )
        .order_by("-claim_seq")
        .first()
        .values_list("claim_seq", flat=True)
    )
    return int(top or 0)


async def center(scripts: Any, member_id: int) -> list[dict[str, Any]]:
    now = utcnow()
    tier = await member_tier(member_id)
    templates = await CouponTemplate.filter(active=True, in_center=True).order_by("-id").limit(200)
    mine = dict(
        await Coupon.filter(
            member_id=member_id,
            claim_seq__not_isnull=True,
            template_id__in=[t.id for t in templates],
        )
        .group_by("template_id")
        .annotate(n=Count("id"))
        .values_list("template_id", "n")
    )
    out = []
    for t in templates:
        reason = await _refusal(t, now, tier, member_id)
        if reason in ("ENDED", "NOT_FOR_YOU", "NOT_AVAILABLE"):
            continue
        remaining = await stock.units_left(scripts, t)
        have = int(mine.get(t.id, 0))
        if reason is None and remaining <= 0:
            reason = "SOLD_OUT"
        if reason is None and have >= t.per_member_limit:
            reason = "LIMIT_REACHED"
        out.append(
            {
                "template_id": t.id,
                "name": t.name,
                "value_text": value_text(t),
                "remaining": remaining,
                "claimed_by_me": have,
                "per_member_limit": t.per_member_limit,
                "claimable": reason is None,
                "reason": reason,
            }
        )
    return out
