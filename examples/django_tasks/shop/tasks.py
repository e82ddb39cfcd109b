"""The shop's tasks. Conveyor's server lists this module in CONVEYOR_TASK_MODULES, so each
``@task`` here is a job type named by its dotted path (``shop.tasks.add``, …).

The module is imported by Conveyor's workers as well as by the shop, so it imports nothing of
the shop but the tasks framework: a task that needs the shop's database would call the shop
(an HTTP endpoint) instead.
"""

from __future__ import annotations

import asyncio

from django.tasks import TaskContext, task


class PaymentDeclined(Exception):
    """The card was refused."""


@task
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@task(priority=10)
def charge(order_id: str, amount_cents: int) -> dict[str, object]:
    """Charge an order; over 1 000.00 the (pretend) bank declines."""
    if amount_cents > 100_000:
        raise PaymentDeclined(f"order {order_id}: {amount_cents} cents is over the limit")
    return {"order_id": order_id, "charged_cents": amount_cents}


@task(queue_name="reports", takes_context=True)
def sales_report(context: TaskContext, region: str) -> dict[str, object]:
    """A report on the reports queue; says which job and attempt produced it."""
    return {"region": region, "job_id": context.task_result.id, "attempt": context.attempt}


@task
async def greet(name: str) -> str:
    """A coroutine task: Conveyor's worker awaits it."""
    await asyncio.sleep(0)
    return f"Hello, {name}!"
