"""Giving a card with a greeting, and claiming it: one compare-and-set on the gift decides.

A gift's fate is one compare-and-set on the gift row: claimed, cancelled by the giver or
returned after 24 h, whichever comes first; the card follows in that transaction (`gifting`
while the gift is open, so it cannot pay). The greeting is shown to others only after WeChat
moderation passed it.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Any

from redis.exceptions import RedisError
from tortoise.transactions import in_transaction

from server.giftcards.models import CardStatus, Gift, GiftCard, GiftStatus
from server.giftcards.service import design_view, my_card
from server.identity import merge
from server.identity import service as identity
from server.infra.clock import utcnow
from server.infra.errors import Conflict, NotFound, ValidationFailed
from server.ledger import service as ledger
from server.outbox import service as outbox
from server.share import service as share
from server.wechat.errors import WeChatBadRequest, WeChatError, WeChatUserRisky

log = logging.getLogger("haodian.giftcards")

GIFT_HOURS = 24
GIFT_NO_MAX = 16
SHARE_KIND = "gift"
SHARE_PAGE = "pages/giftcards/claim"


def new_gift_no() -> str:
    return "G" + secrets.token_hex(6).upper()


async def _gift(gift_no: str, conn: Any = None) -> Gift:
    gift = (
        await Gift.filter(gift_no=gift_no).using_db(conn).first()
        if len(gift_no) <= GIFT_NO_MAX
        else None
    )
    if gift is None:
        raise NotFound("no such gift", code="GIFT_NOT_FOUND")
    return gift


async def _moderate(client: Any, member_id: int, greeting: str) -> str | None:
    """WeChat's verdict on the greeting (pass | review | risky), None when WeChat is down."""
    ident = await identity.member_wechat_identity(member_id)
    if ident is None:
        raise Conflict("sign in with WeChat before giving a card", code="NO_WECHAT_IDENTITY")
    openid, appid = ident
    try:
        verdict = await client.msg_sec_check(openid, greeting, scene=2, appid=appid)
    except (WeChatBadRequest, WeChatUserRisky):
        raise
    except (WeChatError, RedisError) as exc:
        log.warning("moderation unavailable; the gift waits", extra={"error": str(exc)[:120]})
        return None
    return str(verdict.get("suggest") or "risky")


def _rejected(verdict: str) -> ValidationFailed:
    return ValidationFailed(
        "the greeting was not accepted by content moderation; write another",
        code="GREETING_REJECTED",
        details={"verdict": verdict},
    )


async def give(client: Any, member_id: int, card_id: int, greeting: str) -> Gift:
    """Put a card on a gift. The greeting is checked first: risky refuses (nothing changes),
    review passes flagged; with WeChat down the gift waits, unshown, and the worker checks
    again (outbox `giftcards.check`) — nothing is sent unchecked."""
    card = await my_card(member_id, card_id)
    if card.status != CardStatus.ACTIVE or await ledger.balance(card.account_id) <= 0:
        raise Conflict("only an active card with money on it can be given", code="CARD_NOT_GIVABLE")
    verdict = await _moderate(client, member_id, greeting)
    if verdict == "risky":
        raise _rejected(verdict)
    async with in_transaction() as conn:
        moved = (
            await GiftCard.filter(id=card.id, holder_id=member_id, status=CardStatus.ACTIVE)
            .using_db(conn)
            .update(status=CardStatus.GIFTING)
        )
        if not moved:
            raise Conflict("this card is no longer free to give", code="CARD_NOT_GIVABLE")
        if await ledger.balance(card.account_id, conn) <= 0:
            raise Conflict("only a card with money on it can be given", code="CARD_NOT_GIVABLE")
        gift = await Gift.create(
            gift_no=new_gift_no(),
            card_id=card.id,
            giver_id=member_id,
            greeting=greeting,
            amount_fen=await ledger.balance(card.account_id, conn),
            verdict=verdict or "",
            status=GiftStatus.PENDING if verdict else GiftStatus.CHECKING,
            expires_at=utcnow() + timedelta(hours=GIFT_HOURS),
            using_db=conn,
        )
        if verdict:
            await _schedule_return(gift, conn)
        else:
            await outbox.emit(
                "giftcards.check",
                {"gift_no": gift.gift_no},
                connection=conn,
                key=f"gc:{gift.gift_no}",
            )
    if verdict == "review":
        log.warning("gift greeting passed for review", extra={"gift_no": gift.gift_no})
    return gift


