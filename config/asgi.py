"""ASGI entry point: the Procfile's web process (gunicorn with uvicorn workers; config/gunicorn.py).

Django's own handler, with two changes. It finishes long-polls' DeferredResponses in the event
loop (apps/core/deferred.py). And every request's sync code (all the middleware and views
but the long-polls' waiting, apps/core/deferred.py) runs on the process's one sync thread, as
under a sync gunicorn worker, instead of on a thread of its own per request. Django creates that
per-request thread (a ThreadSensitiveContext) so that sync code of concurrent requests could run
side by side; here that is not wanted, and it would cost every request a thread start, a new
PostgreSQL connection (Django's connections are per thread) and a new Redis connection (the
status cache's reads use a connection per thread, apps/core/fastcache.py). On the one thread,
connections persist as they do under WSGI; the event loop only parses HTTP and runs the waits.
"""

import os
from typing import Any

import django
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

from apps.core.deferred import DeferredResponse  # noqa: E402 - needs the apps loaded


class ConveyorASGIHandler(ASGIHandler):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Conveyor serves HTTP only, not {scope['type']}.")
        await self.handle(scope, receive, send)

    async def run_get_response(self, request: Any) -> Any:
        response = await super().run_get_response(request)
        if isinstance(response, DeferredResponse):  # a long-poll: it waits here, in the loop
            response = await response.finish()
        return response


application = ConveyorASGIHandler()
