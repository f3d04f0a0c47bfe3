"""Tenders: an order paid by gift cards, stored value or points beside (or instead of) WeChat Pay.

Payments knows no scenario: a balance that can pay registers a `TenderSource` by kind
(`register`), from a module listed in SOURCE_MODULES. `/orders/{no}/pay` captures the asked
balances in one transaction, with the order row locked, so every card is re-checked at the
moment it pays (Sylius gift-card plugin #278) and two phones cannot spend one balance twice
(the ledger's conditional UPDATE). Sources are walked in registration order and each takes
at most what is still unpaid, so two cards never both cover the same fen (Saleor #13640).
A fully covered order is paid there and then; otherwise WeChat Pay is asked for the rest.

Every way an unpaid order ends (the shopper, the timeout, a refused payment) goes through the
`cancelled` transition, whose hook here gives every captured tender back in that
transaction. A refund gives each tender back what it paid and leaves WeChat's part to the
WeChat refund.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from server.infra.errors import Conflict
from server.orders import lifecycle
from server.orders.models import Order, OrderKind, OrderStatus
from server.payments.models import Tender, TenderStatus

WECHAT = "wechat"
# Balances do not buy balances: a gift card, stored value or points never pay for gift cards
# or a top-up (each source refuses these kinds with its own code).
BALANCE_PURCHASES = frozenset({OrderKind.GIFTCARD, OrderKind.TOPUP})


@dataclass(frozen=True)
class Captured:
    ref: str
    amount_fen: int
    label: str


# capture(order, what the shopper asked for, fen still unpaid, conn) -> what it took
Capture = Callable[[Order, Any, int, Any], Awaitable[list[Captured]]]
# give_back(order, tender, "return" | "refund", conn): put the tender's amount back
GiveBack = Callable[[Order, Tender, str, Any], Awaitable[None]]


@dataclass(frozen=True)
class TenderSource:
    kind: str
    capture: Capture
    give_back: GiveBack


_SOURCES: dict[str, TenderSource] = {}

# Modules that register tender sources; imported before the first payment.
SOURCE_MODULES: list[str] = ["server.giftcards.tenders", "server.membership.tenders"]


def register(source: TenderSource) -> None:
    _SOURCES[source.kind] = source


def sources() -> list[TenderSource]:
    for name in SOURCE_MODULES:
        importlib.import_module(name)
    return list(_SOURCES.values())


def _source(kind: str) -> TenderSource:
    sources()
    return _SOURCES[kind]


async def of_order(order_id: int, connection: Any = None) -> list[Tender]:
    return await Tender.filter(order_id=order_id).using_db(connection).order_by("id")


async def captured_fen(order_id: int, connection: Any = None) -> int:
    """What balances (not WeChat) have captured for this order and still hold."""
    rows = await Tender.filter(order_id=order_id, status=TenderStatus.CAPTURED).using_db(connection)
    return sum(t.amount_fen for t in rows if t.kind != WECHAT)


async def wechat_due(order: Order, connection: Any = None) -> int:
    """What WeChat Pay was asked for: the payable less every balance captured for the order
    (including balances given back since: the WeChat amount was fixed when it was opened)."""
    rows = await Tender.filter(order_id=order.id).using_db(connection)
    return order.payable_fen - sum(t.amount_fen for t in rows if t.kind != WECHAT)


async def wechat_total(order_id: int, connection: Any = None) -> int | None:
    """The WeChat Pay transaction's total, when the order recorded one."""
    row = await Tender.filter(order_id=order_id, kind=WECHAT).using_db(connection).first()
    return row.amount_fen if row else None


async def capture(order: Order, asked: dict[str, Any], conn: Any) -> int:
    """Capture what the shopper asked for (kind -> the body's value) on a locked, unpaid
    order; returns the fen still unpaid. A second request with the same balances (a double
    tap) captures nothing more; with other balances it is refused."""
    held = [t for t in await of_order(order.id, conn) if t.status == TenderStatus.CAPTURED]
    left = order.payable_fen - sum(t.amount_fen for t in held if t.kind != WECHAT)
    if held:
        if all(
            _same(kind, value, [t for t in held if t.kind == kind]) for kind, value in asked.items()
        ):
            return left
        raise Conflict(
            "this order is already partly paid with other balances; pay the rest, or cancel",
            code="TENDERS_ALREADY_APPLIED",
            details={"tenders": [t.kind for t in held]},
        )
    for source in sources():
        value = asked.get(source.kind)
        if not value or left == 0:
            continue
        for part in await source.capture(order, value, left, conn):
            if part.amount_fen <= 0 or part.amount_fen > left:
                raise RuntimeError(f"{source.kind} captured {part.amount_fen} of {left}")
            await Tender.create(
                order_id=order.id,
                kind=source.kind,
                ref=part.ref,
                amount_fen=part.amount_fen,
                label=part.label[:64],
                using_db=conn,
            )
            left -= part.amount_fen
    return left


def _same(kind: str, value: Any, held: list[Tender]) -> bool:
    refs = value.get("refs") if isinstance(value, dict) else None
    if refs is None:
        return bool(held)
    return sorted(str(r) for r in refs) == sorted(t.ref for t in held)


async def record_wechat(order: Order, transaction_id: str, amount_fen: int, conn: Any) -> None:
    await Tender.create(
        order_id=order.id,
        kind=WECHAT,
        ref=transaction_id[:64] or order.order_no,
        amount_fen=amount_fen,
        label="WeChat Pay",
        using_db=conn,
    )


async def give_back_all(order: Order, why: str, conn: Any) -> int:
    """Give every captured balance back ("return" on cancel, "refund" on refund); returns
    WeChat's captured part, which only a WeChat refund can give back."""
    wechat = 0
    status = TenderStatus.RETURNED if why == "return" else TenderStatus.REFUNDED
    for tender in await of_order(order.id, conn):
        if tender.status != TenderStatus.CAPTURED:
            continue
        if tender.kind == WECHAT:
            wechat += tender.amount_fen
            if why == "refund":
                await Tender.filter(id=tender.id).using_db(conn).update(status=status)
            continue
        changed = (
            await Tender.filter(id=tender.id, status=TenderStatus.CAPTURED)
            .using_db(conn)
            .update(status=status)
        )
        if changed:
            await _source(tender.kind).give_back(order, tender, why, conn)
    return wechat


@lifecycle.on(OrderStatus.CANCELLED)
async def _return_on_cancel(move: lifecycle.Move) -> None:
    """An order that was never paid in full gives its captured balances back."""
    await give_back_all(move.order, "return", move.conn)


def tenders_out(tenders: list[Tender]) -> list[dict[str, Any]]:
    return [
        {"kind": t.kind, "label": t.label, "amount_fen": t.amount_fen, "status": str(t.status)}
        for t in tenders
    ]
