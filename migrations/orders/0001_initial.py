from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from server.orders.models import OrderKind, OrderStatus
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('catalog', '0001_initial'), ('identity', '0002_auto_20261123_1157'), ('stores', '0001_initial')]

    initial = True

    operations = [
        ops.CreateModel(
            name='IdempotentRequest',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('scope', fields.CharField(max_length=64)),
                ('key', fields.CharField(max_length=128)),
                ('request_hash', fields.CharField(max_length=64)),
                ('status', fields.IntField(null=True)),
                ('response', fields.JSONField(null=True, encoder=JSON_DUMPS, decoder=loads)),
            ],
            options={'table': 'idempotent_request', 'app': 'orders', 'unique_together': (('scope', 'key'),), 'pk_attr': 'id', 'table_description': 'The first answer to a POST with an Idempotency-Key, replayed on a retry.'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='Order',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('order_no', fields.CharField(unique=True, max_length=32)),
                ('kind', fields.CharEnumField(description='PICKUP: pickup\nFLASHSALE: flashsale\nGROUPBUY: groupbuy\nTAKEOUT: takeout\nGIFTCARD: giftcard', enum_type=OrderKind, max_length=16)),
                ('status', fields.CharEnumField(default=OrderStatus.PENDING_PAYMENT, description='PENDING_PAYMENT: pending_payment\nPAID: paid\nCOMPLETED: completed\nCANCELLED: cancelled\nREFUNDING: refunding\nREFUNDED: refunded', enum_type=OrderStatus, max_length=20)),
                ('member', fields.ForeignKeyField('identity.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='orders', on_delete=OnDelete.RESTRICT)),
                ('store', fields.ForeignKeyField('stores.Store', source_field='store_id', null=True, db_constraint=True, to_field='id', related_name='orders', on_delete=OnDelete.RESTRICT)),
                ('goods_fen', fields.IntField()),
                ('discount_fen', fields.IntField(default=0)),
                ('fee_fen', fields.IntField(default=0)),
                ('payable_fen', fields.IntField()),
                ('paid_fen', fields.IntField(null=True)),
                ('refunded_fen', fields.IntField(default=0)),
                ('pay_deadline', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('paid_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('completed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('transaction_id', fields.CharField(null=True, max_length=64)),
                ('pickup_code', fields.CharField(null=True, max_length=12)),
                ('source', fields.CharField(null=True, db_index=True, max_length=64)),
                ('flag', fields.CharField(null=True, max_length=255)),
            ],
            options={'table': 'order', 'app': 'orders', 'indexes': [Index(fields=['status', 'pay_deadline'])], 'pk_attr': 'id'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='OrderEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('order', fields.ForeignKeyField('orders.Order', source_field='order_id', db_constraint=True, to_field='id', related_name='events', on_delete=OnDelete.CASCADE)),
                ('from_status', fields.CharField(null=True, max_length=20)),
                ('to_status', fields.CharField(max_length=20)),
                ('actor', fields.CharField(max_length=32)),
                ('reason', fields.CharField(default='', max_length=255)),
            ],
            options={'table': 'order_event', 'app': 'orders', 'pk_attr': 'id', 'table_description': "Every state change, who made it and why: the order's history."},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='OrderLine',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('order', fields.ForeignKeyField('orders.Order', source_field='order_id', db_constraint=True, to_field='id', related_name='lines', on_delete=OnDelete.CASCADE)),
                ('sku', fields.ForeignKeyField('catalog.Sku', source_field='sku_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('name', fields.CharField(max_length=128)),
                ('quantity', fields.IntField()),
                ('unit_price_fen', fields.IntField()),
                ('line_fen', fields.IntField()),
            ],
            options={'table': 'order_line', 'app': 'orders', 'pk_attr': 'id'},
            bases=['TimestampedModel'],
        ),
    ]
