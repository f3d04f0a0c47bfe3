from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from server.takeout.models import Board, Courier
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('identity', '0001_initial'), ('identity', '0002_auto_20261123_1157'), ('identity', '0003_auto_20261123_1207'), ('identity', '0004_member_birthday_md'), ('orders', '0002_order_kinds_topup_membership'), ('stores', '0003_store_delivery_areas')]

    initial = True

    operations = [
        ops.CreateModel(
            name='Address',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('member', fields.ForeignKeyField('identity.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='addresses', on_delete=OnDelete.CASCADE)),
                ('contact', fields.CharField(max_length=32)),
                ('phone_sealed', fields.CharField(max_length=255)),
                ('phone_masked', fields.CharField(max_length=16)),
                ('text', fields.CharField(max_length=255)),
                ('lat', fields.FloatField()),
                ('lng', fields.FloatField()),
            ],
            options={'table': 'member_address', 'app': 'takeout', 'pk_attr': 'id', 'table_description': "A delivery address in a member's book: the phone is sealed, only its mask is kept."},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='CourierCallback',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('waybill_id', fields.CharField(max_length=64)),
                ('order_status', fields.IntField()),
                ('action_time', fields.BigIntField()),
                ('applied', fields.BooleanField(default=False)),
                ('payload', fields.JSONField(encoder=JSON_DUMPS, decoder=loads)),
            ],
            options={'table': 'courier_callback', 'app': 'takeout', 'unique_together': (('waybill_id', 'order_status', 'action_time'),), 'pk_attr': 'id', 'table_description': 'Every callback the courier platform sent, kept once: a repeat is recognised here.'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='TakeoutOrder',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('order', fields.OneToOneField('orders.Order', source_field='order_id', db_constraint=True, to_field='id', related_name='takeout', on_delete=OnDelete.CASCADE)),
                ('store', fields.ForeignKeyField('stores.Store', source_field='store_id', db_constraint=True, to_field='id', related_name='takeout_orders', on_delete=OnDelete.RESTRICT)),
                ('status', fields.CharEnumField(default=Board.UNPAID, description='UNPAID: unpaid\nNEW: new\nACCEPTED: accepted\nREADY: ready\nDISPATCHED: dispatched\nDELIVERED: delivered\nREJECTED: rejected\nCANCELLED: cancelled', enum_type=Board, max_length=12)),
                ('contact', fields.CharField(max_length=32)),
                ('phone_sealed', fields.CharField(max_length=255)),
                ('phone_masked', fields.CharField(max_length=16)),
                ('address_text', fields.CharField(max_length=255)),
                ('lat', fields.FloatField()),
                ('lng', fields.FloatField()),
                ('distance_m', fields.IntField()),
                ('area_name', fields.CharField(default='', max_length=32)),
                ('delivery_fee_fen', fields.IntField()),
                ('packing_fee_fen', fields.IntField()),
                ('note', fields.CharField(default='', max_length=140)),
                ('accept_by', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('prep_minutes', fields.IntField(null=True)),
                ('eta_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('courier', fields.CharEnumField(null=True, description='STORE: store\nPLATFORM: platform', enum_type=Courier, max_length=8)),
                ('waybill_id', fields.CharField(null=True, unique=True, max_length=64)),
                ('courier_status', fields.IntField(null=True)),
                ('rider_name', fields.CharField(null=True, max_length=32)),
                ('rider_phone_masked', fields.CharField(null=True, max_length=16)),
                ('dispatch_no', fields.IntField(default=0)),
                ('flag', fields.CharField(null=True, max_length=255)),
            ],
            options={'table': 'takeout_order', 'app': 'takeout', 'indexes': [Index(fields=['store_id', 'status'])], 'pk_attr': 'id', 'table_description': 'One per takeout order: the address as it was when ordered, the fees, and the board.'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='TakeoutStep',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('takeout', fields.ForeignKeyField('takeout.TakeoutOrder', source_field='takeout_id', db_constraint=True, to_field='id', related_name='steps', on_delete=OnDelete.CASCADE)),
                ('step', fields.CharField(max_length=24)),
                ('detail', fields.CharField(default='', max_length=255)),
                ('actor', fields.CharField(max_length=32)),
            ],
            options={'table': 'takeout_step', 'app': 'takeout', 'pk_attr': 'id', 'table_description': "The shopper's timeline and the board's history: one row per step."},
            bases=['TimestampedModel'],
        ),
    ]
