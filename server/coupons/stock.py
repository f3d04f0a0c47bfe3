"""A template's units in Redis: who may take the next one, and which number it gets.

Every coupon holds one unit number of its template, 1..total, unique per template in the
database. Redis hands the numbers out (`lua/claim.lua` for a member's claim, with the
per-member limit and rate; `lua/take_units.lua` for a campaign batch or a grant): the next
never-used number (`next`) and a list of numbers handed back (`free`). The database is the
guard behind it: an insert with a unit above `total` or a unit another coupon has is
refused, so a Redis that forgot everything can never make more than `total` coupons. A cold
template is warmed from the database (the numbers its coupons hold, each member's claims),
once per process at a time.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.coupons.models import Coupon, CouponTemplate
from server.infra.errors import NotFound, Unavailable
from server.infra.warming import WarmOnce

LUA = Path(__file__).parent / "lua"
CLAIM = LUA / "claim.lua"
TAKE_UNITS = LUA / "take_units.lua"
GIVE_BACK = LUA / "give_back.lua"
PUT_BACK = LUA / "put_back.lua"
WARM = LUA / "warm.lua"
LEFT = LUA / "left.lua"

# Request answers are kept two days (a hash per day: today's and yesterday's are read), so a
# template's Redis memory grows with the claims of two days, not with all of them.
DAY = 86_400
WARM_CHUNK = 5_000


def tag(template_id: int) -> str:
    return f"cp:{{{template_id}}}"


def unit_keys(template_id: int) -> list[str]:
    """next, free, members."""
    t = tag(template_id)
    return [f"{t}:next", f"{t}:free", f"{t}:members"]


def answer_keys(template_id: int, now: float | None = None) -> list[str]:
    """Today's and yesterday's request answers."""
    day = int((now or time.time()) // DAY)
    t = tag(template_id)
    return [f"{t}:req:{day}", f"{t}:req:{day - 1}"]


_heads: dict[int, tuple[int, list[str], tuple[Any, ...]]] = {}


def claim_head(t: CouponTemplate, member_rps: int) -> tuple[list[str], tuple[Any, ...]]:
    """The claim script's KEYS for this second and its fixed ARGV, built once per template per
    second and passed as the same objects, so `Scripts.fast` packs them once."""
    now = int(time.time())
    hit = _heads.get(t.id)
    fixed = (t.total, t.per_member_limit, member_rps)
    if hit is not None and hit[0] == now and hit[2] == fixed:
        return hit[1], hit[2]
    if len(_heads) > 10_000:
        _heads.clear()
    keys = [*unit_keys(t.id), *answer_keys(t.id, now), f"{tag(t.id)}:rl:{now}"]
    _heads[t.id] = (now, keys, fixed)
    return keys, fixed


_warming = WarmOnce(lambda tid: NotFound(f"no coupon template {tid}", code="TEMPLATE_NOT_FOUND"))


async def warm(scripts: Any, template_id: int) -> None:
    """Load the template's units and members' claims from the database (once per process at a
    time; a no-op if another process finished first)."""
    await _warming.run(template_id, lambda: _warm(scripts, template_id))


async def _warm(scripts: Any, template_id: int) -> bool:
    if not await CouponTemplate.exists(id=template_id):
        return False
    units = sorted(
        await Coupon.filter(template_id=template_id, unit__not_isnull=True).values_list(
            "unit", flat=True
        )
    )
    held = set(units)
    top = units[-1] if units else 0
    gaps = [u for u in range(1, top + 1) if u not in held] if len(held) < top else []
    claims = await Coupon.filter(template_id=template_id, claim_seq__not_isnull=True).values_list(
        "member_id", "claim_seq", "unit", "request_key", "created_at"
    )
    counts: dict[int, int] = {}  # each member's highest claim number: the next is one above
    # The last two days' claims sent with an Idempotency-Key, their answers as `claim.lua`
    # keeps them: a retry after the restart gets its coupon, not a second one.
    since = time.time() // DAY * DAY - DAY  # the start of yesterday: what `answer_keys` reads
    answers: dict[str, dict[str, str]] = {}
    for m, seq, unit, key, at in claims:
        counts[m] = max(counts.get(m, 0), seq)
        if key is not None and at.timestamp() >= since:
            day = f"{tag(template_id)}:req:{int(at.timestamp() // DAY)}"
            answers.setdefault(day, {})[f"{m}:{key}"] = f"{seq}:{unit}"
    client = scripts.client
    stage = f"{tag(template_id)}:warm:{secrets.token_hex(4)}"
    staged_free, staged_members = f"{stage}:free", f"{stage}:members"
    for i in range(0, len(gaps), WARM_CHUNK):
        await client.rpush(staged_free, *gaps[i : i + WARM_CHUNK])
    items = list(counts.items())
    for i in range(0, len(items), WARM_CHUNK):
        await client.hset(staged_members, mapping=dict(items[i : i + WARM_CHUNK]))
    for day, given in answers.items():  # before the template is warm, so before any claim
        pairs = list(given.items())
        for i in range(0, len(pairs), WARM_CHUNK):
            await client.hset(day, mapping=dict(pairs[i : i + WARM_CHUNK]))
        await client.expire(day, 2 * DAY)
    await scripts.run(WARM, [*unit_keys(template_id), staged_free, staged_members], [top + 1])
    return True


@dataclass
class Units:
    """Units a batch took: start..start+count-1, then `extra` from the free list."""

    start: int
    count: int
    extra: list[int]

    @classmethod
    def parse(cls, text: str) -> Units:
        start, count, extra = text.split(":")
        return cls(int(start), int(count), [int(u) for u in extra.split(",") if u])

    def all(self) -> list[int]:
        return [*self.extra, *range(self.start, self.start + self.count)]

    def __len__(self) -> int:
        return self.count + len(self.extra)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def take_units(scripts: Any, t: CouponTemplate, n: int, request: str = "") -> Units:
    """Up to n units (fewer when the template runs out); the same units again for a replayed
    `request`."""
    k = unit_keys(t.id)[:2] + answer_keys(t.id)
    for _ in range(3):
        got = _text(await scripts.run(TAKE_UNITS, k, [t.total, n, request]))
        if got != "COLD":
            return Units.parse(got)
        await warm(scripts, t.id)
    raise Unavailable("coupon stock is warming up; try again", code="TRY_AGAIN")


async def put_back(scripts: Any, template_id: int, units: list[int], request: str = "") -> None:
    """Units taken that no coupon got go back on the free list; the request is forgotten."""
    k = unit_keys(template_id)[:2] + answer_keys(template_id)
    await scripts.run(PUT_BACK, k, [request, *units])


async def give_back_claim(
    scripts: Any, template_id: int, member_id: int, request: str, unit: int | None
) -> None:
    """Undo a member's claim the database did not keep; `unit` None: another coupon has it."""
    k = unit_keys(template_id) + answer_keys(template_id)
    await scripts.run(GIVE_BACK, k, [member_id, request, "" if unit is None else unit])


async def set_member_claims(scripts: Any, template_id: int, member_id: int, held: int) -> None:
    """Redis counted fewer claims than the database holds (e.g. coupons moved in by a member
    merge): the database's count wins."""
    await scripts.client.hset(unit_keys(template_id)[2], str(member_id), held)


async def units_left(scripts: Any, t: CouponTemplate) -> int:
    """What the centre and the operators see: from Redis when warm, else counted."""
    left = int(await scripts.run(LEFT, unit_keys(t.id)[:2], [t.total]))
    if left >= 0:
        return left
    used = await Coupon.filter(template_id=t.id, unit__not_isnull=True).count()
    return max(0, t.total - used)


async def forget(scripts: Any, template_id: int) -> None:
    """Drop the template's units from Redis, so the next take warms them from the database
    (a batch found a unit Redis gave out twice)."""
    await scripts.client.delete(*unit_keys(template_id))
