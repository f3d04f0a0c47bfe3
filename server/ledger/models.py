"""The one ledger: every balance that is money or worth money (gift cards, stored value,
points) is an account here, and every change of it is an entry."""

from __future__ import annotations

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint
from tortoise.models import Model


class LedgerAccount(Model):
    """A balance that moves only by `ledger.service.post`.

    `kind` says what it holds (giftcard, stored_value, points...). `owner_key` is set for the
    accounts a member has at most one of (e.g. "points:12"), so two first opens at once make
    one account. `member_id` is the holder now (null: nobody, e.g. an unsold bearer card)."""

    id = fields.BigIntField(primary_key=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    kind = fields.CharField(max_length=16)
    owner_key = fields.CharField(max_length=48, null=True, unique=True)
    member_id = fields.BigIntField(null=True, db_index=True)
    balance = fields.BigIntField(default=0)

    class Meta:
        table = "ledger_account"
        # The last guard (Saleor #19442): even a hand-written UPDATE cannot go below zero.
        constraints = (CheckConstraint(check="balance >= 0", name="ledger_balance_not_negative"),)


class LedgerEntry(Model):
    """One change of one account: signed `amount`, the balance right after it (returned by
    the UPDATE that moved it), why, and the fact it belongs to. (account, reason, reference)
    is unique, so a replayed event cannot post twice."""

    id = fields.BigIntField(primary_key=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    account = fields.ForeignKeyField(
        "ledger.LedgerAccount", related_name="entries", on_delete=fields.RESTRICT
    )
    member_id = fields.BigIntField(null=True, db_index=True)  # the holder when it was posted
    amount = fields.BigIntField()
    balance_after = fields.BigIntField()
    reason = fields.CharField(max_length=24)
    reference = fields.CharField(max_length=64)

    class Meta:
        table = "ledger_entry"
        unique_together = (("account", "reason", "reference"),)
