"""Who may act: members (WeChat), staff (clerks, store managers), operators (HQ).

Rules only; no Sanic here. Other domains call:

- (merges: `server.identity.merge` — `register_member_owned`, `on_member_merged`);
- `member_openid(member_id, appid)`, `member_phone(settings, member_id)`;
- `public_profiles(member_ids)`: masked nickname + avatar, what other shoppers may see;
- `staff_store_ids(staff_id)`, `staff_works_at(staff_id, store_id)`,
  `staff_is_manager_of(staff_id, store_id)`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from server.identity import merge
from server.identity.models import (
    Gender,
    Member,
    Operator,
    Staff,
    StaffRole,
    StaffStore,
    WeChatIdentity,
)
from server.identity.sealing import lookup_hash, mask_phone, seal, unseal
from server.infra import auth
from server.infra.clock import SHANGHAI, utcnow
from server.infra.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from server.infra.passwords import check_password, hash_password
from server.settings import Settings
from server.wechat.client import Session, WeChatClient

log = logging.getLogger("haodian.identity")

OPERATOR_ROLES = ("admin", "marketing", "store_ops")
BIRTHDAY_LOCK = timedelta(days=365)


# ================================================================================================
# Operators
# ================================================================================================


async def create_or_reset_operator(
    username: str, password: str, roles: list[str] | None = None
) -> tuple[Operator, bool]:
    """Create the operator, or reset its password (and roles when given). Returns (op, created)."""
    username = username.strip()
    if not username or len(username) > 64:
        raise ValidationFailed("username must be 1-64 characters")
    if len(password) < 8:
        raise ValidationFailed("password must be at least 8 characters")
    bad = [r for r in roles or [] if r not in OPERATOR_ROLES]
    if bad:
        raise ValidationFailed(f"unknown roles {bad}; choose from {list(OPERATOR_ROLES)}")
    pw_hash = await asyncio.to_thread(hash_password, password)
    op = await Operator.get_or_none(username=username)
    if op is None:
        op = await Operator.create(
            username=username, password_hash=pw_hash, roles=roles or ["admin"]
        )
        return op, True
    op.password_hash = pw_hash
    op.disabled = False
    if roles:
        op.roles = roles
    await op.save()
    return op, False


async def authenticate_operator(username: str, password: str) -> Operator:
    op = await Operator.get_or_none(username=username.strip())
    ok = await asyncio.to_thread(check_password, op.password_hash if op else None, password)
    if op is None or not ok or op.disabled:
        raise Unauthorized("wrong username or password", code="LOGIN_FAILED")
    return op


async def get_operator(operator_id: int) -> Operator:
    op = await Operator.get_or_none(id=operator_id, disabled=False)
    if op is None:
        raise NotFound("operator not found")
    return op


# ================================================================================================
# Members: login, phone, profile
# ================================================================================================


async def _resolve_once(
    redis: Redis | None, settings: Settings, appid: str, session: Session
) -> tuple[Member, bool]:
    sealed = seal(settings, "session_key", session.session_key)
    ident = await WeChatIdentity.get_or_none(appid=appid, openid=session.openid)
    if ident is not None:
        member = await merge.follow(await Member.get(id=ident.member_id))
        unionid = session.unionid
        if unionid and member.unionid != unionid:
            if member.unionid is None:
                holder = await Member.get_or_none(unionid=unionid)
                if holder is not None and holder.id != member.id:
                    holder = await merge.follow(holder)
                    try:
                        await merge.merge_members(redis, settings, member.id, holder.id, unionid)
                        member = await Member.get(id=holder.id)
                    except merge.MergeConflict:
                        # Let the shopper in as before; the merge is tried at the next login.
                        unionid = None
                else:
                    # A unique index: a concurrent first login holding it makes this fail,
                    # and the retry merges instead.
                    await Member.filter(id=member.id, unionid__isnull=True).update(unionid=unionid)
                    member.unionid = unionid
            else:
                log.warning(
                    "WeChat gave another unionid for a known identity; kept the first",
                    extra={"member_id": member.id, "appid": appid},
                )
        await WeChatIdentity.filter(id=ident.id).update(
            session_key_sealed=sealed,
            unionid=unionid or ident.unionid,
            last_login_at=utcnow(),
            member_id=member.id,
        )
        return member, False
    async with in_transaction() as conn:
        member = None
        if session.unionid:
            member = await Member.filter(unionid=session.unionid).using_db(conn).first()
            if member is not None:
                member = await merge.follow(member)
        created = member is None
        if member is None:
            member = await Member.create(unionid=session.unionid, using_db=conn)
        await WeChatIdentity.create(
            appid=appid,
            openid=session.openid,
            unionid=session.unionid,
            member_id=member.id,
            session_key_sealed=sealed,
            last_login_at=utcnow(),
            using_db=conn,
        )
    return member, created


async def resolve_identity(
    redis: Redis | None, settings: Settings, appid: str, session: Session
) -> tuple[Member, bool]:
    """The member behind (appid, openid[, unionid]); makes one on the first login.

    Unique constraints decide races: (appid, openid) and member.unionid. A login that
    loses one rolls back and looks again, so 20 simultaneous first logins of one person
    (one phone or several apps) end with exactly one member.
    """
    for attempt in range(6):
        try:
            return await _resolve_once(redis, settings, appid, session)
        except IntegrityError:
            await asyncio.sleep(0.01 * (attempt + 1) + random.random() * 0.02)
    raise Unavailable(
        "too many simultaneous sign-ins for this user; try again",
        code="LOGIN_CONTENDED",
        headers={"Retry-After": "1"},
    )


async def login_member(
    client: WeChatClient, redis: Redis, settings: Settings, code: str, appid: str | None
) -> tuple[Member, dict[str, Any], bool]:
    app = client.app(appid)
    session = await client.code2session(code, app.appid)
    member, created = await resolve_identity(redis, settings, app.appid, session)
    if member.disabled:
        raise Forbidden("this member account is disabled", code="MEMBER_DISABLED")
    tokens = await auth.issue_tokens(
        redis, settings, "member", member.id, extra={"appid": app.appid}
    )
    log.info(
        "member signed in",
        extra={"member_id": member.id, "appid": app.appid, "new_member": created},
    )
    return member, tokens, created


async def get_member(member_id: int) -> Member:
    member = await Member.get_or_none(id=member_id)
    if member is None or member.merged_into_id is not None:
        raise NotFound("member not found", code="MEMBER_NOT_FOUND")
    if member.disabled:
        raise Forbidden("this member account is disabled", code="MEMBER_DISABLED")
    return member


async def member_openid(member_id: int, appid: str) -> str | None:
    """The member's openid in that app (WeChat Pay's payer.openid, subscribe messages)."""
    ident = await WeChatIdentity.get_or_none(member_id=member_id, appid=appid)
    return ident.openid if ident else None


async def member_wechat_identity(
    member_id: int, appid: str | None = None
) -> tuple[str, str] | None:
    """(openid, appid) to speak to WeChat about this member: in `appid` when given and
    known, else their first identity (moderation, subscribe messages)."""
    if appid:
        openid = await member_openid(member_id, appid)
        if openid is not None:
            return openid, appid
    ident = await WeChatIdentity.filter(member_id=member_id).order_by("id").first()
    return (ident.openid, ident.appid) if ident else None


async def send_member_message(
    settings: Settings,
    wechat: Any,
    member_id: int,
    template_name: str,
    data: dict[str, str],
    page: str,
) -> bool:
    """A subscribe message to a member in the main app (else their first), when the template
    is configured; False when it was not sent. 43101 (no subscription left, or refused) is
    the member's choice, not a failure."""
    from server.wechat.errors import WeChatSubscribeRefused

    template = settings.subscribe_template(template_name)
    main = settings.apps[0].appid if settings.apps else None
    ident = await member_wechat_identity(member_id, main)
    if not template or ident is None:
        return False
    openid, appid = ident
    try:
        await wechat.send_subscribe(openid, template, data, appid=appid, page=page)
    except WeChatSubscribeRefused:
        log.info("subscribe message not accepted", extra={"member": member_id})
        return False
    return True


