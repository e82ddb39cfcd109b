"""ASGI entry point: the Procfile's web process (gunicorn with uvicorn workers; config/gunicorn.py).

Django's ASGI handler, serving Conveyor's synchronous middleware and views the way a sync
gunicorn worker does. Each request's sync work (the ``request_started`` receivers, the request's
creation, the whole middleware chain and the view) is one hand-over to the process's one sync
thread (``SYNC_THREAD``, apps/core/deferred.py), and its ``close()`` (``request_finished``) a
second. Django's own path makes more hand-overs per request, each a future, a thread wake-up and
a GIL exchange, and runs each request on a thread of its own (a ThreadSensitiveContext), which
would cost every request a thread start, a new PostgreSQL connection (Django's connections are
per thread) and a new Redis connection (apps/core/fastcache.py keeps one per thread). On the one
thread, connections persist as they do under WSGI, and requests run one at a time, as in a sync
worker; the event loop parses HTTP and runs the long-polls' waits: a view that has to wait
returns a DeferredResponse, finished here, in the loop, while listening for the client's
disconnection (which cancels the wait).
"""

import asyncio
import os
from contextlib import closing
from typing import Any, cast

import django
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpResponse, HttpResponseBase
from django.urls import set_script_prefix

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

from apps.core.deferred import DeferredResponse, on_sync_thread  # noqa: E402 - needs the apps


class _Answered(Exception):
    pass


class ConveyorASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)  # the chain runs whole, on the sync thread

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        with closing(body_file):
            response = await on_sync_thread(self._respond)(scope, body_file)
            if isinstance(response, DeferredResponse):
                answer = await self._finish(response, receive)
                if answer is None:  # the client left while it waited
                    await on_sync_thread(response.close)()
                    return
                response = answer
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
            await self.send_response(response, send)
            await on_sync_thread(response.close)()

    def _respond(self, scope: dict[str, Any], body_file: Any) -> HttpResponseBase:
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:  # Django's answer to a request it could not build (a 400)
            return cast(HttpResponseBase, error_response)
        return self.get_response(request)

    async def _finish(self, deferred: DeferredResponse, receive: Any) -> HttpResponse | None:
        answer = None
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.listen_for_disconnect(receive))
                answer = await deferred.finish()
                raise _Answered  # stops the listener
        except* _Answered:
            pass
        except* RequestAborted:
            answer = None
        return answer


application = ConveyorASGIHandler()
