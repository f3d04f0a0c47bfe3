"""Seats: taken in Redis in one script, made durable by the worker (or on demand), freed once.

Redis holds each activity's live seats under one hash tag, `gb:{id}:...`:

    meta      hash   window (ms), state, group size, per-member limit, group minutes,
                     pay window, order-number prefix and sequence
    units     int    units no group has reserved (a new group reserves `size`)
    g:<no>    hash   a group: state forming|open|closed, size, taken, deadline, leader,
                     s1..sN = the order holding each seat
    gm:<no>   hash   a group's members -> their order
    buyers    hash   member -> live seats in the activity (the per-member limit)
    reqs      hash   member:Idempotency-Key -> the first answer
    orders    hash   order -> group|member|seat|generation[|pay deadline|group deadline|mode|scene]
                     (for orders written on demand, and frees)
    released  set    order:generation whose seat was freed (a free happens at most once)
    joinable  zset   open groups with seats left, scored seats-left * 1e13 + deadline
    stream    stream one entry per seat taken; consumer group "gb" in `haodian worker`

PostgreSQL decides what money depends on: a seat counts only when its order is paid and the
group's `paid_count < size` update succeeds, and (group, live seat) is unique, so the group
can never hold more live seats than it has, whatever Redis said.
"""

from __future__ import annotations

import logging
import secrets
import string
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from tortoise.exceptions import IntegrityError
from tortoise.functions import Count
from tortoise.transactions import in_transaction

from server.groupbuy.models import Group, GroupBuy, GroupSeat, GroupStatus, SeatState
from server.infra.clock import utcnow
from server.infra.errors import AppError, Conflict, NotFound, Unavailable, ValidationFailed
from server.infra.memo import Recent
from server.infra.models import is_id
from server.infra.redis import Scripts
from server.infra.warming import WarmOnce
from server.orders import lifecycle
from server.orders.models import Order, OrderKind, OrderStatus
from server.orders.service import LineIn, create_order
from server.outbox import service as outbox

log = logging.getLogger("haodian.groupbuy")

LUA = Path(__file__).resolve().parent / "lua"
TAKE, RELEASE, OPEN, CLOSE, RESEAT, WARM = (
    LUA / f"{n}.lua"
    for n in ("take_seat", "release_seat", "open_group", "close_group", "reseat", "warm")
)
GROUP = "gb"  # the stream's consumer group
KEEP_AFTER_END = timedelta(days=7)
FREED_TOPIC = "groupbuy.seat_freed"
DEADLINE_TOPIC = "groupbuy.deadline"

_LETTERS = string.ascii_letters


def tag(activity_id: int) -> str:
    return f"gb:{{{activity_id}}}"


def activity_keys(activity_id: int) -> dict[str, str]:
    t = tag(activity_id)
    return {
        name: f"{t}:{name}"
        for name in ("meta", "units", "buyers", "reqs", "orders", "released", "joinable", "stream")
    }


def group_keys(activity_id: int, group_no: str) -> tuple[str, str]:
    t = tag(activity_id)
    return f"{t}:g:{group_no}", f"{t}:gm:{group_no}"


def new_group_no(activity_id: int) -> str:
    """Eight random letters, then the activity id: unguessable, and it says where its keys are."""
    return "".join(secrets.choice(_LETTERS) for _ in range(8)) + str(activity_id)


def activity_of(group_no: str) -> int:
    """The activity id inside a group number; GROUP_NOT_FOUND when it is not one of ours."""
    head, tail = group_no[:8], group_no[8:]
    if (
        len(group_no) > 16
        or not head.isascii()
        or not head.isalpha()
        or not tail.isdigit()
        or not tail.isascii()
        or tail.startswith("0")
    ):
        raise NotFound(f"no group {group_no[:40]}", code="GROUP_NOT_FOUND")
    return int(tail)


def order_prefix(activity_id: int) -> str:
    return f"GB{activity_id}-"


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


# -- taking a seat (hot path) -------------------------------------------------------------------


class Seated(NamedTuple):
    group_no: str
    order_no: str
    seat: int
    pay_deadline_ms: int
    expires_ms: int
    replayed: bool


_ERRORS: dict[str, tuple[type[AppError], str, str]] = {
    "SOLD_OUT": (Conflict, "SOLD_OUT", "this group-buy has no units left for a new group"),
    "LIMIT_REACHED": (Conflict, "LIMIT_REACHED", "you have reached this group-buy's limit"),
    "NOT_STARTED": (Conflict, "NOT_STARTED", "this group-buy has not started yet"),
    "ENDED": (Conflict, "ENDED", "this group-buy has ended"),
    "GROUP_CLOSED": (Conflict, "GROUP_CLOSED", "this group has closed (full, failed or expired)"),
    "GROUP_FORMING": (
        Conflict,
        "GROUP_NOT_OPEN",
        "this group opens for friends once its leader has paid; try again shortly",
    ),
    "ALREADY_IN_GROUP": (Conflict, "ALREADY_IN_GROUP", "you are already in this group"),
    "NO_GROUP": (NotFound, "GROUP_NOT_FOUND", "no such group"),
}


