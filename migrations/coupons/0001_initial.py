from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from server.coupons.models import Channel, CouponKind, CouponStatus
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('identity', '0002_auto_20261123_1157'), ('stores', '0001_initial')]

    initial = True

    operations = [
        ops.CreateModel(
            name='CouponTemplate',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('name', fields.CharField(max_length=64)),
                ('kind', fields.CharEnumField(description='AMOUNT_OFF: amount_off\nPERCENT_OFF: percent_off\nTHRESHOLD: threshold\nFREE_ITEM: free_item', enum_type=CouponKind, max_length=16)),
                ('amount_off_fen', fields.IntField(null=True)),
                ('percent_off', fields.IntField(null=True)),
                ('max_off_fen', fields.IntField(null=True)),
                ('threshold_fen', fields.IntField(null=True)),
                ('free_sku_id', fields.BigIntField(null=True)),
                ('free_item_name', fields.CharField(default='', max_length=64)),
                ('total', fields.IntField()),
                ('remaining', fields.IntField()),
                ('per_member_limit', fields.IntField(default=1)),
                ('valid_days', fields.IntField(null=True)),
                ('valid_from', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('valid_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('claim_from', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('claim_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('channel', fields.CharEnumField(default=Channel.BOTH, description='ONLINE: online\nSTORE: store\nBOTH: both', enum_type=Channel, max_length=8)),
                ('store_ids', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('sku_ids', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('category_ids', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('audience_tiers', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('in_center', fields.BooleanField(default=True)),
                ('active', fields.BooleanField(default=True)),
                ('claimed_count', fields.IntField(default=0)),
                ('issued_count', fields.IntField(default=0)),
            ],
            options={'table': 'coupon_template', 'app': 'coupons', 'pk_attr': 'id'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='CouponIssuance',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('template', fields.ForeignKeyField('coupons.CouponTemplate', source_field='template_id', db_constraint=True, to_field='id', related_name='issuances', on_delete=OnDelete.RESTRICT)),
                ('operator_id', fields.BigIntField(null=True)),
                ('member_ids', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('status', fields.CharField(default='pending', max_length=16)),
                ('total', fields.IntField(default=0)),
                ('position', fields.IntField(default=0)),
                ('issued', fields.IntField(default=0)),
                ('skipped', fields.IntField(default=0)),
                ('message', fields.CharField(default='', max_length=255)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'coupon_issuance', 'app': 'coupons', 'pk_attr': 'id', 'table_description': "An operator's campaign: send a template to a list of members, in the background."},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='Coupon',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('template', fields.ForeignKeyField('coupons.CouponTemplate', source_field='template_id', db_constraint=True, to_field='id', related_name='coupons', on_delete=OnDelete.RESTRICT)),
                ('member', fields.ForeignKeyField('identity.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='coupons', on_delete=OnDelete.RESTRICT)),
                ('status', fields.CharEnumField(default=CouponStatus.UNUSED, description='UNUSED: unused\nLOCKED: locked\nUSED: used', enum_type=CouponStatus, max_length=8)),
                ('valid_from', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('valid_until', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('claim_seq', fields.IntField(null=True)),
                ('issuance', fields.ForeignKeyField('coupons.CouponIssuance', source_field='issuance_id', null=True, db_constraint=True, to_field='id', related_name='coupons', on_delete=OnDelete.RESTRICT)),
                ('order_no', fields.CharField(null=True, db_index=True, max_length=32)),
                ('discount_fen', fields.IntField(null=True)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('used_channel', fields.CharField(null=True, max_length=8)),
                ('used_store_id', fields.BigIntField(null=True)),
            ],
            options={'table': 'coupon', 'app': 'coupons', 'unique_together': (('template', 'member', 'claim_seq'), ('issuance', 'member')), 'indexes': [Index(fields=['member_id', 'status'])], 'pk_attr': 'id'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='WriteOff',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('coupon', fields.ForeignKeyField('coupons.Coupon', source_field='coupon_id', db_constraint=True, to_field='id', related_name='write_offs', on_delete=OnDelete.RESTRICT)),
                ('template_id', fields.BigIntField(db_index=True)),
                ('member_id', fields.BigIntField()),
                ('store', fields.ForeignKeyField('stores.Store', source_field='store_id', db_constraint=True, to_field='id', related_name='coupon_write_offs', on_delete=OnDelete.RESTRICT)),
                ('staff_id', fields.BigIntField()),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('revoked_by_staff_id', fields.BigIntField(null=True)),
                ('revoke_reason', fields.CharField(default='', max_length=255)),
            ],
            options={'table': 'coupon_write_off', 'app': 'coupons', 'indexes': [Index(fields=['store_id', 'created_at'])], 'pk_attr': 'id', 'table_description': "A coupon redeemed at a store's counter: which store, which clerk, when."},
            bases=['TimestampedModel'],
        ),
    ]
