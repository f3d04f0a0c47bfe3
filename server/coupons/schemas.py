"""Request and response models of the coupon API."""

from __future__ import annotations

from datetime import date as Day
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from server.infra.models import MAX_ID, Id

Kind = Literal["amount_off", "percent_off", "threshold", "free_item"]
ChannelName = Literal["online", "store", "both"]


MAX_OFF_FEN = 100_000_000  # ¥1,000,000: no coupon is worth more
MAX_SPEND_FEN = 2_000_000_000  # what an INT column of fen holds, with room


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not a default

    name: str = Field(min_length=1, max_length=64)
    kind: Kind
    amount_off_fen: int | None = Field(default=None, ge=0, le=MAX_OFF_FEN)
    percent_off: int | None = None
    max_off_fen: int | None = Field(default=None, ge=1, le=MAX_OFF_FEN)
    threshold_fen: int | None = Field(default=None, ge=1, le=MAX_SPEND_FEN)
    free_sku_id: Id | None = None
    free_item_name: str = Field(default="", max_length=64)
    total: int = Field(ge=1, le=100_000_000)
    per_member_limit: int = Field(default=1, ge=1, le=100)
    valid_days: int | None = Field(default=None, ge=1, le=3650)
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    claim_from: datetime | None = None
    claim_until: datetime | None = None
    channel: ChannelName = "both"
    store_ids: list[Id] = Field(default_factory=list, max_length=5000)
    sku_ids: list[Id] = Field(default_factory=list, max_length=5000)
    category_ids: list[Id] = Field(default_factory=list, max_length=1000)
    audience_tiers: list[str] = Field(default_factory=list, max_length=20)
    audience_segment_id: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="only members of this segment may claim"
    )
    in_center: bool = True

    @model_validator(mode="after")
    def _rules(self) -> TemplateIn:
        """Each kind needs its own numbers; say exactly which one is wrong."""
        k = self.kind
        if not self.name.strip():
            raise ValueError("name must say something (it is what shoppers see)")
        if k in ("amount_off", "threshold") and not self.amount_off_fen:
            raise ValueError(f"a {k} coupon needs amount_off_fen > 0")
        if k in ("percent_off", "free_item") and self.amount_off_fen:
            raise ValueError(f"amount_off_fen is for amount_off and threshold coupons, not {k}")
        if k == "percent_off":
            if self.percent_off is None or not 1 <= self.percent_off <= 100:
                raise ValueError("percent_off must be between 1 and 100 (15 means 15% off)")
        elif self.percent_off is not None:
            raise ValueError(f"percent_off is only for percent_off coupons, not {k}")
        if k == "threshold":
            if self.threshold_fen is None:
                raise ValueError("a threshold coupon needs threshold_fen (e.g. 20000 for ¥200)")
            if self.amount_off_fen and self.threshold_fen < self.amount_off_fen:
                raise ValueError(
                    "threshold_fen must be at least amount_off_fen: the discount cannot be "
                    "larger than the spend that unlocks it"
                )
        if k == "free_item" and not (self.free_sku_id or self.free_item_name):
            raise ValueError("a free_item coupon needs free_sku_id or free_item_name")
        if self.valid_days is not None and (self.valid_from or self.valid_until):
            raise ValueError("give either valid_days or valid_from/valid_until, not both")
        if self.valid_days is None:
            if not (self.valid_from and self.valid_until):
                raise ValueError(
                    "give valid_days (N days after the claim) or both valid_from and valid_until"
                )
            if self.valid_until <= self.valid_from:
                raise ValueError("valid_until must be after valid_from")
        if self.claim_from and self.claim_until and self.claim_until <= self.claim_from:
            raise ValueError("claim_until must be after claim_from")
        for name in ("valid_from", "valid_until", "claim_from", "claim_until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} needs a time zone offset, e.g. 2026-11-11T00:00:00+08:00")
        if self.channel == "online" and self.store_ids:
            raise ValueError("store_ids only make sense for coupons usable in stores")
        self.store_ids = sorted(set(self.store_ids))
        self.sku_ids = sorted(set(self.sku_ids))
        self.category_ids = sorted(set(self.category_ids))
        self.audience_tiers = sorted(set(self.audience_tiers))
        return self


