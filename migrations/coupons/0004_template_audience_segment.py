from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('coupons', '0003_auto_20261202_0238'), ('identity', '0004_member_birthday_md'), ('stores', '0001_initial'), ('stores', '0002_auto_20261123_1209')]

    initial = False

    operations = [
        ops.AddField(
            model_name='CouponTemplate',
            name='audience_segment_id',
            field=fields.BigIntField(null=True),
        ),
    ]
