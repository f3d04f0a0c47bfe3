from tortoise import migrations
from tortoise.migrations import operations as ops
from server.payments.models import TenderStatus
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('orders', '0001_initial'), ('payments', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Tender',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('order', fields.ForeignKeyField('orders.Order', source_field='order_id', db_constraint=True, to_field='id', related_name='tenders', on_delete=OnDelete.RESTRICT)),
                ('kind', fields.CharField(max_length=16)),
                ('ref', fields.CharField(max_length=64)),
                ('amount_fen', fields.IntField()),
                ('status', fields.CharEnumField(default=TenderStatus.CAPTURED, description='CAPTURED: captured\nRETURNED: returned\nREFUNDED: refunded', enum_type=TenderStatus, max_length=12)),
                ('label', fields.CharField(default='', max_length=64)),
            ],
            options={'table': 'order_tender', 'app': 'payments', 'unique_together': (('order', 'kind', 'ref'),), 'pk_attr': 'id', 'table_description': 'One way an order was (or is being) paid: a gift card, stored value, points, WeChat Pay.'},
            bases=['TimestampedModel'],
        ),
    ]
