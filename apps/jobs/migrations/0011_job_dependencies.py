# Workflows (job dependencies). The three columns are added without rewriting the table (a
# constant default); the indexes are built CONCURRENTLY, so the migration never blocks
# submissions on a big table. The claim's index is rebuilt with the new condition (no pending
# dependencies): between its drop and its rebuild claims read the table's other indexes, slower
# for the minutes the build takes on a big table, never wrong.

import django.contrib.postgres.fields
import django.contrib.postgres.indexes
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("clients", "0003_flow_control"),
        ("jobs", "0010_console_bulk_actions"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="depends_on",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.UUIDField(), blank=True, db_default=[], default=list, size=100
            ),
        ),
        migrations.AddField(
            model_name="job",
            name="has_dependents",
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.AddField(
            model_name="job",
            name="pending_dependencies",
            field=models.PositiveSmallIntegerField(db_default=0, default=0),
        ),
        RemoveIndexConcurrently(model_name="job", name="job_claimable_by_client"),
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(
                condition=models.Q(("held", False), ("pending_dependencies", 0), ("status", "queued")),
                fields=["queue", "client", "-priority", "id"],
                name="job_claimable_by_client",
            ),
        ),
        AddIndexConcurrently(
            model_name="job",
            index=django.contrib.postgres.indexes.GinIndex(
                condition=models.Q(("pending_dependencies__gt", 0)),
                fields=["depends_on"],
                name="job_waiting_dependents",
            ),
        ),
        AddIndexConcurrently(
            model_name="job",
            index=django.contrib.postgres.indexes.GinIndex(
                condition=models.Q(("depends_on__len__gt", 0)),
                fields=["depends_on"],
                name="job_depends_on",
            ),
        ),
    ]
