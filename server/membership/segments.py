"""Tags and segments: operators' rules over what members did, RFM scores, and the audience
coupons target (`audience_segment_id`).

Everything is computed in set-based SQL — one statement per rule, never a loop over
members — so a segment of millions is a few statements. RFM (recency, frequency, monetary
over the last 12 months, each a 1-5 quintile score among members who bought) is refreshed
incrementally: only members with growth events since the last run (or events that left the
window since) are re-aggregated; the quintiles are then re-ranked in one UPDATE over the
aggregate table. Growth events are the source (what a member paid for, online and at the
till, less refunds), so RFM and tiers read the same facts.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter
from tortoise.transactions import in_transaction

from server.identity import merge
from server.infra.clock import utcnow
from server.infra.db import dialect_sql
from server.infra.errors import NotFound, ValidationFailed
from server.infra.models import MAX_ID, is_id
from server.membership.models import MemberRfm, MembershipSetting, Segment, SegmentMember

log = logging.getLogger("haodian.membership")

RFM_WINDOW = timedelta(days=365)
RFM_KEY = "rfm"
DIRTY_OVERLAP = timedelta(minutes=10)
PAID = ("paid", "completed")

# -- rules ----------------------------------------------------------------------------------------

Days = Annotated[int, Field(ge=1, le=3650)]
Score = Annotated[int, Field(ge=1, le=5)]


class BoughtCategory(BaseModel):
    type: Literal["bought_category"]
    category_id: int = Field(ge=1, le=MAX_ID)
    min_times: int = Field(ge=1, le=1000, description="orders with something of the category")
    days: Days


class Spent(BaseModel):
    type: Literal["spent"]
    min_fen: int = Field(ge=1, le=10**12)
    days: Days


class StoreRegular(BaseModel):
    type: Literal["store_regular"]
    store_id: int = Field(ge=1, le=MAX_ID)
    min_orders: int = Field(ge=1, le=1000, description="online orders and till sales there")
    days: Days


class TierIn(BaseModel):
    type: Literal["tier_in"]
    tiers: list[str] = Field(min_length=1, max_length=12)


class BirthdayMonth(BaseModel):
    type: Literal["birthday_month"]
    month: int = Field(ge=1, le=12)


class RfmCell(BaseModel):
    type: Literal["rfm"]
    r: list[Score] = Field(default_factory=list, description="empty: any")
    f: list[Score] = Field(default_factory=list)
    m: list[Score] = Field(default_factory=list)


Rule = Annotated[
    BoughtCategory | Spent | StoreRegular | TierIn | BirthdayMonth | RfmCell,
    Field(discriminator="type"),
]
RULE = TypeAdapter(Rule)


def _placeholders(start: int, n: int) -> str:
    return ", ".join(f"${i}" for i in range(start, start + n))


def rule_sql(rule: Any, now: datetime) -> tuple[str, list[Any]]:
    """The member ids a rule holds, as one SELECT (placeholders in order of use). Times are
    passed in UTC: the demo's SQLite compares them as the text Tortoise stored."""
    now = now.astimezone(UTC)
    if isinstance(rule, BoughtCategory):
        return (
            'SELECT o.member_id AS member_id FROM "order" o'
            " JOIN order_line l ON l.order_id = o.id"
            " JOIN sku s ON s.id = l.sku_id JOIN product p ON p.id = s.product_id"
            f" WHERE p.category_id = $1 AND o.status IN ('{PAID[0]}', '{PAID[1]}')"
            " AND o.paid_at > $2 GROUP BY o.member_id HAVING COUNT(DISTINCT o.id) >= $3",
            [rule.category_id, now - timedelta(days=rule.days), rule.min_times],
        )
    if isinstance(rule, Spent):
        return (
            "SELECT member_id FROM membership_growth WHERE at > $1"
            " GROUP BY member_id HAVING SUM(fen) >= $2",
            [now - timedelta(days=rule.days), rule.min_fen],
        )
    if isinstance(rule, StoreRegular):
        since = now - timedelta(days=rule.days)
        return (
            "SELECT member_id FROM ("
            f' SELECT member_id FROM "order" WHERE store_id = $1'
            f" AND status IN ('{PAID[0]}', '{PAID[1]}') AND paid_at > $2"
            " UNION ALL SELECT member_id FROM membership_pos_sale"
            " WHERE store_id = $3 AND created_at > $4"
            ") visits GROUP BY member_id HAVING COUNT(*) >= $5",
            [rule.store_id, since, rule.store_id, since, rule.min_orders],
        )
    if isinstance(rule, TierIn):
        return (
            "SELECT id AS member_id FROM member WHERE merged_into_id IS NULL"
            f" AND tier IN ({_placeholders(1, len(rule.tiers))})",
            list(rule.tiers),
        )
    if isinstance(rule, BirthdayMonth):
        return (
            "SELECT id AS member_id FROM member WHERE merged_into_id IS NULL"
            " AND birthday_md LIKE $1",
            [f"{rule.month:02d}%"],
        )
    if isinstance(rule, RfmCell):
        where, params = [], []
        for col in ("r", "f", "m"):
            scores = getattr(rule, col)
            if scores:
                where.append(f"{col} IN ({_placeholders(len(params) + 1, len(scores))})")
                params.extend(scores)
        return (
            "SELECT member_id FROM membership_rfm"
            + (" WHERE " + " AND ".join(where) if where else ""),
            params,
        )
    raise ValidationFailed("unknown rule", code="RULE_INVALID")


