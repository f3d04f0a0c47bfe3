from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('identity', '0001_initial'), ('identity', '0002_auto_20261123_1157'), ('identity', '0003_auto_20261123_1207')]

    initial = True

    operations = [
        ops.CreateModel(
            name='Share',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('scene', fields.CharField(unique=True, max_length=32)),
                ('kind', fields.CharField(max_length=16)),
                ('target', fields.CharField(max_length=64)),
                ('sharer', fields.ForeignKeyField('identity.Member', source_field='sharer_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('slot', fields.BigIntField(default=0)),
                ('page', fields.CharField(max_length=128)),
                ('path', fields.CharField(max_length=512)),
                ('url_link', fields.CharField(null=True, max_length=256)),
                ('url_link_expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('opens', fields.BigIntField(default=0)),
            ],
            options={'table': 'share', 'app': 'share', 'unique_together': (('kind', 'target', 'sharer', 'slot'),), 'indexes': [Index(fields=['sharer_id', 'kind'])], 'pk_attr': 'id', 'table_description': 'A link to one target by one sharer.'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='ShareCode',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('share', fields.OneToOneField('share.Share', source_field='share_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('png', fields.BinaryField()),
            ],
            options={'table': 'share_code', 'app': 'share', 'pk_attr': 'id', 'table_description': 'The mini-program code image of a share, fetched from WeChat once.'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='ShareConversion',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('share', fields.ForeignKeyField('share.Share', source_field='share_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('sharer', fields.ForeignKeyField('identity.Member', source_field='sharer_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('joiner', fields.ForeignKeyField('identity.Member', source_field='joiner_id', db_index=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('kind', fields.CharField(max_length=16)),
                ('target', fields.CharField(max_length=64)),
            ],
            options={'table': 'share_conversion', 'app': 'share', 'unique_together': (('share', 'joiner', 'target'),), 'indexes': [Index(fields=['kind', 'target', 'sharer_id']), Index(fields=['sharer_id', 'kind'])], 'pk_attr': 'id', 'table_description': 'Who brought whom: a member acted through a share (joined a group, claimed a gift).'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='ShareOpen',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('share', fields.ForeignKeyField('share.Share', source_field='share_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('opener', fields.ForeignKeyField('identity.Member', source_field='opener_id', null=True, db_index=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
            ],
            options={'table': 'share_open', 'app': 'share', 'pk_attr': 'id', 'table_description': 'Someone opened a share (the landing page), and who when they were signed in.'},
            bases=['TimestampedModel'],
        ),
    ]
