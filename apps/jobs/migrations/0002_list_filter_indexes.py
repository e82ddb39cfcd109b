# Indexes for the job list's filters (EXPLAIN-checked in tests/jobs/test_list_indexes.py).
# Built CONCURRENTLY, so the migration never blocks submissions on a big table.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("jobs", "0001_initial"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(fields=["client", "type", "-id"], name="job_client_type_id"),
        ),
        # metadata @> '{"key": "value"}': jsonb_path_ops indexes each path-and-value as one
        # hash, smaller and faster for containment than the default jsonb_ops.
        migrations.RunSQL(
            sql=(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS job_metadata_gin "
                "ON jobs_job USING gin (metadata jsonb_path_ops)"
            ),
            reverse_sql="DROP INDEX CONCURRENTLY IF EXISTS job_metadata_gin",
        ),
    ]
