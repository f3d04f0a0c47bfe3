from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from server.groupbuy.models import ActivityState, GroupStatus, SeatState
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('catalog', '0002_auto_20261123_1209')]

    initial = True

    operations = [
        ops.CreateModel(
            name='GroupBuy',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('sku', fields.ForeignKeyField('catalog.Sku', source_field='sku_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('title', fields.CharField(max_length=128)),
                ('group_price_fen', fields.IntField()),
                ('group_size', fields.IntField()),
                ('units', fields.IntField()),
                ('starts_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('ends_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('group_minutes', fields.IntField()),
                ('per_member_limit', fields.IntField(default=1)),
                ('store_ids', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('virtual_fill_min', fields.IntField(null=True)),
                ('voucher_template_id', fields.BigIntField()),
                ('voucher_valid_days', fields.IntField(default=30)),
                ('state', fields.CharEnumField(default=ActivityState.ON, description='ON: on\nSTOPPED: stopped', enum_type=ActivityState, max_length=8)),
                ('created_by', fields.BigIntField(null=True)),
            ],
            options={'table': 'group_buy', 'app': 'groupbuy', 'pk_attr': 'id', 'table_description': "An operator's activity: a SKU at the group price for groups of `group_size`."},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='Group',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('group_no', fields.CharField(unique=True, max_length=16)),
                ('activity', fields.ForeignKeyField('groupbuy.GroupBuy', source_field='activity_id', db_constraint=True, to_field='id', related_name='groups', on_delete=OnDelete.RESTRICT)),
                ('leader_member_id', fields.BigIntField()),
                ('size', fields.IntField()),
                ('status', fields.CharEnumField(default=GroupStatus.FORMING, description='FORMING: forming\nOPEN: open\nSUCCEEDED: succeeded\nFAILED: failed', enum_type=GroupStatus, max_length=12)),
                ('paid_count', fields.IntField(default=0)),
                ('virtual_seats', fields.IntField(default=0)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('opened_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('outcome', fields.CharField(default='', max_length=64)),
            ],
            options={'table': 'group_buy_group', 'app': 'groupbuy', 'indexes': [Index(fields=['status', 'expires_at'])], 'pk_attr': 'id'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='GroupSeat',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('group', fields.ForeignKeyField('groupbuy.Group', source_field='group_id', db_constraint=True, to_field='id', related_name='seats', on_delete=OnDelete.RESTRICT)),
                ('activity_id', fields.BigIntField(db_index=True)),
                ('order_no', fields.CharField(unique=True, max_length=32)),
                ('member_id', fields.BigIntField(db_index=True)),
                ('seat_no', fields.IntField()),
                ('live_seat', fields.IntField(null=True)),
                ('live_member', fields.BigIntField(null=True)),
                ('gen', fields.IntField(default=0)),
                ('is_leader', fields.BooleanField(default=False)),
                ('state', fields.CharEnumField(default=SeatState.HELD, description='HELD: held\nPAID: paid\nVOID: void\nRELEASED: released\nREJECTED: rejected\nREFUNDING: refunding\nREFUNDED: refunded', enum_type=SeatState, max_length=12)),
                ('idem_key', fields.CharField(default='', max_length=128)),
                ('scene', fields.CharField(default='', max_length=32)),
                ('sharer_member_id', fields.BigIntField(null=True)),
                ('voucher_coupon_id', fields.BigIntField(null=True)),
                ('paid_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('freed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'group_buy_seat', 'app': 'groupbuy', 'unique_together': (('group', 'live_seat'), ('group', 'live_member')), 'pk_attr': 'id', 'table_description': "One member's seat in a group and the order that pays for it."},
            bases=['TimestampedModel'],
        ),
    ]
