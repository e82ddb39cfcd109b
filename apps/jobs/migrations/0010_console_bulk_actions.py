"""The operator console: bulk actions' progress rows, and the failed jobs' partial index
(built concurrently: the jobs table takes writes while it builds)."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('clients', '0003_flow_control'),
        ('jobs', '0009_finished_counts'),
    ]

    operations = [
        migrations.CreateModel(
            name='JobBulkAction',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('action', models.CharField(choices=[('retry', 'retry'), ('cancel', 'cancel')], max_length=16)),
                ('query', models.CharField(blank=True, max_length=2000)),
                ('requested_by', models.CharField(max_length=150)),
                ('requested_at', models.DateTimeField()),
                ('expected', models.PositiveIntegerField(default=0)),
                ('status', models.CharField(choices=[('pending', 'Pending'), ('running', 'Running'), ('done', 'Done'), ('failed', 'Failed')], default='pending', max_length=16)),
                ('cursor', models.UUIDField(blank=True, null=True)),
                ('upto', models.UUIDField(blank=True, null=True)),
                ('done', models.PositiveIntegerField(default=0)),
                ('skipped', models.PositiveIntegerField(default=0)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('heartbeat_at', models.DateTimeField(blank=True, null=True)),
                ('error', models.CharField(blank=True, max_length=500)),
            ],
            options={
                'verbose_name': 'bulk job action',
                'ordering': ['-id'],
            },
        ),
        AddIndexConcurrently(
            model_name='job',
            index=models.Index(condition=models.Q(('status', 'failed')), fields=['-id'], name='job_failed'),
        ),
        migrations.AddIndex(
            model_name='jobbulkaction',
            index=models.Index(condition=models.Q(('status__in', ['pending', 'running'])), fields=['id'], name='jobbulk_open'),
        ),
    ]
