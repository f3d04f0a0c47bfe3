"""Gift cards as a tender of `/orders/{no}/pay` (registered with payments.tenders)."""

from __future__ import annotations

from typing import Any

from server.giftcards import service
from server.infra.errors import Conflict
from server.ledger import service as ledger
from server.orders.models import Order
from server.payments import tenders
from server.payments.models import Tender


async def _capture(
    order: Order, asked: dict[str, Any], left: int, conn: Any
) -> list[tenders.Captured]:
    """Each card, in the order the shopper listed them, pays min(its balance, what is left),
    read under the card's lock. With `expect_fen` (what the checkout showed), cards that now
    cover another amount capture nothing: 409 CARD_BALANCE_CHANGED."""
    if order.kind in tenders.BALANCE_PURCHASES:
        raise Conflict(
            "a gift card cannot buy gift cards or stored value", code="GIFT_CARD_NOT_ACCEPTED"
        )
    ids = [int(r) for r in asked["refs"]]
    cards = await service.lock_cards(int(order.member_id), ids, conn)  # type: ignore[attr-defined]
    balances = await service.card_balances(cards, conn)
    out: list[tenders.Captured] = []
    for card in cards:
        take = min(balances[card.id], left)
        if take <= 0:
            if left > 0:
                raise Conflict(
                    f"gift card {service.masked(card.card_no)} is empty",
                    code="CARD_EMPTY",
                    details={"card_id": card.id},
                )
            continue
        await ledger.post(card.account_id, -take, "spend", order.order_no, connection=conn)
        out.append(tenders.Captured(str(card.id), take, f"礼品卡 {card.card_no[-4:]}"))
        left -= take
    expected = asked.get("expect_fen")
    got = sum(p.amount_fen for p in out)
    if expected is not None and got != expected:
        raise Conflict(
            "the cards' balance changed since checkout; look again before paying",
            code="CARD_BALANCE_CHANGED",
            details={"expected_fen": expected, "available_fen": got},
        )
    return out


async def _give_back(order: Order, tender: Tender, why: str, conn: Any) -> None:
    await service.give_back(order, int(tender.ref), tender.amount_fen, why, conn)


tenders.register(tenders.TenderSource("gift_card", _capture, _give_back))
