from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='LedgerAccount',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('kind', fields.CharField(max_length=16)),
                ('owner_key', fields.CharField(null=True, unique=True, max_length=48)),
                ('member_id', fields.BigIntField(null=True, db_index=True)),
                ('balance', fields.BigIntField(default=0)),
            ],
            options={'table': 'ledger_account', 'app': 'ledger', 'pk_attr': 'id', 'table_description': 'A balance that moves only by `ledger.service.post`.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='LedgerEntry',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('account', fields.ForeignKeyField('ledger.LedgerAccount', source_field='account_id', db_constraint=True, to_field='id', related_name='entries', on_delete=OnDelete.RESTRICT)),
                ('member_id', fields.BigIntField(null=True, db_index=True)),
                ('amount', fields.BigIntField()),
                ('balance_after', fields.BigIntField()),
                ('reason', fields.CharField(max_length=24)),
                ('reference', fields.CharField(max_length=64)),
            ],
            options={'table': 'ledger_entry', 'app': 'ledger', 'unique_together': (('account', 'reason', 'reference'),), 'pk_attr': 'id', 'table_description': 'One change of one account: signed `amount`, the balance right after it (returned by'},
            bases=['Model'],
        ),
        # CreateModel does not write a model's CHECK constraints; AddConstraint does.
        ops.AddConstraint(
            model_name='LedgerAccount',
            constraint=CheckConstraint(check='balance >= 0', name='ledger_balance_not_negative'),
        ),
    ]
