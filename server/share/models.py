"""Share links: one scene code per (what is shared, who shares it), the code image WeChat
drew for it, who opened it, and who acted through it (fission stats)."""

from __future__ import annotations

from tortoise import fields

from server.infra.models import TimestampedModel


class Share(TimestampedModel):
    """A link to one target by one sharer.

    `slot` is 0 for the member's own share of a target; a merge that brings a second share of
    the same target keeps it (its scene is out in the world) with `slot` = its id, so the
    unique key holds and both scenes still resolve."""

    scene = fields.CharField(max_length=32, unique=True)
    kind = fields.CharField(max_length=16)
    target = fields.CharField(max_length=64)
    sharer = fields.ForeignKeyField(
        "identity.Member", related_name=False, on_delete=fields.RESTRICT
    )
    slot = fields.BigIntField(default=0)
    page = fields.CharField(max_length=128)  # without the leading slash, as WeChat wants it
    path = fields.CharField(max_length=512)  # what onShareAppMessage returns
    url_link = fields.CharField(max_length=256, null=True)
    url_link_expires_at = fields.DatetimeField(null=True)
    opens = fields.BigIntField(default=0)

    class Meta:
        table = "share"
        unique_together = (("kind", "target", "sharer", "slot"),)
        indexes = (("sharer_id", "kind"),)


class ShareCode(TimestampedModel):
    """The mini-program code image of a share, fetched from WeChat once.

    Its own table, so listing shares never drags the image bytes along."""

    share = fields.OneToOneField("share.Share", related_name=False, on_delete=fields.CASCADE)
    png = fields.BinaryField()

    class Meta:
        table = "share_code"


class ShareOpen(TimestampedModel):
    """Someone opened a share (the landing page), and who when they were signed in."""

    share = fields.ForeignKeyField("share.Share", related_name=False, on_delete=fields.CASCADE)
    opener = fields.ForeignKeyField(
        "identity.Member", related_name=False, null=True, on_delete=fields.RESTRICT, db_index=True
    )

    class Meta:
        table = "share_open"


class ShareConversion(TimestampedModel):
    """Who brought whom: a member acted through a share (joined a group, claimed a gift).

    Once per (share, joiner, target)."""

    share = fields.ForeignKeyField("share.Share", related_name=False, on_delete=fields.CASCADE)
    sharer = fields.ForeignKeyField(
        "identity.Member", related_name=False, on_delete=fields.RESTRICT
    )
    joiner = fields.ForeignKeyField(
        "identity.Member", related_name=False, on_delete=fields.RESTRICT, db_index=True
    )
    kind = fields.CharField(max_length=16)
    target = fields.CharField(max_length=64)

    class Meta:
        table = "share_conversion"
        unique_together = (("share", "joiner", "target"),)
        indexes = (("kind", "target", "sharer_id"), ("sharer_id", "kind"))
