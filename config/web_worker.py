"""The gunicorn worker of the web process: uvicorn (uvicorn-worker) running config/asgi.py.

Chosen over gunicorn's sync workers so that a long-poll (apps/jobs/waiting.py) waits in the
event loop rather than holding a worker; docs/operations.md ("The web process") has the
measurements. httptools and uvloop are named rather than left to "auto" so that a missing one
is an error at start, not a silently slower server: httptools takes request lines and headers
as long as gunicorn's settings allow, so an oversized one reaches Conveyor and is answered in
the error shape (h11 would refuse a 20 kB URL with its own plain-text 400).
"""

from __future__ import annotations

import socket
import sys
from typing import Any

from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker


class _Server(Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Long-polls answer at once with what they have (304 / 202) instead of holding the
        # shutdown for up to a minute and then being cut off: clients simply poll again,
        # reaching another worker.
        from apps.core.changes import change_feed

        change_feed().release_all()
        await super().shutdown(sockets)


class ConveyorUvicornWorker(UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "off",  # Django has no lifespan events
        "access_log": False,  # the app writes its own (conveyor.access)
        "server_header": False,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config.timeout_graceful_shutdown = self.cfg.graceful_timeout

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        server = _Server(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
