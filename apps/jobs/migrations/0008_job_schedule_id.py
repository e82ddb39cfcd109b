# Jobs fired by a schedule (apps/schedules) carry its id. A nullable column without a default is
# added without rewriting the table; its partial index is built CONCURRENTLY, so the migration
# never blocks submissions on a big table.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("jobs", "0007_unique_jobs"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="schedule_id",
            field=models.UUIDField(blank=True, help_text="The schedule that fired it.", null=True),
        ),
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(
                condition=models.Q(("schedule_id__isnull", False)),
                fields=["schedule_id", "-id"],
                name="job_schedule_id",
            ),
        ),
    ]