async def member_session_key(settings: Settings, member_id: int, appid: str) -> str | None:
    """For decrypting open data server-side; never send it anywhere."""
    ident = await WeChatIdentity.get_or_none(member_id=member_id, appid=appid)
    if ident is None or not ident.session_key_sealed:
        return None
    return unseal(settings, "session_key", ident.session_key_sealed)


async def member_phone(settings: Settings, member_id: int) -> str | None:
    """The clear phone number, for a domain that must call or text the member."""
    member = await Member.get_or_none(id=member_id)
    if member is None or not member.phone_sealed:
        return None
    return unseal(settings, "phone", member.phone_sealed)


async def find_members_by_phone(settings: Settings, phone: str) -> list[int]:
    ids = await Member.filter(
        phone_hash=lookup_hash(settings, "phone", phone), merged_into_id__isnull=True
    ).values_list("id", flat=True)
    return list(ids)


async def bind_phone(
    client: WeChatClient, settings: Settings, member_id: int, appid: str | None, code: str
) -> Member:
    member = await get_member(member_id)
    info = await client.phone_number(code, appid)
    pure = str(info.get("purePhoneNumber") or info.get("phoneNumber") or "")
    country = str(info.get("countryCode") or "86")
    if not pure.isdigit():
        raise Unavailable("WeChat answered no phone number", code="WECHAT_ERROR")
    full = pure if country == "86" else f"+{country}{pure}"
    member.phone_sealed = seal(settings, "phone", full)
    member.phone_hash = lookup_hash(settings, "phone", full)
    member.phone_masked = mask_phone(pure)
    await member.save(update_fields=["phone_sealed", "phone_hash", "phone_masked", "updated_at"])
    log.info("member phone bound", extra={"member_id": member_id})
    return member


