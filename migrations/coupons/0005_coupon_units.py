from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.migrations.constraints import UniqueConstraint
import json


async def number_the_units(apps, schema_editor):
    """Every coupon made so far takes a unit of its template, in the order they were made."""
    await schema_editor.client.execute_query(
        "UPDATE coupon SET unit = n.rn FROM (SELECT id, row_number() OVER"
        " (PARTITION BY template_id ORDER BY id) AS rn FROM coupon) AS n WHERE coupon.id = n.id"
    )


async def list_issuance_members(apps, schema_editor):
    """Unfinished issuances keep their members as rows. They restart from the first member:
    who already got one is skipped, so nobody gets a second."""
    client = schema_editor.client
    rows = await client.execute_query_dict(
        "SELECT id, member_ids FROM coupon_issuance WHERE status <> 'done'"
    )
    for row in rows:
        ids = row["member_ids"]
        ids = sorted({int(m) for m in (json.loads(ids) if isinstance(ids, str) else ids or [])})
        for at in range(0, len(ids), 500):
            values = ", ".join(f"({int(row['id'])}, {m})" for m in ids[at : at + 500])
            await client.execute_query(
                f"INSERT INTO coupon_issuance_member (issuance_id, member_id) VALUES {values}"
            )
        await client.execute_query(
            f"UPDATE coupon_issuance SET position = 0, skipped = 0, total = {len(ids)}"
            f" WHERE id = {int(row['id'])}"
        )

class Migration(migrations.Migration):
    dependencies = [('coupons', '0004_template_audience_segment'), ('identity', '0001_initial'), ('identity', '0002_auto_20261123_1157'), ('identity', '0003_auto_20261123_1207'), ('identity', '0004_member_birthday_md'), ('stores', '0001_initial'), ('stores', '0002_auto_20261123_1209'), ('stores', '0003_store_delivery_areas')]

    initial = False

    operations = [
        ops.CreateModel(
            name='BaselineStock',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('template_id', fields.BigIntField(unique=True)),
                ('remaining', fields.IntField()),
            ],
            options={'table': 'coupon_baseline_stock', 'app': 'coupons', 'pk_attr': 'id', 'table_description': 'Bench only: the hot stock row the claim used to update, kept so `haodian bench coupons`'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='IssuanceMember',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('issuance_id', fields.BigIntField()),
                ('member_id', fields.BigIntField()),
            ],
            options={'table': 'coupon_issuance_member', 'app': 'coupons', 'unique_together': (('issuance_id', 'member_id'),), 'pk_attr': 'id', 'table_description': 'One member an issuance sends to (a list or a segment, as it was when the issuance was'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Coupon',
            name='unit',
            field=fields.IntField(null=True),
        ),
        ops.RunPython(number_the_units, ops.RunPython.noop),
        ops.AddConstraint(
            model_name='Coupon',
            constraint=UniqueConstraint(fields=('template', 'unit'), name=None),
        ),
        ops.AddField(
            model_name='CouponIssuance',
            name='after_member_id',
            field=fields.BigIntField(default=0, db_default=0),
        ),
        ops.RunPython(list_issuance_members, ops.RunPython.noop),
        ops.RemoveField(model_name='CouponIssuance', name='member_ids'),
        ops.RemoveField(model_name='CouponTemplate', name='claimed_count'),
        ops.RemoveField(model_name='CouponTemplate', name='issued_count'),
        ops.RemoveField(model_name='CouponTemplate', name='remaining'),
    ]
