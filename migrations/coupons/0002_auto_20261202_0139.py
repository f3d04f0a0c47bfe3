from tortoise import migrations
from tortoise.migrations import operations as ops
from server.coupons.models import CouponStatus
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('coupons', '0001_initial'), ('identity', '0003_auto_20261123_1207'), ('stores', '0002_auto_20261123_1209')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='Coupon',
            name='status',
            field=fields.CharEnumField(default=CouponStatus.UNUSED, description='UNUSED: unused\nLOCKED: locked\nUSED: used\nVOID: void', enum_type=CouponStatus, max_length=8),
        ),
        ops.AddField(
            model_name='Coupon',
            name='grant_ref',
            field=fields.CharField(null=True, unique=True, max_length=64),
        ),
    ]
