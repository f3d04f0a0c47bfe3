from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('catalog', '0001_initial'), ('stores', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='StoreSku',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('store', fields.ForeignKeyField('stores.Store', source_field='store_id', db_constraint=True, to_field='id', related_name='store_skus', on_delete=OnDelete.CASCADE)),
                ('sku', fields.ForeignKeyField('catalog.Sku', source_field='sku_id', db_constraint=True, to_field='id', related_name='store_skus', on_delete=OnDelete.CASCADE)),
                ('available', fields.BooleanField(default=True)),
                ('price_override_fen', fields.IntField(null=True)),
                ('stock', fields.IntField(default=0)),
            ],
            options={'table': 'store_sku', 'app': 'catalog', 'unique_together': (('store', 'sku'),), 'pk_attr': 'id', 'table_description': 'A SKU a store sells itself (pickup, takeout): availability, its price, its stock.'},
            bases=['TimestampedModel'],
        ),
        ops.AlterField(
            model_name='Category',
            name='name',
            field=fields.CharField(unique=True, max_length=64),
        ),
        ops.AddField(
            model_name='Category',
            name='visible',
            field=fields.BooleanField(default=True),
        ),
        ops.AlterField(
            model_name='Product',
            name='category',
            field=fields.ForeignKeyField('catalog.Category', source_field='category_id', db_constraint=True, to_field='id', related_name='products', on_delete=OnDelete.RESTRICT),
        ),
        ops.AddField(
            model_name='Product',
            name='images',
            field=fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads),
        ),
        ops.AddField(
            model_name='Product',
            name='sort',
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name='Sku',
            name='attributes',
            field=fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads),
        ),
        ops.AddField(
            model_name='Sku',
            name='code',
            field=fields.CharField(null=True, unique=True, max_length=64),
        ),
        ops.AddField(
            model_name='Sku',
            name='images',
            field=fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads),
        ),
        ops.AddField(
            model_name='Sku',
            name='on_sale',
            field=fields.BooleanField(default=True),
        ),
    ]
