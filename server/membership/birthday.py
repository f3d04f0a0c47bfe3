"""Birthday packs: on a member's birthday (Asia/Shanghai) the coupons operators put in the
pack, once per member and year, and a subscribe message. A 29 February birthday is kept on
28 February in other years."""

from __future__ import annotations

import calendar
import logging
from datetime import date, datetime
from typing import Any

from tortoise.exceptions import DoesNotExist, IntegrityError
from tortoise.transactions import in_transaction

from server.identity import merge
from server.identity import service as identity
from server.identity.models import Member
from server.infra.clock import SHANGHAI, utcnow
from server.infra.errors import AppError, ValidationFailed
from server.membership.models import BirthdayGrant, MembershipSetting
from server.outbox import service as outbox

log = logging.getLogger("haodian.membership")

PACK_KEY = "birthday_pack"
TEMPLATE = "birthday_gift"
BATCH = 1000


async def pack_templates() -> list[int]:
    row = await MembershipSetting.get_or_none(key=PACK_KEY)
    return [int(t) for t in (row.value.get("template_ids", []) if row else [])]


async def set_pack(template_ids: list[int]) -> list[int]:
    from server.coupons.models import CouponTemplate

    known = set(await CouponTemplate.filter(id__in=template_ids).values_list("id", flat=True))
    if set(template_ids) - known:
        missing = sorted(set(template_ids) - known)
        raise ValidationFailed(f"no coupon templates {missing}", code="TEMPLATE_NOT_FOUND")
    row = await MembershipSetting.get_or_none(key=PACK_KEY)
    value = {"template_ids": list(dict.fromkeys(template_ids))}
    if row is None:
        await MembershipSetting.create(key=PACK_KEY, value=value)
    else:
        await MembershipSetting.filter(id=row.id).update(value=value)
    return value["template_ids"]


def birthdays_on(day: date) -> list[str]:
    """The "MMDD"s whose birthday is `day`: 29 February counts on 28 February in common years."""
    days = [f"{day:%m%d}"]
    if day.month == 2 and day.day == 28 and not calendar.isleap(day.year):
        days.append("0229")
    return days


async def give_packs(now: datetime | None = None) -> dict[str, int]:
    """The daily job: every member whose birthday is today gets the pack once this year (run
    it twice, or on two workers, and the unique grant lets one through)."""
    today = (now or utcnow()).astimezone(SHANGHAI).date()
    templates = await pack_templates()
    counts = {"members": 0, "packs": 0}
    last_id = 0
    while True:
        ids = (
            await Member.filter(
                birthday_md__in=birthdays_on(today),
                merged_into_id=None,
                disabled=False,
                id__gt=last_id,
            )
            .order_by("id")
            .limit(BATCH)
            .values_list("id", flat=True)
        )
        if not ids:
            return counts
        for member_id in ids:
            counts["members"] += 1
            if await _give(int(member_id), today.year, templates):
                counts["packs"] += 1
        last_id = int(ids[-1])


async def _give(member_id: int, year: int, templates: list[int]) -> bool:
    from server.coupons import service as coupons

    async with in_transaction() as conn:
        try:
            async with conn._in_transaction() as sp:
                await BirthdayGrant.create(member_id=member_id, year=year, using_db=sp)
        except IntegrityError:
            return False  # this year's pack went out already
        for template_id in templates:
            try:
                async with conn._in_transaction() as sp:
                    await coupons.grant_coupon(
                        template_id, member_id, f"birthday:{year}:{member_id}:{template_id}", sp
                    )
            except (AppError, DoesNotExist) as exc:
                log.error(
                    "a birthday coupon could not be granted",
                    extra={"member": member_id, "template": template_id, "error": str(exc)[:200]},
                )
        await outbox.emit(
            "membership.birthday",
            {"member": member_id, "year": year},
            connection=conn,
            key=f"bd:{member_id}:{year}",
        )
    return True


@outbox.handler("membership.birthday")
async def _greet(event: Any, env: outbox.Env) -> None:
    await identity.send_member_message(
        env.settings,
        env.wechat,
        int(event.payload["member"]),
        TEMPLATE,
        {"thing1": "生日快乐! 生日礼券已到账", "thing2": "到我的券查看"},
        page="pages/coupons/mine",
    )


merge.register_member_owned(
    BirthdayGrant, "member_id", mover=merge.keep_one_mover(BirthdayGrant, "year")
)
