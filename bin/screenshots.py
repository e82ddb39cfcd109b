"""Screenshots of each page of the operator console: ``make screenshots``.

Seeds the development database (``DATABASE_URL``, as ``make run`` uses; the rows it adds belong
to clients named ``demo-…``, created once) with jobs in every state, their events, webhook
deliveries and a finished bulk action; starts the server on a loopback port; logs in as a staff
user with the admin role (``screenshots``, created once); and saves one PNG per page into
docs/screenshots/ with Playwright driving Debian's Chromium (``CHROMIUM`` overrides
/usr/bin/chromium). Re-run it after the console changes: README.md links the files.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
USERNAME = "screenshots"
WIDTH, HEIGHT = 1600, 900
JOBS = 140
# A live worker while the pages are shot, so the dashboard shows its workers column.
WORKER = "demo-worker@screenshots"


def now_minus_day() -> Any:
    from django.utils import timezone

    return timezone.now() - timedelta(days=1)


def workflow(client: Any, now: Any) -> None:
    """Three jobs chained by depends_on: a build that succeeded, a publish step that depended on
    it and failed, and a notification that depended on the publish step (canceled with it)."""
    from apps.core.ids import uuid7_with_time
    from apps.jobs.models import Job, JobEvent

    steps = [
        ("text.split", "succeeded", None),
        (
            "text.count_words",
            "failed",
            {"code": "handler_error", "message": "ValueError: bad chunk"},
        ),
        (
            "text.merge_counts",
            "canceled",
            {"code": "dependency_failed", "message": "a dependency failed"},
        ),
    ]
    previous: Any = None
    for n, (job_type, status, error) in enumerate(steps):
        job_id, created = uuid7_with_time()
        created = now - timedelta(minutes=30 - n * 5)
        job = Job.objects.create(
            id=job_id,
            client=client,
            type=job_type,
            status=status,
            input={"text": "the quick brown fox jumps over the lazy dog", "chunk": n},
            result={"chunks": 3} if status == "succeeded" else None,
            error=error,
            queue="default",
            attempts=3 if status == "failed" else (0 if status == "canceled" else 1),
            max_attempts=3,
            timeout_seconds=300,
            metadata={"workflow": "word-count"},
            depends_on=[previous.pk] if previous else [],
            has_dependents=n < len(steps) - 1,
            created_at=created,
            started_at=created + timedelta(seconds=2) if status != "canceled" else None,
            finished_at=created + timedelta(seconds=40),
        )
        JobEvent.objects.create(job=job, from_status="", to_status="queued", at=created)
        JobEvent.objects.create(
            job=job,
            from_status="queued",
            to_status=status if status == "canceled" else "running",
            attempt=0 if status == "canceled" else 1,
            at=created + timedelta(seconds=2),
        )
        if status != "canceled":
            JobEvent.objects.create(
                job=job,
                from_status="running",
                to_status=status,
                attempt=1,
                at=created + timedelta(seconds=40),
                details={"error": error} if error else {},
            )
        previous = job


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("CONVEYOR_ENV", "development")
    import django

    django.setup()


def seed() -> dict[str, Any]:
    """Demo rows (once) and the ids the page list needs."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone

    from apps.clients.models import ApiClient
    from apps.clients.services import client_create
    from apps.core.ids import uuid7_with_time
    from apps.jobs.models import FinishedCountMark, Job, JobBulkAction, JobEvent
    from apps.jobs.throughput import finished_counts_roll_up
    from apps.staff.services import staff_role_set
    from apps.webhooks.models import WebhookAttempt, WebhookDelivery

    call_command("migrate", "--noinput", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username=USERNAME)
    password = secrets.token_urlsafe(16)
    user.set_password(password)
    user.save()
    staff_role_set(user=user, role="admin", by="bin/screenshots.py")

    if not ApiClient.objects.filter(name="demo-acme").exists():
        now = timezone.now()
        clients = [
            client_create(name=name)[0] for name in ("demo-acme", "demo-globex", "demo-initech")
        ]
        kinds = [
            ("diagnostics.echo", "default"),
            ("text.count_words", "default"),
            ("diagnostics.checksum", "heavy"),
            ("text.split", "default"),
            ("text.merge_counts", "default"),
        ]
        errors = {
            "text.count_words": {"code": "handler_error", "message": "ValueError: bad chunk"},
            "diagnostics.checksum": {"code": "timeout", "message": "ran past its 300 s"},
        }
        # Mostly successes, a failure in six, a cancel now and then; the last few minutes
        # still waiting or running, and one job running past its timeout (needs attention).
        history = ["succeeded"] * 4 + ["failed", "succeeded", "canceled"] + ["succeeded"] * 5
        live = {1: "queued", 2: "queued", 3: "running", 4: "running", 5: "retrying", 35: "running"}
        # The newest 60 a minute apart (the last hour), the rest over the day before: the
        # dashboard's hour and day charts both get bars.
        for i in range(JOBS):
            job_type, queue = kinds[i % len(kinds)]
            ago = JOBS - i
            status = live.get(ago) or history[i % len(history)]
            if status == "failed" and job_type not in errors:
                job_type, queue = "text.count_words", "default"
            error = errors.get(job_type) if status in {"failed", "retrying"} else None
            job_id, created = uuid7_with_time()
            created -= timedelta(minutes=ago if ago <= 60 else 60 + (ago - 60) * 17)
            finished = (
                created + timedelta(seconds=3)
                if status in {"succeeded", "failed", "canceled"}
                else None
            )
            job = Job.objects.create(
                id=job_id,
                client=clients[i % 3],
                type=job_type,
                status=status,
                input={"order": 1000 + i, "customer": {"id": f"c-{i}", "tier": "gold"}},
                result={"pages": 3, "url": f"https://example.com/r/{i}.pdf"}
                if status == "succeeded"
                else None,
                error=error,
                queue=queue,
                attempts=3 if status == "failed" else 1,
                max_attempts=3,
                timeout_seconds=300,
                metadata={"order": str(1000 + i)},
                idempotency_key=f"order-{1000 + i}" if i % 5 == 0 else None,
                webhook_url="https://hooks.example.com/conveyor" if i % 4 == 1 else None,
                created_at=created,
                started_at=created + timedelta(seconds=1) if status != "queued" else None,
                finished_at=finished,
            )
            JobEvent.objects.create(job=job, from_status="", to_status="queued", at=created)
            if status != "queued":
                JobEvent.objects.create(
                    job=job,
                    from_status="queued",
                    to_status="running",
                    attempt=1,
                    at=created + timedelta(seconds=1),
                )
            if finished:
                JobEvent.objects.create(
                    job=job,
                    from_status="running",
                    to_status=status,
                    attempt=1,
                    at=finished,
                    details={"error": error} if error else {},
                )
            if job.webhook_url and finished:
                delivery = WebhookDelivery.objects.create(
                    job=job,
                    client_id=job.client_id,
                    event_type=f"job.{status}",
                    sequence=1,
                    webhook_id=f"msg_demo{i}",
                    url=job.webhook_url,
                    job_snapshot={"id": str(job.pk), "type": job.type, "status": status},
                    status="failed" if status == "failed" else "delivered",
                    attempts=2,
                    next_attempt_at=finished,
                    created_at=finished,
                    last_status_code=503 if status == "failed" else 200,
                )
                WebhookAttempt.objects.create(
                    delivery=delivery,
                    at=finished,
                    status_code=delivery.last_status_code,
                    latency_ms=41.5,
                    outcome="failed" if status == "failed" else "delivered",
                )
        workflow(clients[0], now)
        JobBulkAction.objects.create(
            action="retry",
            query="status__exact=failed&q=error%3Ahandler_error",
            requested_by=USERNAME,
            requested_at=now - timedelta(minutes=5),
            expected=6,
            done=6,
            status="done",
            finished_at=now - timedelta(minutes=4),
        )
    # The job page shown: the workflow's failed step (input, error, timeline, dependencies).
    any_failed = (
        Job.objects.filter(
            client__name__startswith="demo-", metadata__workflow="word-count", status="failed"
        ).first()
        or Job.objects.filter(client__name__startswith="demo-", status="failed").first()
    )
    # The dashboard's charts read the per-minute rollup: bring it up to now.
    target = timezone.now()
    while (
        FinishedCountMark.objects.values_list("counted_to", flat=True).first() or now_minus_day()
    ) < target:
        finished_counts_roll_up()
    shown_delivery = WebhookDelivery.objects.filter(webhook_id__startswith="msg_demo").first()
    bulk = JobBulkAction.objects.order_by("-id").first()
    return {
        "password": password,
        "job": any_failed.pk if any_failed else None,
        "delivery": shown_delivery.pk if shown_delivery else None,
        "bulk": bulk.pk if bulk else None,
    }