def _answer(raw: str, replayed: bool) -> Seated:
    group_no, order_no, seat, deadline, exp, *_mode = raw.split("|")
    return Seated(group_no, order_no, int(seat), int(deadline), int(exp), replayed)


def _take_keys(activity_id: int, group_no: str) -> list[str]:
    t = tag(activity_id)
    return [
        t + ":meta", t + ":units", f"{t}:g:{group_no}", f"{t}:gm:{group_no}", t + ":buyers",
        t + ":reqs", t + ":orders", t + ":stream", t + ":joinable",
    ]  # fmt: skip


# The seat script's KEYS and fixed ARGV ("join", group number) of groups joined lately, as
# the same objects every time, so `Scripts.fast` packs the command's head once per group (a
# shared group gets its joins, and its GROUP_FULL answers, together): only member, key and
# scene are packed per join.
_join_heads: dict[str, tuple[list[str], tuple[str, str]]] = {}
_JOIN_HEADS_MAX = 512


def _join_head(activity_id: int, group_no: str) -> tuple[list[str], tuple[str, str]]:
    hit = _join_heads.get(group_no)
    if hit is None:
        if len(_join_heads) >= _JOIN_HEADS_MAX:
            _join_heads.clear()
        hit = _join_heads[group_no] = (_take_keys(activity_id, group_no), ("join", group_no))
    return hit


async def take_seat(
    redis: Any,
    scripts: Scripts,
    *,
    mode: str,
    activity_id: int,
    group_no: str,
    member_id: int,
    idem_key: str,
    scene: str = "",
) -> Seated:
    """Run the seat script once (warming the activity and retrying if Redis lost it)."""
    fixed: tuple[Any, ...]
    for _ in range(4):
        if mode == "join":
            keys, fixed = _join_head(activity_id, group_no)
            args: list[Any] = [member_id, idem_key, scene]
        else:
            keys, fixed = _take_keys(activity_id, group_no), ()
            args = [mode, group_no, member_id, idem_key, scene]
        raw = await scripts.fast(TAKE, keys, args, fixed)
        res = raw.decode() if isinstance(raw, bytes) else str(raw)
        if res.startswith("OK|"):
            return _answer(res[3:], False)
        if res.startswith("R|"):
            got = _answer(res[2:], True)
            parts = res.split("|")
            first_mode = parts[6] if len(parts) > 6 else mode
            if first_mode != mode or (mode == "join" and got.group_no != group_no):
                raise ValidationFailed(
                    "this Idempotency-Key was used for another group or request",
                    code="IDEMPOTENCY_KEY_REUSED",
                )
            return got
        if res.startswith("GROUP_FULL"):
            others = [x for x in res.partition("|")[2].split(",") if x]
            raise Conflict(
                "this group is full; join another one",
                code="GROUP_FULL",
                details={"joinable_groups": others},
            )
        err = _ERRORS.get(res)
        if err is not None:
            cls, code, message = err
            raise cls(message, code=code)
        if res == "EXISTS":  # a random group number taken already: draw another
            group_no = new_group_no(activity_id)
            continue
        if res == "NOT_WARM":
            try:
                await warm_once(redis, scripts, activity_id)
            except NotFound:
                if mode == "join":
                    raise NotFound("no such group", code="GROUP_NOT_FOUND") from None
                raise
            continue
        raise Unavailable(f"unexpected answer from the seat script: {res!r}")
    raise Unavailable("the group-buy could not be loaded; try again", code="GROUP_BUY_NOT_READY")


async def seat_status(order_no: str) -> str:
    """What a replayed answer says of its seat now: held, paid, or released (its order was
    closed) — replays are rare, so this one may ask the database."""
    order = await Order.filter(order_no=order_no).only("id", "status").first()
    if order is None or order.status == OrderStatus.PENDING_PAYMENT:
        return "held"
    if order.status in (OrderStatus.PAID, OrderStatus.COMPLETED):
        return "paid"
    if order.status == OrderStatus.CANCELLED:
        return "released"
    return str(order.status)


# -- warming -----------------------------------------------------------------------------------

_warming = WarmOnce(lambda i: NotFound(f"no group-buy {i}", code="GROUP_BUY_NOT_FOUND"))


