from tortoise import migrations
from tortoise.migrations import operations as ops
from server.payments.models import RefundStatus
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('orders', '0001_initial')]

    initial = True

    operations = [
        ops.CreateModel(
            name='Payment',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('order', fields.OneToOneField('orders.Order', source_field='order_id', db_constraint=True, to_field='id', related_name='payment', on_delete=OnDelete.RESTRICT)),
                ('appid', fields.CharField(max_length=32)),
                ('openid', fields.CharField(max_length=64)),
                ('prepay_id', fields.CharField(max_length=64)),
                ('last_queried_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'payment', 'app': 'payments', 'pk_attr': 'id', 'table_description': 'A WeChat Pay transaction opened for an order (out_trade_no = order_no).'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='PaymentNotice',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('notice_id', fields.CharField(db_index=True, max_length=64)),
                ('event_type', fields.CharField(max_length=32)),
                ('out_trade_no', fields.CharField(db_index=True, max_length=32)),
                ('outcome', fields.CharField(max_length=32)),
                ('detail', fields.CharField(default='', max_length=255)),
            ],
            options={'table': 'payment_notice', 'app': 'payments', 'pk_attr': 'id', 'table_description': 'Every verified notification and what we did with it (applied, duplicate, mismatch...).'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='Refund',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('out_refund_no', fields.CharField(unique=True, max_length=64)),
                ('order', fields.ForeignKeyField('orders.Order', source_field='order_id', db_constraint=True, to_field='id', related_name='refunds', on_delete=OnDelete.RESTRICT)),
                ('amount_fen', fields.IntField()),
                ('status', fields.CharEnumField(default=RefundStatus.REQUESTED, description='REQUESTED: requested\nPROCESSING: processing\nSUCCESS: success\nCLOSED: closed\nABNORMAL: abnormal', enum_type=RefundStatus, max_length=16)),
                ('reason', fields.CharField(default='', max_length=255)),
                ('requested_by', fields.CharField(max_length=32)),
                ('refund_id', fields.CharField(null=True, max_length=64)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'refund', 'app': 'payments', 'pk_attr': 'id', 'table_description': 'A full refund of an order. The refund number comes from the order number, so asking'},
            bases=['TimestampedModel'],
        ),
    ]
