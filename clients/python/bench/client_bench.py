"""Benchmarks of the Python client against one live Conveyor (docs/benchmarks.md, "client").

    .venv/bin/python clients/python/bench/client_bench.py [--roundtrips 200] [--submissions 3000]

Starts Conveyor from the Procfile (as the client's tests do: clients/python/tests/conveyor_live.py;
DATABASE_URL and REDIS_URL pick the servers, the database is its own), or uses a running one with
--url and --api-key. Two measurements:

- roundtrip: ``Client.submit`` then ``Client.wait`` of a no-op job (diagnostics.echo), one after
  another on an otherwise idle system: p50/p90/p99 of the whole round trip. Also the single-request
  variant, ``submit(..., prefer_wait=N)`` (the server answers once the job is finished).
- async: ``AsyncClient.submit`` from one process with ``--concurrency`` submissions in flight:
  submissions per second, and where the CPU went (this process, the web processes, the rest of
  the server's process tree) from /proc, to tell a client-bound run from a server-bound one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import httpx
from conveyor_client import AsyncClient, Client

TICKS = os.sysconf("SC_CLK_TCK")
# Production settings, as bench/run.py measures (its secret is thrown away with the database).
PRODUCTION = {
    "CONVEYOR_ENV": "production",
    "SECRET_KEY": secrets.token_urlsafe(48),
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "false",
    "LOG_FORMAT": "json",
}


def _tree_cpu(root: int) -> dict[str, float]:
    """CPU seconds of ``root``'s descendants, by command name (web = gunicorn/uvicorn)."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        names[pid] = cmdline
        times[pid] = (int(fields[11]) + int(fields[12])) / TICKS
    totals: dict[str, float] = {}
    stack = [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        if pid == root:
            continue
        name = names.get(pid, "")
        kind = "web" if "gunicorn" in name else ("celery" if "celery" in name else "other")
        totals[kind] = totals.get(kind, 0.0) + times.get(pid, 0.0)
    return totals


def _pct(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def roundtrip(url: str, key: str, count: int) -> dict[str, float]:
    results: dict[str, float] = {}
    with Client(url, key) as conveyor:
        for _ in range(20):  # warm connections, caches and the workers
            conveyor.wait(conveyor.submit("diagnostics.echo", {"message": "warm"}), timeout=30)
        for label, wait in (("submit+wait", False), ("submit prefer_wait", True)):
            samples = []
            for _ in range(count):
                start = time.perf_counter()
                if wait:
                    job = conveyor.submit("diagnostics.echo", {"message": "rt"}, prefer_wait=30)
                else:
                    job = conveyor.submit("diagnostics.echo", {"message": "rt"})
                    job = conveyor.wait(job.id, timeout=30)
                samples.append((time.perf_counter() - start) * 1000)
                assert job.status == "succeeded", job
            results[f"{label} p50 ms"] = round(statistics.median(samples), 1)
            results[f"{label} p90 ms"] = round(_pct(samples, 90), 1)
            results[f"{label} p99 ms"] = round(_pct(samples, 99), 1)
    return results


async def _submit_many(url: str, key: str, total: int, concurrency: int, raw: bool) -> float:
    """``raw``: the same requests without an Idempotency-Key, straight through the client's
    httpx pool: what the client's own work and the server's idempotency record cost."""
    async with AsyncClient(url, key, max_connections=concurrency) as conveyor:
        await asyncio.gather(
            *(conveyor.submit("diagnostics.echo", {"message": "w"}) for _ in range(50))
        )
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(total):
            queue.put_nowait(n)

        async def submitter() -> None:
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                if raw:
                    for _ in range(3):  # a reset keep-alive connection: send again
                        try:
                            response = await conveyor._http.post(
                                conveyor.url + "jobs",
                                json={"type": "diagnostics.echo", "input": {"message": "s"}},
                                headers=conveyor._headers,
                            )
                            break
                        except httpx.TransportError:
                            continue
                    assert response.status_code == 202, response.text
                else:
                    await conveyor.submit("diagnostics.echo", {"message": "s"})

        start = time.perf_counter()
        await asyncio.gather(*(submitter() for _ in range(concurrency)))
        return time.perf_counter() - start


def async_rate(
    url: str, key: str, total: int, concurrency: int, server_pid: int | None, raw: bool = False
) -> dict:
    before = _tree_cpu(server_pid) if server_pid else {}
    cpu_start = time.process_time()
    elapsed = asyncio.run(_submit_many(url, key, total, concurrency, raw))
    client_cpu = time.process_time() - cpu_start
    after = _tree_cpu(server_pid) if server_pid else {}
    prefix = "raw httpx, no Idempotency-Key: " if raw else ""
    result: dict[str, float | int] = {
        "async submissions/s": round(total / elapsed),
        "concurrency": concurrency,
        "client CPU % of wall": round(100 * client_cpu / elapsed),
        "client CPU ms per submission": round(1000 * client_cpu / total, 2),
    }
    for kind in sorted(after):
        spent = after[kind] - before.get(kind, 0.0)
        result[f"server {kind} CPU ms per submission"] = round(1000 * spent / total, 2)
    return {prefix + name: value for name, value in result.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url")
    parser.add_argument("--api-key")
    parser.add_argument("--roundtrips", type=int, default=200)
    parser.add_argument("--submissions", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--web-workers", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument("--phases", default="roundtrip,async,raw")
    parser.add_argument(
        "--development", action="store_true", help="CONVEYOR_ENV=development (default production)"
    )
    args = parser.parse_args()
    with ExitStack() as stack:
        server_pid = None
        if args.url:
            url, key = args.url, args.api_key
        else:
            from conveyor_live import running

            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            server = stack.enter_context(
                running(
                    tmp,
                    web_concurrency=args.web_workers,
                    database_suffix="_client_bench",
                    **({} if args.development else PRODUCTION),
                )
            )
            url, key, server_pid = server.url, server.tenant.api_key, server.pid
        results: dict[str, object] = {
            "web workers": args.web_workers,
            "cpus": os.cpu_count(),
            "load average at start": round(os.getloadavg()[0], 1),
        }
        if "roundtrip" in args.phases:
            results.update(roundtrip(url, key, args.roundtrips))
        if "async" in args.phases:
            results.update(async_rate(url, key, args.submissions, args.concurrency, server_pid))
        if "raw" in args.phases:
            results.update(
                async_rate(url, key, args.submissions, args.concurrency, server_pid, raw=True)
            )
        results["load average at end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