async def warm_once(redis: Any, scripts: Scripts, activity_id: int) -> None:
    async def load() -> bool:
        if not is_id(activity_id):  # not an id the database could hold
            return False
        activity = await GroupBuy.get_or_none(id=activity_id)
        if activity is None:
            return False
        await warm(scripts, activity)
        return True

    await _warming.run(activity_id, load)


def units_kept(group: Group) -> int:
    """Units a group holds of its activity: all its seats while it may still fill, the real
    seats it succeeded with, none once it failed."""
    if group.status in (GroupStatus.FORMING, GroupStatus.OPEN):
        return group.size
    if group.status == GroupStatus.SUCCEEDED:
        return group.size - group.virtual_seats
    return 0


async def warm(scripts: Scripts, activity: GroupBuy, pay_timeout_s: int | None = None) -> bool:
    """Load the activity into Redis from PostgreSQL when its keys are missing (never from the
    configured units: units left = units - what every group keeps)."""
    from server.settings import Settings

    pay_ms = (pay_timeout_s or Settings().pay_timeout_seconds) * 1000
    groups = await Group.filter(activity_id=activity.id)
    left = activity.units - sum(units_kept(g) for g in groups)
    live_groups = [g for g in groups if g.status in (GroupStatus.FORMING, GroupStatus.OPEN)]
    seats = await GroupSeat.filter(
        activity_id=activity.id,
        live_seat__not_isnull=True,
        state__in=[SeatState.HELD, SeatState.PAID],
    ).order_by("id")
    buyers = dict(
        await GroupSeat.filter(
            activity_id=activity.id,
            state__in=[SeatState.HELD, SeatState.PAID],
            live_member__not_isnull=True,  # seats of failed groups and refunds are freed
        )
        .group_by("member_id")
        .annotate(n=Count("id"))
        .values_list("member_id", "n")
    )
    k = activity_keys(activity.id)
    keys = [k["meta"], k["units"], k["buyers"], k["joinable"], k["orders"]]
    args: list[Any] = [
        _ms(activity.starts_at), _ms(activity.ends_at), activity.state.value,
        activity.group_size, activity.per_member_limit, activity.group_minutes, pay_ms,
        order_prefix(activity.id), int(time.time() * 1_000_000), max(0, left), len(buyers),
    ]  # fmt: skip
    for member, n in buyers.items():
        args += [member, n]
    by_group: dict[int, list[GroupSeat]] = {}
    for s in seats:
        by_group.setdefault(s.group_id, []).append(s)  # type: ignore[attr-defined]
    for g in live_groups:
        mine = by_group.get(g.id, [])
        keys += list(group_keys(activity.id, g.group_no))
        state = "forming" if g.status == GroupStatus.FORMING else "open"
        args += [g.group_no, state, g.size, _ms(g.expires_at), g.leader_member_id, len(mine)]
        for s in mine:
            args += [s.live_seat, s.order_no, s.member_id, s.gen]
    loaded = int(await scripts.run(WARM, keys, args))
    if loaded:
        until = _ms(activity.ends_at + KEEP_AFTER_END)
        for key in keys:
            await scripts.client.pexpireat(key, until)
        log.info("group-buy warmed", extra={"activity": activity.id, "units_left": left})
    return bool(loaded)


# -- materialisation: a seat taken in Redis becomes a seat row and an order --------------------

_activities: Recent[int, tuple[GroupBuy, str]] = Recent(ttl=5.0)


async def _activity(activity_id: int) -> tuple[GroupBuy, str]:
    async def load() -> tuple[GroupBuy, str]:
        a = await GroupBuy.get(id=activity_id).select_related("sku__product")
        return a, f"{a.title}"[:128]

    return await _activities.get(activity_id, load)


