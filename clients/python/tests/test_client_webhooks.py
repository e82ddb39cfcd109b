"""verify_webhook against a real delivery from the live server, against the server's own signer
(apps/webhooks/signing.py, with a rotation's two signatures) and cross-checked with the
reference Standard Webhooks library."""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import standardwebhooks
from conveyor_client import Client, WebhookVerificationError, verify_webhook

from apps.webhooks.signing import signature_header


class Receiver:
    def __init__(self) -> None:
        self.deliveries: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
        received = self.deliveries

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.put((dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hooks = Receiver()
    yield hooks
    hooks.server.shutdown()
    hooks.server.server_close()


def test_a_real_delivery_verifies(client: Client, conveyor_server, receiver) -> None:
    job = client.submit("diagnostics.echo", {"message": "hook"}, webhook_url=receiver.url)
    headers, body = receiver.deliveries.get(timeout=60)
    secret = conveyor_server.tenant.webhook_secret
    event = verify_webhook(secret, headers, body)
    assert event.type == "job.succeeded"
    assert event.job.id == job.id
    assert event.job.result == {"message": "hook", "attempt": 1}
    assert event.id == headers["webhook-id"]
    # The reference implementation agrees with the client on the same delivery.
    assert standardwebhooks.Webhook(secret).verify(body, headers)["data"]["id"] == job.id
    delivery = next(d for d in client.deliveries(job.id) if d.webhook_id == event.id)
    assert delivery.event_type == "job.succeeded"
    assert delivery.url == receiver.url
    with pytest.raises(WebhookVerificationError):
        verify_webhook(secret, headers, body.replace(b"hook", b"hack"))
    with pytest.raises(WebhookVerificationError):
        verify_webhook(conveyor_server.other.webhook_secret, headers, body)


def _signed(secrets: list[str], body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "Webhook-Id": "evt_1",
        "Webhook-Timestamp": str(stamp),
        "Webhook-Signature": signature_header(secrets, "evt_1", stamp, body),
    }


SECRET = "whsec_" + base64.b64encode(b"k" * 24).decode()
PREVIOUS = "whsec_" + base64.b64encode(b"p" * 24).decode()
BODY = json.dumps(
    {
        "type": "job.failed",
        "timestamp": "2026-01-01T00:00:00Z",
        "data": {
            "id": "j1",
            "type": "t",
            "status": "failed",
            "error": {"code": "x", "message": "m"},
        },
    }
).encode()


def test_the_servers_signer_verifies_during_a_rotation() -> None:
    headers = _signed([SECRET, PREVIOUS], BODY)
    assert verify_webhook(SECRET, headers, BODY).job.error.code == "x"
    assert verify_webhook(PREVIOUS, headers, BODY.decode()).type == "job.failed"
    assert standardwebhooks.Webhook(PREVIOUS).verify(BODY, headers)["type"] == "job.failed"


def test_stale_timestamps_missing_headers_and_non_events_are_refused() -> None:
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_webhook(SECRET, _signed([SECRET], BODY, int(time.time()) - 3600), BODY)
    headers = _signed([SECRET], BODY)
    del headers["Webhook-Signature"]
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify_webhook(SECRET, headers, BODY)
    bad_stamp = {**_signed([SECRET], BODY), "Webhook-Timestamp": "soon"}
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, bad_stamp, BODY)
    not_event = b'{"hello": 1}'
    with pytest.raises(WebhookVerificationError, match="not a Conveyor event"):
        verify_webhook(SECRET, _signed([SECRET], not_event), not_event)
