"""Gift cards: designs operators sell, cards (each one ledger account), gifts between
friends, and printed batches of physical cards."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields

from server.infra.models import TimestampedModel


class GiftCardDesign(TimestampedModel):
    """What a shopper picks in the shop: a cover, a theme and the face values on offer."""

    name = fields.CharField(max_length=64)
    face_values_fen = fields.JSONField(default=list)
    valid_days = fields.IntField()  # bearer (unbound physical) cards only: bound cards never expire
    cover_url = fields.CharField(max_length=255, null=True)
    theme = fields.CharField(max_length=32, null=True)
    retired_at = fields.DatetimeField(null=True)
    created_by = fields.BigIntField(null=True)

    class Meta:
        table = "gift_card_design"


class CardStatus(StrEnum):
    ACTIVE = "active"
    GIFTING = "gifting"  # on a gift not yet claimed, cancelled or returned: cannot pay
    EXPIRED = "expired"  # a bearer card past its date: the money stays, binding reactivates it
    REFUNDED = "refunded"  # its purchase was refunded: balance 0, never usable again


class GiftCard(TimestampedModel):
    """One card. Its money is ledger account `account_id`, and `holder_id` is who may spend it
    (null: a physical card nobody has bound yet)."""

    card_no = fields.CharField(max_length=16, unique=True)
    design = fields.ForeignKeyField(
        "giftcards.GiftCardDesign", related_name="cards", on_delete=fields.RESTRICT
    )
    face_value_fen = fields.IntField()
    account_id = fields.BigIntField(unique=True)
    holder_id = fields.BigIntField(null=True, db_index=True)
    buyer_id = fields.BigIntField(null=True)
    # Bought in the app: the order and the card's place in it (the `paid` hook issues each once).
    order_no = fields.CharField(max_length=32, null=True)
    seq = fields.IntField(null=True)
    batch = fields.ForeignKeyField(
        "giftcards.GiftCardBatch", related_name="cards", null=True, on_delete=fields.RESTRICT
    )
    pin_hash = fields.CharField(max_length=64, null=True)
    status = fields.CharEnumField(CardStatus, max_length=12, default=CardStatus.ACTIVE)
    bound_at = fields.DatetimeField(null=True)
    expires_at = fields.DatetimeField(null=True)  # null: never (bound to a member)
    reminded_at = fields.DatetimeField(null=True)

    class Meta:
        table = "gift_card"
        unique_together = (("order_no", "seq"),)
        indexes = (("status", "expires_at"),)


class GiftStatus(StrEnum):
    CHECKING = "checking"  # moderation has not answered yet: not shown, not claimable
    PENDING = "pending"  # waiting for a friend to claim it
    CLAIMED = "claimed"
    CANCELLED = "cancelled"  # the giver took it back
    RETURNED = "returned"  # nobody claimed it in time
    REJECTED = "rejected"  # moderation refused the greeting after a wait


class Gift(TimestampedModel):
    """A card on its way to a friend, with the giver's greeting."""

    gift_no = fields.CharField(max_length=16, unique=True)
    card = fields.ForeignKeyField(
        "giftcards.GiftCard", related_name="gifts", on_delete=fields.RESTRICT
    )
    giver_id = fields.BigIntField(db_index=True)
    greeting = fields.CharField(max_length=200)
    amount_fen = fields.IntField()  # what the card held when given (it cannot change meanwhile)
    verdict = fields.CharField(max_length=12, default="")  # pass | review (flagged) | risky
    status = fields.CharEnumField(GiftStatus, max_length=12, default=GiftStatus.CHECKING)
    claimer_id = fields.BigIntField(null=True)
    expires_at = fields.DatetimeField()
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "gift_card_gift"
        indexes = (("status", "expires_at"),)


class GiftCardBatch(TimestampedModel):
    """Physical cards printed for stores: numbers and PINs handed out once, as CSV."""

    design = fields.ForeignKeyField(
        "giftcards.GiftCardDesign", related_name="batches", on_delete=fields.RESTRICT
    )
    face_value_fen = fields.IntField()
    count = fields.IntField()
    created_by = fields.BigIntField(null=True)

    class Meta:
        table = "gift_card_batch"
