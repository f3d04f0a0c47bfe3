"""The shopper's address book: where takeout goes. Phones are sealed at rest and shown masked."""

from __future__ import annotations

from typing import Any

from tortoise.transactions import in_transaction

from server.identity.models import Member
from server.identity.sealing import mask_phone, seal, unseal
from server.infra.errors import Conflict, NotFound
from server.infra.models import is_id
from server.settings import Settings
from server.takeout.models import Address

MAX_ADDRESSES = 20
PHONE_PURPOSE = "phone"  # the member's phone key: an address phone is the same kind of secret


def address_view(a: Address) -> dict[str, Any]:
    return {
        "id": a.id,
        "contact": a.contact,
        "phone": a.phone_masked,
        "text": a.text,
        "lat": a.lat,
        "lng": a.lng,
        "updated_at": a.updated_at,
    }


def sealed_phone(settings: Settings, phone: str) -> tuple[str, str]:
    return seal(settings, PHONE_PURPOSE, phone), mask_phone(phone)


def open_phone(settings: Settings, sealed: str) -> str | None:
    return unseal(settings, PHONE_PURPOSE, sealed)


async def list_addresses(member_id: int) -> list[Address]:
    return await Address.filter(member_id=member_id).order_by("-updated_at", "-id")


async def get_address(member_id: int, address_id: int) -> Address:
    a = await Address.get_or_none(id=address_id, member_id=member_id) if is_id(address_id) else None
    if a is None:
        raise NotFound(f"you have no address {address_id}", code="ADDRESS_NOT_FOUND")
    return a


async def add_address(settings: Settings, member_id: int, data: dict[str, Any]) -> Address:
    """At most MAX_ADDRESSES per member: the member row is locked while counting, so two
    adds at once cannot both take the last place."""
    sealed, masked = sealed_phone(settings, data["phone"])
    async with in_transaction() as conn:
        await Member.filter(id=member_id).select_for_update().using_db(conn).first()
        if await Address.filter(member_id=member_id).using_db(conn).count() >= MAX_ADDRESSES:
            raise Conflict(
                f"an address book holds at most {MAX_ADDRESSES} addresses; delete one first",
                code="ADDRESS_BOOK_FULL",
            )
        return await Address.create(
            member_id=member_id,
            contact=data["contact"],
            phone_sealed=sealed,
            phone_masked=masked,
            text=data["text"],
            lat=data["lat"],
            lng=data["lng"],
            using_db=conn,
        )


async def update_address(
    settings: Settings, member_id: int, address_id: int, changes: dict[str, Any]
) -> Address:
    a = await get_address(member_id, address_id)
    for key in ("contact", "text", "lat", "lng"):
        if changes.get(key) is not None:
            setattr(a, key, changes[key])
    if changes.get("phone") is not None:
        a.phone_sealed, a.phone_masked = sealed_phone(settings, changes["phone"])
    await a.save()
    return a


async def delete_address(member_id: int, address_id: int) -> None:
    """Orders keep their own copy of the address, so deleting one changes no order."""
    a = await get_address(member_id, address_id)
    await a.delete()