async def update_profile(
    client: WeChatClient,
    member_id: int,
    appid: str | None,
    changes: dict[str, Any],
) -> Member:
    """Nickname (checked by WeChat moderation: others see it), avatar, birthday (set once:
    it drives birthday gifts), gender."""
    member = await get_member(member_id)
    nickname = changes.get("nickname")
    if nickname is not None and nickname != member.nickname:
        ident = await member_wechat_identity(member_id, appid)
        if ident is None:
            raise Conflict("no WeChat identity to check the nickname with")
        openid, appid = ident
        verdict = await client.msg_sec_check(openid, nickname, scene=1, appid=appid)
        if verdict.get("suggest") != "pass":
            raise ValidationFailed(
                "this nickname was not accepted by content moderation",
                code="CONTENT_REJECTED",
                details={"label": verdict.get("label")},
            )
        member.nickname = nickname
    if "avatar_url" in changes and changes["avatar_url"] is not None:
        member.avatar_url = changes["avatar_url"]
    birthday = changes.get("birthday")
    if birthday is not None and birthday != member.birthday:
        # Once a year at most: it decides when the birthday pack comes.
        since = member.birthday_set_at
        if member.birthday is not None and since is not None and utcnow() - since < BIRTHDAY_LOCK:
            raise Conflict(
                "the birthday can be changed once a year",
                code="BIRTHDAY_LOCKED",
                details={"changeable_from": (since + BIRTHDAY_LOCK).isoformat()},
            )
        member.birthday = birthday
        member.birthday_md = f"{birthday:%m%d}"
        member.birthday_set_at = utcnow()
    if changes.get("gender") is not None:
        member.gender = Gender(changes["gender"])
    # Only the profile columns: points and the rest may be changing under us.
    await member.save(
        update_fields=[
            "nickname",
            "avatar_url",
            "birthday",
            "birthday_md",
            "birthday_set_at",
            "gender",
            "updated_at",
        ]
    )
    return member


def member_view(member: Member) -> dict[str, Any]:
    return {
        "id": member.id,
        "nickname": member.nickname,
        "avatar_url": member.avatar_url,
        "birthday": member.birthday,
        "gender": int(member.gender),
        "phone": member.phone_masked or None,
        "points": member.points,
        "tier": member.tier,
        "unionid_bound": member.unionid is not None,
        "created_at": member.created_at.astimezone(SHANGHAI).isoformat(),
    }


async def public_profiles(member_ids: Iterable[int]) -> dict[int, dict[str, str]]:
    """What one shopper may see of others (a sharer, group members): the nickname masked to
    its first character (张三丰 → 张**, none → 微信用户) and the avatar, never a phone. Every id
    asked gets an entry, so a vanished member shows as anonymous rather than a KeyError."""
    ids = sorted({int(i) for i in member_ids})
    rows = await Member.filter(id__in=ids).values_list("id", "nickname", "avatar_url")
    found = {mid: (nick, avatar) for mid, nick, avatar in rows}
    out: dict[int, dict[str, str]] = {}
    for mid in ids:
        nick, avatar = found.get(mid, ("", ""))
        name = (nick or "").strip()
        out[mid] = {"nickname": f"{name[0]}**" if name else "微信用户", "avatar_url": avatar or ""}
    return out


async def set_member_disabled(
    redis: Redis, settings: Settings, member_id: int, disabled: bool
) -> Member:
    member = await Member.get_or_none(id=member_id)
    if member is None:
        raise NotFound("member not found", code="MEMBER_NOT_FOUND")
    member.disabled = disabled
    await member.save(update_fields=["disabled", "updated_at"])
    if disabled:
        await auth.revoke_all(redis, settings, "member", member_id)
    log.info("member disabled" if disabled else "member enabled", extra={"member_id": member_id})
    return member


async def member_admin_view(member_id: int) -> dict[str, Any]:
    member = await Member.get_or_none(id=member_id)
    if member is None:
        raise NotFound("member not found", code="MEMBER_NOT_FOUND")
    appids = await WeChatIdentity.filter(member_id=member_id).values_list("appid", flat=True)
    return {
        **member_view(member),
        "disabled": member.disabled,
        "merged_into": member.merged_into_id,
        "appids": sorted(set(appids)),
    }


# ================================================================================================
# Staff: clerks and store managers
# ================================================================================================


