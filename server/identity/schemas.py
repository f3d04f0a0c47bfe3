from __future__ import annotations

from pydantic import BaseModel, Field


class PasswordLogin(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=10, max_length=200)


class TokenOut(BaseModel):
    token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"


class OperatorOut(BaseModel):
    id: int
    username: str
    roles: list[str]
