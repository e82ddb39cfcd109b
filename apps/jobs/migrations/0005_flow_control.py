"""Flow control: per-client caps and weights' counters, concurrency keys, and the claim's
indexes for fair dispatch (built CONCURRENTLY: the jobs table is big and busy; the new claim
index is built before the old one is dropped)."""

import django.db.models.deletion
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("clients", "0003_flow_control"),
        ("jobs", "0004_staff_permissions"),
    ]

    operations = [
        migrations.CreateModel(
            name="RunningCount",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("key", models.CharField(blank=True, max_length=200)),
                ("running", models.IntegerField(db_default=0, default=0)),
                (
                    "client",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.DB_CASCADE,
                        related_name="+",
                        to="clients.apiclient",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("client", "key"), name="runningcount_client_key"
                    )
                ],
            },
        ),
        migrations.AddField(
            model_name="job",
            name="client_slot",
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.AddField(
            model_name="job",
            name="key_slot",
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.AddField(
            model_name="job",
            name="concurrency_key",
            field=models.CharField(blank=True, max_length=200, null=True),
        ),
        migrations.AddField(
            model_name="job",
            name="concurrency_limit",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(
                condition=models.Q(("held", False), ("status", "queued")),
                fields=["queue", "client", "-priority", "id"],
                name="job_claimable_by_client",
            ),
        ),
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(
                condition=models.Q(("status", "running")),
                fields=["queue", "client"],
                name="job_running",
            ),
        ),
        RemoveIndexConcurrently(model_name="job", name="job_claimable"),
        # Every client has its client-wide row (the claim locks it when the client has a cap).
        migrations.RunSQL(
            "INSERT INTO jobs_runningcount (client_id, key, running) "
            "SELECT id, '', 0 FROM clients_apiclient ON CONFLICT DO NOTHING",
            migrations.RunSQL.noop,
        ),
    ]
