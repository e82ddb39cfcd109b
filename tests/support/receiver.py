"""A real HTTP webhook receiver on loopback, for tests: records requests, answers as scripted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Script:
    """What to answer: (status, delay_seconds, extra_headers) per request, the last one
    repeating."""

    answers: list[tuple[int, float, dict[str, str]]] = field(
        default_factory=lambda: [(200, 0.0, {})]
    )


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script = Script()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.received.append(
                        Received(self.path, dict(self.headers.items()), body, time.monotonic())
                    )
                    index = min(len(receiver.received), len(receiver.script.answers)) - 1
                    status, delay, headers = receiver.script.answers[index]
                if delay:
                    time.sleep(delay)
                payload = b'{"ok": true}' + b" " * 4000  # longer than the excerpt cap
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, *answers: int | tuple[int, float] | tuple[int, float, dict[str, str]]) -> None:
        script = []
        for item in answers:
            if isinstance(item, int):
                script.append((item, 0.0, {}))
            elif len(item) == 2:
                script.append((item[0], item[1], {}))
            else:
                script.append(item)  # type: ignore[arg-type]
        self.script = Script(script)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    try:
        yield receiver
    finally:
        receiver.stop()