def pages(ids: dict[str, Any]) -> list[tuple[str, str]]:
    """(file name, URL) of each page; the admin index shows the dashboard once it exists."""
    listed = [
        ("admin-index-dashboard", "/admin/"),
        ("jobs-list", "/admin/jobs/job/"),
        ("jobs-search", "/admin/jobs/job/?q=client%3Ademo-acme+type%3Atext.count_words"),
        ("jobs-dead-letters", "/admin/jobs/job/?status__exact=failed"),
        ("jobs-bulk-retry-confirm", "/admin/jobs/job/bulk/retry/?status__exact=failed"),
        ("jobs-empty-state", "/admin/jobs/job/?q=error%3Anothing_like_this"),
        ("bulk-actions", "/admin/jobs/jobbulkaction/"),
        ("webhook-deliveries", "/admin/webhooks/webhookdelivery/"),
        ("webhook-redeliver-confirm", "/admin/webhooks/webhookdelivery/redeliver-failed/"),
        ("audit-log", "/admin/staff/adminauditentry/"),
    ]
    if ids["job"]:
        listed.insert(4, ("job-page", f"/admin/jobs/job/{ids['job']}/change/"))
    if ids["bulk"]:
        listed.append(("bulk-action-progress", f"/admin/jobs/jobbulkaction/{ids['bulk']}/change/"))
    if ids["delivery"]:
        listed.append(
            ("webhook-delivery-page", f"/admin/webhooks/webhookdelivery/{ids['delivery']}/change/")
        )
    return listed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    setup_django()
    ids = seed()
    port = free_port()
    server = subprocess.Popen(  # noqa: S603 - our own manage.py, no shell
        [sys.executable, "manage.py", "runserver", "--noreload", "--insecure", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env={**os.environ, "ALLOWED_HOSTS": "127.0.0.1,localhost"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1).read()  # noqa: S310
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.3)
        from apps.jobs.fleet import worker_gone, worker_heartbeat

        worker_heartbeat(name=WORKER, queues=["default", "reports", "media"], processes=4)
        try:
            shoot(base, ids)
        finally:
            worker_gone(name=WORKER)
    finally:
        server.terminate()
        server.wait(10)
    return 0


def shoot(base: str, ids: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    executable = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        page = browser.new_page(base_url=base, viewport={"width": WIDTH, "height": HEIGHT})
        # The admin's navigation sidebar closed (as a click on « keeps it): the lists get the width.
        page.add_init_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
        page.goto("/admin/login/?next=/admin/")
        page.fill("#id_username", USERNAME)
        page.fill("#id_password", ids["password"])
        page.click("input[type=submit]")
        page.wait_for_url(f"{base}/admin/")
        for name, url in pages(ids):
            page.goto(url)
            if name == "admin-index-dashboard" and page.locator("#conveyor-dashboard").count():
                page.wait_for_timeout(1500)  # let the dashboard's first refresh draw
            # An object's page is long: the whole of it; a list, the first screen.
            page.screenshot(path=str(OUT / f"{name}.png"), full_page=name.endswith("-page"))
            print(f"docs/screenshots/{name}.png  {url}")
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
