"""Campaign issuance: one template to a member list or a segment, in big batches.

An issuance keeps its members in `coupon_issuance_member` and walks them in id order. One
batch is one transaction under the issuance row's lock: read the next members (those who
exist and hold no coupon of this issuance yet), take that many units from Redis by the
request `iss:<issuance>:<resume point>` (a batch redone after a crash gets the same units),
insert the coupons with one INSERT ... SELECT, and move the resume point. A `kill -9`
anywhere leaves either the whole batch and its resume point or neither, and unique
(issuance, member) makes a second coupon for one member impossible even across runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from server.coupons import stock
from server.coupons.models import CouponIssuance, CouponTemplate, IssuanceMember
from server.coupons.templates import audience, get_template, validity
from server.infra.clock import utcnow
from server.infra.db import dialect_sql, rows_source
from server.infra.errors import Conflict, NotFound

# Members per batch: PostgreSQL takes a batch as a few array parameters; SQLite (the demo)
# binds every value, under its 32,766-parameter limit.
ISSUE_BATCH = 10_000
SQLITE_BATCH = 2_000
OUT_OF_STOCK = "the template ran out of stock; add stock and run it again"


async def create_issuance(
    template_id: int, member_ids: list[int], operator_id: int | None, segment_id: int | None = None
) -> CouponIssuance:
    """A campaign to a member list, or to a segment's members as they are now."""
    t = await get_template(template_id)
    if t.granted_only:
        raise Conflict(
            "this template's coupons are granted by another scenario (e.g. group-buy vouchers)",
            code="TEMPLATE_GRANTED_ONLY",
        )
    if not t.active:
        raise Conflict("this template is paused; resume it to send it", code="TEMPLATE_PAUSED")
    if not t.valid_days and t.valid_until and t.valid_until <= utcnow():
        raise Conflict(
            "this template's coupons have all expired (its valid_until has passed)",
            code="TEMPLATE_EXPIRED",
        )
    if segment_id is not None:
        member_ids = await audience().members(segment_id)
    members = sorted(set(member_ids))  # a member listed twice gets one coupon
    async with in_transaction() as conn:
        i = await CouponIssuance.create(
            template_id=t.id, total=len(members), operator_id=operator_id, using_db=conn
        )
        step = _batch_size(conn)
        for at in range(0, len(members), step):
            src, params = rows_source(
                conn, [("member_id", "bigint")], [(m,) for m in members[at : at + step]]
            )
            await conn.execute_query(
                "INSERT INTO coupon_issuance_member (issuance_id, member_id)"
                f" SELECT {int(i.id)}, r.member_id FROM {src}",
                params,
            )
    if conn.capabilities.dialect == "postgres" and len(members) > ISSUE_BATCH:
        # A list of a million rows the planner has not seen: without fresh statistics it reads
        # the whole remaining list and sorts it for every batch, instead of walking the index.
        await connections.get("default").execute_script("ANALYZE coupon_issuance_member")
    return i


def _batch_size(conn: Any) -> int:
    return SQLITE_BATCH if conn.capabilities.dialect == "sqlite" else ISSUE_BATCH


def issuance_out(i: CouponIssuance) -> dict[str, Any]:
    return {
        "id": i.id,
        "template_id": i.template_id,  # type: ignore[attr-defined]
        "status": i.status,
        "total": i.total,
        "position": i.position,
        "issued": i.issued,
        "skipped": i.skipped,
        "progress": round(i.position / i.total, 4) if i.total else 1.0,
        "message": i.message,
    }


async def get_issuance(issuance_id: int) -> CouponIssuance:
    i = await CouponIssuance.get_or_none(id=issuance_id)
    if i is None:
        raise NotFound(f"no issuance {issuance_id}", code="ISSUANCE_NOT_FOUND")
    return i


async def issuance_members(issuance_id: int) -> list[int]:
    return list(
        await IssuanceMember.filter(issuance_id=issuance_id)
        .order_by("member_id")
        .values_list("member_id", flat=True)
    )


@dataclass
class Batch:
    done: int  # members the resume point moved past
    issued: int
    sold_out: bool


