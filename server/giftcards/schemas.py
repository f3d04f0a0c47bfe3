from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from server.giftcards.service import BEARER_MIN_DAYS, BOUND_MAX_FEN
from server.infra.models import MAX_ID


class DesignIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    face_values_fen: list[int] = Field(min_length=1, max_length=12)
    valid_days: int = Field(
        ge=BEARER_MIN_DAYS, le=36500, description="bearer (unbound printed) cards only"
    )
    cover_url: str | None = Field(default=None, max_length=255)
    theme: str | None = Field(default=None, max_length=32)


class DesignOut(BaseModel):
    id: int
    name: str
    face_values_fen: list[int]
    valid_days: int
    cover_url: str | None
    theme: str | None
    retired: bool


class DesignList(BaseModel):
    items: list[DesignOut]


class BuyIn(BaseModel):
    design_id: int = Field(ge=1, le=MAX_ID)
    face_value_fen: int = Field(ge=1, le=BOUND_MAX_FEN)
    quantity: int = Field(ge=1, le=20)


class CardOut(BaseModel):
    id: int
    card_no: str = Field(description="masked: the first and last four digits")
    balance_fen: int
    face_value_fen: int
    expires_at: datetime | None = Field(description="null: never (a card bound to a member)")
    status: str = Field(description="active | gifting | expired | refunded")
    design: DesignOut | None = None


class CardList(BaseModel):
    items: list[CardOut]


class BoundCardOut(CardOut):
    reactivated: bool = Field(description="an expired bearer card came back to life with its money")


class EntryOut(BaseModel):
    amount_fen: int
    balance_after_fen: int
    reason: str
    reference: str
    at: datetime


class EntryList(BaseModel):
    items: list[EntryOut]


class GiveIn(BaseModel):
    greeting: str = Field(min_length=1, max_length=200)


class GiftShareOut(BaseModel):
    scene: str
    kind: str
    target: str
    path: str
    url_link: str | None


class GiftOut(BaseModel):
    gift_no: str
    card_id: int
    status: str = Field(
        description="checking (moderation pending: not shown yet) | pending | claimed | "
        "cancelled | returned | rejected"
    )
    greeting: str
    flagged: bool = Field(description="moderation said review: sent, and kept for a look")
    expires_at: datetime
    share: GiftShareOut | None


class GiftList(BaseModel):
    items: list[GiftOut]


class GiverOut(BaseModel):
    nickname: str
    avatar_url: str | None


class GiftLandingOut(BaseModel):
    gift_no: str
    status: str
    greeting: str | None = Field(description="null until moderation has passed it")
    giver: GiverOut
    design: DesignOut
    amount_fen: int = Field(description="what was given")
    expires_at: datetime


class ClaimIn(BaseModel):
    scene: str | None = Field(default=None, max_length=32, description="the share scene opened")


class BindIn(BaseModel):
    card_no: str = Field(pattern=r"^[0-9]{16}$")
    pin: str = Field(pattern=r"^[0-9]{6}$")


class BatchIn(BaseModel):
    design_id: int = Field(ge=1, le=MAX_ID)
    face_value_fen: int = Field(ge=1)
    count: int = Field(ge=1, le=1000)


class Counted(BaseModel):
    count: int
    fen: int


class GiftCardStatsOut(BaseModel):
    sold: Counted = Field(description="cards bought in the app")
    printed: Counted = Field(description="physical cards made")
    spent_fen: int = Field(description="paid for orders, net of money given back")
    returned_to_new_cards_fen: int = Field(
        description="order money given back on a new card because the paying card had moved on"
    )
    refunded: Counted = Field(description="purchases refunded")
    expired: Counted = Field(description="bearer cards past their date, and what they still hold")
    outstanding_fen: int = Field(description="what all cards hold: the liability")
    ledger_fen: int = Field(description="the same, summed from the ledger's entries")