async def _schedule_return(gift: Gift, conn: Any) -> None:
    await outbox.emit(
        "giftcards.return",
        {"gift_no": gift.gift_no},
        connection=conn,
        key=f"gr:{gift.gift_no}",
        delay=gift.expires_at - utcnow(),
    )


@outbox.handler("giftcards.check")
async def _check_later(event: Any, env: outbox.Env) -> None:
    """Moderation was down when the gift was made: ask again (a failure is retried with
    back-off by the outbox). Pass or review: the gift goes out, its 24 h starting now."""
    gift = await _gift(event.payload["gift_no"])
    if gift.status != GiftStatus.CHECKING:
        return
    verdict = await _moderate(env.wechat, gift.giver_id, gift.greeting)
    if verdict is None:
        raise RuntimeError("moderation still unavailable")
    async with in_transaction() as conn:
        if verdict == "risky":
            await _end_gift(gift, GiftStatus.REJECTED, [GiftStatus.CHECKING], conn, verdict=verdict)
            return
        expires = utcnow() + timedelta(hours=GIFT_HOURS)
        changed = (
            await Gift.filter(id=gift.id, status=GiftStatus.CHECKING)
            .using_db(conn)
            .update(status=GiftStatus.PENDING, verdict=verdict, expires_at=expires)
        )
        if changed:
            gift.expires_at = expires
            await _schedule_return(gift, conn)


async def _end_gift(
    gift: Gift, to: GiftStatus, from_: list[GiftStatus], conn: Any, **updates: Any
) -> bool:
    """The gift ends without a claim (cancelled, returned, rejected): the card is the giver's
    to use again. False when the gift had already ended otherwise."""
    changed = (
        await Gift.filter(id=gift.id, status__in=from_)
        .using_db(conn)
        .update(status=to, finished_at=utcnow(), **updates)
    )
    if changed:
        await (
            GiftCard.filter(id=gift.card_id, status=CardStatus.GIFTING)
            .using_db(conn)
            .update(  # type: ignore[attr-defined]
                status=CardStatus.ACTIVE
            )
        )
    return bool(changed)


@outbox.handler("giftcards.return")
async def _return_unclaimed(event: Any, env: outbox.Env) -> None:
    await return_if_expired(event.payload["gift_no"])


async def return_if_expired(gift_no: str) -> bool:
    gift = await _gift(gift_no)
    if gift.status != GiftStatus.PENDING:
        return False
    if gift.expires_at > utcnow():
        raise RuntimeError("the gift is not due yet")  # an early delivery: the outbox retries
    async with in_transaction() as conn:
        return await _end_gift(gift, GiftStatus.RETURNED, [GiftStatus.PENDING], conn)


async def claim(member_id: int, gift_no: str, scene: str | None = None) -> GiftCard:
    """One compare-and-set decides: of friends claiming at once, and of a claim racing the
    giver's cancel or the 24 h return, exactly one wins; the card and its money move to the
    claimer in the same transaction (a ledger transfer)."""
    now = utcnow()
    async with in_transaction() as conn:
        gift = await _gift(gift_no, conn)
        won = (
            await Gift.filter(id=gift.id, status=GiftStatus.PENDING, expires_at__gt=now)
            .exclude(giver_id=member_id)
            .using_db(conn)
            .update(status=GiftStatus.CLAIMED, claimer_id=member_id, finished_at=now)
        )
        if won:
            card = await GiftCard.filter(id=gift.card_id).select_for_update().using_db(conn).get()  # type: ignore[attr-defined]
            await (
                GiftCard.filter(id=card.id)
                .using_db(conn)
                .update(status=CardStatus.ACTIVE, holder_id=member_id)
            )
            await ledger.transfer(card.account_id, member_id, "gift", gift_no, connection=conn)
            await share.record_conversion(scene, member_id, SHARE_KIND, gift_no, connection=conn)
            await card.refresh_from_db(using_db=conn)
            return card
    gift = await _gift(gift_no)
    if gift.giver_id == member_id:
        raise Conflict("this is your own gift", code="OWN_GIFT")
    if gift.status == GiftStatus.CLAIMED:
        raise Conflict("someone claimed this gift first", code="GIFT_ALREADY_CLAIMED")
    if gift.status == GiftStatus.PENDING:  # past its 24 h: back to the giver now
        await return_if_expired(gift_no)
        raise Conflict("this gift was not claimed in time", code="GIFT_EXPIRED")
    if gift.status == GiftStatus.CHECKING:
        raise Conflict("this gift is not ready yet", code="GIFT_NOT_READY")
    raise Conflict(f"this gift was {gift.status}", code="GIFT_NOT_CLAIMABLE")


