"""`share_open` (one row for every open of a share link) partitioned by month of created_at
(PostgreSQL): old months are archived by DETACH. SQLite (the demo) keeps the plain table."""

from tortoise import migrations
from tortoise.migrations import operations as ops

from server.infra.partitions import partition_by_month


async def by_month(apps, schema_editor):
    client = schema_editor.client
    if client.capabilities.dialect != "postgres":
        return
    await partition_by_month(client, "share_open")


class Migration(migrations.Migration):
    dependencies = [("share", "0001_initial")]

    initial = False

    operations = [ops.RunPython(by_month)]
