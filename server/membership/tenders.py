"""Stored value as a tender of `/orders/{no}/pay` (registered with payments.tenders).

A spend takes from principal and bonus in proportion to what each holds (the bonus share
rounded down), as two tenders, so a refund gives each account back exactly its part."""

from __future__ import annotations

from typing import Any

from server.infra.errors import Conflict
from server.ledger import service as ledger
from server.membership import service
from server.membership.service import BONUS, PRINCIPAL
from server.orders.models import Order, OrderKind
from server.payments import tenders
from server.payments.models import Tender

NOT_FOR = (OrderKind.GIFTCARD, OrderKind.TOPUP)  # balances do not buy balances
KIND = {"principal": PRINCIPAL, "bonus": BONUS}


async def _capture(
    order: Order, asked: dict[str, Any], left: int, conn: Any
) -> list[tenders.Captured]:
    if order.kind in NOT_FOR:
        raise Conflict(
            "stored value cannot buy gift cards or stored value", code="STORED_VALUE_NOT_ACCEPTED"
        )
    member_id = int(order.member_id)  # type: ignore[attr-defined]
    want = min(int(asked["fen"]), left)
    principal = await ledger.member_account(PRINCIPAL, member_id, connection=conn)
    bonus = await ledger.member_account(BONUS, member_id, connection=conn)
    # Both rows locked, in id order, before reading what they hold.
    held = {
        a.id: int((await ledger.lock(a.id, conn)).balance)
        for a in sorted([principal, bonus], key=lambda a: a.id)
    }
    total = held[principal.id] + held[bonus.id]
    if total < want:
        raise Conflict(
            "not enough stored value for this",
            code="STORED_VALUE_TOO_LOW",
            details={"available_fen": total, "asked_fen": want},
        )
    from_bonus = want * held[bonus.id] // total if total else 0
    parts = [("principal", principal.id, want - from_bonus), ("bonus", bonus.id, from_bonus)]
    out = []
    for ref, account_id, amount in parts:
        if amount > 0:
            await ledger.post(account_id, -amount, "spend", order.order_no, connection=conn)
            out.append(tenders.Captured(ref, amount, "储值" if ref == "principal" else "储值赠送"))
    return out


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
    if order.kind in NOT_FOR:
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
