from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field, field_validator


class PasswordLogin(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=10, max_length=200)


class LogoutIn(BaseModel):
    refresh_token: str | None = Field(default=None, min_length=10, max_length=200)
    everywhere: bool = Field(default=False, description="end every session of this account")


class TokenOut(BaseModel):
    token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"


class OperatorOut(BaseModel):
    id: int
    username: str
    roles: list[str]


# -- members ---------------------------------------------------------------------------------------


class WxLogin(BaseModel):
    code: str = Field(min_length=1, max_length=128, description="what wx.login() returned")
    appid: str | None = Field(
        default=None, max_length=32, description="which mini-program; default: the first one"
    )


class PhoneIn(BaseModel):
    code: str = Field(min_length=1, max_length=128, description="the getPhoneNumber code")


class MemberOut(BaseModel):
    id: int
    nickname: str
    avatar_url: str
    birthday: dt.date | None
    gender: Literal[0, 1, 2] = Field(description="0 unknown, 1 male, 2 female")
    phone: str | None = Field(description="masked, e.g. 138****5678")
    points: int
    tier: str
    unionid_bound: bool = Field(description="tied to the brand's Open Platform account")
    created_at: str


class LoginOut(TokenOut):
    member: MemberOut
    created: bool = Field(description="this login made a new member")


class PhoneOut(BaseModel):
    phone: str = Field(description="masked, e.g. 138****5678")


class MePatch(BaseModel):
    model_config = {"extra": "forbid"}

    nickname: str | None = Field(default=None, min_length=1, max_length=32)
    avatar_url: str | None = Field(default=None, max_length=512)
    birthday: dt.date | None = None
    gender: Literal[0, 1, 2] | None = None

    @field_validator("nickname")
    @classmethod
    def _nickname(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip()
        if not v:
            raise ValueError("nickname must not be blank")
        if any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in v):
            raise ValueError("nickname must not contain control characters")
        return v

    @field_validator("avatar_url")
    @classmethod
    def _avatar(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return v
        if not v.startswith("https://") or any(c.isspace() for c in v) or len(v) < 12:
            raise ValueError("avatar_url must be an https:// URL")
        return v

    @field_validator("birthday")
    @classmethod
    def _birthday(cls, v: dt.date | None) -> dt.date | None:
        if v is None:
            return v
        today = dt.date.today()
        if v > today:
            raise ValueError("birthday must not be in the future")
        if v.year < today.year - 120:
            raise ValueError("birthday is too far in the past")
        return v


# -- staff -----------------------------------------------------------------------------------------


class StoreRef(BaseModel):
    id: int
    code: str
    name: str


class StaffMeOut(BaseModel):
    id: int
    username: str
    name: str
    role: Literal["clerk", "manager"]
    stores: list[StoreRef]


class StaffCreate(BaseModel):
    username: str = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.@\-]+$")
    password: str = Field(min_length=8, max_length=256)
    role: Literal["clerk", "manager"] = "clerk"
    store_ids: list[int] = Field(min_length=1, max_length=200)
    name: str = Field(default="", max_length=64)


class StaffPatch(BaseModel):
    model_config = {"extra": "forbid"}

    password: str | None = Field(default=None, min_length=8, max_length=256)
    role: Literal["clerk", "manager"] | None = None
    store_ids: list[int] | None = Field(default=None, min_length=1, max_length=200)
    name: str | None = Field(default=None, max_length=64)
    disabled: bool | None = None


class IdOut(BaseModel):
    id: int


class StaffOut(StaffMeOut):
    disabled: bool


class MemberAdminOut(MemberOut):
    disabled: bool
    merged_into: int | None
    appids: list[str]
