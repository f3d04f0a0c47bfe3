from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='Store',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('code', fields.CharField(unique=True, max_length=32)),
                ('name', fields.CharField(max_length=128)),
                ('city', fields.CharField(db_index=True, max_length=32)),
                ('district', fields.CharField(default='', max_length=32)),
                ('address', fields.CharField(default='', max_length=255)),
                ('lat', fields.FloatField()),
                ('lng', fields.FloatField()),
                ('phone', fields.CharField(default='', max_length=32)),
                ('closed', fields.BooleanField(default=False)),
            ],
            options={'table': 'store', 'app': 'stores', 'pk_attr': 'id'},
            bases=['TimestampedModel'],
        ),
    ]
