from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from server.infra.clock import local
from server.orders.models import Order, OrderEvent, OrderLine


class OrderItemIn(BaseModel):
    sku_id: int = Field(gt=0)
    quantity: int = Field(gt=0, le=99)


class PickupOrderIn(BaseModel):
    store_id: int = Field(gt=0)
    items: list[OrderItemIn] = Field(min_length=1, max_length=50)
    coupon_ids: list[int] = Field(default_factory=list, max_length=5)

    @field_validator("items")
    @classmethod
    def _distinct_skus(cls, items: list[OrderItemIn]) -> list[OrderItemIn]:
        if len({i.sku_id for i in items}) != len(items):
            raise ValueError("each sku_id may appear once; put the total in quantity")
        return items


class OrderLineOut(BaseModel):
    sku_id: int | None
    name: str
    quantity: int
    unit_price_fen: int
    line_fen: int


class OrderEventOut(BaseModel):
    from_status: str | None
    to_status: str
    actor: str
    reason: str
    at: datetime


class TenderOut(BaseModel):
    kind: str = Field(description="gift_card | stored_value | points | wechat")
    label: str
    amount_fen: int
    status: str = Field(description="captured | returned | refunded")


class StepOut(BaseModel):
    step: str = Field(
        description="placed | paid | accepted | ready | out_for_delivery | rider_assigned | "
        "picked_up | delivered | rejected | cancelled | dispatch_failed"
    )
    detail: str
    at: datetime


class TakeoutTrackOut(BaseModel):
    """What the shopper sees of a takeout order while it travels (the takeout scenario fills it
    through lifecycle.view; the model lives here so orders imports no scenario)."""

    status: str
    store_name: str
    contact: str
    phone: str
    address: str
    note: str
    delivery_fee_fen: int
    packing_fee_fen: int
    accept_by: datetime | None
    eta_at: datetime | None
    courier: str | None
    courier_status: str | None
    rider_name: str | None
    rider_phone: str | None = Field(description="masked")
    timeline: list[StepOut]


class OrderOut(BaseModel):
    order_no: str
    kind: str
    status: str
    store_id: int | None
    goods_fen: int
    discount_fen: int
    fee_fen: int
    payable_fen: int
    paid_fen: int | None
    refunded_fen: int
    pay_deadline: datetime
    paid_at: datetime | None
    completed_at: datetime | None
    pickup_code: str | None = None
    lines: list[OrderLineOut] = Field(default_factory=list)
    events: list[OrderEventOut] | None = None
    tenders: list[TenderOut] = Field(default_factory=list, description="how it is paid")
    flag: str | None = None
    takeout: TakeoutTrackOut | None = Field(default=None, description="takeout orders only")


class OrderListOut(BaseModel):
    items: list[OrderOut]


class CancelIn(BaseModel):
    reason: str = Field(default="", max_length=200)


class CompleteIn(BaseModel):
    pickup_code: str = Field(min_length=4, max_length=12)


def order_out(
    order: Order,
    lines: list[OrderLine],
    events: list[OrderEvent] | None = None,
    tenders: list[dict[str, Any]] | None = None,
    *,
    show_pickup_code: bool = True,
    extra: dict[str, Any] | None = None,
) -> OrderOut:
    return OrderOut(
        **(extra or {}),
        order_no=order.order_no,
        kind=str(order.kind),
        status=str(order.status),
        store_id=order.store_id,  # type: ignore[attr-defined]
        goods_fen=order.goods_fen,
        discount_fen=order.discount_fen,
        fee_fen=order.fee_fen,
        payable_fen=order.payable_fen,
        paid_fen=order.paid_fen,
        refunded_fen=order.refunded_fen,
        pay_deadline=local(order.pay_deadline),  # type: ignore[arg-type]
        paid_at=local(order.paid_at),
        completed_at=local(order.completed_at),
        pickup_code=order.pickup_code if show_pickup_code else None,
        lines=[
            OrderLineOut(
                sku_id=ln.sku_id,
                name=ln.name,
                quantity=ln.quantity,  # type: ignore[attr-defined]
                unit_price_fen=ln.unit_price_fen,
                line_fen=ln.line_fen,
            )
            for ln in lines
        ],
        events=None
        if events is None
        else [
            OrderEventOut(
                from_status=e.from_status,
                to_status=e.to_status,
                actor=e.actor,
                reason=e.reason,
                at=local(e.created_at),
            )  # type: ignore[arg-type]
            for e in events
        ],
        tenders=[TenderOut(**t) for t in tenders or []],
        flag=order.flag,
    )


async def order_view(
    order: Order, *, events: bool = False, show_pickup_code: bool = True
) -> OrderOut:
    """The order as its shopper (or an operator) sees it, with how it is being paid."""
    from server.orders import lifecycle, service
    from server.payments import tenders  # payments builds on orders: imported when used

    lines = await service.order_lines(order)
    evs = await service.order_events(order) if events else None
    paid_by = tenders.tenders_out(await tenders.of_order(order.id))
    extra = await lifecycle.extra_view(order)
    return order_out(order, lines, evs, paid_by, show_pickup_code=show_pickup_code, extra=extra)
