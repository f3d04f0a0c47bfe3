from __future__ import annotations

from pydantic import BaseModel, Field

from server.payments.models import Refund


class RefundIn(BaseModel):
    reason: str = Field(min_length=1, max_length=200)


class RefundOut(BaseModel):
    out_refund_no: str
    amount_fen: int
    status: str
    reason: str

    @classmethod
    def of(cls, refund: Refund) -> RefundOut:
        return cls(
            out_refund_no=refund.out_refund_no,
            amount_fen=refund.amount_fen,
            status=str(refund.status),
            reason=refund.reason,
        )


class PayIn(BaseModel):
    appid: str | None = Field(default=None, max_length=32)


class PayParamsOut(BaseModel):
    timeStamp: str
    nonceStr: str
    package: str
    signType: str
    paySign: str
