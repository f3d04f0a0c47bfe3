"""Printed (bearer) cards: batches for the printer, binding by PIN, expiry and its notice.

A bearer card holds at most 1,000 yuan and is valid its design's `valid_days` (>= 3 years);
expired, it keeps its money, and binding reactivates it as a named card that never expires
(MOFCOM 2012 prepaid-card rules, as reported).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import logging
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tortoise.transactions import in_transaction

from server.giftcards.models import CardStatus, GiftCard, GiftCardBatch
from server.giftcards.service import BEARER_MAX_FEN, get_design, new_card
from server.identity import service as identity
from server.infra.clock import utcnow
from server.infra.errors import Conflict, RateLimited, ValidationFailed
from server.ledger import service as ledger
from server.outbox import service as outbox
from server.settings import Settings

log = logging.getLogger("haodian.giftcards")

PIN_TRIES = 5  # wrong PINs per hour, per card and per member
PIN_WINDOW_S = 3600
EXPIRY_NOTICE = timedelta(days=7)
EXPIRY_TEMPLATE = "giftcard_expiry"


def pin_hash(settings: Settings, card_no: str, pin: str) -> str:
    """HMAC with the server's secret, not a slow hash: a 6-digit PIN is one in a million
    whatever the hash, so what protects it is the attempt limit online and the secret key
    offline (a leaked table alone cannot be searched)."""
    key = hmac.new(settings.secret, b"gift-card-pin", hashlib.sha256).digest()  # own key
    return hmac.new(key, f"{card_no}:{pin}".encode(), hashlib.sha256).hexdigest()


async def create_batch(
    settings: Settings, operator_id: int, design_id: int, face_value_fen: int, count: int
) -> tuple[GiftCardBatch, str]:
    """Printed cards: numbers and PINs returned once, as CSV for the printer (only the PIN's
    HMAC is kept). Each card is a bearer card: at most 1,000 yuan, valid the design's days."""
    design = await get_design(design_id, live=True)
    if not 0 < face_value_fen <= BEARER_MAX_FEN:
        raise ValidationFailed(
            f"a bearer card holds at most {BEARER_MAX_FEN} fen (1,000 yuan)",
            code="FACE_VALUE_OUT_OF_RANGE",
        )
    expires = utcnow() + timedelta(days=design.valid_days)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["card_no", "pin", "face_value_fen", "expires_at"])
    async with in_transaction() as conn:
        batch = await GiftCardBatch.create(
            design_id=design.id,
            face_value_fen=face_value_fen,
            count=count,
            created_by=operator_id,
            using_db=conn,
        )
        for i in range(count):
            pin = f"{secrets.randbelow(10**6):06d}"
            card = await new_card(
                conn,
                design_id=design.id,
                face_fen=face_value_fen,
                holder_id=None,
                reason="issue_batch",
                reference=f"batch:{batch.id}:{i + 1}",
                batch_id=batch.id,
                expires_at=expires,
            )
            digest = pin_hash(settings, card.card_no, pin)
            await GiftCard.filter(id=card.id).using_db(conn).update(pin_hash=digest)
            writer.writerow([card.card_no, pin, face_value_fen, expires.isoformat()])
    return batch, out.getvalue()


PIN_SCRIPT = Path(__file__).parent / "lua" / "pin_attempt.lua"


def _pin_keys(card_no: str, member_id: int) -> tuple[str, str]:
    return f"gc:pin:card:{card_no}", f"gc:pin:member:{member_id}"


async def _count_attempt(redis: Any, scripts: Any, card_no: str, member_id: int) -> None:
    """Count this try for the card and for the member before the PIN is checked; over the
    limit on either, refuse it (429) whatever the PIN. One script call per key, so each
    counter is exact and the two may live on different cluster nodes."""
    counts = [
        int(await scripts.run(PIN_SCRIPT, [key], [1, PIN_WINDOW_S]))
        for key in _pin_keys(card_no, member_id)
    ]
    if max(counts) > PIN_TRIES:
        ttl = max([await redis.ttl(k) for k in _pin_keys(card_no, member_id)] + [1])
        raise RateLimited(
            "too many wrong PINs; try again in an hour",
            code="TOO_MANY_ATTEMPTS",
            headers={"Retry-After": str(ttl)},
        )


