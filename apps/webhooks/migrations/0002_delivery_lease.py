# A delivery's lease (token and expiry): fencing of outcomes, and the per-client cap on
# deliveries in flight (apps/webhooks/services.py). Nullable columns are added without a table
# rewrite; the index is built CONCURRENTLY on PostgreSQL, so deliveries keep flowing meanwhile.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("webhooks", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="webhookdelivery",
            name="lease_token",
            field=models.UUIDField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="webhookdelivery",
            name="leased_until",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        AddIndexConcurrently(
            model_name="webhookdelivery",
            index=models.Index(
                condition=models.Q(("leased_until__isnull", False), ("status", "pending")),
                fields=["leased_until", "client_id"],
                name="delivery_in_flight",
            ),
        ),
    ]
