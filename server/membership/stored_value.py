"""Stored value (储值): top-up plans, top-ups (orders of kind `topup`) whose payment credits
principal and bonus, and the rule for refunding a top-up. Spending it is the `stored_value`
tender (tenders.py)."""

from __future__ import annotations

from typing import Any

from server.infra.errors import Conflict, NotFound, ValidationFailed
from server.infra.models import is_id
from server.ledger import service as ledger
from server.ledger.models import LedgerEntry
from server.membership.models import StoredValuePlan
from server.membership.service import BONUS, PRINCIPAL
from server.orders import lifecycle
from server.orders import service as orders
from server.orders.models import Order, OrderKind, OrderStatus


async def create_plan(operator_id: int | None, pay_fen: int, credit_fen: int) -> StoredValuePlan:
    if credit_fen < pay_fen:
        raise ValidationFailed("a plan credits at least what is paid", code="PLAN_INVALID")
    return await StoredValuePlan.create(
        pay_fen=pay_fen, credit_fen=credit_fen, created_by=operator_id
    )


async def plans() -> list[StoredValuePlan]:
    return await StoredValuePlan.filter(active=True).order_by("pay_fen")


async def top_up(member_id: int, plan_id: int) -> Order:
    """An order of kind `topup` for the plan (paid with WeChat Pay); its `paid` hook credits."""
    plan = await StoredValuePlan.get_or_none(id=plan_id, active=True) if is_id(plan_id) else None
    if plan is None:
        raise NotFound(f"no top-up plan {plan_id}", code="PLAN_NOT_FOUND")
    return await orders.create_order(
        kind=OrderKind.TOPUP,
        member_id=member_id,
        lines=[
            orders.LineIn(
                None,
                f"储值 {plan.pay_fen // 100} 元得 {plan.credit_fen // 100} 元",
                1,
                plan.pay_fen,
            )
        ],
        source=f"svp:{plan.id}:{plan.credit_fen - plan.pay_fen}",
        actor=f"member:{member_id}",
    )


def _bonus_of(order: Order) -> int:
    return int(str(order.source).rsplit(":", 1)[1])


@lifecycle.on(OrderStatus.PAID, kinds=[OrderKind.TOPUP])
async def _credit_top_up(move: lifecycle.Move) -> None:
    """Principal and bonus: two entries, on two accounts, in the payment's transaction."""
    order = move.order
    member_id = int(order.member_id)  # type: ignore[attr-defined]
    principal = await ledger.member_account(PRINCIPAL, member_id, connection=move.conn)
    await ledger.post(
        principal.id, order.payable_fen, "topup", order.order_no, connection=move.conn
    )
    if bonus_fen := _bonus_of(order):
        bonus = await ledger.member_account(BONUS, member_id, connection=move.conn)
        await ledger.post(bonus.id, bonus_fen, "topup", order.order_no, connection=move.conn)


@lifecycle.on(OrderStatus.REFUNDING, kinds=[OrderKind.TOPUP])
async def _take_top_up_back(move: lifecycle.Move) -> None:
    """A top-up is refunded only while its money is unspent: the principal and the bonus
    accounts still hold at least what it credited (spends take from both in proportion, so
    any spend since touches the bonus). Otherwise 409 STORED_VALUE_IN_USE."""
    order = move.order
    member_id = int(order.member_id)  # type: ignore[attr-defined]
    principal = await ledger.member_account(PRINCIPAL, member_id, connection=move.conn)
    credited = (
        await LedgerEntry.filter(account_id=principal.id, reason="topup", reference=order.order_no)
        .using_db(move.conn)
        .exists()
    )
    if not credited:
        return  # paid after it was closed: it never credited, only WeChat's money goes back
    try:
        await ledger.post(
            principal.id, -order.payable_fen, "topup_refund", order.order_no, connection=move.conn
        )
        if bonus_fen := _bonus_of(order):
            bonus = await ledger.member_account(BONUS, member_id, connection=move.conn)
            await ledger.post(
                bonus.id, -bonus_fen, "topup_refund", order.order_no, connection=move.conn
            )
    except ledger.BalanceTooLow:
        raise Conflict(
            "this top-up has been spent in part; it can no longer be refunded",
            code="STORED_VALUE_IN_USE",
        ) from None


async def spend(member_id: int, fen: int, reference: str, conn: Any) -> list[tuple[str, int]]:
    """Take `fen` of stored value for `reference` (an order, a till receipt): from principal
    and bonus in proportion to what each holds (the bonus share rounded down), both rows
    locked in id order first. [("principal" | "bonus", fen)], what each gave."""
    principal = await ledger.member_account(PRINCIPAL, member_id, connection=conn)
    bonus = await ledger.member_account(BONUS, member_id, connection=conn)
    held = {
        a.id: int((await ledger.lock(a.id, conn)).balance)
        for a in sorted([principal, bonus], key=lambda a: a.id)
    }
    total = held[principal.id] + held[bonus.id]
    if total < fen:
        raise Conflict(
            "not enough stored value for this",
            code="STORED_VALUE_TOO_LOW",
            details={"available_fen": total, "asked_fen": fen},
        )
    from_bonus = fen * held[bonus.id] // total if total else 0
    out = []
    for ref, account_id, amount in (
        ("principal", principal.id, fen - from_bonus),
        ("bonus", bonus.id, from_bonus),
    ):
        if amount > 0:
            await ledger.post(account_id, -amount, "spend", reference, connection=conn)
            out.append((ref, amount))
    return out