async def run_issuance(
    scripts: Any,
    issuance_id: int,
    batch: int | None = None,
    max_batches: int | None = None,
    progress: Callable[[Batch], None] | None = None,
) -> CouponIssuance:
    """Issue from the resume point on, batch by batch, until done or out of stock; safe to
    run again after a crash, or while another run of it is going (they take turns)."""
    i = await get_issuance(issuance_id)
    if i.status == "done":
        return i
    t = await get_template(i.template_id)  # type: ignore[attr-defined]
    await CouponIssuance.filter(id=i.id).update(status="running", message="")
    size = batch or _batch_size(connections.get("default"))
    batches = 0
    while max_batches is None or batches < max_batches:
        batches += 1
        try:
            b = await _issue_batch(scripts, i.id, t, size)
        except IntegrityError:
            # A unit Redis handed out twice (it was re-warmed while a claim was in flight):
            # the batch rolled back; reload the units from the database and go again.
            await stock.forget(scripts, t.id)
            continue
        if b is None:
            await CouponIssuance.filter(id=i.id).update(status="done", finished_at=utcnow())
            break
        if progress is not None:
            progress(b)
        if b.sold_out:
            break
    return await get_issuance(i.id)


async def _issue_batch(
    scripts: Any, issuance_id: int, t: CouponTemplate, size: int
) -> Batch | None:
    """One batch in one transaction; None when no member is left."""
    now = utcnow()
    valid_from, valid_until = validity(t, now)
    async with in_transaction() as conn:
        i = await CouponIssuance.filter(id=issuance_id).select_for_update().using_db(conn).get()
        if i.status == "done":
            return None
        after = i.after_member_id
        rows = await conn.execute_query_dict(
            dialect_sql(
                conn,
                # The coupon a member already has, looked up per member by both keys: a join
                # here let PostgreSQL, its statistics taken while the tables were empty, scan
                # every coupon of the issuance for each member (each batch slower than the last).
                "SELECT im.member_id, m.id AS known, (SELECT c.id FROM coupon c"
                " WHERE c.issuance_id = im.issuance_id AND c.member_id = im.member_id) AS has"
                " FROM coupon_issuance_member im"
                " LEFT JOIN member m ON m.id = im.member_id"
                " WHERE im.issuance_id = $1 AND im.member_id > $2"
                " ORDER BY im.member_id LIMIT $3",
            ),
            [i.id, after, size],
        )
        if not rows:
            return None
        todo = [r["member_id"] for r in rows if r["known"] is not None and r["has"] is None]
        request = f"iss:{i.id}:{after}"
        units = (await stock.take_units(scripts, t, len(todo), request)).all() if todo else []
        give = list(zip(todo, units, strict=False))
        if give:
            src, params = rows_source(conn, [("member_id", "bigint"), ("unit", "int")], give)
            await conn.execute_query(
                "INSERT INTO coupon (template_id, member_id, issuance_id, unit, valid_from,"
                " valid_until, status, created_at, updated_at)"
                f" SELECT {int(t.id)}, r.member_id, {int(i.id)}, r.unit,"
                f" {_at(conn, valid_from)}, {_at(conn, valid_until)}, 'unused',"
                f" {_at(conn, now)}, {_at(conn, now)} FROM {src}",
                params,
            )
        short = len(give) < len(todo)
        # Fewer units than members: the template ran out, or this batch replayed the units a
        # run killed mid-batch had taken for a smaller batch (then go on; the request is spent).
        sold_out = short and await stock.units_left(scripts, t) == 0
        if short:  # stop just before the first member left without one
            first_left = todo[len(give)]
            done = next(n for n, r in enumerate(rows) if r["member_id"] == first_left)
        else:
            done = len(rows)
        await (
            CouponIssuance.filter(id=i.id)
            .using_db(conn)
            .update(
                after_member_id=rows[done - 1]["member_id"] if done else after,
                position=i.position + done,
                issued=i.issued + len(give),
                skipped=i.skipped + done - len(give),
                status="stopped" if sold_out else "running",
                message=OUT_OF_STOCK if sold_out else "",
            )
        )
    await stock.put_back(scripts, t.id, [], request)  # committed: the request is spent
    return Batch(done=done, issued=len(give), sold_out=sold_out)


def _at(conn: Any, when: datetime) -> str:
    """A timestamp literal (our own clock's value, never input), so a batch's parameters
    stay the rows' arrays alone."""
    text = when.isoformat(" ")
    if conn.capabilities.dialect == "sqlite":
        return f"'{text}'"
    return f"TIMESTAMPTZ '{text}'"
