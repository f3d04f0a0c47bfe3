from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

async def backfill_birthday_md(apps, schema_editor):
    """Members who set a birthday before: their "MMDD", so the daily birthday job finds them."""
    client = schema_editor.client
    if client.capabilities.dialect == "sqlite":
        sql = "UPDATE member SET birthday_md = strftime('%m%d', birthday) WHERE birthday IS NOT NULL"
    else:
        sql = "UPDATE member SET birthday_md = to_char(birthday, 'MMDD') WHERE birthday IS NOT NULL"
    await client.execute_query(sql)


class Migration(migrations.Migration):
    dependencies = [('identity', '0001_initial'), ('identity', '0002_auto_20261123_1157'), ('identity', '0003_auto_20261123_1207'), ('stores', '0001_initial'), ('stores', '0002_auto_20261123_1209')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Member',
            name='birthday_md',
            field=fields.CharField(null=True, db_index=True, max_length=4),
        ),
        ops.AddField(
            model_name='Member',
            name='birthday_set_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.RunPython(backfill_birthday_md, ops.RunPython.noop),
    ]