def parse_rule(data: dict[str, Any]) -> Any:
    try:
        return RULE.validate_python(data)
    except ValueError as exc:
        raise ValidationFailed(f"the rule is not valid: {exc}"[:300], code="RULE_INVALID") from None


# -- segments -------------------------------------------------------------------------------------


async def create_segment(operator_id: int | None, name: str, rule: dict[str, Any]) -> Segment:
    parsed = parse_rule(rule)
    segment = await Segment.create(name=name, rule=parsed.model_dump(), created_by=operator_id)
    await compute_segment(segment)
    return await Segment.get(id=segment.id)


async def get_segment(segment_id: int) -> Segment:
    segment = await Segment.get_or_none(id=segment_id) if is_id(segment_id) else None
    if segment is None:
        raise NotFound(f"no segment {segment_id}", code="SEGMENT_NOT_FOUND")
    return segment


async def list_segments(limit: int = 200) -> list[Segment]:
    return await Segment.all().order_by("-id").limit(limit)


async def compute_segment(segment: Segment, now: datetime | None = None) -> int:
    """Replace the segment's members with what its rule holds now: two statements in one
    transaction, so a claim never sees it half-computed."""
    now = now or utcnow()
    if isinstance(parse_rule(segment.rule), RfmCell):
        await compute_rfm(now)
    select, params = rule_sql(parse_rule(segment.rule), now)
    async with in_transaction() as conn:
        await conn.execute_query(
            dialect_sql(conn, "DELETE FROM membership_segment_member WHERE segment_id = $1"),
            [segment.id],
        )
        await conn.execute_query(
            dialect_sql(
                conn,
                "INSERT INTO membership_segment_member (segment_id, member_id)"
                f" SELECT DISTINCT {int(segment.id)}, member_id FROM ({select}) held",
            ),
            params,
        )
        size = await SegmentMember.filter(segment_id=segment.id).using_db(conn).count()
        await Segment.filter(id=segment.id).using_db(conn).update(size=size, computed_at=now)
    return size


async def compute_all(now: datetime | None = None) -> dict[str, int]:
    """The job: RFM first (rules may read it), then every segment."""
    now = now or utcnow()
    rfm = await compute_rfm(now)
    sizes = {}
    for segment in await Segment.all().order_by("id"):
        sizes[segment.name] = await compute_segment(segment, now)
    return {"rfm_members": rfm, "segments": len(sizes)}


async def tier_codes() -> list[str]:
    """The member tiers a coupon template may be limited to."""
    from server.membership import service

    return [service.tier_view(t)["code"] for t in await service.tiers()]


async def contains(segment_id: int, member_id: int) -> bool:
    return await SegmentMember.exists(segment_id=segment_id, member_id=member_id)


async def members(segment_id: int) -> list[int]:
    await get_segment(segment_id)
    ids = (
        await SegmentMember.filter(segment_id=segment_id)
        .order_by("member_id")
        .values_list("member_id", flat=True)
    )
    return [int(i) for i in ids]


def segment_view(s: Segment) -> dict[str, Any]:
    return {
        "id": s.id,
        "name": s.name,
        "rule": s.rule,
        "size": s.size,
        "computed_at": s.computed_at,
    }


# -- RFM ------------------------------------------------------------------------------------------

