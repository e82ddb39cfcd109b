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


class DribblingReceiver:
    """A receiver that never finishes answering: it reads the request, then sends the status
    line and endless headers one byte every ``interval`` seconds, which keeps a per-read timeout
    alive forever. A raw socket server on loopback, one thread per connection; each connection
    ends when the client closes it, or after ``max_seconds``.
    """

    def __init__(self, interval: float = 0.5, max_seconds: float = 120.0) -> None:
        import socket

        self.interval = interval
        self.max_seconds = max_seconds
        self.connections = 0
        self.closed_after: list[float] = []  # seconds each connection lasted
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._dribble, args=(connection,), daemon=True).start()

    def _dribble(self, connection: Any) -> None:
        started = time.monotonic()
        answer = b"HTTP/1.1 200 OK\r\n" + b"".join(
            f"X-Slow-{i}: {'x' * 20}\r\n".encode() for i in range(10_000)
        )
        try:
            connection.settimeout(5)
            connection.recv(65536)  # the request (its headers and small body)
            for byte in answer:
                if self._stopping.is_set() or time.monotonic() - started > self.max_seconds:
                    break
                connection.sendall(bytes([byte]))
                time.sleep(self.interval)
        except OSError:
            pass
        finally:
            with self._lock:
                self.closed_after.append(time.monotonic() - started)
            connection.close()

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()
        self._thread.join(timeout=5)
