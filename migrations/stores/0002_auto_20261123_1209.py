from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('stores', '0001_initial')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Store',
            name='closed_from',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Store',
            name='closed_until',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Store',
            name='closure_reason',
            field=fields.CharField(default='', max_length=255),
        ),
        ops.AddField(
            model_name='Store',
            name='delivery_fee_rules',
            field=fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads),
        ),
        ops.AddField(
            model_name='Store',
            name='delivery_radius_m',
            field=fields.IntField(default=3000),
        ),
        ops.AddField(
            model_name='Store',
            name='hours',
            field=fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads),
        ),
        ops.AddField(
            model_name='Store',
            name='pickup',
            field=fields.BooleanField(default=True),
        ),
        ops.AddField(
            model_name='Store',
            name='takeout',
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name='Store',
            name='version',
            field=fields.IntField(default=1),
        ),
        ops.AddField(
            model_name='Store',
            name='write_off',
            field=fields.BooleanField(default=True),
        ),
    ]
