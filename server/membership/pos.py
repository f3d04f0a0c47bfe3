"""The member at the till: the member code (a live code, like a coupon's), what a clerk sees
when scanning it, and in-store sales that earn growth and points and may be paid with stored
value. Clerks act only for their own stores; a receipt is recorded once per store."""

from __future__ import annotations

from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from server.coupons import service as coupons
from server.identity import service as identity
from server.identity.models import Member
from server.infra import livecodes
from server.infra.clock import utcnow
from server.infra.errors import Conflict, Forbidden, ValidationFailed
from server.ledger import service as ledger
from server.membership import service, stored_value
from server.membership.models import GrowthEvent, PosSale

MEMBER_CODE = livecodes.CodeKind("HM1", b"haodian/member-code/v1", "member code")
PAY_WITH = ("cash", "stored_value")


async def member_code(redis: Any, secret: bytes, member_id: int) -> dict[str, Any]:
    return await livecodes.issue(redis, livecodes.sign(secret, MEMBER_CODE, member_id, 0))


async def _store_of(staff_id: int, store_id: int | None) -> int:
    stores = await identity.staff_store_ids(staff_id)
    if not stores:
        raise Forbidden("this staff account works at no store", code="STORE_NOT_ALLOWED")
    if store_id is None:
        if len(stores) != 1:
            raise ValidationFailed(
                "you work at several stores: say which one (store_id)", code="STORE_REQUIRED"
            )
        return next(iter(stores))
    if store_id not in stores:
        raise Forbidden("you are not staff of that store", code="STORE_NOT_ALLOWED")
    return store_id


async def _member_of(redis: Any, secret: bytes, text: str) -> Member:
    code = await livecodes.resolve(redis, text)
    member_id, _, _ = livecodes.verify(secret, MEMBER_CODE, code)
    member = await Member.get_or_none(id=member_id)
    if member is None or member.disabled or member.merged_into_id is not None:
        raise livecodes.CodeInvalid("this member code names no active member")
    return member


async def identify(
    redis: Any, secret: bytes, staff_id: int, text: str, store_id: int | None
) -> dict[str, Any]:
    store = await _store_of(staff_id, store_id)
    member = await _member_of(redis, secret, text)
    view = await service.my_membership(member.id)
    return {
        "member_id": member.id,
        "name": await coupons.member_display(member.id),
        "tier": view["tier"],
        "points": view["points"],
        "stored_value_fen": view["stored_value_fen"],
        "store_id": store,
        "coupons": await coupons.usable_in_store(member.id, store),
    }


async def record_sale(
    redis: Any,
    secret: bytes,
    staff_id: int,
    *,
    text: str,
    store_id: int | None,
    receipt_no: str,
    amount_fen: int,
    pay_with: str,
) -> tuple[PosSale, bool]:
    """Record a till purchase once per (store, receipt): growth and points as for an online
    order (a till sale is consumption, whatever paid it), and with `stored_value` the
    balance debited in the same transaction. The same receipt again gives the first sale;
    the same number for another sale is refused."""
    store = await _store_of(staff_id, store_id)
    member = await _member_of(redis, secret, text)
    first = await PosSale.get_or_none(store_id=store, receipt_no=receipt_no)
    if first is not None:
        return _same_sale(first, member.id, amount_fen, pay_with), False
    try:
        async with in_transaction() as conn:
            sale = await PosSale.create(
                store_id=store,
                receipt_no=receipt_no,
                member_id=member.id,
                staff_id=staff_id,
                amount_fen=amount_fen,
                pay_with=pay_with,
                using_db=conn,
            )
            ref = f"pos:{sale.id}"
            if pay_with == "stored_value":
                await stored_value.spend(member.id, amount_fen, ref, conn)
            await GrowthEvent.create(
                member_id=member.id, fen=amount_fen, kind="pos", ref=ref, at=utcnow(), using_db=conn
            )
            points = await service.points_for(member.id, amount_fen, conn)
            await service.credit_after_debt(member.id, points, "earn", ref, conn)
            await PosSale.filter(id=sale.id).using_db(conn).update(points=points)
            sale.points = points
            await service.upgrade(member.id, ref, conn)
    except IntegrityError:
        first = await PosSale.get(store_id=store, receipt_no=receipt_no)  # a simultaneous copy
        return _same_sale(first, member.id, amount_fen, pay_with), False
    return sale, True


def _same_sale(sale: PosSale, member_id: int, amount_fen: int, pay_with: str) -> PosSale:
    if (sale.member_id, sale.amount_fen, sale.pay_with) != (member_id, amount_fen, pay_with):
        raise Conflict("this receipt number was recorded for another sale", code="RECEIPT_REUSED")
    return sale


async def sale_view(sale: PosSale) -> dict[str, Any]:
    return {
        "id": sale.id,
        "store_id": sale.store_id,
        "receipt_no": sale.receipt_no,
        "member_id": sale.member_id,
        "amount_fen": sale.amount_fen,
        "pay_with": sale.pay_with,
        "points": sale.points,
        "stored_value_fen": await ledger.member_balance(service.PRINCIPAL, sale.member_id)
        + await ledger.member_balance(service.BONUS, sale.member_id),
    }
