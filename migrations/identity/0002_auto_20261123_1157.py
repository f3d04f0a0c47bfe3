from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('identity', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Member',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('unionid', fields.CharField(null=True, unique=True, max_length=64)),
                ('nickname', fields.CharField(default='', max_length=64)),
                ('tier', fields.CharField(default='regular', max_length=16)),
                ('disabled', fields.BooleanField(default=False)),
            ],
            options={'table': 'member', 'app': 'identity', 'pk_attr': 'id', 'table_description': 'One person across every channel of the brand, tied together by the WeChat unionid.'},
            bases=['TimestampedModel'],
        ),
    ]
