"""Gift cards: operators' designs, batches and figures; shoppers buy, give, claim and bind."""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse, Request
from sanic.response import text
from sanic_ext import openapi

from server.giftcards import gifts, printed, service
from server.giftcards.schemas import (
    BatchIn,
    BindIn,
    BoundCardOut,
    BuyIn,
    CardList,
    CardOut,
    ClaimIn,
    DesignIn,
    DesignList,
    DesignOut,
    EntryList,
    GiftCardStatsOut,
    GiftLandingOut,
    GiftList,
    GiftOut,
    GiveIn,
)
from server.infra import auth
from server.infra.http import body, component, idempotency_key, respond, returns
from server.orders.idempotency import place_once
from server.orders.schemas import OrderOut
from server.wechat.client import client_for

bp = Blueprint("giftcards", url_prefix="/api/v1")

DESIGN_ROLES = ["admin", "marketing"]


# -- operators ---------------------------------------------------------------------------------


@bp.post("/admin/gift-card-designs")
@auth.authenticated("operator", roles=DESIGN_ROLES)
@body(DesignIn)
@returns(DesignOut, status=201)
async def create_design(request: Request, payload: DesignIn) -> HTTPResponse:
    design = await service.create_design(request.ctx.principal.subject, **payload.model_dump())
    return respond(service.design_view(design), status=201)


@bp.get("/admin/gift-card-designs")
@auth.authenticated("operator")
@returns(DesignList)
async def admin_designs(request: Request) -> HTTPResponse:
    items = await service.designs(include_retired=True)
    return respond({"items": [service.design_view(d) for d in items]})


@bp.post("/admin/gift-card-designs/<design_id:int>/retire")
@auth.authenticated("operator", roles=DESIGN_ROLES)
@returns(DesignOut)
async def retire_design(request: Request, design_id: int) -> HTTPResponse:
    """Stop selling a design; its cards keep working."""
    return respond(service.design_view(await service.retire_design(design_id)))


@bp.post("/admin/gift-card-batches")
@auth.authenticated("operator", roles=["admin"])
@body(BatchIn)
@openapi.response(201, {"text/csv": str}, "card_no,pin,face_value_fen,expires_at: shown once")
async def create_batch(request: Request, payload: BatchIn) -> HTTPResponse:
    """Printed cards for stores. The numbers and PINs are in this answer only (CSV for the
    printer); the server keeps the PINs' HMAC."""
    batch, csv_text = await printed.create_batch(
        request.app.ctx.settings,
        request.ctx.principal.subject,
        payload.design_id,
        payload.face_value_fen,
        payload.count,
    )
    return text(
        csv_text,
        status=201,
        content_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="gift-cards-{batch.id}.csv"',
            "Cache-Control": "no-store",
        },
    )


@bp.get("/admin/gift-cards/stats")
@auth.authenticated("operator")
@returns(GiftCardStatsOut)
async def stats(request: Request) -> HTTPResponse:
    """Sold, printed, spent, refunded, expired and outstanding (the liability): ledger sums."""
    return respond(await service.stats())


# -- shoppers: buying and holding ----------------------------------------------------------------


@bp.get("/gift-cards/designs")
@returns(DesignList)
async def shop_designs(request: Request) -> HTTPResponse:
    """The designs on sale, with their face values."""
    items = await service.designs(include_retired=False)
    return respond({"items": [service.design_view(d) for d in items]})


@bp.post("/gift-cards/orders")
@auth.authenticated("member")
@openapi.parameter("Idempotency-Key", str, location="header", required=True)
@body(BuyIn)
@returns(OrderOut, status=201)
async def buy(request: Request, payload: BuyIn) -> HTTPResponse:
    """An order of kind `giftcard`; pay it with `/orders/{no}/pay` (WeChat Pay: a gift card
    cannot buy gift cards). The cards appear in `/me/gift-cards` once it is paid."""
    member_id = request.ctx.principal.subject
    key = idempotency_key(request)  # money: a second tap must not buy twice

    status, answer = await place_once(
        member_id,
        "/gift-cards/orders",
        key,
        payload.model_dump(mode="json"),
        lambda: service.place_order(
            member_id, payload.design_id, payload.face_value_fen, payload.quantity
        ),
    )
    return respond(answer, status=status)


