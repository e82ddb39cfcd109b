"""Responses that finish later, in the event loop: how a long-poll waits without a thread.

A view that has to wait (``Prefer: wait``, ``?wait=``) does all its work as usual, on the sync
path (authentication, rate limits, tenancy, validation, the first read), and returns a
``DeferredResponse``: a placeholder carrying a coroutine that produces the real response. The
placeholder goes back out through the middleware (which add their headers), then the coroutine
is awaited:

- under ASGI (the Procfile's web process: uvicorn workers, config/asgi.py), by the handler
  (``ConveyorASGIHandler``), in the event loop, after the request's thread was given back: a
  waiting request holds no thread and no worker, and a client that disconnects cancels the
  coroutine (Django's ASGI handler listens for that);
- under WSGI (``config.wsgi``, the test client), by ``DeferredResponseMiddleware``, outermost,
  in ``async_to_sync``: correct, but the request holds its worker while it waits.

(A middleware cannot do it for ASGI: Django runs a middleware that can be sync as sync when the
ones inside it are, so it would wait on the request's thread.)

The real response gets the placeholder's headers that it does not set itself (request id,
security headers); ``on_finish`` callbacks (the access log) see the real one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse

# The process's one thread for synchronous work under ASGI (config/asgi.py): every request's
# middleware and view, and a waiter's occasional re-read, run on it, one at a time, so that
# Django's per-thread database connections and the status cache's per-thread Redis connection
# persist as they do in a sync worker.
SYNC_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync")


def on_sync_thread(function: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """``function`` as a coroutine function that runs it on SYNC_THREAD."""
    return sync_to_async(function, thread_sensitive=False, executor=SYNC_THREAD)


# Headers that belong to the placeholder's (empty) body, not to the real response.
_OWN_HEADERS = frozenset({"content-length", "content-type"})


class DeferredResponse(HttpResponse):
    def __init__(self, produce: Callable[[], Awaitable[HttpResponse]]) -> None:
        super().__init__(status=200)
        self.produce = produce
        self._callbacks: list[Callable[[HttpResponse], None]] = []

    def on_finish(self, callback: Callable[[HttpResponse], None]) -> None:
        self._callbacks.append(callback)

    async def finish(self) -> HttpResponse:
        response = await self.produce()
        # The request's closers (Django added them to the placeholder) go with the answer.
        closers = self._resource_closers  # type: ignore[attr-defined]
        response._resource_closers.extend(closers)  # type: ignore[attr-defined]
        for name, value in self.headers.items():
            if name.lower() not in _OWN_HEADERS and name not in response.headers:
                response.headers[name] = value
        for callback in self._callbacks:
            callback(response)
        return response


class DeferredResponseMiddleware:
    """Outermost: finishes a DeferredResponse under WSGI (see the module's docstring)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if isinstance(response, DeferredResponse) and not isinstance(request, ASGIRequest):
            return async_to_sync(response.finish)()
        return response
