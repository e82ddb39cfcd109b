"""Database routing: writes to the primary; reads to a replica only where that is safe.

Every write goes to the primary (the hot write path, apps/jobs/store.py, does not even ask: it
uses ``connections["default"]``). A read goes to a replica only when the code
around it opened a replica read scope (apps/core/replicas.py: the API's GET views, the admin's
list pages, ``queue_stats``) and no transaction is open; everything else, in particular services
and workers that read in order to write, reads the primary. With no ``DATABASE_REPLICA_URLS``
there is no replica to pick and every read goes to the primary.

The router always answers, so Django's fallback of reading a related object from the database
its instance came from never applies: an object loaded from a replica does not drag later reads
of a service onto that replica.
"""

from __future__ import annotations

from typing import Any

from apps.core.replicas import PRIMARY, read_alias


class PrimaryReplicaRouter:
    def db_for_read(self, model: Any, **hints: Any) -> str:
        return read_alias()

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return PRIMARY

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        # Replicas hold the primary's data: objects from either may be related.
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == PRIMARY
