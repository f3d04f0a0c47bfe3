"""Member merges: two members found to be one person (the same unionid) become one, in one
transaction — identities, every member-owned row, points and missing profile fields move;
the merge is recorded; the absorbed member's tokens are revoked.

Other domains call:
- `register_member_owned(model, field, mover=None)`: declare a table whose rows belong to a
  member, so a merge moves them (foreign keys to identity.Member are found on their own;
  register a plain-integer column, or a `mover` for rows that need more than an UPDATE;
  `keep_one_mover(model, *keys)` for rows unique per member and key);
- `on_member_merged(callback)`: run `callback(from_id, into_id)` after a merge commits.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from tortoise import Tortoise
from tortoise.exceptions import IntegrityError
from tortoise.fields.relational import ForeignKeyFieldInstance, OneToOneFieldInstance
from tortoise.models import Model
from tortoise.transactions import in_transaction

from server.identity.models import (
    Gender,
    Member,
    MemberMerge,
    WeChatIdentity,
)
from server.infra import auth
from server.infra.errors import (
    Conflict,
)
from server.settings import Settings

log = logging.getLogger("haodian.identity")

# ================================================================================================
# Member-owned tables and the merge
# ================================================================================================

Mover = Callable[[int, int, Any], Awaitable[int]]


@dataclass(frozen=True)
class OwnedTable:
    model: type[Model] | str
    field: str  # the model field naming the member (a FK, a one-to-one, or a plain integer)
    mover: Mover | None = None


_OWNED: dict[tuple[str, str], OwnedTable] = {}
_MERGE_HOOKS: list[Callable[[int, int], Awaitable[None]]] = []
# identity's own references are handled by merge_members itself.
_SKIP = {
    ("identity.Member", "merged_into"),
    ("identity.MemberMerge", "from_member"),
    ("identity.MemberMerge", "into_member"),
    ("identity.WeChatIdentity", "member"),
}


def _label(model: type[Model] | str) -> str:
    if isinstance(model, str):
        return model
    return f"{model._meta.app}.{model.__name__}"


def register_member_owned(
    model: type[Model] | str, field: str = "member", mover: Mover | None = None
) -> None:
    """Rows of `model` whose `field` names a member move with a merge.

    `model` is the class or "app.Model". Foreign keys to identity.Member are discovered
    anyway; register to use a plain integer column, or to give a `mover(from_id, into_id,
    conn) -> rows moved` for rows an UPDATE cannot move (a unique per member, a balance
    to add up). Idempotent.
    """
    _OWNED[(_label(model), field)] = OwnedTable(model, field, mover)


def keep_one_mover(model: type[Model], *keys: str) -> Mover:
    """A mover for rows unique per (member, *keys): the absorbed member's rows move to the
    survivor unless the survivor has one with the same keys already (then it is dropped —
    a birthday pack or a segment place counts once for the merged member)."""

    async def move(from_id: int, into_id: int, connection: Any) -> int:
        theirs = model.filter(member_id=into_id).using_db(connection)
        have = {tuple(row) for row in await theirs.values_list(*keys)}
        moved = 0
        for row in await model.filter(member_id=from_id).using_db(connection):
            query = model.filter(id=row.id).using_db(connection)
            if tuple(getattr(row, k) for k in keys) in have:
                await query.delete()
            else:
                moved += await query.update(member_id=into_id)
        return moved

    return move


def on_member_merged(callback: Callable[[int, int], Awaitable[None]]) -> None:
    """`callback(from_id, into_id)` runs after a merge commits (e.g. move Redis state)."""
    if callback not in _MERGE_HOOKS:
        _MERGE_HOOKS.append(callback)


def _resolve(model: type[Model] | str) -> type[Model]:
    if not isinstance(model, str):
        return model
    app, _, name = model.partition(".")
    return Tortoise.apps[app][name]


def owned_tables() -> list[tuple[str, type[Model], str, bool, Mover | None]]:
    """(label, model, column, one_to_one, mover) for every member-owned table."""
    out: dict[tuple[str, str], tuple[str, type[Model], str, bool, Mover | None]] = {}
    for app_models in Tortoise.apps.values():
        for model in app_models.values():
            for name, fld in model._meta.fields_map.items():
                if not isinstance(fld, ForeignKeyFieldInstance | OneToOneFieldInstance):
                    continue
                if fld.related_model is not Member:
                    continue
                label = _label(model)
                if (label, name) in _SKIP:
                    continue
                one = isinstance(fld, OneToOneFieldInstance)
                out[(label, name)] = (label, model, fld.source_field or f"{name}_id", one, None)
    for key, entry in _OWNED.items():
        model = _resolve(entry.model)
        fld = model._meta.fields_map.get(entry.field)
        if fld is None:
            raise RuntimeError(f"{key[0]} has no field {entry.field!r}")
        column = entry.field
        one = False
        if isinstance(fld, ForeignKeyFieldInstance | OneToOneFieldInstance):
            column = fld.source_field or f"{entry.field}_id"
            one = isinstance(fld, OneToOneFieldInstance)
        out[key] = (key[0], model, column, one, entry.mover)
    return sorted(out.values(), key=lambda e: (e[0], e[2]))


async def follow(member: Member) -> Member:
    """The member that absorbed this one (merges can chain), or itself."""
    seen = 0
    while member.merged_into_id is not None and seen < 10:
        member = await Member.get(id=member.merged_into_id)
        seen += 1
    return member


async def merge_members(
    redis: Redis | None, settings: Settings, from_id: int, into_id: int, unionid: str
) -> MemberMerge | None:
    """Make `from_id` part of `into_id` in one transaction: identities, every member-owned
    row, points and missing profile fields move; the merge is recorded; the old member's
    tokens are revoked. None when there was nothing to do (already merged)."""
    if from_id == into_id:
        return None
    try:
        record = await _merge_tx(settings, from_id, into_id, unionid)
    except IntegrityError as exc:
        # A member-owned table with a per-member unique row that a plain UPDATE cannot move:
        # nothing was changed (one transaction); the owning domain must register a mover.
        log.error(
            "member merge refused by a unique constraint; register a mover for that table",
            extra={"from_member": from_id, "into_member": into_id, "error": str(exc)[:300]},
        )
        raise MergeConflict(
            "these members cannot be merged automatically", code="MERGE_CONFLICT"
        ) from None
    if record is None:
        return None
    log.info("members merged", extra={"from_member": from_id, "into_member": into_id})
    if redis is not None:
        await auth.revoke_all(redis, settings, "member", from_id)
    for hook in _MERGE_HOOKS:
        try:
            await hook(from_id, into_id)
        except Exception:
            log.exception("a merge hook failed", extra={"from_member": from_id})
    return record


class MergeConflict(Conflict):
    code = "MERGE_CONFLICT"


async def _merge_tx(
    settings: Settings, from_id: int, into_id: int, unionid: str
) -> MemberMerge | None:
    async with in_transaction() as conn:
        rows = (
            await Member.filter(id__in=[from_id, into_id])
            .select_for_update()
            .order_by("id")
            .using_db(conn)
        )
        by_id = {m.id: m for m in rows}
        src, dst = by_id.get(from_id), by_id.get(into_id)
        if src is None or dst is None or src.merged_into_id is not None:
            return None
        if dst.merged_into_id is not None:
            raise Conflict("the target member was itself merged", code="MEMBER_MERGED")
        moved: dict[str, Any] = {}
        moved["identity.WeChatIdentity"] = (
            await WeChatIdentity.filter(member_id=from_id).using_db(conn).update(member_id=into_id)
        )
        for table, model, column, one, mover in owned_tables():
            label = f"{table}.{column}"
            if mover is not None:
                moved[label] = await mover(from_id, into_id, conn)
                continue
            qs = model.filter(**{column: from_id}).using_db(conn)
            if one and await model.filter(**{column: into_id}).using_db(conn).exists():
                moved[label] = "kept: the merged member has its own"
                log.warning(
                    "merge left a one-to-one row behind",
                    extra={"table": table, "from_member": from_id, "into_member": into_id},
                )
                continue
            moved[label] = await qs.update(**{column: into_id})
        moved["points"] = src.points
        dst.points += src.points
        src.points = 0
        if not dst.phone_sealed and src.phone_sealed:
            dst.phone_sealed, dst.phone_hash, dst.phone_masked = (
                src.phone_sealed,
                src.phone_hash,
                src.phone_masked,
            )
            moved["phone"] = True
        for name in ("nickname", "avatar_url"):
            if not getattr(dst, name) and getattr(src, name):
                setattr(dst, name, getattr(src, name))
        if dst.birthday is None and src.birthday is not None:
            # With the fields that go with it: the birthday job and segments find members by
            # birthday_md, and the once-a-year change limit reads birthday_set_at.
            dst.birthday = src.birthday
            dst.birthday_md = src.birthday_md
            dst.birthday_set_at = src.birthday_set_at
        if dst.gender == Gender.UNKNOWN:
            dst.gender = src.gender
        if dst.unionid is None:
            dst.unionid = unionid
        src.merged_into_id = into_id
        src.phone_sealed, src.phone_hash = None, None
        await src.save(using_db=conn)
        await dst.save(using_db=conn)
        record = await MemberMerge.create(
            from_member_id=from_id,
            into_member_id=into_id,
            unionid=unionid,
            moved=moved,
            using_db=conn,
        )
    return record
