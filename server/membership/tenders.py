"""Stored value and points as tenders of `/orders/{no}/pay` (registered with payments.tenders).

A stored-value spend (`stored_value.spend`) takes from principal and bonus in proportion, as
two tenders, so a refund gives each account back exactly its part."""

from __future__ import annotations

from typing import Any

from server.infra.errors import Conflict
from server.ledger import service as ledger
from server.membership import service, stored_value
from server.membership.service import BONUS, PRINCIPAL
from server.orders.models import Order
from server.payments import tenders
from server.payments.models import Tender

KIND = {"principal": PRINCIPAL, "bonus": BONUS}


async def _capture(
    order: Order, asked: dict[str, Any], left: int, conn: Any
) -> list[tenders.Captured]:
    if order.kind in tenders.BALANCE_PURCHASES:
        raise Conflict(
            "stored value cannot buy gift cards or stored value", code="STORED_VALUE_NOT_ACCEPTED"
        )
    member_id = int(order.member_id)  # type: ignore[attr-defined]
    want = min(int(asked["fen"]), left)
    parts = await stored_value.spend(member_id, want, order.order_no, conn)
    return [
        tenders.Captured(ref, amount, "储值" if ref == "principal" else "储值赠送")
        for ref, amount in parts
    ]


async def _give_back(order: Order, tender: Tender, why: str, conn: Any) -> None:
    member_id = int(order.member_id)  # type: ignore[attr-defined]
    account = await ledger.member_account(KIND[tender.ref], member_id, connection=conn)
    reason = "spend_return" if why == "return" else "spend_refund"
    await ledger.post(account.id, tender.amount_fen, reason, order.order_no, connection=conn)


tenders.register(tenders.TenderSource("stored_value", _capture, _give_back))


async def _capture_points(
    order: Order, asked: dict[str, Any], left: int, conn: Any
) -> list[tenders.Captured]:
    """Points pay 1 fen each, for at most half of the order's goods; spent oldest lot first."""
    if order.kind in tenders.BALANCE_PURCHASES:
        raise Conflict("points cannot buy gift cards or stored value", code="POINTS_NOT_ACCEPTED")
    points = int(asked["points"])
    cap = int(order.goods_fen * service.POINTS_SHARE_MAX)
    if points > cap:
        raise Conflict(
            f"points pay at most half of the goods: {cap} here",
            code="POINTS_LIMIT",
            details={"max_points": cap},
        )
    take = min(points, left)
    try:
        await service.spend_points(int(order.member_id), take, "spend", order.order_no, conn)  # type: ignore[attr-defined]
    except ledger.BalanceTooLow:
        raise Conflict("not enough points for this", code="NOT_ENOUGH_POINTS") from None
    return [tenders.Captured("points", take, f"积分 {take}")] if take else []


async def _give_back_points(order: Order, tender: Tender, why: str, conn: Any) -> None:
    """Back to the member like an earning: a debt is paid first, the rest is a new lot valid
    as any points earned today."""
    reason = "spend_return" if why == "return" else "spend_refund"
    member_id = int(order.member_id)  # type: ignore[attr-defined]
    await service.credit_after_debt(member_id, tender.amount_fen, reason, order.order_no, conn)


tenders.register(tenders.TenderSource("points", _capture_points, _give_back_points))
