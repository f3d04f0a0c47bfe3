from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='BenefitGrant',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('member_id', fields.BigIntField()),
                ('tier_code', fields.CharField(max_length=16)),
                ('year', fields.IntField()),
            ],
            options={'table': 'membership_benefit_grant', 'app': 'membership', 'unique_together': (('member_id', 'tier_code', 'year'),), 'pk_attr': 'id', 'table_description': "A tier's benefit coupons went to a member for a year: once per (member, tier, year)."},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='BirthdayGrant',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('member_id', fields.BigIntField()),
                ('year', fields.IntField()),
            ],
            options={'table': 'membership_birthday_grant', 'app': 'membership', 'unique_together': (('member_id', 'year'),), 'pk_attr': 'id', 'table_description': 'The birthday pack went to a member for a year: once per (member, year).'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='GrowthEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('member_id', fields.BigIntField()),
                ('fen', fields.BigIntField()),
                ('kind', fields.CharField(max_length=16)),
                ('ref', fields.CharField(max_length=64)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'membership_growth', 'app': 'membership', 'unique_together': (('kind', 'ref'),), 'indexes': [Index(fields=['member_id', 'at'])], 'pk_attr': 'id', 'table_description': 'Fen a member paid (+) or got back (-), once per fact: growth is the sum of the last 12'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='MemberRfm',
            fields=[
                ('member_id', fields.BigIntField(primary_key=True, unique=True, db_index=True)),
                ('last_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('frequency', fields.IntField()),
                ('monetary_fen', fields.BigIntField()),
                ('r', fields.IntField(default=0)),
                ('f', fields.IntField(default=0)),
                ('m', fields.IntField(default=0)),
            ],
            options={'table': 'membership_rfm', 'app': 'membership', 'pk_attr': 'member_id', 'table_description': "A member's last 12 months: recency, frequency, monetary, and their quintile scores"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='MembershipSetting',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('key', fields.CharField(unique=True, max_length=32)),
                ('value', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
            ],
            options={'table': 'membership_setting', 'app': 'membership', 'pk_attr': 'id', 'table_description': 'Operators\' membership settings that are not tiers (e.g. "birthday_pack").'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='PointsLot',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('member_id', fields.BigIntField()),
                ('ref', fields.CharField(unique=True, max_length=64)),
                ('earned', fields.BigIntField()),
                ('remaining', fields.BigIntField()),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'membership_points_lot', 'app': 'membership', 'indexes': [Index(fields=['member_id', 'expires_at'])], 'pk_attr': 'id', 'table_description': 'Points earned by one order: spent first in, first out, and what is left of a lot'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='PointsReward',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('template_id', fields.BigIntField()),
                ('points_price', fields.IntField()),
                ('active', fields.BooleanField(default=True)),
                ('created_by', fields.BigIntField(null=True)),
            ],
            options={'table': 'points_reward', 'app': 'membership', 'pk_attr': 'id', 'table_description': 'A coupon template operators put on the points shelf, at a price in points.'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='PointsRedemption',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('member_id', fields.BigIntField(db_index=True)),
                ('reward', fields.ForeignKeyField('membership.PointsReward', source_field='reward_id', db_constraint=True, to_field='id', related_name='redemptions', on_delete=OnDelete.RESTRICT)),
                ('points', fields.IntField()),
                ('coupon_id', fields.BigIntField(null=True)),
            ],
            options={'table': 'points_redemption', 'app': 'membership', 'pk_attr': 'id', 'table_description': 'A member bought a reward with points: the coupon it gave and what it cost.'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='PosSale',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('store_id', fields.BigIntField()),
                ('receipt_no', fields.CharField(max_length=40)),
                ('member_id', fields.BigIntField(db_index=True)),
                ('staff_id', fields.BigIntField()),
                ('amount_fen', fields.IntField()),
                ('pay_with', fields.CharField(max_length=16)),
                ('points', fields.IntField(default=0)),
            ],
            options={'table': 'membership_pos_sale', 'app': 'membership', 'unique_together': (('store_id', 'receipt_no'),), 'pk_attr': 'id', 'table_description': "A purchase at a store's till by an identified member: once per (store, receipt)."},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='Segment',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('name', fields.CharField(max_length=64)),
                ('rule', fields.JSONField(encoder=JSON_DUMPS, decoder=loads)),
                ('size', fields.IntField(default=0)),
                ('computed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_by', fields.BigIntField(null=True)),
            ],
            options={'table': 'membership_segment', 'app': 'membership', 'pk_attr': 'id', 'table_description': "An operator's rule tag: the members a rule holds, recomputed by the job."},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='SegmentMember',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('segment_id', fields.BigIntField()),
                ('member_id', fields.BigIntField(db_index=True)),
            ],
            options={'table': 'membership_segment_member', 'app': 'membership', 'unique_together': (('segment_id', 'member_id'),), 'pk_attr': 'id', 'table_description': 'One member in one segment (what the last computation found).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='StoredValuePlan',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('pay_fen', fields.IntField()),
                ('credit_fen', fields.IntField()),
                ('active', fields.BooleanField(default=True)),
                ('created_by', fields.BigIntField(null=True)),
            ],
            options={'table': 'stored_value_plan', 'app': 'membership', 'pk_attr': 'id', 'table_description': 'A top-up offer: pay `pay_fen`, get `credit_fen` (the difference is the bonus).'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='Tier',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('code', fields.CharField(unique=True, max_length=16)),
                ('name', fields.CharField(max_length=32)),
                ('min_growth', fields.BigIntField()),
                ('points_pct', fields.IntField(default=100)),
                ('benefit_template_ids', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
            ],
            options={'table': 'membership_tier', 'app': 'membership', 'pk_attr': 'id', 'table_description': 'A level reached by growth: `points_pct` is the points multiplier in percent (150 = 1.5x), and'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='TierChange',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('member_id', fields.BigIntField(db_index=True)),
                ('from_tier', fields.CharField(max_length=16)),
                ('to_tier', fields.CharField(max_length=16)),
                ('reason', fields.CharField(max_length=32)),
                ('ref', fields.CharField(max_length=64)),
            ],
            options={'table': 'membership_tier_change', 'app': 'membership', 'unique_together': (('member_id', 'reason', 'ref'),), 'pk_attr': 'id', 'table_description': "Every change of a member's tier: upgrades at once, downgrades at the monthly review"},
            bases=['TimestampedModel'],
        ),
    ]
