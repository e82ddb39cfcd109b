"""Database helpers shared by the services."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import models, router
from django.db.models.sql import UpdateQuery

M = TypeVar("M", bound=models.Model)


def update_returning[M: models.Model](
    queryset: models.QuerySet[M], *, async_commit: bool = False, **changes: Any
) -> list[M]:
    """``queryset.update(**changes)`` that also returns the updated rows, in one statement.

    A conditional UPDATE decides a race by its row count; RETURNING hands back the row as the
    winner left it, so the caller never reads the row again to learn what it just wrote.
    ``async_commit`` lets the transaction commit without waiting for its WAL flush: only for a
    change whose loss in a database crash is harmless.
    """
    model = queryset.model
    # Django's own QuerySet.update() is built the same way (private API, stable for years).
    using = queryset._db or router.db_for_write(model)  # type: ignore[attr-defined]
    query = queryset.query.chain(UpdateQuery)
    query.add_update_values(changes)  # type: ignore[attr-defined]
    compiler = query.get_compiler(using)
    compiler.pre_sql_setup()
    sql, params = compiler.as_sql()
    quote = compiler.connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in model._meta.concrete_fields)
    if async_commit:
        columns += ", set_config('synchronous_commit', 'off', true) AS async_commit"
    return list(model._default_manager.db_manager(using).raw(f"{sql} RETURNING {columns}", params))
