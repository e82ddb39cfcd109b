"""A TaskResult as the JSON the example's commands print."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from django.tasks import TaskResult, TaskResultStatus, default_task_backend


def wait_for_end(result_id: str, seconds: float, *, use_async: bool = False) -> TaskResult:
    """The result, read with get_result() (aget_result()) until it has finished or ``seconds``
    have passed."""
    deadline = time.monotonic() + seconds
    while True:
        if use_async:
            result = asyncio.run(default_task_backend.aget_result(result_id))
        else:
            result = default_task_backend.get_result(result_id)
        if result.is_finished or time.monotonic() >= deadline:
            return result
        time.sleep(0.1)


def result_json(result: TaskResult) -> dict[str, Any]:
    def when(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    data: dict[str, Any] = {
        "id": result.id,
        "task": result.task.module_path,
        "status": str(result.status),
        "args": result.args,
        "kwargs": result.kwargs,
        "priority": result.task.priority,
        "queue_name": result.task.queue_name,
        "run_after": when(result.task.run_after),
        "enqueued_at": when(result.enqueued_at),
        "started_at": when(result.started_at),
        "last_attempted_at": when(result.last_attempted_at),
        "finished_at": when(result.finished_at),
        "attempts": result.attempts,
        "worker_ids": result.worker_ids,
        "errors": [
            {"exception_class_path": e.exception_class_path, "traceback": e.traceback}
            for e in result.errors
        ],
    }
    if result.status == TaskResultStatus.SUCCESSFUL:
        data["return_value"] = result.return_value
    return data