async def cancel_gift(member_id: int, gift_no: str) -> Gift:
    """The giver takes an unclaimed gift back (racing a claim: one outcome)."""
    gift = await _gift(gift_no)
    if gift.giver_id != member_id:
        raise NotFound("no such gift", code="GIFT_NOT_FOUND")
    async with in_transaction() as conn:
        ended = await _end_gift(
            gift, GiftStatus.CANCELLED, [GiftStatus.PENDING, GiftStatus.CHECKING], conn
        )
    await gift.refresh_from_db()
    if not ended:
        if gift.status == GiftStatus.CLAIMED:
            raise Conflict("a friend claimed it already", code="GIFT_ALREADY_CLAIMED")
        raise Conflict(f"this gift was {gift.status}", code="GIFT_NOT_CANCELLABLE")
    return gift


async def gift_share(client: Any, gift: Gift) -> dict[str, Any] | None:
    """The gift's share link (kind `gift`), once it may be shown."""
    if gift.status != GiftStatus.PENDING:
        return None
    shared, _ = await share.create_share(client, SHARE_KIND, gift.gift_no, gift.giver_id)
    return shared


async def _shareable(target: str, sharer_id: int) -> None:
    gift = await Gift.get_or_none(gift_no=target)
    if gift is None or gift.giver_id != sharer_id:
        raise NotFound("no such gift of yours", code="GIFT_NOT_FOUND")
    if gift.status != GiftStatus.PENDING:
        raise Conflict(f"this gift is {gift.status}", code="GIFT_NOT_SHAREABLE")


share.register_kind(SHARE_KIND, SHARE_PAGE, _shareable, param="gift")


async def landing(gift_no: str) -> dict[str, Any]:
    """What a friend sees before claiming (no sign-in): the greeting only once moderation
    passed it, the amount given (not the card's balance now: that is the holder's business)."""
    gift = await _gift(gift_no)
    card = await GiftCard.get(id=gift.card_id).prefetch_related("design")  # type: ignore[attr-defined]
    giver = (await identity.public_profiles([gift.giver_id])).get(gift.giver_id, {})
    checked = gift.verdict in ("pass", "review")
    return {
        "gift_no": gift.gift_no,
        "status": str(gift.status),
        "greeting": gift.greeting if checked else None,
        "giver": {"nickname": giver.get("nickname", ""), "avatar_url": giver.get("avatar_url")},
        "design": design_view(card.design),
        "amount_fen": gift.amount_fen,
        "expires_at": gift.expires_at,
    }


def gift_view(gift: Gift, shared: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "gift_no": gift.gift_no,
        "card_id": gift.card_id,  # type: ignore[attr-defined]
        "status": str(gift.status),
        "greeting": gift.greeting,
        "flagged": gift.verdict == "review",
        "expires_at": gift.expires_at,
        "share": shared,
    }


async def my_gift(member_id: int, gift_no: str) -> Gift:
    gift = (
        await Gift.get_or_none(gift_no=gift_no, giver_id=member_id)
        if len(gift_no) <= GIFT_NO_MAX
        else None
    )
    if gift is None:
        raise NotFound("no such gift of yours", code="GIFT_NOT_FOUND")
    return gift


async def my_gifts(member_id: int) -> list[Gift]:
    return await Gift.filter(giver_id=member_id).order_by("-id").limit(100)


merge.register_member_owned(Gift, "giver_id")
merge.register_member_owned(Gift, "claimer_id")
