"""Coupons without foreign-key constraints to member, template and issuance (see the Coupon
model): the per-row FK checks were two thirds of a campaign batch."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

# What the Coupon model declares, by the names PostgreSQL has them under.
_SQLITE_INDEXES = (
    'CREATE UNIQUE INDEX IF NOT EXISTS "uid_coupon_templat_12d25f"'
    ' ON "coupon" ("template_id", "member_id", "claim_seq")',
    'CREATE UNIQUE INDEX IF NOT EXISTS "uid_coupon_issuanc_a422b9"'
    ' ON "coupon" ("issuance_id", "member_id")',
    'CREATE UNIQUE INDEX IF NOT EXISTS "uid_coupon_templat_167b22"'
    ' ON "coupon" ("template_id", "unit")',
    'CREATE INDEX IF NOT EXISTS "idx_coupon_member__c2f968" ON "coupon" ("member_id", "status")',
    'CREATE INDEX IF NOT EXISTS "idx_coupon_order_n_30ec42" ON "coupon" ("order_no")',
)


async def drop_foreign_keys(apps, schema_editor):
    """The AlterFields above change the model state only; PostgreSQL's constraints go here.

    SQLite (the demo) keeps its foreign keys (dropping them is a table rebuild), but its
    rebuilds of `coupon` by earlier migrations left the table without the unique indexes
    the claim relies on (a replayed claim made a second coupon there): they come back."""
    client = schema_editor.client
    if client.capabilities.dialect == "sqlite":
        for sql in _SQLITE_INDEXES:
            await client.execute_script(sql)
        return
    for column in ("template_id", "member_id", "issuance_id"):
        await client.execute_script(
            f"ALTER TABLE coupon DROP CONSTRAINT IF EXISTS coupon_{column}_fkey"
        )


class Migration(migrations.Migration):
    dependencies = [('coupons', '0005_coupon_units'), ('identity', '0001_initial'), ('identity', '0002_auto_20261123_1157'), ('identity', '0003_auto_20261123_1207'), ('identity', '0004_member_birthday_md'), ('stores', '0001_initial'), ('stores', '0002_auto_20261123_1209'), ('stores', '0003_store_delivery_areas')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='Coupon',
            name='issuance',
            field=fields.ForeignKeyField('coupons.CouponIssuance', source_field='issuance_id', null=True, db_constraint=False, to_field='id', related_name='coupons', on_delete=OnDelete.RESTRICT),
        ),
        ops.AlterField(
            model_name='Coupon',
            name='member',
            field=fields.ForeignKeyField('identity.Member', source_field='member_id', db_constraint=False, to_field='id', related_name='coupons', on_delete=OnDelete.RESTRICT),
        ),
        ops.AlterField(
            model_name='Coupon',
            name='template',
            field=fields.ForeignKeyField('coupons.CouponTemplate', source_field='template_id', db_constraint=False, to_field='id', related_name='coupons', on_delete=OnDelete.RESTRICT),
        ),
        ops.RunPython(drop_foreign_keys, ops.RunPython.noop),
    ]