_AGGREGATE = (
    "INSERT INTO membership_rfm (member_id, last_at, frequency, monetary_fen, r, f, m)"
    " SELECT member_id, MAX(at), SUM(CASE WHEN fen > 0 THEN 1 ELSE 0 END), SUM(fen), 0, 0, 0"
    " FROM membership_growth WHERE at > $1 {only}"
    " GROUP BY member_id HAVING SUM(CASE WHEN fen > 0 THEN 1 ELSE 0 END) > 0"
)


def _dirty(first: int) -> str:
    """Members with growth events recorded since the last run, or whose events left the
    12-month window since (placeholders: last run, last cutoff, this cutoff)."""
    a, b, c = first, first + 1, first + 2
    return (
        "SELECT DISTINCT member_id FROM membership_growth"
        f" WHERE created_at > ${a} OR (at > ${b} AND at <= ${c})"
    )


_RANK = (
    "UPDATE membership_rfm SET r = ranked.r, f = ranked.f, m = ranked.m FROM ("
    " SELECT member_id,"
    "  NTILE(5) OVER (ORDER BY last_at, member_id) AS r,"
    "  NTILE(5) OVER (ORDER BY frequency, member_id) AS f,"
    "  NTILE(5) OVER (ORDER BY monetary_fen, member_id) AS m"
    " FROM membership_rfm) ranked WHERE membership_rfm.member_id = ranked.member_id"
)


async def compute_rfm(now: datetime | None = None, *, full: bool = False) -> int:
    """Re-aggregate the members whose last 12 months changed since the last run (all of
    them the first time, or with `full`), then re-rank everyone's quintiles in one UPDATE.
    Returns how many members have scores."""
    now = (now or utcnow()).astimezone(UTC)
    cutoff = now - RFM_WINDOW
    state = await MembershipSetting.get_or_none(key=RFM_KEY)
    last = None if full or state is None else state.value
    async with in_transaction() as conn:
        if last is None:
            await conn.execute_query("DELETE FROM membership_rfm")
            await conn.execute_query(dialect_sql(conn, _AGGREGATE.format(only="")), [cutoff])
        else:
            dirty = [
                # An overlap: an event inserted before the last run's mark may have committed
                # after its read. Re-aggregating a member twice is harmless, missing one is not.
                datetime.fromisoformat(last["computed_at"]) - DIRTY_OVERLAP,
                datetime.fromisoformat(last["cutoff"]),
                cutoff,
            ]
            await conn.execute_query(
                dialect_sql(conn, f"DELETE FROM membership_rfm WHERE member_id IN ({_dirty(1)})"),
                dirty,
            )
            await conn.execute_query(
                dialect_sql(conn, _AGGREGATE.format(only=f"AND member_id IN ({_dirty(2)})")),
                [cutoff, *dirty],
            )
        await conn.execute_query(_RANK)
        scored = await conn.execute_query_dict("SELECT COUNT(*) AS n FROM membership_rfm")
        value = {"computed_at": now.isoformat(), "cutoff": cutoff.isoformat()}
        if state is None:
            await MembershipSetting.create(key=RFM_KEY, value=value, using_db=conn)
        else:
            await MembershipSetting.filter(id=state.id).using_db(conn).update(value=value)
    return int(scored[0]["n"])


async def drop_member_rfm(from_id: int, into_id: int, connection: Any) -> int:
    """A merge: both RFM rows go; the survivor's is rebuilt after the commit (`_rescore`)."""
    return await MemberRfm.filter(member_id__in=[from_id, into_id]).using_db(connection).delete()


async def _rescore(from_id: int, into_id: int) -> None:
    """After a merge: the survivor's RFM from both members' growth, then everyone re-ranked."""
    cutoff = utcnow().astimezone(UTC) - RFM_WINDOW
    async with in_transaction() as conn:
        await conn.execute_query(
            dialect_sql(conn, "DELETE FROM membership_rfm WHERE member_id = $1"), [into_id]
        )
        await conn.execute_query(
            dialect_sql(conn, _AGGREGATE.format(only="AND member_id = $2")), [cutoff, into_id]
        )
        await conn.execute_query(_RANK)


merge.register_member_owned(
    SegmentMember, "member_id", mover=merge.keep_one_mover(SegmentMember, "segment_id")
)
merge.register_member_owned(MemberRfm, "member_id", mover=drop_member_rfm)
merge.on_member_merged(_rescore)
