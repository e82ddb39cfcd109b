"""A stand-in for Sentry's ingest: a real HTTP server on 127.0.0.1 that keeps every envelope the
SDK's real transport posts to it. Point a process at it with ``SENTRY_DSN=<server.dsn>``."""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Envelope:
    raw: bytes  # decompressed, exactly as the SDK serialised it
    header: dict[str, Any]
    items: list[tuple[dict[str, Any], bytes]] = field(default_factory=list)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(payload) for header, payload in self.items if header["type"] == "event"]


def parse_envelope(raw: bytes) -> Envelope:
    """Sentry's envelope format: a JSON header line, then items, each a JSON header line and a
    payload of ``length`` bytes (or up to the next newline when no length is given)."""
    first, _, rest = raw.partition(b"\n")
    envelope = Envelope(raw=raw, header=json.loads(first))
    while rest.strip():
        item_line, _, rest = rest.partition(b"\n")
        item = json.loads(item_line)
        if "length" in item:
            payload, rest = rest[: item["length"]], rest[item["length"] :]
            rest = rest.removeprefix(b"\n")
        else:
            payload, _, rest = rest.partition(b"\n")
        envelope.items.append((item, payload))
    return envelope


def _decompress(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        import brotli  # type: ignore[import-not-found]

        return bytes(brotli.decompress(body))
    return body


class FakeSentry:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                raw = _decompress(body, self.headers.get("Content-Encoding", ""))
                with owner._lock:
                    owner.envelopes.append(parse_envelope(raw))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.dsn = f"http://public@127.0.0.1:{self.port}/1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeSentry:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def clear(self) -> None:
        with self._lock:
            self.envelopes.clear()

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [event for envelope in self.envelopes for event in envelope.events()]

    def raw(self) -> bytes:
        with self._lock:
            return b"\n".join(envelope.raw for envelope in self.envelopes)
