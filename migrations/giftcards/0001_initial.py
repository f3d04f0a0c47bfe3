from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from server.giftcards.models import CardStatus, GiftStatus
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='GiftCardDesign',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('name', fields.CharField(max_length=64)),
                ('face_values_fen', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('valid_days', fields.IntField()),
                ('cover_url', fields.CharField(null=True, max_length=255)),
                ('theme', fields.CharField(null=True, max_length=32)),
                ('retired_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_by', fields.BigIntField(null=True)),
            ],
            options={'table': 'gift_card_design', 'app': 'giftcards', 'pk_attr': 'id', 'table_description': 'What a shopper picks in the shop: a cover, a theme and the face values on offer.'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='GiftCardBatch',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('design', fields.ForeignKeyField('giftcards.GiftCardDesign', source_field='design_id', db_constraint=True, to_field='id', related_name='batches', on_delete=OnDelete.RESTRICT)),
                ('face_value_fen', fields.IntField()),
                ('count', fields.IntField()),
                ('created_by', fields.BigIntField(null=True)),
            ],
            options={'table': 'gift_card_batch', 'app': 'giftcards', 'pk_attr': 'id', 'table_description': 'Physical cards printed for stores: numbers and PINs handed out once, as CSV.'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='GiftCard',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('card_no', fields.CharField(unique=True, max_length=16)),
                ('design', fields.ForeignKeyField('giftcards.GiftCardDesign', source_field='design_id', db_constraint=True, to_field='id', related_name='cards', on_delete=OnDelete.RESTRICT)),
                ('face_value_fen', fields.IntField()),
                ('account_id', fields.BigIntField(unique=True)),
                ('holder_id', fields.BigIntField(null=True, db_index=True)),
                ('buyer_id', fields.BigIntField(null=True)),
                ('order_no', fields.CharField(null=True, max_length=32)),
                ('seq', fields.IntField(null=True)),
                ('batch', fields.ForeignKeyField('giftcards.GiftCardBatch', source_field='batch_id', null=True, db_constraint=True, to_field='id', related_name='cards', on_delete=OnDelete.RESTRICT)),
                ('pin_hash', fields.CharField(null=True, max_length=64)),
                ('status', fields.CharEnumField(default=CardStatus.ACTIVE, description='ACTIVE: active\nGIFTING: gifting\nEXPIRED: expired\nREFUNDED: refunded', enum_type=CardStatus, max_length=12)),
                ('bound_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('reminded_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'gift_card', 'app': 'giftcards', 'unique_together': (('order_no', 'seq'),), 'indexes': [Index(fields=['status', 'expires_at'])], 'pk_attr': 'id', 'table_description': 'One card. Its money is ledger account `account_id`, and `holder_id` is who may spend it'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='Gift',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('gift_no', fields.CharField(unique=True, max_length=16)),
                ('card', fields.ForeignKeyField('giftcards.GiftCard', source_field='card_id', db_constraint=True, to_field='id', related_name='gifts', on_delete=OnDelete.RESTRICT)),
                ('giver_id', fields.BigIntField(db_index=True)),
                ('greeting', fields.CharField(max_length=200)),
                ('amount_fen', fields.IntField()),
                ('verdict', fields.CharField(default='', max_length=12)),
                ('status', fields.CharEnumField(default=GiftStatus.CHECKING, description='CHECKING: checking\nPENDING: pending\nCLAIMED: claimed\nCANCELLED: cancelled\nRETURNED: returned\nREJECTED: rejected', enum_type=GiftStatus, max_length=12)),
                ('claimer_id', fields.BigIntField(null=True)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'gift_card_gift', 'app': 'giftcards', 'indexes': [Index(fields=['status', 'expires_at'])], 'pk_attr': 'id', 'table_description': "A card on its way to a friend, with the giver's greeting."},
            bases=['TimestampedModel'],
        ),
    ]
