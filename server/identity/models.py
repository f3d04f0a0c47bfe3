"""Accounts: members (shoppers), staff (clerks, store managers) and operators (HQ)."""

from __future__ import annotations

from enum import IntEnum, StrEnum

from tortoise import fields

from server.infra.models import TimestampedModel


class Operator(TimestampedModel):
    """An HQ account that runs campaigns and manages stores and the catalog."""

    username = fields.CharField(max_length=64, unique=True)
    password_hash = fields.CharField(max_length=255)
    roles: list[str] = fields.JSONField(default=list)  # type: ignore[assignment]
    disabled = fields.BooleanField(default=False)

    class Meta:
        table = "operator"


class Gender(IntEnum):
    UNKNOWN = 0
    MALE = 1
    FEMALE = 2


class Member(TimestampedModel):
    """One person across every channel of the brand, tied together by the WeChat unionid.

    The phone is stored sealed (AES-GCM, key derived from the server secret) with a
    keyed hash for look-ups and a masked form for display; the raw number is never
    stored in clear, returned or logged.
    """

    unionid = fields.CharField(max_length=64, unique=True, null=True)
    nickname = fields.CharField(max_length=64, default="")
    avatar_url = fields.CharField(max_length=512, default="")
    birthday = fields.DateField(null=True)
    birthday_md = fields.CharField(max_length=4, null=True, db_index=True)  # "MMDD": the daily job
    birthday_set_at = fields.DatetimeField(null=True)  # changed at most once a year
    gender = fields.IntEnumField(Gender, default=Gender.UNKNOWN)
    phone_sealed = fields.TextField(null=True)
    phone_hash = fields.CharField(max_length=64, null=True, db_index=True)
    phone_masked = fields.CharField(max_length=20, default="")
    points = fields.BigIntField(default=0)
    tier = fields.CharField(max_length=16, default="regular")
    disabled = fields.BooleanField(default=False)
    # Set when this member was merged into another (same unionid): it owns nothing any more.
    merged_into = fields.ForeignKeyField(
        "identity.Member", related_name=False, null=True, on_delete=fields.RESTRICT
    )

    class Meta:
        table = "member"


class WeChatIdentity(TimestampedModel):
    """One (appid, openid): a member as one mini-program / official account knows it."""

    appid = fields.CharField(max_length=32)
    openid = fields.CharField(max_length=64)
    unionid = fields.CharField(max_length=64, null=True)  # as WeChat last told it
    member = fields.ForeignKeyField(
        "identity.Member", related_name="wechat_identities", on_delete=fields.RESTRICT
    )
    session_key_sealed = fields.TextField(default="")  # never returned, never logged
    last_login_at = fields.DatetimeField(null=True)

    class Meta:
        table = "wechat_identity"
        unique_together = (("appid", "openid"),)


class MemberMerge(TimestampedModel):
    """A record of two members found to be one person (a unionid arrived): who went where."""

    from_member = fields.ForeignKeyField(
        "identity.Member", related_name=False, on_delete=fields.RESTRICT
    )
    into_member = fields.ForeignKeyField(
        "identity.Member", related_name=False, on_delete=fields.RESTRICT
    )
    unionid = fields.CharField(max_length=64)
    reason = fields.CharField(max_length=64, default="unionid")
    moved: dict = fields.JSONField(default=dict)  # type: ignore[assignment]

    class Meta:
        table = "member_merge"


class StaffRole(StrEnum):
    CLERK = "clerk"
    MANAGER = "manager"


class Staff(TimestampedModel):
    """A store account (clerk or store manager) that scans and writes off codes."""

    username = fields.CharField(max_length=64, unique=True)
    password_hash = fields.CharField(max_length=255)
    name = fields.CharField(max_length=64, default="")
    role = fields.CharEnumField(StaffRole, max_length=16, default=StaffRole.CLERK)
    disabled = fields.BooleanField(default=False)

    class Meta:
        table = "staff"


class StaffStore(TimestampedModel):
    """Which stores a staff account works at (one or more)."""

    staff = fields.ForeignKeyField("identity.Staff", related_name="store_links")
    store = fields.ForeignKeyField("stores.Store", related_name="staff_links")

    class Meta:
        table = "staff_store"
        unique_together = (("staff", "store"),)
