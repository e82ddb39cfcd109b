"""Unique jobs under concurrency, through a real gunicorn with several workers: identical
submissions racing each other create exactly one job, and batches naming the same keys in
different orders neither deadlock nor duplicate."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from apps.clients.services import client_create
from apps.jobs.models import Job
from tests.support.http import call
from tests.support.processes import start_web

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ECHO = {"type": "diagnostics.echo", "input": {"message": "once"}}


def test_fifty_concurrent_identical_submissions_create_one_job(tmp_path: Path) -> None:
    _, key = client_create(name="racer", unlimited=True)
    web, base = start_web(tmp_path, workers=4)
    body = {**ECHO, "unique_key": "export:2026-12-01"}
    try:
        with ThreadPoolExecutor(50) as pool:
            answers = list(
                pool.map(
                    lambda _: call(base, "POST", "/api/v1/jobs", key=key, body=body, timeout=60),
                    range(50),
                )
            )
    finally:
        web.stop()
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200] * 49 + [202]
    ids = {json.loads(payload)["id"] for _, _, payload in answers}
    assert len(ids) == 1
    duplicates = [
        headers.get("Conveyor-Duplicate") for status, headers, _ in answers if status == 200
    ]
    assert duplicates == ["true"] * 49
    assert [str(job.pk) for job in Job.objects.all()] == list(ids)


def test_concurrent_batches_with_shared_keys_create_each_key_once(tmp_path: Path) -> None:
    _, key = client_create(name="batcher", unlimited=True)
    web, base = start_web(tmp_path, workers=4)
    keys = [f"k{n}" for n in range(10)]

    def batch(seed: int) -> tuple[int, list[str]]:
        shuffled = random.Random(seed).sample(keys, len(keys))
        jobs = [{**ECHO, "unique_key": k} for k in shuffled]
        status, _, payload = call(
            base, "POST", "/api/v1/jobs/batch", key=key, body={"jobs": jobs}, timeout=60
        )
        by_key = dict(
            zip(shuffled, (job["id"] for job in json.loads(payload)["jobs"]), strict=True)
        )
        return status, [by_key[k] for k in keys]

    try:
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(batch, range(20)))
    finally:
        web.stop()
    assert {status for status, _ in answers} == {202}
    # Every batch saw the same job for each key, and each key has exactly one job.
    assert len({tuple(ids) for _, ids in answers}) == 1
    assert Job.objects.count() == 10
    assert sorted(Job.objects.values_list("unique_key", flat=True)) == sorted(keys)
