"""Time: stored in UTC, shown to people in China Standard Time with its offset."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


def utcnow() -> datetime:
    return datetime.now(UTC)


def local(dt: datetime | None) -> datetime | None:
    """The same instant in Asia/Shanghai (what API answers show)."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(SHANGHAI)


def iso_local(dt: datetime | None) -> str | None:
    """ISO 8601 in Asia/Shanghai with its offset (how API answers show times)."""
    shown = local(dt)
    return shown.isoformat() if shown else None