class TemplatePatch(BaseModel):
    """Only the fields sent change; `claim_until: null` opens the claim window's end again."""

    model_config = ConfigDict(extra="forbid")

    active: bool | None = None
    total: int | None = Field(
        default=None, ge=1, le=100_000_000, description="more stock (a total never shrinks)"
    )
    in_center: bool | None = None
    claim_until: datetime | None = None

    @model_validator(mode="after")
    def _offset(self) -> TemplatePatch:
        if self.claim_until is not None and self.claim_until.tzinfo is None:
            raise ValueError("claim_until needs a time zone offset, e.g. 2026-11-11T00:00:00+08:00")
        return self


class IssuanceIn(BaseModel):
    template_id: Id
    member_ids: list[Id] = Field(default_factory=list, max_length=1_000_000)
    audience_segment_id: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="instead of member_ids: the segment now"
    )

    @model_validator(mode="after")
    def _one_audience(self) -> IssuanceIn:
        if bool(self.member_ids) == bool(self.audience_segment_id):
            raise ValueError("give member_ids or audience_segment_id (one of them)")
        return self


class WriteOffIn(BaseModel):
    code: str = Field(min_length=1, max_length=200)
    store_id: int | None = None  # a clerk of several stores says which till this is


class RevokeIn(BaseModel):
    reason: str = Field(default="", max_length=255)


class MyCouponsQuery(BaseModel):
    status: Literal["unused", "used", "expired", "locked", "void", "all"] = "all"


class WriteOffsQuery(BaseModel):
    date: Day | None = Field(  # a day in Asia/Shanghai; default today
        default=None, ge=Day(2000, 1, 1), le=Day(2099, 12, 31)
    )
    store_id: Id | None = None


class TemplateOut(BaseModel):
    id: int
    name: str
    kind: Kind
    value_text: str
    amount_off_fen: int | None
    percent_off: int | None
    max_off_fen: int | None
    threshold_fen: int | None
    total: int
    remaining: int
    per_member_limit: int
    valid_days: int | None
    valid_from: str | None
    valid_until: str | None
    channel: ChannelName
    store_ids: list[int]
    sku_ids: list[int]
    category_ids: list[int]
    free_sku_id: int | None
    free_item_name: str
    claim_from: str | None
    claim_until: str | None
    in_center: bool
    audience_tiers: list[str]
    audience_segment_id: int | None
    active: bool


class CouponOut(BaseModel):
    id: int
    template_id: int
    name: str
    kind: Kind
    value_text: str
    status: Literal["unused", "locked", "used", "expired", "void"]
    valid_from: str
    valid_until: str
    channel: ChannelName
    store_ids: list[int]
    used_at: str | None = None
    used_channel: str | None = None


class ClaimOut(BaseModel):
    coupon: CouponOut
    replayed: bool = False


class CenterItem(BaseModel):
    template_id: int
    name: str
    value_text: str
    remaining: int
    claimed_by_me: int
    per_member_limit: int
    claimable: bool
    reason: str | None  # SOLD_OUT | LIMIT_REACHED | NOT_STARTED | ENDED


class CodeOut(BaseModel):
    code: str
    digits: str
    expires_in: int


class WriteOffOut(BaseModel):
    id: int
    coupon_id: int
    coupon_name: str
    value_text: str
    member: str  # masked phone, or a masked nickname
    store_id: int
    staff_id: int
    at: str
    revoked_at: str | None = None
    revoke_reason: str = ""


class IssuanceOut(BaseModel):
    id: int
    template_id: int
    status: str
    total: int
    position: int
    issued: int
    skipped: int
    progress: float
    message: str


class CenterOut(BaseModel):
    items: list[CenterItem]


class CouponsOut(BaseModel):
    items: list[CouponOut]


class WriteOffWrap(BaseModel):
    write_off: WriteOffOut


class WriteOffListOut(BaseModel):
    date: str
    store_ids: list[int]
    count: int  # not revoked
    items: list[WriteOffOut]


class StoreCount(BaseModel):
    store_id: int
    written_off: int


class CouponStatsOut(BaseModel):
    template_id: int
    total: int
    remaining: int
    claimed: int
    issued: int
    used_online: int
    written_off_in_store: int
    revoked_write_offs: int
    write_off_rate: float  # written off in store / (claimed + issued)
    use_rate: float  # (in store + online) / (claimed + issued)
    by_store: list[StoreCount]


class TemplateListOut(BaseModel):
    items: list[TemplateOut]