async def _check_store_ids(store_ids: list[int]) -> list[int]:
    from server.stores.models import Store

    wanted = sorted(set(store_ids))
    found = set(await Store.filter(id__in=wanted).values_list("id", flat=True))
    missing = [s for s in wanted if s not in found]
    if missing:
        raise ValidationFailed(
            f"unknown store ids {missing}", code="UNKNOWN_STORE", details={"missing": missing}
        )
    return wanted


async def create_staff(
    username: str, password: str, role: str, store_ids: list[int], name: str = ""
) -> Staff:
    if role not in (r.value for r in StaffRole):
        raise ValidationFailed("role must be clerk or manager")
    if len(password) < 8:
        raise ValidationFailed("password must be at least 8 characters")
    stores = await _check_store_ids(store_ids)
    if await Staff.exists(username=username):
        raise Conflict(f"staff account {username!r} exists already", code="STAFF_EXISTS")
    pw_hash = await asyncio.to_thread(hash_password, password)
    try:
        async with in_transaction() as conn:
            staff = await Staff.create(
                username=username,
                password_hash=pw_hash,
                role=StaffRole(role),
                name=name,
                using_db=conn,
            )
            await StaffStore.bulk_create(
                [StaffStore(staff_id=staff.id, store_id=s) for s in stores], using_db=conn
            )
    except IntegrityError:
        raise Conflict(f"staff account {username!r} exists already", code="STAFF_EXISTS") from None
    log.info("staff account created", extra={"staff_id": staff.id, "role": role})
    return staff


async def update_staff(
    redis: Redis, settings: Settings, staff_id: int, changes: dict[str, Any]
) -> Staff:
    staff = await Staff.get_or_none(id=staff_id)
    if staff is None:
        raise NotFound("staff account not found", code="STAFF_NOT_FOUND")
    revoke = False
    store_ids = changes.get("store_ids")
    stores = await _check_store_ids(store_ids) if store_ids is not None else None
    if changes.get("password") is not None:
        staff.password_hash = await asyncio.to_thread(hash_password, changes["password"])
        revoke = True
    if changes.get("role") is not None and changes["role"] != staff.role.value:
        staff.role = StaffRole(changes["role"])
        revoke = True  # the role is in the token
    if changes.get("name") is not None:
        staff.name = changes["name"]
    if changes.get("disabled") is not None:
        staff.disabled = bool(changes["disabled"])
        revoke = revoke or staff.disabled
    async with in_transaction() as conn:
        await staff.save(using_db=conn)
        if stores is not None:
            await (
                StaffStore.filter(staff_id=staff_id)
                .exclude(store_id__in=stores)
                .using_db(conn)
                .delete()
            )
            have = set(
                await StaffStore.filter(staff_id=staff_id)
                .using_db(conn)
                .values_list("store_id", flat=True)
            )
            await StaffStore.bulk_create(
                [StaffStore(staff_id=staff_id, store_id=s) for s in stores if s not in have],
                using_db=conn,
            )
    if revoke:
        await auth.revoke_all(redis, settings, "staff", staff_id)
    return staff


async def authenticate_staff(username: str, password: str) -> Staff:
    staff = await Staff.get_or_none(username=username.strip())
    ok = await asyncio.to_thread(check_password, staff.password_hash if staff else None, password)
    if staff is None or not ok or staff.disabled:
        raise Unauthorized("wrong username or password", code="LOGIN_FAILED")
    return staff


async def staff_profile(staff_id: int, *, include_disabled: bool = False) -> dict[str, Any]:
    from server.stores.models import Store

    staff = await Staff.get_or_none(id=staff_id)
    if staff is None or (staff.disabled and not include_disabled):
        raise NotFound("staff account not found", code="STAFF_NOT_FOUND")
    ids = await staff_store_ids(staff_id, include_disabled=True)
    stores = await Store.filter(id__in=ids).order_by("id").values("id", "code", "name")
    out = {
        "id": staff.id,
        "username": staff.username,
        "name": staff.name,
        "role": staff.role.value,
        "stores": stores,
    }
    if include_disabled:
        out["disabled"] = staff.disabled
    return out


async def staff_store_ids(staff_id: int, *, include_disabled: bool = False) -> set[int]:
    """The stores this staff account works at (empty when the account is disabled)."""
    if not include_disabled and not await Staff.exists(id=staff_id, disabled=False):
        return set()
    ids = await StaffStore.filter(staff_id=staff_id).values_list("store_id", flat=True)
    return set(ids)


async def staff_works_at(staff_id: int, store_id: int) -> bool:
    return await StaffStore.filter(
        staff_id=staff_id, store_id=store_id, staff__disabled=False
    ).exists()


async def staff_is_manager_of(staff_id: int, store_id: int) -> bool:
    return await StaffStore.filter(
        staff_id=staff_id,
        store_id=store_id,
        staff__disabled=False,
        staff__role=StaffRole.MANAGER,
    ).exists()
