"""Unique jobs: the key, its window, and the index the duplicate check reads (built
CONCURRENTLY: the jobs table is big and busy)."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("jobs", "0006_rate_windows")]

    operations = [
        migrations.AddField(
            model_name="job",
            name="unique_key",
            field=models.CharField(blank=True, max_length=200, null=True),
        ),
        migrations.AddField(
            model_name="job",
            name="unique_for_seconds",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(
                condition=models.Q(("unique_key__isnull", False)),
                fields=["client", "unique_key", "-id"],
                name="job_unique_key",
            ),
        ),
    ]
