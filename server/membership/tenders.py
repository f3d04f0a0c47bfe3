"""Stored value as a tender of `/orders/{no}/pay` (registered with payments.tenders).

A spend takes from principal and bonus in proportion to what each holds (the bonus share
rounded down), as two tenders, so a refund gives each account back exactly its part."""

from __future__ import annotations

from typing import Any

from server.infra.errors import Conflict
from server.ledger import service as ledger
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