async def materialise(activity_id: int, entry: dict[str, str]) -> str:
    """Insert the seat (and, for a new group, the group) with its order in one transaction;
    idempotent by order number. Returns created | duplicate | rejected (the database refused
    it; its seat is freed through the outbox)."""
    activity, name = await _activity(activity_id)
    order_no, member_id, seat_no = entry["o"], int(entry["m"]), int(entry["s"])
    group_no, opening = entry["g"], entry["mode"] == "open"
    deadline, expires = from_ms(int(entry["d"])), from_ms(int(entry["x"]))
    scene = entry.get("c", "")[:32]
    same = {"activity_id": activity_id, "order_no": order_no, "member_id": member_id,
            "seat_no": seat_no}  # fmt: skip
    try:
        async with in_transaction() as conn:
            if opening:
                group = await Group.create(
                    group_no=group_no,
                    activity_id=activity_id,
                    leader_member_id=member_id,
                    size=activity.group_size,
                    expires_at=expires,
                    using_db=conn,
                )
                # The deadline as a delayed outbox event (the worker's sweep is the net).
                await outbox.emit(
                    DEADLINE_TOPIC,
                    {"group_id": group.id},
                    key=f"gb-deadline:{group_no}",
                    delay=max(timedelta(), expires - utcnow()),
                    connection=conn,
                )
            else:
                group = await Group.filter(group_no=group_no).using_db(conn).first()
                if group is None:
                    raise IntegrityError("the group of this seat is not in the database")
            await GroupSeat.create(
                **same,
                group_id=group.id,
                live_seat=seat_no,
                live_member=member_id,
                is_leader=opening,
                idem_key=entry.get("k", "")[:128],
                scene=scene,
                using_db=conn,
            )
            await create_order(
                kind=OrderKind.GROUPBUY,
                member_id=member_id,
                lines=[LineIn(activity.sku_id, name, 1, activity.group_price_fen)],  # type: ignore[attr-defined]
                order_no=order_no,
                source=f"gb:{group_no}",
                pay_deadline=deadline,
                connection=conn,
            )
        return "created"
    except IntegrityError:
        if await GroupSeat.filter(order_no=order_no).exists():
            return "duplicate"
        group = await Group.filter(group_no=group_no).first()
        log.warning("seat rejected by the database", extra={"order_no": order_no})
        if group is None:  # nothing to record it against; free the Redis side directly
            return "rejected"
        async with in_transaction() as conn:
            await GroupSeat.create(
                **same,
                group_id=group.id,
                state=SeatState.REJECTED,
                freed_at=utcnow(),
                using_db=conn,
            )
            await emit_free(activity_id, group_no, order_no, member_id, seat_no, 0, connection=conn)
        return "rejected"


async def materialise_pending(order_no: str, redis: Any) -> bool:
    """The shopper pays (or looks) before the worker has written the order: write it now, from
    what the seat script recorded. Same insert as the worker's, so whichever comes second
    finds it done."""
    if not order_no.startswith("GB") or "-" not in order_no:
        return False
    head = order_no[2:].split("-", 1)[0]
    if not head.isdigit() or not head.isascii():
        return False
    activity_id = int(head)
    rec = await redis.hget(activity_keys(activity_id)["orders"], order_no)
    if not rec:
        return False
    parts = str(rec).split("|")
    if len(parts) < 8:
        return False  # a seat taken back by a late payment: its order exists already
    group_no, member, seat, _gen, deadline, exp, mode, scene = parts[:8]
    entry = {
        "mode": mode, "g": group_no, "o": order_no, "m": member, "s": seat,
        "d": deadline, "x": exp, "k": "", "c": scene,
    }  # fmt: skip
    return await materialise(activity_id, entry) in ("created", "duplicate")


lifecycle.pending_orders("GB")(materialise_pending)


# -- freeing a seat ----------------------------------------------------------------------------


async def emit_free(
    activity_id: int,
    group_no: str,
    order_no: str,
    member_id: int,
    seat_no: int,
    gen: int,
    *,
    connection: Any,
) -> None:
    """Free the Redis seat after this transaction commits (the outbox delivers it once)."""
    await outbox.emit(
        FREED_TOPIC,
        {"activity": activity_id, "group_no": group_no, "order_no": order_no,
         "member": member_id, "seat": seat_no, "gen": gen},
        key=f"gb-free:{order_no}:{gen}",
        connection=connection,
    )  # fmt: skip


@outbox.handler(FREED_TOPIC)
async def _free_in_redis(event: Any, env: outbox.Env) -> None:
    p = event.payload
    k = activity_keys(p["activity"])
    g, gm = group_keys(p["activity"], p["group_no"])
    keys = [g, gm, k["buyers"], k["released"], k["joinable"]]
    args = [p["order_no"], p["member"], p["seat"], p["gen"], p["group_no"]]
    res = int(await env.scripts.run(RELEASE, keys, args))
    if res == -1 and not await env.redis.exists(k["meta"]):
        # Redis lost the activity: warming from the database counts this seat as free.
        await warm_once(env.redis, env.scripts, p["activity"])


async def reseat(scripts: Scripts, seat: GroupSeat, group_no: str) -> tuple[int, int] | None:
    """Take a seat again for a freed seat's order (a late payment); (seat, generation) or None."""
    k = activity_keys(seat.activity_id)
    g, gm = group_keys(seat.activity_id, group_no)
    keys = [g, gm, k["buyers"], k["released"], k["joinable"], k["orders"], k["meta"]]
    args = [seat.order_no, seat.member_id, seat.seat_no, seat.gen, group_no]
    res = str(await scripts.run(RESEAT, keys, args))
    if res.startswith(("OK|", "KEPT|")):
        _, number, gen = res.split("|")
        return int(number), int(gen)
    return None