@bp.get("/me/gift-cards")
@auth.authenticated("member")
@returns(CardList)
async def my_cards(request: Request) -> HTTPResponse:
    return respond({"items": await service.my_cards(request.ctx.principal.subject)})


@bp.get("/me/gift-cards/<card_id:int>/ledger")
@auth.authenticated("member")
@returns(EntryList)
async def card_ledger(request: Request, card_id: int) -> HTTPResponse:
    """The card's money moves while you held it, newest first."""
    items = await service.card_ledger(request.ctx.principal.subject, card_id)
    return respond({"items": items})


@bp.post("/me/gift-cards/bind")
@auth.authenticated("member")
@body(BindIn)
@returns(BoundCardOut)
async def bind(request: Request, payload: BindIn) -> HTTPResponse:
    """Bind a printed card with its PIN (5 wrong PINs an hour lock the card and you out)."""
    ctx = request.app.ctx
    member_id = request.ctx.principal.subject
    card, reactivated = await printed.bind(
        ctx.settings, ctx.redis, ctx.scripts, member_id, payload.card_no, payload.pin
    )
    shown = await service.card_out(member_id, card.id)
    return respond({**shown, "reactivated": reactivated})


# -- giving and claiming -------------------------------------------------------------------------


@bp.post("/me/gift-cards/<card_id:int>/gifts")
@auth.authenticated("member")
@body(GiveIn)
@returns(GiftOut, status=201)
@openapi.response(
    202, {"application/json": component(GiftOut)}, "moderation is down: the gift waits"
)
async def give(request: Request, card_id: int, payload: GiveIn) -> HTTPResponse:
    """Give a card with a greeting (checked by WeChat moderation first). 201 with the share
    link to send in a chat; 202 while moderation is unavailable (status `checking`: poll
    `/me/gifts/{gift_no}` for the link)."""
    client = client_for(request.app.ctx)
    gift = await gifts.give(client, request.ctx.principal.subject, card_id, payload.greeting)
    shared = await gifts.gift_share(client, gift)
    return respond(gifts.gift_view(gift, shared), status=201 if shared else 202)


@bp.get("/me/gifts")
@auth.authenticated("member")
@returns(GiftList)
async def my_gifts(request: Request) -> HTTPResponse:
    mine = await gifts.my_gifts(request.ctx.principal.subject)
    return respond({"items": [gifts.gift_view(g) for g in mine]})


@bp.get("/me/gifts/<gift_no:ref>")
@auth.authenticated("member")
@returns(GiftOut)
async def my_gift(request: Request, gift_no: str) -> HTTPResponse:
    gift = await gifts.my_gift(request.ctx.principal.subject, gift_no)
    shared = await gifts.gift_share(client_for(request.app.ctx), gift)
    return respond(gifts.gift_view(gift, shared))


@bp.post("/me/gifts/<gift_no:ref>/cancel")
@auth.authenticated("member")
@returns(GiftOut)
async def cancel_gift(request: Request, gift_no: str) -> HTTPResponse:
    """Take back a gift nobody has claimed yet."""
    gift = await gifts.cancel_gift(request.ctx.principal.subject, gift_no)
    return respond(gifts.gift_view(gift))


@bp.get("/gifts/<gift_no:ref>")
@returns(GiftLandingOut)
async def landing(request: Request, gift_no: str) -> HTTPResponse:
    """The gift's landing page (what the share link opens; no sign-in needed)."""
    return respond(await gifts.landing(gift_no))


@bp.post("/gifts/<gift_no:ref>/claim")
@auth.authenticated("member")
@body(ClaimIn)
@returns(CardOut, status=201)
async def claim(request: Request, gift_no: str, payload: ClaimIn) -> HTTPResponse:
    """Claim a friend's gift: the card and its money are yours (one claimer wins)."""
    member_id = request.ctx.principal.subject
    card = await gifts.claim(member_id, gift_no, payload.scene)
    return respond(await service.card_out(member_id, card.id), status=201)