async def _uncount_attempt(scripts: Any, card_no: str, member_id: int) -> None:
    """A right PIN is not a wrong one: take its try back."""
    for key in _pin_keys(card_no, member_id):
        await scripts.run(PIN_SCRIPT, [key], [-1, PIN_WINDOW_S])


async def bind(
    settings: Settings, redis: Any, scripts: Any, member_id: int, card_no: str, pin: str
) -> tuple[GiftCard, bool]:
    """Bind a printed card to the member with its PIN: it becomes a named card that never
    expires (an expired one is reactivated with its money: the answer says so). Wrong PINs
    count per card and per member; the 6th within the hour is refused even if right."""
    await _count_attempt(redis, scripts, card_no, member_id)
    card = await GiftCard.get_or_none(card_no=card_no)
    right = (
        card is not None
        and card.pin_hash is not None
        and hmac.compare_digest(card.pin_hash, pin_hash(settings, card_no, pin))
    )
    if not right:
        raise ValidationFailed("the card number or PIN is wrong", code="CARD_OR_PIN_WRONG")
    await _uncount_attempt(scripts, card_no, member_id)
    assert card is not None
    async with in_transaction() as conn:
        locked = await GiftCard.filter(id=card.id).select_for_update().using_db(conn).get()
        if locked.holder_id is not None:
            raise Conflict("this card is bound already", code="CARD_ALREADY_BOUND")
        if locked.status not in (CardStatus.ACTIVE, CardStatus.EXPIRED):
            raise Conflict(f"this card is {locked.status}", code="CARD_NOT_USABLE")
        reactivated = locked.status == CardStatus.EXPIRED
        await (
            GiftCard.filter(id=card.id)
            .using_db(conn)
            .update(
                holder_id=member_id,
                status=CardStatus.ACTIVE,
                bound_at=utcnow(),
                expires_at=None,
            )
        )
        await ledger.transfer(
            card.account_id, member_id, "bind", f"card:{card.id}", connection=conn
        )
    await card.refresh_from_db()
    return card, reactivated


async def expire_bearer_cards(now: datetime | None = None) -> int:
    """Bearer cards past their date become `expired` (the money stays on them: binding
    reactivates them)."""
    now = now or utcnow()
    return await GiftCard.filter(
        status=CardStatus.ACTIVE, holder_id=None, expires_at__lte=now
    ).update(status=CardStatus.EXPIRED)


async def remind_expiring(now: datetime | None = None) -> int:
    """7 days before a dated card expires, its holder (when known) gets a subscribe message
    (once: `reminded_at`, set in the transaction that emits it)."""
    now = now or utcnow()
    due = await GiftCard.filter(
        status=CardStatus.ACTIVE,
        expires_at__lte=now + EXPIRY_NOTICE,
        expires_at__gt=now,
        reminded_at=None,
        holder_id__not_isnull=True,
    ).limit(500)
    sent = 0
    for card in due:
        async with in_transaction() as conn:
            if (
                await GiftCard.filter(id=card.id, reminded_at=None)
                .using_db(conn)
                .update(reminded_at=now)
            ):
                await outbox.emit(
                    "giftcards.expiry_notice",
                    {"card_id": card.id},
                    connection=conn,
                    key=f"gce:{card.id}",
                )
                sent += 1
    return sent


@outbox.handler("giftcards.expiry_notice")
async def _tell_holder(event: Any, env: outbox.Env) -> None:
    card = await GiftCard.get_or_none(id=event.payload["card_id"])
    if card is None or card.holder_id is None or card.expires_at is None:
        return
    balance = await ledger.balance(card.account_id)
    data = {
        "thing1": f"礼品卡 {card.card_no[-4:]}",
        "amount2": f"{balance / 100:.2f}元",
        "date3": f"{card.expires_at:%Y-%m-%d}",
    }
    await identity.send_member_message(
        env.settings,
        env.wechat,
        card.holder_id,
        EXPIRY_TEMPLATE,
        data,
        page=f"pages/giftcards/card?id={card.id}",
    )
