"""Gift cards: designs, cards, buying (an order of kind `giftcard`), money going back, figures.

Giving and claiming are in `gifts.py`, printed cards and PINs in `printed.py`, paying with a
card (the tender source of `/orders/{no}/pay`) in `tenders.py`.

Money rules (each card is one ledger account; nothing here writes a balance):
- A card bought in the app is bound to its buyer: face value at most 5,000 yuan, no expiry.
  A printed (bearer) card holds at most 1,000 yuan and is valid `valid_days` (>= 3 years);
  expired, it keeps its money and binding reactivates it (MOFCOM 2012 prepaid-card rules).
- One card is in one place: `active` (can pay, can be given), `gifting` (on a gift: cannot
  pay), `expired`, `refunded`. Every move between them is a compare-and-set on the card row,
  which is also the lock every payment, gift and claim of that card queues on.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from tortoise.exceptions import IntegrityError

from server.giftcards.models import (
    CardStatus,
    GiftCard,
    GiftCardDesign,
)
from server.identity import merge
from server.infra.clock import utcnow
from server.infra.errors import Conflict, NotFound, ValidationFailed
from server.infra.models import is_id
from server.ledger import service as ledger
from server.ledger.models import LedgerAccount
from server.orders import lifecycle
from server.orders import service as orders
from server.orders.models import Order, OrderKind, OrderStatus

log = logging.getLogger("haodian.giftcards")

ACCOUNT_KIND = "giftcard"
BOUND_MAX_FEN = 500_000  # a card bound to a member: at most 5,000 yuan
BEARER_MAX_FEN = 100_000  # an unbound (bearer) card: at most 1,000 yuan
BEARER_MIN_DAYS = 1095  # and valid at least 3 years
REAL_NAME_FEN = 1_000_000  # one purchase of 10,000 yuan or more needs real names: not offered


# -- designs ------------------------------------------------------------------------------------


async def create_design(
    operator_id: int | None,
    *,
    name: str,
    face_values_fen: list[int],
    valid_days: int,
    cover_url: str | None = None,
    theme: str | None = None,
) -> GiftCardDesign:
    faces = sorted(set(face_values_fen))
    if not faces or any(f <= 0 or f > BOUND_MAX_FEN for f in faces):
        raise ValidationFailed(
            f"face values are 1 to {BOUND_MAX_FEN} fen (a bound card holds at most 5,000 yuan)",
            code="FACE_VALUE_OUT_OF_RANGE",
        )
    if valid_days < BEARER_MIN_DAYS:
        raise ValidationFailed(
            f"a bearer card is valid at least {BEARER_MIN_DAYS} days (3 years)",
            code="VALIDITY_TOO_SHORT",
        )
    return await GiftCardDesign.create(
        name=name,
        face_values_fen=faces,
        valid_days=valid_days,
        cover_url=cover_url,
        theme=theme,
        created_by=operator_id,
    )


async def designs(*, include_retired: bool) -> list[GiftCardDesign]:
    query = GiftCardDesign.all() if include_retired else GiftCardDesign.filter(retired_at=None)
    return await query.order_by("id")


async def get_design(design_id: int, *, live: bool = False) -> GiftCardDesign:
    design = await GiftCardDesign.get_or_none(id=design_id) if is_id(design_id) else None
    if design is None or (live and design.retired_at is not None):
        raise NotFound(f"no gift card design {design_id}", code="DESIGN_NOT_FOUND")
    return design


async def retire_design(design_id: int) -> GiftCardDesign:
    """No longer sold; cards already out keep working."""
    design = await get_design(design_id)
    await GiftCardDesign.filter(id=design_id, retired_at=None).update(retired_at=utcnow())
    await design.refresh_from_db()
    return design


# -- cards ----------------------------------------------------------------------------------------


def new_card_no() -> str:
    return "8" + "".join(str(secrets.randbelow(10)) for _ in range(15))


def masked(card_no: str) -> str:
    return f"{card_no[:4]} **** **** {card_no[-4:]}"


async def new_card(
    conn: Any,
    *,
    design_id: int,
    face_fen: int,
    holder_id: int | None,
    reason: str,
    reference: str,
    **extra: Any,
) -> GiftCard:
    """A card with its own ledger account, credited `face_fen` by (reason, reference)."""
    account = await ledger.open_account(ACCOUNT_KIND, member_id=holder_id, connection=conn)
    await ledger.post(account.id, face_fen, reason, reference, connection=conn)
    for _ in range(5):
        try:
            async with conn._in_transaction() as sp:
                return await GiftCard.create(
                    card_no=new_card_no(),
                    design_id=design_id,
                    face_value_fen=face_fen,
                    account_id=account.id,
                    holder_id=holder_id,
                    using_db=sp,
                    **extra,
                )
        except IntegrityError:
            if (
                "order_no" in extra
                and await GiftCard.filter(order_no=extra["order_no"], seq=extra.get("seq"))
                .using_db(conn)
                .exists()
            ):
                raise
    raise Conflict("could not number a card; try again", code="CARD_NUMBER_CONTENDED")


async def card_balances(cards: list[GiftCard], conn: Any = None) -> dict[int, int]:
    accounts = await ledger.accounts_of([c.account_id for c in cards], conn)
    return {c.id: int(accounts[c.account_id].balance) for c in cards}


def card_view(card: GiftCard, balance: int, design: GiftCardDesign | None = None) -> dict[str, Any]:
    return {
        "id": card.id,
        "card_no": masked(card.card_no),
        "balance_fen": balance,
        "face_value_fen": card.face_value_fen,
        "expires_at": card.expires_at,
        "status": str(card.status),
        "design": design_view(design) if design else None,
    }


def design_view(design: GiftCardDesign) -> dict[str, Any]:
    return {
        "id": design.id,
        "name": design.name,
        "face_values_fen": list(design.face_values_fen),
        "valid_days": design.valid_days,
        "cover_url": design.cover_url,
        "theme": design.theme,
        "retired": design.retired_at is not None,
    }


async def my_cards(member_id: int) -> list[dict[str, Any]]:
    cards = await GiftCard.filter(holder_id=member_id).order_by("-id").prefetch_related("design")
    balances = await card_balances(cards)
    return [card_view(c, balances[c.id], c.design) for c in cards]


async def my_card(member_id: int, card_id: int) -> GiftCard:
    card = await GiftCard.get_or_none(id=card_id, holder_id=member_id) if is_id(card_id) else None
    if card is None:
        raise NotFound(f"you hold no gift card {card_id}", code="CARD_NOT_FOUND")
    return card


async def card_out(member_id: int, card_id: int) -> dict[str, Any]:
    card = await GiftCard.get(id=card_id, holder_id=member_id).prefetch_related("design")
    return card_view(card, await ledger.balance(card.account_id), card.design)


async def card_ledger(member_id: int, card_id: int) -> list[dict[str, Any]]:
    """The card's entries while this member held it, newest first."""
    card = await my_card(member_id, card_id)
    rows = await ledger.entries(card.account_id, member_id=member_id, limit=200)
    return [
        {
            "amount_fen": e.amount,
            "balance_after_fen": e.balance_after,
            "reason": e.reason,
            "reference": e.reference,
            "at": e.created_at,
        }
        for e in rows
    ]


