from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from server.flashsale.models import ReservationState, SaleState
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('catalog', '0001_initial')]

    initial = True

    operations = [
        ops.CreateModel(
            name='FlashSale',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('sku', fields.ForeignKeyField('catalog.Sku', source_field='sku_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('title', fields.CharField(max_length=128)),
                ('store_ids', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('price_fen', fields.IntField()),
                ('units', fields.IntField()),
                ('per_member_limit', fields.IntField(default=1)),
                ('starts_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('ends_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('member_tiers', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('state', fields.CharEnumField(default=SaleState.ON, description='ON: on\nCANCELLED: cancelled', enum_type=SaleState, max_length=16)),
                ('created_by', fields.BigIntField(null=True)),
            ],
            options={'table': 'flash_sale', 'app': 'flashsale', 'pk_attr': 'id'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='BaselineStock',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('sale', fields.OneToOneField('flashsale.FlashSale', source_field='sale_id', db_constraint=True, to_field='id', related_name='baseline', on_delete=OnDelete.CASCADE)),
                ('stock', fields.IntField()),
            ],
            options={'table': 'flash_baseline_stock', 'app': 'flashsale', 'pk_attr': 'id', 'table_description': 'Bench only: the stock row of the PostgreSQL-only grab that `haodian bench flashsale`'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='FlashReservation',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('sale', fields.ForeignKeyField('flashsale.FlashSale', source_field='sale_id', db_constraint=True, to_field='id', related_name='reservations', on_delete=OnDelete.RESTRICT)),
                ('order_no', fields.CharField(unique=True, max_length=32)),
                ('member_id', fields.BigIntField(db_index=True)),
                ('quantity', fields.IntField()),
                ('idem_key', fields.CharField(max_length=128)),
                ('member_slot', fields.BigIntField(null=True)),
                ('state', fields.CharEnumField(default=ReservationState.HELD, description='HELD: held\nRELEASED: released\nREJECTED: rejected', enum_type=ReservationState, max_length=16)),
                ('released_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('redis_released', fields.BooleanField(default=False)),
            ],
            options={'table': 'flash_reservation', 'app': 'flashsale', 'unique_together': (('sale', 'member_slot'),), 'indexes': [Index(fields=['state', 'redis_released'])], 'pk_attr': 'id', 'table_description': 'One taken reservation, written by the stream consumer together with its order.'},
            bases=['TimestampedModel'],
        ),
    ]
