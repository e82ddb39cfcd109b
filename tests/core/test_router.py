"""The router without replicas: every read and write goes to the primary."""

from __future__ import annotations

from django.db import router

from apps.core.replicas import allow_replica_reads, read_scope, replica_reads
from apps.jobs.models import Job


def test_without_replicas_every_read_goes_to_the_primary() -> None:
    with replica_reads():
        assert router.db_for_read(Job) == "default"
    with read_scope():
        allow_replica_reads()
        assert router.db_for_read(Job) == "default"
    assert router.db_for_write(Job) == "default"
