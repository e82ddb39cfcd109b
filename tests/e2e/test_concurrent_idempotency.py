"""1000 concurrent submissions with 100 distinct Idempotency-Keys create exactly 100 jobs."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from apps.clients.services import client_create
from apps.jobs.models import Job
from tests.support.processes import start_web

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_concurrent_duplicates_never_create_two_jobs(tmp_path: Path) -> None:
    _, key = client_create(name="hammer", unlimited=True)
    web, base = start_web(tmp_path, workers=4)

    def post(n: int) -> tuple[str, int, str | None]:
        idempotency_key = f"key-{n % 100}"
        body = json.dumps({"type": "diagnostics.echo", "input": {"message": idempotency_key}})
        request = urllib.request.Request(
            f"{base}/api/v1/jobs",
            data=body.encode(),
            method="POST",
            headers={
                "Authorization": f"Bearer {key}",
                "Content-Type": "application/json",
                "Idempotency-Key": idempotency_key,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return idempotency_key, response.status, json.loads(response.read())["id"]
        except urllib.error.HTTPError as error:
            payload = json.loads(error.read())
            return idempotency_key, error.code, payload["error"]["code"]

    try:
        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(post, range(1000)))
    finally:
        web.stop()
    assert Job.objects.count() == 100
    ids: dict[str, set[str]] = defaultdict(set)
    for idempotency_key, status, detail in results:
        assert status in {202, 409}, (status, detail)
        if status == 202:
            ids[idempotency_key].add(str(detail))
        else:
            assert detail == "idempotency_in_progress"
    assert all(len(job_ids) == 1 for job_ids in ids.values())
    assert {j.idempotency_key for j in Job.objects.all()} == {f"key-{n}" for n in range(100)}