# -- buying ----------------------------------------------------------------------------------------


async def place_order(member_id: int, design_id: int, face_value_fen: int, quantity: int) -> Order:
    """An order of kind `giftcard`; its `paid` hook issues the cards."""
    design = await get_design(design_id, live=True)
    if face_value_fen not in design.face_values_fen:
        raise ValidationFailed(
            f"this design is sold at {design.face_values_fen} fen",
            code="FACE_VALUE_NOT_OFFERED",
            details={"face_values_fen": list(design.face_values_fen)},
        )
    if face_value_fen * quantity >= REAL_NAME_FEN:
        raise ValidationFailed(
            "one purchase of 10,000 yuan or more needs real-name registration; buy less",
            code="REAL_NAME_REQUIRED",
        )
    return await orders.create_order(
        kind=OrderKind.GIFTCARD,
        member_id=member_id,
        lines=[
            orders.LineIn(
                sku_id=None,
                name=f"{design.name} {face_value_fen // 100} 元",
                quantity=quantity,
                unit_price_fen=face_value_fen,
            )
        ],
        source=f"gcd:{design.id}",
        actor=f"member:{member_id}",
    )


@lifecycle.on(OrderStatus.PAID, kinds=[OrderKind.GIFTCARD])
async def _issue_cards(move: lifecycle.Move) -> None:
    """The payment is in: one card per unit, each credited once (the paid move happens once,
    and (order, seq) is unique besides)."""
    order = move.order
    design_id = int(str(order.source).removeprefix("gcd:"))
    lines = await orders.order_lines(order)
    buyer = int(order.member_id)  # type: ignore[attr-defined]
    seq = 0
    for line in lines:
        for _ in range(line.quantity):
            seq += 1
            await new_card(
                move.conn,
                design_id=design_id,
                face_fen=line.unit_price_fen,
                holder_id=buyer,
                reason="issue",
                reference=f"{order.order_no}:{seq}",
                buyer_id=buyer,
                order_no=order.order_no,
                seq=seq,
                bound_at=utcnow(),
            )


