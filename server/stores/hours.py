"""Opening hours, temporary closures and delivery fees: pure functions, no I/O.

Hours are kept per weekday in Asia/Shanghai as "HH:MM-HH:MM" strings:

    {"mon": ["08:00-22:00"], "tue": [], "sat": ["10:00-02:00"], ...}

A missing or empty day is a closed day. A close time at or before the open time runs
past midnight: "10:00-02:00" on Monday is open until Tuesday 02:00, so at Tuesday 01:00
the store is open on Monday's hours even when Tuesday itself is a closed day.
"00:00-24:00" is open all day.

Operators may also write a compact spec (what the CSV import takes):

    "08:00-22:00"                               every day
    "mon-fri 08:00-22:00; sat,sun 10:00-02:00"  listed days, the others closed
    "daily 09:00-21:00; mon closed"             a later clause overrides an earlier one
    "mon 08:00-12:00,14:00-20:00"               two spans in one day
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Any

from pydantic import BaseModel, Field

from server.infra.clock import SHANGHAI

DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ALIASES: dict[str, int] = {d: i for i, d in enumerate(DAYS)}
_ALIASES.update(
    {
        name: i
        for i, names in enumerate(
            [
                ("monday", "周一", "星期一"),
                ("tuesday", "周二", "星期二"),
                ("wednesday", "周三", "星期三"),
                ("thursday", "周四", "星期四"),
                ("friday", "周五", "星期五"),
                ("saturday", "周六", "星期六"),
                ("sunday", "周日", "星期日", "周天"),
            ]
        )
        for name in names
    }
)
_ALL_WORDS = {"daily", "everyday", "every", "all", "每天"}
_CLOSED_WORDS = {"closed", "off", "休息", "-"}
_SPAN = re.compile(r"^(\d{1,2}):(\d{2})\s*[-–~]\s*(\d{1,2}):(\d{2})$")

Week = list[list[tuple[int, int]]]  # per weekday (Mon=0): [(open_min, close_min)], close ≤ 2880


def parse_span(text: str) -> tuple[int, int]:
    """'10:00-02:00' -> (600, 1560): minutes from the day's midnight, close after open."""
    m = _SPAN.match(text.strip())
    if not m:
        raise ValueError(f"'{text}' is not a time span like 08:00-22:00")
    oh, om, ch, cm = (int(g) for g in m.groups())
    if oh > 23 or om > 59 or ch > 24 or cm > 59 or (ch == 24 and cm):
        raise ValueError(f"'{text}' has a time outside 00:00-24:00")
    start, end = oh * 60 + om, ch * 60 + cm
    if end <= start:
        end += 1440  # runs past midnight into the next day
    return start, end


def _fmt(minutes: int) -> str:
    minutes %= 1440 if minutes != 1440 else 1441
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _canonical(span: tuple[int, int]) -> str:
    start, end = span
    return f"{_fmt(start)}-{'24:00' if end == 1440 else _fmt(end)}"


def _days(word: str) -> list[int]:
    out: list[int] = []
    for part in re.split(r"[,，、/]", word):
        part = part.strip().lower()
        if not part:
            continue
        if part in _ALL_WORDS:
            out.extend(range(7))
        elif "-" in part or "~" in part:
            a, _, b = re.split(r"([-~])", part, maxsplit=1)
            if a.strip() not in _ALIASES or b.strip() not in _ALIASES:
                raise ValueError(f"'{part}' is not a day range like mon-fri")
            i, j = _ALIASES[a.strip()], _ALIASES[b.strip()]
            out.extend((i + k) % 7 for k in range((j - i) % 7 + 1))
        elif part in _ALIASES:
            out.append(_ALIASES[part])
        else:
            raise ValueError(f"'{part}' is not a day (mon..sun)")
    return out


def _spans(text: str) -> list[tuple[int, int]]:
    text = text.strip()
    if text.lower() in _CLOSED_WORDS or not text:
        return []
    return [parse_span(s) for s in re.split(r"[,，]", text) if s.strip()]


