# Jobs of an inactive client are held: not claimed until the client is active again. The claim's
# index leaves them out (built CONCURRENTLY before the old one is dropped, so claims keep an
# index and submissions are never blocked on a big table). The column's database default makes
# adding it instant on PostgreSQL (no table rewrite).

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("clients", "0001_initial"),
        ("jobs", "0002_list_filter_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="held",
            field=models.BooleanField(
                db_default=False,
                default=False,
                help_text="Its client is inactive: not started until the client is active again.",
            ),
        ),
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(
                condition=models.Q(("held", False), ("status", "queued")),
                fields=["queue", "-priority", "id"],
                name="job_claimable",
            ),
        ),
        RemoveIndexConcurrently(model_name="job", name="job_queued"),
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(
                condition=models.Q(("held", True)), fields=["client"], name="job_held"
            ),
        ),
    ]
