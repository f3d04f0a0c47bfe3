from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from server.identity.models import Gender, StaffRole
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('identity', '0001_initial'), ('identity', '0002_auto_20261123_1157'), ('stores', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='MemberMerge',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('from_member', fields.ForeignKeyField('identity.Member', source_field='from_member_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('into_member', fields.ForeignKeyField('identity.Member', source_field='into_member_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('unionid', fields.CharField(max_length=64)),
                ('reason', fields.CharField(default='unionid', max_length=64)),
                ('moved', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
            ],
            options={'table': 'member_merge', 'app': 'identity', 'pk_attr': 'id', 'table_description': 'A record of two members found to be one person (a unionid arrived): who went where.'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='Staff',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('username', fields.CharField(unique=True, max_length=64)),
                ('password_hash', fields.CharField(max_length=255)),
                ('name', fields.CharField(default='', max_length=64)),
                ('role', fields.CharEnumField(default=StaffRole.CLERK, description='CLERK: clerk\nMANAGER: manager', enum_type=StaffRole, max_length=16)),
                ('disabled', fields.BooleanField(default=False)),
            ],
            options={'table': 'staff', 'app': 'identity', 'pk_attr': 'id', 'table_description': 'A store account (clerk or store manager) that scans and writes off codes.'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='StaffStore',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('staff', fields.ForeignKeyField('identity.Staff', source_field='staff_id', db_constraint=True, to_field='id', related_name='store_links', on_delete=OnDelete.CASCADE)),
                ('store', fields.ForeignKeyField('stores.Store', source_field='store_id', db_constraint=True, to_field='id', related_name='staff_links', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'staff_store', 'app': 'identity', 'unique_together': (('staff', 'store'),), 'pk_attr': 'id', 'table_description': 'Which stores a staff account works at (one or more).'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='WeChatIdentity',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('appid', fields.CharField(max_length=32)),
                ('openid', fields.CharField(max_length=64)),
                ('unionid', fields.CharField(null=True, max_length=64)),
                ('member', fields.ForeignKeyField('identity.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='wechat_identities', on_delete=OnDelete.RESTRICT)),
                ('session_key_sealed', fields.TextField(default='', unique=False)),
                ('last_login_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'wechat_identity', 'app': 'identity', 'unique_together': (('appid', 'openid'),), 'pk_attr': 'id', 'table_description': 'One (appid, openid): a member as one mini-program / official account knows it.'},
            bases=['TimestampedModel'],
        ),
        ops.AddField(
            model_name='Member',
            name='avatar_url',
            field=fields.CharField(default='', max_length=512),
        ),
        ops.AddField(
            model_name='Member',
            name='birthday',
            field=fields.DateField(null=True),
        ),
        ops.AddField(
            model_name='Member',
            name='gender',
            field=fields.IntEnumField(default=Gender.UNKNOWN, description='UNKNOWN: 0\nMALE: 1\nFEMALE: 2', enum_type=Gender, generated=False),
        ),
        ops.AddField(
            model_name='Member',
            name='merged_into',
            field=fields.ForeignKeyField('identity.Member', source_field='merged_into_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT),
        ),
        ops.AddField(
            model_name='Member',
            name='phone_hash',
            field=fields.CharField(null=True, db_index=True, max_length=64),
        ),
        ops.AddField(
            model_name='Member',
            name='phone_masked',
            field=fields.CharField(default='', max_length=20),
        ),
        ops.AddField(
            model_name='Member',
            name='phone_sealed',
            field=fields.TextField(null=True, unique=False),
        ),
        ops.AddField(
            model_name='Member',
            name='points',
            field=fields.BigIntField(default=0),
        ),
    ]
