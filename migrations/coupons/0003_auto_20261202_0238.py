from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('coupons', '0002_auto_20261202_0139'), ('identity', '0001_initial'), ('identity', '0002_auto_20261123_1157'), ('identity', '0003_auto_20261123_1207'), ('stores', '0001_initial'), ('stores', '0002_auto_20261123_1209')]

    initial = False

    operations = [
        ops.AddField(
            model_name='CouponTemplate',
            name='granted_only',
            field=fields.BooleanField(default=False, db_default=False),
        ),
    ]