@lifecycle.on(OrderStatus.REFUNDING, kinds=[OrderKind.GIFTCARD])
async def _take_cards_back(move: lifecycle.Move) -> None:
    """A purchase is refunded only while every card it bought is untouched: held by the buyer,
    on no gift, never spent. Then each card is emptied and closed in the refund's transaction
    (WeChat's own gift-card refund has the same rule)."""
    order = move.order
    cards = (
        await GiftCard.filter(order_no=order.order_no)
        .select_for_update()
        .using_db(move.conn)
        .order_by("id")
    )
    balances = await card_balances(cards, move.conn)
    buyer = int(order.member_id)  # type: ignore[attr-defined]
    for card in cards:
        if (
            card.holder_id != buyer
            or card.status != CardStatus.ACTIVE
            or balances[card.id] != card.face_value_fen
        ):
            raise Conflict(
                "a card of this purchase was given away or spent; it can no longer be refunded",
                code="CARD_IN_USE",
                details={"card": masked(card.card_no)},
            )
    for card in cards:
        await ledger.post(
            card.account_id,
            -card.face_value_fen,
            "purchase_refund",
            order.order_no,
            connection=move.conn,
        )
        await GiftCard.filter(id=card.id).using_db(move.conn).update(status=CardStatus.REFUNDED)


# -- paying with cards (see tenders.py) and giving money back -------------------------------------


async def lock_cards(member_id: int, card_ids: list[int], conn: Any) -> list[GiftCard]:
    """The member's cards, locked (in id order: two payments never wait on each other in a
    circle), each one that may pay now; refused otherwise."""
    cards = {
        c.id: c
        for c in await GiftCard.filter(id__in=card_ids)
        .select_for_update()
        .using_db(conn)
        .order_by("id")
    }
    now = utcnow()
    out = []
    for card_id in card_ids:
        card = cards.get(card_id)
        if card is None or card.holder_id != member_id:
            raise NotFound(f"you hold no gift card {card_id}", code="CARD_NOT_FOUND")
        if card.status != CardStatus.ACTIVE or (card.expires_at and card.expires_at <= now):
            raise Conflict(
                f"gift card {masked(card.card_no)} cannot pay now ({card.status})",
                code="CARD_NOT_USABLE",
                details={"card_id": card_id, "status": str(card.status)},
            )
        out.append(card)
    return out


async def give_back(order: Order, card_id: int, amount: int, why: str, conn: Any) -> None:
    """Put a card tender's amount back: on the card while the payer still holds it; if the
    card has been given away since (or is on a gift now), on a new card of the same design
    for the payer, so the money follows the person who paid and never a friend's card."""
    reason = "spend_return" if why == "return" else "spend_refund"
    card = await GiftCard.filter(id=card_id).select_for_update().using_db(conn).get()
    payer = int(order.member_id)  # type: ignore[attr-defined]
    if card.holder_id == payer and card.status in (CardStatus.ACTIVE, CardStatus.EXPIRED):
        await ledger.post(card.account_id, amount, reason, order.order_no, connection=conn)
        return
    replacement = await new_card(
        conn,
        design_id=card.design_id,  # type: ignore[attr-defined]
        face_fen=amount,
        holder_id=payer,
        reason=f"{reason}_card",
        reference=f"{order.order_no}:{card.id}",
        bound_at=utcnow(),
    )
    log.info(
        "card money went back on a new card",
        extra={"order_no": order.order_no, "card": card.id, "new_card": replacement.id},
    )


# -- operators' figures -------------------------------------------------------------------------


async def stats() -> dict[str, Any]:
    """Every figure is a ledger sum (or a count of cards), so they cannot drift apart:
    outstanding = sold + printed + replacement cards − spent − refunded."""
    sums = await ledger.sums_by_reason(ACCOUNT_KIND)

    def total(*reasons: str) -> int:
        return sum(sums.get(r, (0, 0))[0] for r in reasons)

    def count(*reasons: str) -> int:
        return sum(sums.get(r, (0, 0))[1] for r in reasons)

    accounts = LedgerAccount.filter(kind=ACCOUNT_KIND)
    outstanding = sum(int(b) for b in await accounts.values_list("balance", flat=True))
    expired_cards = await GiftCard.filter(status=CardStatus.EXPIRED)
    expired_balances = await card_balances(expired_cards)
    return {
        "sold": {"count": count("issue"), "fen": total("issue")},
        "printed": {"count": count("issue_batch"), "fen": total("issue_batch")},
        "spent_fen": -total("spend", "spend_return", "spend_refund"),
        "returned_to_new_cards_fen": total("spend_return_card", "spend_refund_card"),
        "refunded": {"count": count("purchase_refund"), "fen": -total("purchase_refund")},
        "expired": {"count": len(expired_cards), "fen": sum(expired_balances.values())},
        "outstanding_fen": outstanding,
        "ledger_fen": sum(t for t, _ in sums.values()),
    }


# Merges (identity): a member's cards and gifts move with them.
merge.register_member_owned(GiftCard, "holder_id")
merge.register_member_owned(GiftCard, "buyer_id")
