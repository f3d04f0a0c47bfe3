from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator

from server.infra.models import MAX_ID
from server.orders.schemas import TenderOut
from server.payments.models import Refund


class WeChatAnswer(BaseModel):
    """What WeChat Pay reads from a refused notification."""

    code: str
    message: str


class RefundIn(BaseModel):
    reason: str = Field(min_length=1, max_length=200)


class RefundOut(BaseModel):
    out_refund_no: str
    amount_fen: int = Field(description="WeChat Pay's part; balances are back already")
    status: str
    reason: str
    tenders: list[TenderOut] = Field(default_factory=list)

    @classmethod
    def of(cls, refund: Refund, tenders: list[dict[str, Any]] | None = None) -> RefundOut:
        return cls(
            out_refund_no=refund.out_refund_no,
            amount_fen=refund.amount_fen,
            status=str(refund.status),
            reason=refund.reason,
            tenders=[TenderOut(**t) for t in tenders or []],
        )


class PayIn(BaseModel):
    appid: str | None = Field(default=None, max_length=32)
    gift_card_ids: list[Annotated[int, Field(gt=0, le=MAX_ID)]] = Field(
        default_factory=list,
        max_length=10,
        description="gift cards to pay with, in this order; each pays at most what is left",
    )
    gift_card_fen: int | None = Field(
        default=None,
        ge=1,
        description="what the checkout showed the cards paying: if they now cover another "
        "amount (spent elsewhere meanwhile), nothing is captured and 409 CARD_BALANCE_CHANGED",
    )

    stored_value_fen: int | None = Field(
        default=None, ge=1, le=100_000_000, description="pay this much (at most) from stored value"
    )

    points: int | None = Field(
        default=None,
        ge=1,
        le=100_000_000,
        description="points to pay with (100 = 1 yuan, at most half of the goods)",
    )

    def asked(self) -> dict[str, Any]:
        """The balances asked for, by tender kind."""
        cards = (
            {"refs": [str(i) for i in self.gift_card_ids], "expect_fen": self.gift_card_fen}
            if self.gift_card_ids
            else None
        )
        stored = {"fen": self.stored_value_fen} if self.stored_value_fen else None
        points = {"points": self.points} if self.points else None
        return {"gift_card": cards, "stored_value": stored, "points": points}

    @field_validator("gift_card_ids")
    @classmethod
    def _distinct(cls, ids: list[int]) -> list[int]:
        if len(set(ids)) != len(ids) or any(i <= 0 for i in ids):
            raise ValueError("each gift card once, by its positive id")
        return ids


class PayOut(BaseModel):
    """What paying did: the balances captured and, when WeChat Pay must take the rest, the
    parameters of `wx.requestPayment` for exactly that rest."""

    paid: bool = Field(description="true: fully paid by balances, no WeChat payment needed")
    wechat_fen: int
    tenders: list[TenderOut]
    timeStamp: str | None = None
    nonceStr: str | None = None
    package: str | None = None
    signType: str | None = None
    paySign: str | None = None
