from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('stores', '0001_initial'), ('stores', '0002_auto_20261123_1209')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Store',
            name='delivery_areas',
            field=fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads),
        ),
        ops.AddField(
            model_name='Store',
            name='packing_fee_fen',
            field=fields.IntField(default=0),
        ),
    ]
