from tortoise import migrations
from tortoise.migrations import operations as ops
from server.orders.models import OrderKind
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('catalog', '0001_initial'), ('catalog', '0002_auto_20261123_1209'), ('identity', '0001_initial'), ('identity', '0002_auto_20261123_1157'), ('identity', '0003_auto_20261123_1207'), ('identity', '0004_member_birthday_md'), ('orders', '0001_initial'), ('stores', '0001_initial'), ('stores', '0002_auto_20261123_1209')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='Order',
            name='kind',
            field=fields.CharEnumField(description='PICKUP: pickup\nFLASHSALE: flashsale\nGROUPBUY: groupbuy\nTAKEOUT: takeout\nGIFTCARD: giftcard\nTOPUP: topup\nMEMBERSHIP: membership', enum_type=OrderKind, max_length=16),
        ),
    ]
