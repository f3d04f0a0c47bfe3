from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('coupons', '0007_coupon_partial_indexes'), ('identity', '0001_initial'), ('identity', '0002_auto_20261123_1157'), ('identity', '0003_auto_20261123_1207'), ('identity', '0004_member_birthday_md'), ('stores', '0001_initial'), ('stores', '0002_auto_20261123_1209'), ('stores', '0003_store_delivery_areas')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Coupon',
            name='request_key',
            field=fields.CharField(null=True, max_length=128),
        ),
    ]