def _check_day(day: int, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    spans = sorted(spans)
    for (a0, a1), (b0, _b1) in itertools.pairwise(spans):
        if b0 < a1:
            raise ValueError(
                f"{DAYS[day]}: {_canonical((a0, a1))} and {_canonical((b0, _b1))} overlap"
            )
    return spans


def normalize_hours(value: Any) -> dict[str, list[str]]:
    """Any accepted form (dict or spec string) -> the canonical dict with all seven days.

    Raises ValueError with a message an operator can act on."""
    week: dict[int, list[tuple[int, int]]] = {i: [] for i in range(7)}
    if value is None or value == "" or value == {}:
        raise ValueError("opening hours are required, e.g. 08:00-22:00")
    if isinstance(value, dict):
        for key, spans in value.items():
            day = _ALIASES.get(str(key).strip().lower())
            if day is None:
                raise ValueError(f"'{key}' is not a day (mon..sun)")
            if isinstance(spans, str):
                spans = [spans]
            if not isinstance(spans, list) or not all(isinstance(s, str) for s in spans):
                raise ValueError(f"{DAYS[day]}: give a list of spans like ['08:00-22:00']")
            week[day] = [p for s in spans for p in _spans(s)]
    elif isinstance(value, str):
        for clause in re.split(r"[;；\n]", value):
            clause = clause.strip()
            if not clause:
                continue
            if _SPAN.match(clause.split(",")[0].strip()):
                days, rest = list(range(7)), clause
            else:
                head, _, rest = clause.partition(" ")
                if not rest.strip():
                    raise ValueError(
                        f"'{clause}' is not a time span like 08:00-22:00 "
                        "(or days and spans like mon-fri 08:00-22:00)"
                    )
                days = _days(head)
            spans = _spans(rest)
            for d in days:
                week[d] = spans
    else:
        raise ValueError("opening hours must be a spec string or a {day: [spans]} object")
    return {DAYS[d]: [_canonical(s) for s in _check_day(d, week[d])] for d in range(7)}


def week_minutes(hours: dict[str, list[str]]) -> Week:
    return [sorted(parse_span(s) for s in hours.get(day, [])) for day in DAYS]


def _local_naive(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ValueError("aware datetimes only")
    return dt.astimezone(SHANGHAI).replace(tzinfo=None)


def _spans_from(week: Week, first: date) -> Iterator[tuple[datetime, datetime]]:
    """Opening spans as local datetimes, from the day before `first` on, merged when they
    touch (a 24-hour store is one long span), for at most 400 days."""
    cur: tuple[datetime, datetime] | None = None
    for i in range(-1, 400):
        day = first + timedelta(days=i)
        midnight = datetime.combine(day, dtime())
        if cur is not None and (cur[1] < midnight or cur[1] - cur[0] > timedelta(days=8)):
            yield cur
            cur = None
        for start_min, end_min in week[day.weekday()]:
            s = midnight + timedelta(minutes=start_min)
            e = midnight + timedelta(minutes=end_min)
            if cur is not None and s <= cur[1]:
                cur = (cur[0], max(cur[1], e))
                continue
            if cur is not None:
                yield cur
            cur = (s, e)
    if cur is not None:
        yield cur


class OpenState(BaseModel):
    open_now: bool
    next_open_at: datetime | None = None  # when closed: the next time it opens (None: unknown)
    closes_at: datetime | None = None  # when open: when it next closes (None: not this week)


def open_state(
    week: Week,
    at: datetime,
    closed_from: datetime | None = None,
    closed_until: datetime | None = None,
) -> OpenState:
    """Is the store open at `at` (aware), and when does it next open or close, in Shanghai."""
    now = _local_naive(at)
    has_closure = closed_from is not None or closed_until is not None
    c_from = _local_naive(closed_from) if closed_from else datetime.min
    c_until = _local_naive(closed_until) if closed_until else datetime.max

    def in_closure(t: datetime) -> bool:
        return has_closure and c_from <= t < c_until

    def aware(t: datetime) -> datetime:
        return t.replace(tzinfo=SHANGHAI)

    if not any(week):
        return OpenState(open_now=False)
    for s, e in _spans_from(week, now.date()):
        if e <= now:
            continue
        if s <= now and not in_closure(now):
            closes = e
            if has_closure and now < c_from < e:
                closes = c_from
            horizon = now + timedelta(days=7)
            return OpenState(open_now=True, closes_at=aware(closes) if closes < horizon else None)
        break
    t0 = now
    if in_closure(now):
        if closed_until is None:
            return OpenState(open_now=False)
        t0 = c_until
    for s, e in _spans_from(week, t0.date()):
        if e <= t0:
            continue
        cand = max(s, t0)
        if in_closure(cand):
            if closed_until is None:
                return OpenState(open_now=False)
            cand = c_until
            if cand >= e:
                continue
        return OpenState(open_now=False, next_open_at=aware(cand))
    return OpenState(open_now=False)


# -- takeout delivery fee ----------------------------------------------------------------------


class FeeRules(BaseModel):
    """What takeout delivery costs: a base fee covering `base_km`, then `per_km_fen` for each
    started kilometre beyond it; free when the goods reach `free_over_fen`; no delivery below
    `min_order_fen`."""

    base_fen: int = Field(default=0, ge=0, le=100_000)
    base_km: float = Field(default=3.0, ge=0, le=100)
    per_km_fen: int = Field(default=0, ge=0, le=100_000)
    free_over_fen: int | None = Field(default=None, ge=0)
    min_order_fen: int = Field(default=0, ge=0)

    def fee_fen(self, distance_m: float, goods_fen: int) -> int:
        if self.free_over_fen is not None and goods_fen >= self.free_over_fen:
            return 0
        extra_km = max(0.0, distance_m / 1000 - self.base_km)
        return self.base_fen + self.per_km_fen * math.ceil(extra_km - 1e-9)
