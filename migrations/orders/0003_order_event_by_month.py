"""`order_event` partitioned by month of created_at (PostgreSQL), with an index on order_id.

Five events an order at 3 M orders a day is the largest append-only table of the schema
(docs/CAPACITY.md); a month partition is archived by DETACH instead of a DELETE that bloats
the table. Events are read by their order (`orders.service.order_events`), which had no index
until now: each partition gets one, and the read names a time range so it touches the one or
two partitions of the order's month. SQLite (the demo) keeps the plain table.

On a large live table, build the index by hand first (`CREATE INDEX CONCURRENTLY
order_event_order_id_idx ON order_event (order_id)`: IF NOT EXISTS then keeps it); the
primary key's rebuild as (id, created_at) still holds the table's lock for its duration,
so run this migration in a quiet hour."""

from tortoise import migrations
from tortoise.migrations import operations as ops

from server.infra.partitions import partition_by_month


async def by_month(apps, schema_editor):
    client = schema_editor.client
    if client.capabilities.dialect != "postgres":
        return
    await client.execute_script(
        "CREATE INDEX IF NOT EXISTS order_event_order_id_idx ON order_event (order_id)"
    )
    await partition_by_month(client, "order_event")


class Migration(migrations.Migration):
    dependencies = [("orders", "0002_order_kinds_topup_membership")]

    initial = False

    operations = [ops.RunPython(by_month)]
