"""Retries through a loopback proxy that misbehaves first: 503 and 429 with Retry-After, an
answer lost after the server acted. Every try of a submission carries the same Idempotency-Key,
so the server creates one job whatever the number of tries."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from conveyor_client import Client, RateLimited, RetryPolicy, ServiceUnavailable

FAST = RetryPolicy(retries=4, backoff=0.01, max_backoff=0.05)


class FlakyProxy:
    """Forwards to the server, after playing each scripted fault once for matching requests:
    ``"503"``, ``"429"`` (error answers with Retry-After), ``"drop"`` (forward, then close the
    connection without answering: the server acted, the client never heard)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: list[str] = []
        self.strip_wait = False  # play a server that does not know ?wait (answers at once)
        self.seen: list[tuple[str, str, str | None]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.seen.append((self.command, self.path, self.headers.get("Idempotency-Key")))
                fault = proxy.faults.pop(0) if proxy.faults else None
                if fault in ("503", "429"):
                    code = "service_unavailable" if fault == "503" else "rate_limited"
                    payload = (
                        f'{{"error": {{"code": "{code}", "message": "try later", "details": {{}},'
                        f' "request_id": "proxy-{len(proxy.seen)}"}}}}'
                    ).encode()
                    self.send_response(int(fault))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                path = self.path
                if proxy.strip_wait:
                    path = re.sub(r"[?&]wait=\d+", "", path)
                answer = httpx.request(
                    self.command, proxy.upstream + path, headers=headers, content=body
                )
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(conveyor_server) -> Iterator[FlakyProxy]:
    flaky = FlakyProxy(conveyor_server.url)
    yield flaky
    flaky.close()


def _submissions(proxy: FlakyProxy) -> list[str | None]:
    return [key for method, path, key in proxy.seen if method == "POST"]


def test_503_and_429_are_retried_with_one_idempotency_key(proxy, conveyor_server) -> None:
    proxy.faults = ["503", "429"]
    label = uuid.uuid4().hex
    with Client(proxy.url, conveyor_server.tenant.api_key, retry_policy=FAST) as conveyor:
        job = conveyor.submit("diagnostics.echo", {"message": "r"}, metadata={"l": label})
    keys = _submissions(proxy)
    assert len(keys) == 3
    assert len(set(keys)) == 1
    assert keys[0]
    assert job.idempotency_key == keys[0]
    with Client(conveyor_server.url, conveyor_server.tenant.api_key) as direct:
        assert [j.id for j in direct.list(metadata={"l": label})] == [job.id]


def test_a_lost_answer_is_retried_and_replayed_not_duplicated(proxy, conveyor_server) -> None:
    proxy.faults = ["drop"]
    label = uuid.uuid4().hex
    with Client(proxy.url, conveyor_server.tenant.api_key, retry_policy=FAST) as conveyor:
        job = conveyor.submit("diagnostics.echo", {"message": "lost"}, metadata={"l": label})
    keys = _submissions(proxy)
    assert len(keys) == 2
    assert keys[0] == keys[1]
    with Client(conveyor_server.url, conveyor_server.tenant.api_key) as direct:
        assert [j.id for j in direct.list(metadata={"l": label})] == [job.id]


def test_gets_are_retried_and_a_persistent_fault_reaches_the_caller(proxy, conveyor_server) -> None:
    with Client(proxy.url, conveyor_server.tenant.api_key, retry_policy=FAST) as conveyor:
        job = conveyor.submit("diagnostics.echo", {"message": "g"})
        proxy.faults = ["503"]
        assert conveyor.get(job.id).id == job.id
        proxy.faults = ["429"] * 5
        with pytest.raises(RateLimited) as caught:
            conveyor.get(job.id)
    assert caught.value.retry_after == 1
    assert caught.value.code == "rate_limited"
    assert caught.value.request_id == f"proxy-{len(proxy.seen)}"


def test_retry_after_beyond_the_cap_is_not_waited_for(proxy, conveyor_server) -> None:
    policy = RetryPolicy(retries=4, backoff=0.01, max_retry_after=0.5)
    proxy.faults = ["503"]
    conveyor = Client(proxy.url, conveyor_server.tenant.api_key, retry_policy=policy)
    with conveyor, pytest.raises(ServiceUnavailable) as caught:
        conveyor.job_types()
    assert caught.value.code == "service_unavailable"
    assert len(proxy.seen) == 1


def _job_reads(proxy: FlakyProxy) -> list[str]:
    return [path for method, path, _ in proxy.seen if method == "GET"]


def test_wait_on_a_job_read_long_polls_from_its_etag(proxy, conveyor_server) -> None:
    with Client(proxy.url, conveyor_server.tenant.api_key, retry_policy=FAST) as conveyor:
        # Still running when read, even on a loaded machine (a finished one needs no request).
        submitted = conveyor.submit("diagnostics.echo", {"message": "lp", "sleep_seconds": 2})
        job = conveyor.get(submitted.id)
        assert job.etag
        assert not job.is_terminal
        before = len(_job_reads(proxy))
        done = conveyor.wait(job, timeout=30)
    assert done.status == "succeeded"
    reads = _job_reads(proxy)[before:]
    assert reads
    assert all("wait=" in path for path in reads)  # no plain read first: straight to long-polls
    assert len(reads) <= 4  # one per status change (running, succeeded), not a poll loop


def test_wait_polls_with_backoff_when_the_server_ignores_wait(proxy, conveyor_server) -> None:
    proxy.strip_wait = True
    with Client(proxy.url, conveyor_server.tenant.api_key, retry_policy=FAST) as conveyor:
        # Long enough that the polls happen while it runs, even on a loaded machine.
        job = conveyor.submit("diagnostics.echo", {"message": "poll", "sleep_seconds": 2.5})
        done = conveyor.wait(job.id, timeout=30)
    assert done.result == {"message": "poll", "attempt": 1}
    reads = _job_reads(proxy)
    # After the first answer showed ?wait unsupported, plain polls (with If-None-Match).
    assert sum("wait=" in path for path in reads) == 1
    assert len(reads) >= 4
