"""Celery tasks: thin wrappers that take ids from messages and call the runtime or services."""

from __future__ import annotations

from datetime import timedelta

from celery import Task
from django.conf import settings

from apps.clients.services import api_keys_refuse_in_cache
from apps.jobs import holds, maintenance
from apps.jobs.queues import DELIVER_WEBHOOKS_TASK, RUN_JOBS_TASK
from apps.jobs.throughput import finished_counts_roll_up
from apps.schedules.firing import schedules_fire_due
from apps.webhooks import maintenance as webhook_maintenance
from config.celery_app import app
from workers import runtime, webhook_drain


@app.task(name=RUN_JOBS_TASK, bind=True, acks_late=True, ignore_result=True)
def run_jobs(self: Task, queue: str) -> dict[str, int]:
    """A wake-up for ``queue``: claim and run its queued jobs, highest priority first."""
    return runtime.run_queue(
        queue, worker=self.request.hostname or "", task_id=self.request.id or ""
    )


@app.task(name=DELIVER_WEBHOOKS_TASK, bind=True, acks_late=True, ignore_result=True)
def deliver_webhooks(self: Task, queue: str) -> dict[str, int]:
    """A wake-up for the webhook pool: send due deliveries until none is left or the budget
    is spent."""
    return webhook_drain.drain_deliveries()


# --- Maintenance (the scheduler process: beat + a worker on the maintenance queue) -------------


@app.task(name="conveyor.maintenance.promote_due", ignore_result=True)
def promote_due() -> int:
    """Queue scheduled and retrying jobs whose time has come."""
    return maintenance.jobs_promote_due()


@app.task(name="conveyor.maintenance.wake_due_deliveries", ignore_result=True)
def wake_due_deliveries() -> int:
    """Wake the webhook pool when deliveries are due (retries, missed announcements)."""
    return webhook_maintenance.deliveries_wake_due()


@app.task(name="conveyor.maintenance.recover_stale", ignore_result=True)
def recover_stale() -> int:
    """Take back running jobs whose worker stopped heartbeating."""
    return maintenance.jobs_recover_stale(
        heartbeat_timeout=settings.JOB_HEARTBEAT_TIMEOUT_SECONDS,
        grace=settings.JOB_TIMEOUT_GRACE_SECONDS,
    )


@app.task(name="conveyor.maintenance.wake_stalled", ignore_result=True)
def wake_stalled() -> int:
    """Wake pools whose queued jobs wait with no wake-up in the broker (lost messages), after
    bringing the holds of inactive clients' jobs in line (apps/jobs/holds.py)."""
    holds.jobs_sync_holds()
    return maintenance.jobs_wake_stalled(min_age=settings.JOB_STALLED_AFTER_SECONDS)


@app.task(name="conveyor.maintenance.fire_schedules", ignore_result=True)
def fire_schedules() -> int:
    """Submit the jobs of due schedules, each tick once (apps/schedules/firing.py)."""
    return schedules_fire_due()


@app.task(name="conveyor.maintenance.purge_finished", ignore_result=True)
def purge_finished() -> int:
    """Delete finished jobs past the retention period, and expired idempotency records, in
    bounded batches."""
    return maintenance.jobs_purge_finished(
        older_than=timedelta(days=settings.JOB_RETENTION_DAYS)
    ) + maintenance.idempotency_records_purge(
        older_than=timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    )


@app.task(name="conveyor.maintenance.count_finished", ignore_result=True)
def count_finished() -> int:
    """Recount finished jobs per minute for the admin dashboard (apps/jobs/throughput.py)."""
    return finished_counts_roll_up().rows


@app.task(name="conveyor.maintenance.refuse_revoked_keys", ignore_result=True)
def refuse_revoked_keys() -> int:
    """Write the auth cache's refusal of recently revoked keys and inactive clients' keys again
    (a revocation made while the cache was unreachable from its process)."""
    return api_keys_refuse_in_cache()


@app.task(name="conveyor.maintenance.bulk_actions", ignore_result=True)
def bulk_actions() -> int:
    """Run the admin's confirmed bulk retries and cancels in short chunks (apps/jobs/bulk.py)."""
    from apps.jobs.bulk import bulk_actions_run

    return bulk_actions_run(budget_seconds=settings.BULK_ACTION_BUDGET_SECONDS)
