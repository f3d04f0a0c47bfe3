from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, Field

from server.infra.models import MAX_ID

StoreId = Annotated[int, Field(gt=0, le=MAX_ID)]


class ActivityIn(BaseModel):
    sku_id: int = Field(gt=0, le=MAX_ID)
    group_price_fen: int = Field(ge=1, le=100_000_000)
    group_size: int = Field(ge=2, le=10)
    units: int = Field(ge=2, le=10_000_000, description="paid seats over all groups, at most")
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    group_minutes: int = Field(ge=1, le=7 * 24 * 60, description="a group's lifetime")
    per_member_limit: int = Field(default=1, ge=1, le=100, description="live seats per member")
    store_ids: list[StoreId] = Field(
        default_factory=list, max_length=5000, description="where vouchers are used; [] = all"
    )
    virtual_fill_min: int | None = Field(
        default=None, ge=1, le=9, description="at the deadline, this many paid members succeed"
    )
    title: str | None = Field(default=None, max_length=128)
    voucher_valid_days: int = Field(default=30, ge=1, le=366)


class ActivityOut(BaseModel):
    id: int
    sku_id: int
    title: str
    group_price_fen: int
    price_fen: int | None
    group_size: int
    units: int
    units_left: int = Field(description="units no group has reserved yet")
    starts_at: str
    ends_at: str
    group_minutes: int
    per_member_limit: int
    store_ids: list[int]
    virtual_fill_min: int | None
    voucher_template_id: int
    status: str = Field(description="upcoming | live | sold_out | ended")


class JoinableGroup(BaseModel):
    group_no: str
    seats_left: int
    expires_at: str


class ActivityDetailOut(ActivityOut):
    joinable_groups: list[JoinableGroup] = Field(description="fewest seats left first")


class ActivityList(BaseModel):
    items: list[ActivityOut]


class JoinIn(BaseModel):
    scene: str | None = Field(default=None, max_length=32, description="the share scene")


class SeatOut(BaseModel):
    group_no: str
    order_no: str = Field(description="pay it with POST /api/v1/orders/{order_no}/pay")
    activity_id: int
    seat: int
    status: str = Field(
        description="held: yours until the pay deadline; a replay says paid or released too"
    )
    pay_deadline: str
    expires_at: str = Field(description="the group's deadline")
    replayed: bool


class GroupMember(BaseModel):
    nickname: str
    avatar_url: str
    is_leader: bool
    refunded: bool


class GroupOut(BaseModel):
    group_no: str
    activity_id: int
    title: str
    group_price_fen: int
    status: str = Field(description="forming | open | succeeded | failed")
    size: int
    paid: int
    seats_left: int
    virtual_seats: int
    expires_at: str
    members: list[GroupMember]


class GroupBuyStatsOut(BaseModel):
    activity_id: int
    groups_opened: int
    groups_forming: int
    groups_open: int
    groups_succeeded: int
    groups_failed: int
    success_rate: float
    members: int
    seats_paid_now: int
    seats_held_unpaid: int
    refunds: int
    refunded_after_success: int
    virtual_seats: int
    joins_via_share: int
    vouchers_issued: int
    vouchers_void: int
    vouchers_written_off: int
    write_off_rate: float
    units: int


class AdminActivityOut(ActivityOut):
    stats: GroupBuyStatsOut
