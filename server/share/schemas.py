"""Request and response models of the share API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, field_validator

KIND_PATTERN = r"^[a-z][a-z0-9_]{0,15}$"
TARGET_PATTERN = r"^[0-9A-Za-z_.:\-]{1,64}$"


class ShareIn(BaseModel):
    kind: str = Field(
        pattern=KIND_PATTERN, description="what is shared: group | gift | invite (registered)"
    )
    target: str = Field(
        pattern=TARGET_PATTERN,
        description="which one: a group id, a gift id, the sharer's own member id (invite)",
    )


class ShareOut(BaseModel):
    scene: str = Field(description="≤ 32 chars of [0-9A-Za-z]: the code's scene")
    kind: str
    target: str
    path: str = Field(description="page path with query, for onShareAppMessage")
    url_link: str | None = Field(description="for SMS and other apps; null while WeChat is down")
    wxacode_url: str = Field(description="where the mini-program code image (PNG) is served")


class SharerOut(BaseModel):
    nickname: str = Field(description="masked: first character + **")
    avatar_url: str


class LandingOut(BaseModel):
    scene: str
    kind: str
    target: str
    path: str
    sharer: SharerOut
    opens: int


class MyShareOut(ShareOut):
    opens: int
    conversions: int
    created_at: datetime


class MySharesOut(BaseModel):
    items: list[MyShareOut]


class StatsQuery(BaseModel):
    kind: str | None = Field(default=None, pattern=KIND_PATTERN)
    target: str | None = Field(default=None, pattern=TARGET_PATTERN)

    @field_validator("kind", "target", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        """`?kind=&target=` from a form means "any", not a bad value."""
        return None if value == "" else value


class SharerStatsOut(BaseModel):
    sharer_id: int
    nickname: str = Field(description="masked")
    shares: int
    opens: int
    conversions: int


class ShareStatsOut(BaseModel):
    kind: str | None
    target: str | None
    items: list[SharerStatsOut] = Field(description="by conversions, most first; at most 50")
