"""Conveyor's benchmarks: ``make bench`` (``make bench BENCH_ARGS=--quick`` for a short run).

Starts what it needs on loopback (gunicorn at the production settings of config/gunicorn.py,
Celery worker pools, the scheduler with the wake-up relay) against the local PostgreSQL and
Redis, in a database and a Redis database of its own; runs the phases; stops everything; prints
a table and writes bench/results/latest.json. docs/benchmarks.md explains each phase and keeps
the figures.

Every ratio is taken within one run, by alternating the measured endpoint with its ceiling
(``wrk`` against a bare DRF endpoint returning a constant, same server, same settings), because
this machine's throughput drifts ±20 % from one minute to the next.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# BENCH_DB lets several people bench on one machine without dropping each other's database.
DB_NAME = os.environ.get("BENCH_DB", "conveyor_bench")
if not re.fullmatch(r"[a-z_][a-z0-9_]*", DB_NAME):
    raise SystemExit(f"BENCH_DB must be a plain lower-case identifier, not {DB_NAME!r}")
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/12")
CEILING = "/api/v1/_bench/constant"
ECHO = {"type": "diagnostics.echo", "input": {"message": "bench"}}

WRK_LUA = """
wrk.method = "{method}"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{auth}
{pacing}
done = function(summary, latency, requests)
  io.write(string.format(
    'BENCHJSON {{"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,' ..
    '"p50":%d,"p90":%d,"p95":%d,"p99":%d,"max":%d}}\\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.max))
end
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def progress(label: str, done: float, total: float) -> None:
    width = 30
    filled = int(width * min(1.0, done / total)) if total else width
    sys.stderr.write(
        f"\r  {label:<28} [{'#' * filled}{'.' * (width - filled)}] {done:.0f}/{total:.0f}"
    )
    sys.stderr.flush()
    if done >= total:
        sys.stderr.write("\n")


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


class Process:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name} did not start:\n{self.log_path.read_text()[-2000:]}"
                )
            time.sleep(0.1)

    def rss_kib(self) -> int:
        """Resident memory of the process and all its descendants."""
        total = 0
        for pid in [self.proc.pid, *_descendants(self.proc.pid)]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the process and its descendants, including
        children that exited (a recycled gunicorn worker's time lands in its master's)."""
        ticks = 0
        for pid in [self.proc.pid, *_descendants(self.proc.pid)]:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # utime, stime, cutime, cstime (fields 14-17 of /proc/<pid>/stat).
            ticks += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with _suppress():
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                with _suppress():
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        return exc[0] is not None and issubclass(exc[0], ProcessLookupError | OSError)


def _descendants(pid: int) -> list[int]:
    children: list[int] = []
    try:
        direct = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return children
    for child in map(int, direct):
        children += [child, *_descendants(child)]
    return children


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.logs = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
        self.port = 18000 + secrets.randbelow(1000)
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "CONVEYOR_ENV": "production",
            "SECRET_KEY": secrets.token_urlsafe(40),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": f"{PG}/{DB_NAME}",
            "REDIS_URL": REDIS,
            "CACHE_KEY_PREFIX": "conveyor-bench",
            "BENCHMARK_ENDPOINTS": "true",
            "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",  # the receiver is on loopback
            "LOG_LEVEL": "WARNING",
            "WEB_CONCURRENCY": str(args.web_workers),
            "WORKER_WAKEUP_FANOUT": str(max(args.worker_processes, 2)),
            "PYTHONUNBUFFERED": "1",
        }
        if args.limited_client:
            for group in ("SUBMIT", "READ", "LIST"):
                self.env[f"RATE_LIMIT_{group}"] = "1000000000/m"
        self.env.pop("CELERY_BROKER_URL", None)
        self.processes: list[Process] = []
        self.key = ""
        self.results: dict[str, Any] = {}
        self.web: Process | None = None

    # --- plumbing -----------------------------------------------------------------------------

    def manage(self, *argv: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *argv],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def db(self) -> Any:
        import psycopg

        return psycopg.connect(f"{PG}/{DB_NAME}", autocommit=True)

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.db() as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def setup(self) -> None:
        subprocess.run(["bash", ".ci/services.sh"], cwd=ROOT, check=True)
        import psycopg
        import redis

        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {DB_NAME}")
        redis.Redis.from_url(REDIS).flushdb()
        self.manage("migrate", "--noinput", "-v", "0")
        # --limited-client: a client whose requests are counted (with a limit it never reaches),
        # to measure what rate limiting costs the hot paths.
        unlimited = [] if self.args.limited_client else ["--unlimited"]
        self.key = json.loads(self.manage("create_client", "bench", *unlimited))["api_key"]

    def start(self, name: str, argv: list[str], ready: str | None) -> Process:
        process = Process(name, argv, self.env, self.logs)
        self.processes.append(process)
        if ready:
            process.wait_for(ready)
        return process

    def stop(self, process: Process | None) -> None:
        if process is not None:
            process.stop()
            if process in self.processes:
                self.processes.remove(process)

    def start_web(self) -> None:
        self.web = self._start_gunicorn("web", self.port)

    def _start_gunicorn(self, name: str, port: int, **env: str) -> Process:
        env_backup = self.env
        self.env = {**self.env, **env}
        try:
            process = self.start(
                name,
                [
                    str(BIN / "gunicorn"),
                    "-c",
                    "config/gunicorn.py",
                    "-b",
                    f"127.0.0.1:{port}",
                ],
                None,
            )
        finally:
            self.env = env_backup
        deadline = time.monotonic() + 90  # a busy machine boots gunicorn slowly
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                return process
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{name} did not answer")

    def start_workers(self, name: str = "worker") -> Process:
        return self._start_celery(name, ["-Q", "default", "-c", str(self.args.worker_processes)])

    def _start_celery(self, name: str, extra: list[str], app: str = "config") -> Process:
        ready = self.logs / f"{name}-{secrets.token_hex(3)}.ready"
        env_backup = self.env
        self.env = {**self.env, "CELERY_READY_FILE": str(ready)}
        try:
            process = self.start(
                name,
                [
                    str(BIN / "celery"),
                    "-A",
                    app,
                    "worker",
                    *extra,
                    "-n",
                    f"{name}@%h",
                    "--without-mingle",
                    "--without-gossip",
                    "-l",
                    "warning",
                ],
                None,
            )
        finally:
            self.env = env_backup
        deadline = time.monotonic() + 60
        while not ready.exists():
            if process.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{process.log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        return process

    def start_scheduler(self) -> Process:
        return self._start_celery(
            "scheduler",
            ["-B", "--relay", "-Q", "maintenance", "-c", "1", "-s", str(self.logs / "beat")],
        )

    def reset_jobs(self) -> None:
        self.sql("TRUNCATE jobs_job CASCADE")

    def http(self, method: str, path: str, body: Any = None, key: str | None = None) -> Any:
        request = urllib.request.Request(
            self.base + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Authorization": f"Bearer {key or self.key}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def wrk(
        self,
        path: str,
        *,
        method: str = "GET",
        body: Any = None,
        auth: bool = True,
        connections: int = 32,
        duration: float | None = None,
        delay_ms: float | None = None,
        base: str | None = None,
    ) -> dict[str, Any]:
        script = self.logs / f"wrk-{secrets.token_hex(4)}.lua"
        script.write_text(
            WRK_LUA.format(
                method=method,
                body=json.dumps(json.dumps(body)) if body is not None else "nil",
                auth=f'wrk.headers["Authorization"] = "Bearer {self.key}"' if auth else "",
                pacing=f"delay = function() return {delay_ms} end" if delay_ms else "",
            )
        )
        seconds = duration or self.args.duration
        output = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "-s",
                str(script),
                (base or self.base) + path,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        line = next(line for line in output.splitlines() if line.startswith("BENCHJSON "))
        stats = json.loads(line.removeprefix("BENCHJSON "))
        stats["rps"] = stats["requests"] / (stats["duration_us"] / 1e6)
        for key in ("p50", "p90", "p95", "p99", "max"):
            stats[key] = stats[key] / 1000  # µs → ms
        if stats["status_errors"]:
            raise RuntimeError(f"{method} {path}: {stats['status_errors']} non-2xx answers")
        return stats

    def alternate(self, label: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Alternate the ceiling with ``measure`` for the configured rounds; medians + ratio."""
        ceiling, target = [], []
        for round_ in range(self.args.rounds):
            progress(label, round_, self.args.rounds)
            ceiling.append(self.wrk(CEILING, auth=False))
            target.append(measure())
        progress(label, self.args.rounds, self.args.rounds)
        best = sorted(target, key=lambda s: s["rps"])[len(target) // 2]
        ceiling_rps = statistics.median(s["rps"] for s in ceiling)
        return {
            "rps": statistics.median(s["rps"] for s in target),
            "ceiling_rps": ceiling_rps,
            "ratio": statistics.median(s["rps"] for s in target) / ceiling_rps,
            "p50_ms": best["p50"],
            "p95_ms": best["p95"],
            "p99_ms": best["p99"],
            "rounds": {
                "ceiling": [round(s["rps"]) for s in ceiling],
                "target": [round(s["rps"]) for s in target],
            },
        }

    # --- phases -------------------------------------------------------------------------------

    def phase_admission(self) -> None:
        self.wrk("/api/v1/jobs", method="POST", body=ECHO, duration=2)  # warm up
        self.results["post_jobs"] = self.alternate(
            "POST /jobs", lambda: self.wrk("/api/v1/jobs", method="POST", body=ECHO)
        )
        batch = {"jobs": [ECHO] * 1000}
        stats = self.wrk("/api/v1/jobs/batch", method="POST", body=batch, connections=2)
        self.results["post_batch"] = {
            "batches_per_s": stats["rps"],
            "jobs_per_s": stats["rps"] * 1000,
            "p50_ms": stats["p50"],
            "p95_ms": stats["p95"],
            "p99_ms": stats["p99"],
        }
        self.reset_jobs()

    def _system_snapshot(self, processes: dict[str, Process]) -> dict[str, float]:
        """CPU seconds so far of each of Conveyor's processes, of the PostgreSQL backends serving
        the bench database, and of the Redis server; PostgreSQL's commits and Redis's commands
        so far; jobs finished so far. Redis figures are server-wide (shared with anything else
        that uses this Redis), the rest are the bench's own."""
        import redis

        snapshot = {f"cpu_{name}": process.cpu_seconds() for name, process in processes.items()}
        ticks = 0
        with self.db() as conn:
            pids = [
                row[0]
                for row in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> "
                    "pg_backend_pid()",
                    [DB_NAME],
                )
            ]
            snapshot["pg_commits"] = conn.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", [DB_NAME]
            ).fetchone()[0]
            snapshot["jobs_finished"] = conn.execute(
                "SELECT count(*) FROM jobs_job WHERE status IN ('succeeded','failed','canceled')"
            ).fetchone()[0]
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks += int(fields[11]) + int(fields[12])
        snapshot["cpu_postgresql"] = ticks / os.sysconf("SC_CLK_TCK")
        info = redis.Redis.from_url(REDIS).info("all")
        snapshot["cpu_redis"] = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        snapshot["redis_commands"] = sum(
            float(v["calls"]) for k, v in info.items() if k.startswith("cmdstat_")
        )
        return snapshot

    def phase_submission(self) -> None:
        """POST /jobs while the default pool runs what is submitted (issue 14): alternated with
        the same server's /healthz, round by round; per accepted job, the CPU of every process
        of the system (web, pool, scheduler with the relay, PostgreSQL backends, Redis), the
        commits and the Redis commands."""
        scheduler, workers = self.start_scheduler(), self.start_workers()
        assert self.web is not None
        processes = {"web": self.web, "pool": workers, "scheduler": scheduler}
        healthz: list[dict[str, Any]] = []
        posts: list[dict[str, Any]] = []
        costs: list[dict[str, float]] = []
        try:
            self.wrk("/api/v1/jobs", method="POST", body=ECHO, duration=2)  # warm up
            for round_ in range(self.args.rounds):
                progress("POST /jobs, pool running", round_, self.args.rounds)
                healthz.append(self.wrk("/healthz", auth=False))
                before = self._system_snapshot(processes)
                stats = self.wrk("/api/v1/jobs", method="POST", body=ECHO)
                after = self._system_snapshot(processes)
                posts.append(stats)
                per = {key: (after[key] - before[key]) / stats["requests"] for key in after}
                costs.append(per)
            progress("POST /jobs, pool running", self.args.rounds, self.args.rounds)
            total = self.sql("SELECT count(*) FROM jobs_job")[0][0]
            self._wait_finished(None, "submission: drain", total=total)
        finally:
            self.stop(workers)
            self.stop(scheduler)
        rps = statistics.median(s["rps"] for s in posts)
        best = sorted(posts, key=lambda s: s["rps"])[len(posts) // 2]
        per_job = {key: statistics.median(c[key] for c in costs) for key in costs[0]}
        self.results["submission"] = {
            "rps": rps,
            "healthz_rps": statistics.median(s["rps"] for s in healthz),
            "ratio_to_healthz": rps / statistics.median(s["rps"] for s in healthz),
            "p50_ms": best["p50"],
            "p99_ms": best["p99"],
            # Per accepted job, in the window of each POST run (medians of the rounds); run
            # jobs per accepted job below 1 means the pool fell behind during the run.
            "cpu_ms_per_job": {
                key.removeprefix("cpu_"): per_job[key] * 1000 for key in per_job if "cpu_" in key
            },
            "pg_commits_per_job": per_job["pg_commits"],
            "redis_commands_per_job": per_job["redis_commands"],
            "run_per_accepted_job": per_job["jobs_finished"],
            "rounds": {
                "healthz": [round(s["rps"]) for s in healthz],
                "post": [round(s["rps"]) for s in posts],
            },
        }
        self.reset_jobs()

    def phase_polling(self) -> None:
        job = self.http("POST", "/api/v1/jobs", ECHO)
        path = f"/api/v1/jobs/{job['id']}"
        self.http("GET", path)  # the first poll caches it
        result = self.alternate("GET /jobs/{id}", lambda: self.wrk(path))
        half = result["rps"] / 2
        paced = self.wrk(path, connections=16, delay_ms=round(16 * 1000 / half, 2))
        result["half_load"] = {"rps": paced["rps"], "p50_ms": paced["p50"], "p99_ms": paced["p99"]}
        self.results["get_job"] = result
        self.reset_jobs()

    def phase_instrumentation(self) -> None:
        """What access logs and metrics (and Sentry, with --instrumentation-sentry) cost
        GET /jobs/{id}: two servers that differ only in them, measured in alternation (round by
        round, the order swapped each round) so that the machine's drift hits both alike."""
        port_on, port_off = self.port + 1, self.port + 2
        sentry = ""
        if self.args.instrumentation_sentry:
            # A DSN on a closed loopback port: the SDK runs in full, nothing leaves the machine
            # (no event is sent while nothing fails).
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                sentry = f"http://public@127.0.0.1:{sock.getsockname()[1]}/1"
        on = self._start_gunicorn(
            "web-instrumented",
            port_on,
            METRICS_ENABLED="true",
            ACCESS_LOG="true",
            SENTRY_DSN=sentry,
        )
        off = self._start_gunicorn(
            "web-bare", port_off, METRICS_ENABLED="false", ACCESS_LOG="false", SENTRY_DSN=""
        )
        try:
            job = self.http("POST", "/api/v1/jobs", ECHO)
            path = f"/api/v1/jobs/{job['id']}"
            bases = {"on": f"http://127.0.0.1:{port_on}", "off": f"http://127.0.0.1:{port_off}"}
            for base in bases.values():
                self.wrk(path, base=base, duration=2)  # warm up (and cache the job)
            servers = {"on": on, "off": off}
            rps: dict[str, list[float]] = {"on": [], "off": []}
            cpu_us: dict[str, list[float]] = {"on": [], "off": []}
            ratios = []
            for round_ in range(self.args.rounds):
                progress("instrumentation on/off", round_, self.args.rounds)
                order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
                measured = {}
                for mode in order:
                    cpu_before = servers[mode].cpu_seconds()
                    stats = self.wrk(path, base=bases[mode])
                    cpu = servers[mode].cpu_seconds() - cpu_before
                    measured[mode] = stats["rps"]
                    rps[mode].append(stats["rps"])
                    cpu_us[mode].append(cpu / stats["requests"] * 1e6)
                ratios.append(measured["on"] / measured["off"])
            progress("instrumentation on/off", self.args.rounds, self.args.rounds)
        finally:
            self.stop(on)
            self.stop(off)
        self.results["instrumentation"] = {
            "on_rps": statistics.median(rps["on"]),
            "off_rps": statistics.median(rps["off"]),
            "ratio": statistics.median(ratios),
            "sentry": bool(sentry),
            # Web CPU per request is what instrumentation adds to; unlike requests/s it hardly
            # moves when other work shares the machine.
            "on_cpu_us_per_request": statistics.median(cpu_us["on"]),
            "off_cpu_us_per_request": statistics.median(cpu_us["off"]),
            "rounds": {mode: [round(v) for v in values] for mode, values in rps.items()},
            "cpu_rounds": {mode: [round(v) for v in values] for mode, values in cpu_us.items()},
        }
        self.reset_jobs()

    def phase_serving(self) -> None:
        """What uvicorn workers on config/asgi.py (WEB_SERVER=asgi, the Procfile's) cost the hot
        paths against gunicorn's sync workers on config/wsgi.py (WEB_SERVER=sync): two servers
        with the same worker count, GET /jobs/{id} and POST /jobs measured on each in
        alternation (the order swapped each round), with each server's CPU per request."""
        ports = {"asgi": self.port + 3, "sync": self.port + 4}
        servers = {
            mode: self._start_gunicorn(f"web-{mode}", port, WEB_SERVER=mode)
            for mode, port in ports.items()
        }
        try:
            bases = {mode: f"http://127.0.0.1:{port}" for mode, port in ports.items()}
            job = self.http("POST", "/api/v1/jobs", ECHO)
            path = f"/api/v1/jobs/{job['id']}"
            rss = {mode: servers[mode].rss_kib() / 1024 for mode in servers}
            measured: dict[str, dict[str, list[dict[str, float]]]] = {
                "get": {"asgi": [], "sync": []},
                "post": {"asgi": [], "sync": []},
            }
            for base in bases.values():  # warm up (and cache the job)
                self.wrk(path, base=base, duration=2)
                self.wrk("/api/v1/jobs", method="POST", body=ECHO, base=base, duration=2)
            for round_ in range(self.args.rounds):
                progress("asgi/sync", round_, self.args.rounds)
                order = ("asgi", "sync") if round_ % 2 == 0 else ("sync", "asgi")
                for endpoint in ("get", "post"):
                    for mode in order:
                        cpu_before = servers[mode].cpu_seconds()
                        if endpoint == "get":
                            stats = self.wrk(path, base=bases[mode])
                        else:
                            stats = self.wrk(
                                "/api/v1/jobs", method="POST", body=ECHO, base=bases[mode]
                            )
                        cpu = servers[mode].cpu_seconds() - cpu_before
                        stats["cpu_us"] = cpu / stats["requests"] * 1e6
                        measured[endpoint][mode].append(stats)
            progress("asgi/sync", self.args.rounds, self.args.rounds)
        finally:
            for server in servers.values():
                self.stop(server)
        result: dict[str, Any] = {"idle_rss_mib": rss}
        for endpoint, by_mode in measured.items():
            median = {m: statistics.median(s["rps"] for s in runs) for m, runs in by_mode.items()}
            result[endpoint] = {
                "asgi_rps": median["asgi"],
                "sync_rps": median["sync"],
                "ratio": median["asgi"] / median["sync"],
                "asgi_cpu_us": statistics.median(s["cpu_us"] for s in by_mode["asgi"]),
                "sync_cpu_us": statistics.median(s["cpu_us"] for s in by_mode["sync"]),
                "asgi_p99_ms": statistics.median(s["p99"] for s in by_mode["asgi"]),
                "sync_p99_ms": statistics.median(s["p99"] for s in by_mode["sync"]),
                "rounds": {m: [round(s["rps"]) for s in runs] for m, runs in by_mode.items()},
            }
        self.results["serving"] = result
        self.reset_jobs()

    def phase_longpoll(self) -> None:
        """--longpoll-clients connections each long-polling its own job (GET ?wait=60 with
        If-None-Match) on the web process (all its workers); then the jobs are canceled, at
        --longpoll-rate per second, and each waiter's answer is timed from its job's change
        (finished_at, written before the commit: the figure is an upper bound). Memory: RSS of
        every web process (master and workers) while all wait, and before."""
        import asyncio

        assert self.web is not None
        clients = self.args.longpoll_clients
        ids: list[str] = []
        while len(ids) < clients:
            batch = {"jobs": [{**ECHO, "delay_seconds": 3600}] * min(1000, clients - len(ids))}
            ids += [job["id"] for job in self.http("POST", "/api/v1/jobs/batch", batch)["jobs"]]
        self.wrk(f"/api/v1/jobs/{ids[0]}", duration=2)  # every worker has served requests
        idle_rss = self.web.rss_kib()
        host, port = "127.0.0.1", self.port
        answered: dict[str, tuple[float, int]] = {}
        cancel_sent: dict[str, float] = {}
        rss_waiting = 0
        waiting_key = f"conveyor-bench:waiters:{self._client_id()}"

        async def request(reader: Any, writer: Any, method: str, path: str, extra: str = "") -> int:
            writer.write(
                f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {self.key}\r\nContent-Length: 0\r\n{extra}\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            return int(head.split(b" ", 2)[1])

        async def long_poll(job_id: str) -> None:
            reader, writer = await asyncio.open_connection(host, port)
            try:
                status = await request(
                    reader, writer, "GET", f"/api/v1/jobs/{job_id}?wait=60",
                    'If-None-Match: "1"\r\n',
                )  # fmt: skip
                answered[job_id] = (time.time(), status)
            finally:
                writer.close()

        async def run() -> None:
            nonlocal rss_waiting
            import redis

            waiting = asyncio.gather(*(long_poll(job_id) for job_id in ids))
            store = redis.Redis.from_url(REDIS)
            deadline = time.monotonic() + 60
            while store.zcard(waiting_key) < clients:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {store.zcard(waiting_key)} waiters after 60 s")
                await asyncio.sleep(0.2)
            await asyncio.sleep(1)
            rss_waiting = self.web.rss_kib() if self.web else 0
            reader, writer = await asyncio.open_connection(host, port)
            for index, job_id in enumerate(ids):
                started = time.time()
                cancel_sent[job_id] = started
                await request(reader, writer, "POST", f"/api/v1/jobs/{job_id}/cancel")
                if (index + 1) % 50 == 0 or index + 1 == clients:
                    progress("long-poll: changes", index + 1, clients)
                await asyncio.sleep(max(0.0, 1 / self.args.longpoll_rate - (time.time() - started)))
            writer.close()
            await waiting

        asyncio.run(run())
        finished = dict(
            self.sql(
                "SELECT id::text, extract(epoch from finished_at) FROM jobs_job WHERE id = ANY(%s)",
                (ids,),
            )
        )
        latencies = [(answered[i][0] - float(finished[i])) * 1000 for i in ids]
        from_request = [(answered[i][0] - cancel_sent[i]) * 1000 for i in ids]
        self.results["longpoll"] = {
            "clients": clients,
            "web_workers": self.args.web_workers,
            "rate_per_s": self.args.longpoll_rate,
            "answered_200": sum(1 for i in ids if answered[i][1] == 200),
            "idle_rss_mib": idle_rss / 1024,
            "waiting_rss_mib": rss_waiting / 1024,
            "added_rss_mib": (rss_waiting - idle_rss) / 1024,
            "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99),
            "max_ms": max(latencies),
            "from_cancel_request_p99_ms": percentile(from_request, 99),
        }
        self.reset_jobs()

    def _client_id(self) -> int:
        return int(self.sql("SELECT id FROM clients_apiclient WHERE name = 'bench'")[0][0])

    def phase_latency(self) -> None:
        workers, scheduler = self.start_workers(), self.start_scheduler()
        try:
            time.sleep(1)
            self.results["latency"] = self._paced_latency("submit→succeeded")
        finally:
            self.stop(workers)
            self.stop(scheduler)
        self.reset_jobs()

    def _paced_latency(self, label: str) -> dict[str, Any]:
        """``--latency-jobs`` echo jobs submitted one by one at ``--latency-rate``/s while a pool
        runs: submit (client side, before the POST) → ``finished_at`` percentiles."""
        count, rate = self.args.latency_jobs, self.args.latency_rate
        submitted: dict[str, float] = {}
        for index in range(count):
            started = time.time()
            submitted[self.http("POST", "/api/v1/jobs", ECHO)["id"]] = started
            progress(label, index + 1, count)
            time.sleep(max(0.0, 1 / rate - (time.time() - started)))
        rows = self._wait_finished(set(submitted), f"{label}: draining")
        latencies = [(rows[i][1] - submitted[i]) * 1000 for i in submitted]
        waits = [(rows[i][0] - submitted[i]) * 1000 for i in submitted]
        return {
            "jobs": count,
            "rate_per_s": rate,
            "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99),
            "submit_to_start_p50_ms": percentile(waits, 50),
        }

    def _wait_finished(self, ids: set[str] | None, label: str, total: int | None = None) -> Any:
        total = total if total is not None else len(ids or ())
        deadline = time.monotonic() + self.args.timeout
        while True:
            done = self.sql(
                "SELECT count(*) FROM jobs_job WHERE status IN ('succeeded','failed','canceled')"
            )[0][0]
            progress(label, done, total)
            if done >= total:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{label}: only {done} of {total} jobs finished in time")
            time.sleep(0.25)
        if ids is None:
            return None
        rows = self.sql(
            "SELECT id::text, extract(epoch from started_at), extract(epoch from finished_at) "
            "FROM jobs_job WHERE id::text = ANY(%s)",
            [list(ids)],
        )
        return {row[0]: (float(row[1]), float(row[2])) for row in rows}

    def _submit_batches(self, total: int, label: str) -> tuple[float, float]:
        """Submit ``total`` echo jobs through POST /jobs/batch, 4 requests at a time."""
        batches = [min(1000, total - start) for start in range(0, total, 1000)]
        sent = [0]
        lock = threading.Lock()
        first = time.time()

        def submit(size: int) -> None:
            self.http("POST", "/api/v1/jobs/batch", {"jobs": [ECHO] * size})
            with lock:
                sent[0] += size
                progress(label, sent[0], total)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(submit, batches))
        return first, time.time()

    def phase_workflows(self) -> None:
        """Dependencies: a 1000-entry batch (1 root, 988 jobs fanned out from it, 10 fan-ins of
        about 99 each and a final fan-in of those 10: a job has at most 100 dependencies)
        accepted; how soon each fan-in starts after its last dependency finished (the jobs' own
        timestamps); a 10-deep chain of no-op jobs, submit to last finish."""
        workers, scheduler = self.start_workers(), self.start_scheduler()
        try:
            time.sleep(1)
            accepted, fan_in, chains = [], [], []
            hops: list[dict[str, float]] = []
            trials = self.args.workflow_trials
            for trial in range(trials):
                progress("fan-out/fan-in batches", trial, trials)
                leaves = 988
                groups = [list(range(i, leaves, 10)) for i in range(10)]
                batch = [{**ECHO, "ref": "root"}]
                batch += [{**ECHO, "ref": f"l{i}", "depends_on": ["root"]} for i in range(leaves)]
                batch += [
                    {**ECHO, "ref": f"m{g}", "depends_on": [f"l{i}" for i in group]}
                    for g, group in enumerate(groups)
                ]
                batch.append({**ECHO, "depends_on": [f"m{g}" for g in range(10)]})
                started = time.perf_counter()
                jobs = self.http("POST", "/api/v1/jobs/batch", {"jobs": batch})["jobs"]
                accepted.append((time.perf_counter() - started) * 1000)
                self._wait_ids([jobs[-1]["id"]])
                fan_in += self._fan_in_delays([j["id"] for j in jobs[-11:]])
            progress("fan-out/fan-in batches", trials, trials)
            for trial in range(self.args.workflow_chains):
                progress("10-deep chains", trial, self.args.workflow_chains)
                chain = [{**ECHO, "ref": "0"}] + [
                    {**ECHO, "ref": str(i), "depends_on": [str(i - 1)]} for i in range(1, 10)
                ]
                sent = time.time()
                jobs = self.http("POST", "/api/v1/jobs/batch", {"jobs": chain})["jobs"]
                last = self._wait_ids([jobs[-1]["id"]])[jobs[-1]["id"]]
                chains.append((last - sent) * 1000)
                hops.append(self._chain_hops(sent, [j["id"] for j in jobs]))
            progress("10-deep chains", self.args.workflow_chains, self.args.workflow_chains)
            self.results["workflows"] = {
                "batch_jobs": len(batch),
                "batch_accepted_p50_ms": percentile(accepted, 50),
                "batch_accepted_max_ms": max(accepted),
                "fan_in_start_p50_ms": percentile(fan_in, 50),
                "fan_in_start_p90_ms": percentile(fan_in, 90),
                "fan_ins": len(fan_in),
                "chain_p50_ms": percentile(chains, 50),
                # Where a chain's time goes (medians over the chains): submit to the first
                # job's start, the handlers' runs, and the gaps from a job's finish to the
                # next one's start.
                **{
                    f"chain_{part}_p50_ms": percentile([h[part] for h in hops], 50)
                    for part in ("first_start", "runs", "gaps", "gap_max")
                },
                "chain_max_ms": max(chains),
                "chains": len(chains),
            }
        finally:
            self.stop(workers)
            self.stop(scheduler)
        self.reset_jobs()

    def _wait_ids(self, ids: list[str]) -> dict[str, float]:
        """Wait until the jobs ``ids`` are finished; their finish times (epoch seconds)."""
        deadline = time.monotonic() + self.args.timeout
        while True:
            rows = self.sql(
                "SELECT id::text, extract(epoch from finished_at) FROM jobs_job "
                "WHERE id::text = ANY(%s) AND finished_at IS NOT NULL",
                [ids],
            )
            if len(rows) == len(ids):
                return {row[0]: float(row[1]) for row in rows}
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(ids) - len(rows)} jobs not finished in time")
            time.sleep(0.02)

    def _chain_hops(self, sent: float, ids: list[str]) -> dict[str, float]:
        """A chain's time in parts, in ms, from the jobs' own timestamps: submit to the first
        start, the runs (finish minus start), the gaps (a start minus the previous finish)."""
        rows = self.sql(
            "SELECT id::text, extract(epoch from started_at), extract(epoch from finished_at) "
            "FROM jobs_job WHERE id::text = ANY(%s)",
            [ids],
        )
        times = {row[0]: (float(row[1]), float(row[2])) for row in rows}
        ordered = [times[i] for i in ids]
        gaps = [b[0] - a[1] for a, b in itertools.pairwise(ordered)]
        return {
            "first_start": (ordered[0][0] - sent) * 1000,
            "runs": sum(end - start for start, end in ordered) * 1000,
            "gaps": sum(gaps) * 1000,
            "gap_max": max(gaps) * 1000,
        }

    def _fan_in_delays(self, ids: list[str]) -> list[float]:
        """For each fan-in job: its started_at minus the latest finished_at of its
        dependencies, in ms."""
        rows = self.sql(
            "SELECT extract(epoch from j.started_at) - max(extract(epoch from d.finished_at)) "
            "FROM jobs_job j JOIN jobs_job d ON d.id = ANY(j.depends_on) "
            "WHERE j.id::text = ANY(%s) GROUP BY j.id, j.started_at",
            [ids],
        )
        return [float(row[0]) * 1000 for row in rows]

    def phase_pipeline(self) -> None:
        n, w = self.args.pipeline_jobs, self.args.worker_processes
        # Bare Celery on the same broker and concurrency.
        bare_env = {**self.env, "BARE_BROKER_URL": REDIS}
        import redis

        marks = redis.Redis.from_url(REDIS)
        marks.delete("bare:start", "bare:end")
        enqueue = subprocess.run(
            [
                sys.executable,
                "-c",
                (
                    "import time, sys; sys.path.insert(0, 'bench');"
                    "from bare_celery import app, noop, mark;"
                    "t = time.time();"
                    "mark.delay('start');"
                    f"[noop.delay() for _ in range({n})];"
                    "mark.delay('end');"
                    "print(time.time() - t)"
                ),
            ],
            cwd=ROOT,
            env=bare_env,
            capture_output=True,
            text=True,
            check=True,
        )
        enqueue_seconds = float(enqueue.stdout.strip())
        env_backup, self.env = self.env, {**bare_env, "PYTHONPATH": str(ROOT / "bench")}
        try:
            bare = self._start_celery("bare", ["-Q", "bare", "-c", str(w)], app="bare_celery")
        finally:
            self.env = env_backup
        try:
            deadline = time.monotonic() + self.args.timeout
            while not marks.get("bare:end"):
                if time.monotonic() > deadline:
                    raise RuntimeError("bare Celery did not drain in time")
                time.sleep(0.1)
            bare_rate = n / (float(marks.get("bare:end")) - float(marks.get("bare:start")))
        finally:
            self.stop(bare)

        # Conveyor, drain only: submit everything first, then start the pool.
        self._submit_batches(n, "pipeline: submit")
        scheduler = self.start_scheduler()
        workers = self.start_workers()
        try:
            self._wait_finished(None, "pipeline: drain", total=n)
            started, finished = self.sql(
                "SELECT extract(epoch from min(started_at)), extract(epoch from max(finished_at)) "
                "FROM jobs_job"
            )[0]
            drain_rate = n / (float(finished) - float(started))
            self.reset_jobs()
            # End to end: submissions and the pool running at the same time.
            first, _ = self._submit_batches(n, "pipeline: end to end")
            self._wait_finished(None, "pipeline: end to end drain", total=n)
            rows = self.sql(
                "SELECT extract(epoch from created_at), extract(epoch from started_at), "
                "extract(epoch from finished_at) FROM jobs_job"
            )
            last = max(float(r[2]) for r in rows)
            waits = [(float(r[1]) - float(r[0])) * 1000 for r in rows]
            runs = [(float(r[2]) - float(r[1])) * 1000 for r in rows]
            self.reset_jobs()
            # At a modest rate, the same pool: what one job waits for, submit → succeeded.
            paced = self._paced_latency("pipeline: paced submit→succeeded")
        finally:
            self.stop(workers)
            self.stop(scheduler)
        self.results["pipeline"] = {
            "jobs": n,
            "worker_processes": w,
            "bare_celery_jobs_per_s": bare_rate,
            "bare_celery_enqueue_per_s": (n + 2) / enqueue_seconds,
            "drain_jobs_per_s": drain_rate,
            "ratio_to_bare_celery": drain_rate / bare_rate,
            "end_to_end_jobs_per_s": n / (last - first),
            "queue_wait_p50_ms": percentile(waits, 50),
            "queue_wait_p99_ms": percentile(waits, 99),
            "run_time_p50_ms": percentile(runs, 50),
            "run_time_p99_ms": percentile(runs, 99),
            "paced": paced,
        }
        self.reset_jobs()

    def _client_key(self, name: str) -> str:
        return str(json.loads(self.manage("create_client", name, "--unlimited"))["api_key"])

    def _drain_rate(self, keys: list[str], n: int, label: str) -> float:
        """Jobs per second for a pool draining ``n`` echo jobs submitted beforehand, shared
        equally between the clients of ``keys`` (one client: first-in-first-out)."""
        per = n // len(keys)
        for key in keys:
            for start in range(0, per, 1000):
                size = min(1000, per - start)
                self.http("POST", "/api/v1/jobs/batch", {"jobs": [ECHO] * size}, key=key)
        workers = self.start_workers()
        try:
            self._wait_finished(None, label, total=per * len(keys))
        finally:
            self.stop(workers)
        started, finished = self.sql(
            "SELECT extract(epoch from min(started_at)), extract(epoch from max(finished_at)) "
            "FROM jobs_job"
        )[0]
        self.reset_jobs()
        return per * len(keys) / (float(finished) - float(started))

    def _concurrency_keys(self) -> tuple[int, int, float]:
        """Jobs on 50 concurrency keys (limits 1 to 3) drained by 4 processes: the instants at
        which a key had more jobs running than its limit, from the jobs' started_at and
        finished_at."""
        n = self.args.fairness_key_jobs
        jobs = [
            {**ECHO, "concurrency_key": f"k{i % 50}", "concurrency_limit": 1 + i % 50 % 3}
            for i in range(n)
        ]
        for start in range(0, n, 1000):
            self.http("POST", "/api/v1/jobs/batch", {"jobs": jobs[start : start + 1000]})
        workers = self._start_celery("keys-pool", ["-Q", "default", "-c", "4"])
        try:
            self._wait_finished(None, "fairness: 50 concurrency keys", total=n)
        finally:
            self.stop(workers)
        rows = self.sql(
            "SELECT concurrency_key, concurrency_limit, started_at, finished_at FROM jobs_job"
        )
        spans: dict[str, list[tuple[Any, int]]] = {}
        limits: dict[str, int] = {}
        for key, limit, started, finished in rows:
            limits[key] = limit
            spans.setdefault(key, []).extend([(started, 1), (finished, -1)])
        violations = 0
        for key, edges in spans.items():
            running = 0
            for _, step in sorted(edges):
                running += step
                violations += running > limits[key]
        first = min(r[2] for r in rows)
        last = max(r[3] for r in rows)
        self.reset_jobs()
        return n, violations, n / (last - first).total_seconds()

    def _client_jobs(self, client: str, condition: str) -> int:
        """How many of the named bench client's jobs meet ``condition`` (SQL on ``j``)."""
        return int(
            self.sql(
                "SELECT count(*) FROM jobs_job j JOIN clients_apiclient c "  # noqa: S608 (literal conditions)
                f"ON c.id = j.client_id WHERE c.name = %s AND {condition}",
                [client],
            )[0][0]
        )

    def phase_fairness(self) -> None:
        """Client B's job start latency while client A's backlog fills a pool of 2; then the
        drain rate with several clients sharing the pool (fair dispatch at work) against one
        client (first-in-first-out)."""
        a, b = self._client_key("fair-a"), self._client_key("fair-b")
        backlog = self.args.fairness_backlog
        slow = {"type": "diagnostics.echo", "input": {"message": "a", "sleep_seconds": 0.2}}
        for start in range(0, backlog, 1000):
            size = min(1000, backlog - start)
            self.http("POST", "/api/v1/jobs/batch", {"jobs": [slow] * size}, key=a)
        env_backup, self.env = self.env, {**self.env, "WORKER_WAKEUP_FANOUT": "2"}
        try:
            scheduler = self.start_scheduler()
            workers = self._start_celery("fair-pool", ["-Q", "default", "-c", "2"])
        finally:
            self.env = env_backup
        # From the client's send (what B sees) and from the job's acceptance (dispatch alone).
        waits: list[float] = []
        accepted: list[float] = []
        try:
            # Trials measure the steady state: both pool processes warm (their first jobs, which
            # pay for imports and connections, done) and busy with A's backlog.
            deadline = time.monotonic() + 60
            while self._client_jobs("fair-a", "j.status = 'succeeded'") < 4:
                if time.monotonic() > deadline:
                    raise RuntimeError("the pool did not start client A's backlog within 60 s")
                time.sleep(0.05)
            # And the web server warm: a gunicorn worker's first requests import and connect
            # (measured: 1.3-1.7 s for each of the first few submissions, dispatch itself 0.1 s).
            for _ in range(12):
                self.http("POST", "/api/v1/jobs", ECHO, key=b)
            while self._client_jobs("fair-b", "j.finished_at IS NULL"):
                if time.monotonic() > deadline:
                    raise RuntimeError("client B's warm-up jobs did not finish within 60 s")
                time.sleep(0.05)
            for trial in range(self.args.fairness_trials):
                time.sleep(secrets.randbelow(200) / 1000)
                sent = time.time()
                job_id = self.http("POST", "/api/v1/jobs", ECHO, key=b)["id"]
                deadline = time.monotonic() + 60
                while True:
                    row = self.sql(
                        "SELECT extract(epoch from started_at), extract(epoch from created_at) "
                        "FROM jobs_job WHERE id = %s",
                        [job_id],
                    )[0]
                    if row[0] is not None:
                        waits.append((float(row[0]) - sent) * 1000)
                        accepted.append((float(row[0]) - float(row[1])) * 1000)
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError("client B's job did not start within 60 s")
                    time.sleep(0.01)
                progress("fairness: B's starts", trial + 1, self.args.fairness_trials)
            a_left = self._client_jobs("fair-a", "j.status = 'queued'")
        finally:
            self.stop(workers)
        self.reset_jobs()
        try:
            n = self.args.fairness_jobs
            keys = [a, b, self._client_key("fair-c"), self._client_key("fair-d")]
            fifo = self._drain_rate([self.key], n, "fairness: one client drain")
            fair = self._drain_rate(keys, n, "fairness: four clients drain")
            fifo_again = self._drain_rate([self.key], n, "fairness: one client drain again")
            keys_jobs, violations, keys_rate = self._concurrency_keys()
        finally:
            self.stop(scheduler)
        fifo_rate = (fifo + fifo_again) / 2
        self.results["fairness"] = {
            "key_jobs": keys_jobs,
            "key_violations": violations,
            "key_jobs_per_s": keys_rate,
            "backlog_jobs": backlog,
            "backlog_left_at_end": a_left,
            "trials": len(waits),
            "b_start_p50_ms": percentile(waits, 50),
            "b_start_p99_ms": percentile(waits, 99),
            "b_start_max_ms": max(waits),
            "b_start_ms_by_trial": [round(w, 1) for w in waits],
            "b_dispatch_p50_ms": percentile(accepted, 50),
            "b_dispatch_p99_ms": percentile(accepted, 99),
            "b_dispatch_ms_by_trial": [round(w, 1) for w in accepted],
            "drain_jobs": n,
            "one_client_jobs_per_s": fifo_rate,
            "four_clients_jobs_per_s": fair,
            "fair_to_fifo_ratio": fair / fifo_rate,
        }

    def _webhook_pool(self) -> list[str]:
        kind, _, concurrency = self.args.webhook_pool.partition(":")
        return ["-P", kind, "-c", concurrency or "16"]

    def phase_webhooks(self) -> None:
        sys.path.insert(0, str(ROOT))
        from tests.support.receiver import Receiver

        receiver = Receiver()
        scheduler, workers = self.start_scheduler(), self.start_workers()
        try:
            hooks = self._start_celery("webhooks", ["-Q", "webhooks", *self._webhook_pool()])
            # Latency: job finished → terminal event received, at a modest rate.
            lags = []
            count = self.args.latency_jobs // 2
            for index in range(count):
                before = len(receiver.received)
                job = self.http("POST", "/api/v1/jobs", {**ECHO, "webhook_url": receiver.url})
                deadline = time.monotonic() + 90  # a busy machine boots gunicorn slowly
                while len(receiver.received) <= before and time.monotonic() < deadline:
                    time.sleep(0.002)
                arrived = time.time()
                finished = self.sql(
                    "SELECT extract(epoch from finished_at) FROM jobs_job WHERE id = %s",
                    [job["id"]],
                )[0][0]
                lags.append((arrived - float(finished)) * 1000)
                progress("webhook latency", index + 1, count)
            self.stop(hooks)
            # Throughput: deliveries written while the webhook pool is stopped, then drained.
            n = self.args.webhook_jobs
            batch = {"jobs": [{**ECHO, "webhook_url": receiver.url}] * 1000}
            for start in range(0, n, 1000):
                self.http("POST", "/api/v1/jobs/batch", {"jobs": batch["jobs"][: n - start]})
            self._wait_finished(None, "webhooks: jobs", total=n + count)
            received_before = len(receiver.received)
            hooks = self._start_celery("webhooks", ["-Q", "webhooks", *self._webhook_pool()])
            deadline = time.monotonic() + self.args.timeout
            while len(receiver.received) < received_before + n:
                progress("webhooks: drain", len(receiver.received) - received_before, n)
                if time.monotonic() > deadline:
                    raise RuntimeError("webhook deliveries did not drain in time")
                time.sleep(0.25)
            progress("webhooks: drain", n, n)
            arrivals = sorted(r.at for r in receiver.received[received_before:])
            self.stop(hooks)
        finally:
            self.stop(workers)
            self.stop(scheduler)
            receiver.stop()
        self.results["webhooks"] = {
            "latency_p50_ms": percentile(lags, 50),
            "latency_p99_ms": percentile(lags, 99),
            "deliveries": n,
            "pool": self.args.webhook_pool,
            "deliveries_per_s": n / (arrivals[-1] - arrivals[0]),
        }
        self.reset_jobs()

    def phase_admin_list(self) -> None:
        """The operator console on a generated table (bench/admin_console.py): the job list per
        filter, p50/p99, and a bulk retry of ``--admin-bulk`` failed jobs meanwhile. Not in the
        default phases: filling ``--admin-rows`` (10 M) takes tens of minutes on two cores."""
        output = subprocess.run(
            [
                sys.executable,
                "bench/admin_console.py",
                "--rows",
                str(self.args.admin_rows),
                "--bulk",
                str(self.args.admin_bulk),
                "--no-plans",
            ],
            cwd=ROOT,
            env={**self.env, "BENCH_DB": DB_NAME},
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        self.results["admin_list"] = json.loads(output)

    def phase_memory(self) -> None:
        m = self.args.memory_jobs
        scheduler, workers = self.start_scheduler(), self.start_workers()
        try:
            self._submit_batches(2000, "memory: warm-up")
            self._wait_finished(None, "memory: warm-up drain", total=2000)
            self.reset_jobs()
            before = workers.rss_kib()
            web_before = self.web.rss_kib() if self.web else 0
            done = 0
            while done < m:
                chunk = min(10_000, m - done)
                self._submit_batches(chunk, f"memory: {done + chunk}/{m}")
                self._wait_finished(None, "memory: drain", total=chunk)
                self.reset_jobs()
                done += chunk
            after = workers.rss_kib()
            web_after = self.web.rss_kib() if self.web else 0
        finally:
            self.stop(workers)
            self.stop(scheduler)
        self.results["memory"] = {
            "jobs": m,
            "worker_rss_before_mib": before / 1024,
            "worker_rss_after_mib": after / 1024,
            "worker_growth_pct": (after - before) / before * 100,
            "web_rss_before_mib": web_before / 1024,
            "web_rss_after_mib": web_after / 1024,
        }

    def stop_all(self) -> None:
        for process in list(self.processes):
            self.stop(process)


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = next(
        line
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    ).split()[1]

    def version(argv: list[str]) -> str:
        try:
            return (
                subprocess.run(argv, capture_output=True, text=True).stdout.strip().split("\n")[0]
            )
        except OSError:
            return "?"

    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(int(mem) / 1024 / 1024, 1),
        "python": platform.python_version(),
        "postgresql": version(["psql", "--version"]),
        "redis": version(["redis-server", "--version"]),
    }


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    rows: list[tuple[str, str, str]] = []
    if "post_jobs" in results:
        r = results["post_jobs"]
        rows.append(
            (
                "POST /jobs",
                f"{r['rps']:.0f} req/s, p50 {r['p50_ms']:.1f} ms, "
                f"p95 {r['p95_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms",
                f"{r['ratio']:.2f} x ceiling {r['ceiling_rps']:.0f} (target ≥ 0.33)",
            )
        )
        b = results["post_batch"]
        rows.append(
            (
                "POST /jobs/batch (1000)",
                f"{b['jobs_per_s']:.0f} jobs/s, p50 {b['p50_ms']:.0f} ms, p99 {b['p99_ms']:.0f} ms",
                "target > 5000 jobs/s, < 250 ms",
            )
        )
    if "submission" in results:
        r = results["submission"]
        cpu = ", ".join(f"{name} {ms:.2f}" for name, ms in r["cpu_ms_per_job"].items())
        rows += [
            (
                "POST /jobs, pool running",
                f"{r['rps']:.0f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms",
                f"{r['ratio_to_healthz']:.3f} x /healthz {r['healthz_rps']:.0f}",
            ),
            (
                "  per accepted job",
                f"CPU ms {cpu}",
                f"{r['pg_commits_per_job']:.2f} commits, {r['redis_commands_per_job']:.1f} "
                f"Redis commands (server-wide), {r['run_per_accepted_job']:.2f} run",
            ),
        ]
    if "workflows" in results:
        r = results["workflows"]
        rows += [
            (
                f"workflow batch ({r['batch_jobs']})",
                f"accepted p50 {r['batch_accepted_p50_ms']:.0f} ms, "
                f"max {r['batch_accepted_max_ms']:.0f} ms",
                "target < 300 ms",
            ),
            (
                "  fan-in start after last dependency",
                f"p50 {r['fan_in_start_p50_ms']:.1f} ms, p90 {r['fan_in_start_p90_ms']:.1f} ms "
                f"({r['fan_ins']} fan-ins)",
                "target p50 < 50 ms",
            ),
            (
                "  10-deep chain, submit to last finish",
                f"p50 {r['chain_p50_ms']:.0f} ms, max {r['chain_max_ms']:.0f} ms "
                f"({r['chains']} chains)",
                "target < 200 ms",
            ),
            (
                "    submit to first start; runs; gaps",
                f"{r['chain_first_start_p50_ms']:.0f} ms; {r['chain_runs_p50_ms']:.0f} ms; "
                f"{r['chain_gaps_p50_ms']:.0f} ms (largest {r['chain_gap_max_p50_ms']:.0f} ms)",
                "p50 of each",
            ),
        ]
    if "get_job" in results:
        r = results["get_job"]
        h = r["half_load"]
        rows.append(
            (
                "GET /jobs/{id} (cached)",
                f"{r['rps']:.0f} req/s, p99 {r['p99_ms']:.1f} ms",
                f"{r['ratio']:.2f} x ceiling {r['ceiling_rps']:.0f} (target ≥ 0.8)",
            )
        )
        rows.append(
            (
                "GET at half load",
                f"{h['rps']:.0f} req/s, p50 {h['p50_ms']:.1f} ms, p99 {h['p99_ms']:.1f} ms",
                "target p99 < 20 ms",
            )
        )
    if "instrumentation" in results:
        r = results["instrumentation"]
        rows.append(
            (
                "GET /jobs/{id} instrumented",
                f"{r['on_rps']:.0f} req/s with metrics + access log"
                f"{' + Sentry' if r.get('sentry') else ''}, {r['off_rps']:.0f} without",
                f"{r['ratio']:.3f} x (median of paired rounds; target ≥ 0.9)",
            )
        )
        rows.append(
            (
                "web CPU per GET",
                f"{r['on_cpu_us_per_request']:.0f} µs instrumented, "
                f"{r['off_cpu_us_per_request']:.0f} µs bare",
                f"+{r['on_cpu_us_per_request'] - r['off_cpu_us_per_request']:.0f} µs per request",
            )
        )
    if "serving" in results:
        r = results["serving"]
        for endpoint, label in (("get", "GET /jobs/{id}"), ("post", "POST /jobs")):
            e = r[endpoint]
            rows.append(
                (
                    f"{label}: asgi vs sync",
                    f"{e['asgi_rps']:.0f} vs {e['sync_rps']:.0f} req/s; "
                    f"{e['asgi_cpu_us']:.0f} vs {e['sync_cpu_us']:.0f} µs CPU",
                    f"{e['ratio']:.2f} x (median of alternated rounds)",
                )
            )
    if "longpoll" in results:
        r = results["longpoll"]
        rows.append(
            (
                f"{r['clients']} long-polls",
                f"web RSS {r['waiting_rss_mib']:.0f} MiB waiting ({r['idle_rss_mib']:.0f} idle, "
                f"+{r['added_rss_mib']:.0f}), {r['web_workers']} workers",
                "target < 200 MiB",
            )
        )
        rows.append(
            (
                "long-poll answer after change",
                f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.0f} ms "
                f"({r['answered_200']} of {r['clients']} answered 200)",
                "target p99 < 50 ms",
            )
        )
    if "latency" in results:
        r = results["latency"]
        rows.append(
            (
                "submit → succeeded",
                f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms "
                f"({r['jobs']} jobs at {r['rate_per_s']}/s)",
                "target p50 < 20 ms",
            )
        )
    if "pipeline" in results:
        r = results["pipeline"]
        rows.append(
            (
                "pipeline drain",
                f"{r['drain_jobs_per_s']:.0f} jobs/s "
                f"({r['jobs']} jobs, {r['worker_processes']} processes)",
                f"{r['ratio_to_bare_celery']:.2f} x bare Celery "
                f"{r['bare_celery_jobs_per_s']:.0f}/s (target ≥ 1.5)",
            )
        )
        rows.append(
            (
                "pipeline end to end",
                f"{r['end_to_end_jobs_per_s']:.0f} jobs/s; wait p50 "
                f"{r['queue_wait_p50_ms']:.0f} ms, run p50 {r['run_time_p50_ms']:.2f} ms",
                "first submit → last succeeded",
            )
        )
        p = r["paced"]
        rows.append(
            (
                "pipeline submit → succeeded",
                f"p50 {p['p50_ms']:.1f} ms, p99 {p['p99_ms']:.1f} ms "
                f"({p['jobs']} jobs at {p['rate_per_s']}/s)",
                "target p50 < 20 ms",
            )
        )
    if "webhooks" in results:
        r = results["webhooks"]
        rows.append(
            (
                "webhook: finished → received",
                f"p50 {r['latency_p50_ms']:.0f} ms, p99 {r['latency_p99_ms']:.0f} ms",
                "target p50 < 500 ms",
            )
        )
        rows.append(
            (
                "webhook delivery pool",
                f"{r['deliveries_per_s']:.0f} deliveries/s "
                f"({r['deliveries']} to a local receiver, pool {r.get('pool', 'threads:16')})",
                "target >= 200/s",
            )
        )
    if "fairness" in results:
        r = results["fairness"]
        rows.append(
            (
                "fairness: B's start behind A's backlog",
                f"p50 {r['b_start_p50_ms']:.0f} ms, p99 {r['b_start_p99_ms']:.0f} ms over "
                f"{r['trials']} trials ({r['backlog_jobs']} jobs of 0.2 s, pool of 2)",
                "target p99 < 1000 ms",
            )
        )
        rows.append(
            (
                "fairness: of which dispatch (accepted -> started)",
                f"p50 {r['b_dispatch_p50_ms']:.0f} ms, p99 {r['b_dispatch_p99_ms']:.0f} ms",
                "",
            )
        )
        rows.append(
            (
                "fairness: drain, 4 clients vs 1",
                f"{r['four_clients_jobs_per_s']:.0f} vs {r['one_client_jobs_per_s']:.0f} jobs/s",
                f"{r['fair_to_fifo_ratio']:.2f} x (target >= 0.9)",
            )
        )
        rows.append(
            (
                "concurrency keys (50, limits 1-3, 4 processes)",
                f"{r['key_violations']} violations over {r['key_jobs']} jobs, "
                f"{r['key_jobs_per_s']:.0f} jobs/s",
                "target 0 violations",
            )
        )
    if "memory" in results:
        r = results["memory"]
        rows.append(
            (
                "worker RSS",
                f"{r['worker_rss_before_mib']:.0f} → "
                f"{r['worker_rss_after_mib']:.0f} MiB over {r['jobs']} jobs",
                f"{r['worker_growth_pct']:+.1f} % (target < 10 %)",
            )
        )
        rows.append(
            ("web RSS", f"{r['web_rss_before_mib']:.0f} → {r['web_rss_after_mib']:.0f} MiB", "")
        )
    width = [max(len(row[i]) for row in rows) for i in range(3)] if rows else [0, 0, 0]
    lines = [f"{'what':<{width[0]}}  {'measured':<{width[1]}}  compared"]
    lines += [f"{a:<{width[0]}}  {b:<{width[1]}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--phases",
        default="admission,submission,polling,serving,longpoll,instrumentation,latency,pipeline,"
        "fairness,workflows,webhooks,memory",
    )
    parser.add_argument("--quick", action="store_true", help="short durations and small counts")
    parser.add_argument("--duration", type=float, default=8, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="ceiling/target alternations")
    parser.add_argument("--web-workers", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument("--worker-processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pipeline-jobs", type=int, default=20_000)
    parser.add_argument("--latency-jobs", type=int, default=300)
    parser.add_argument("--latency-rate", type=float, default=20)
    parser.add_argument("--memory-jobs", type=int, default=100_000)
    parser.add_argument("--webhook-jobs", type=int, default=5000)
    parser.add_argument("--fairness-backlog", type=int, default=1000)
    parser.add_argument("--fairness-trials", type=int, default=50)
    parser.add_argument("--fairness-jobs", type=int, default=20_000)
    parser.add_argument("--fairness-key-jobs", type=int, default=10_000)
    parser.add_argument("--workflow-trials", type=int, default=5)
    parser.add_argument("--workflow-chains", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--admin-rows", type=int, default=10_000_000)
    parser.add_argument("--admin-bulk", type=int, default=100_000)
    parser.add_argument("--longpoll-clients", type=int, default=1000)
    parser.add_argument("--longpoll-rate", type=float, default=200, help="job changes per second")
    parser.add_argument(
        "--webhook-pool",
        default="threads:16",
        help="webhooks phase: the delivery pool as <pool>:<concurrency> (the Procfile's is "
        "threads:16; prefork:4 trades slow-receiver tolerance for throughput)",
    )
    parser.add_argument(
        "--limited-client",
        action="store_true",
        help="bench with a rate-limited client (counted, never refused) instead of --unlimited",
    )
    parser.add_argument(
        "--instrumentation-sentry",
        action="store_true",
        help="instrumentation phase: the instrumented server also runs Sentry",
    )
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds = 4, 2
        args.pipeline_jobs, args.latency_jobs, args.memory_jobs = 5000, 100, 10_000
        args.webhook_jobs = 2000
        args.fairness_trials, args.fairness_jobs, args.fairness_key_jobs = 20, 4000, 2000
        args.admin_rows, args.admin_bulk = 1_000_000, 10_000
        args.workflow_trials, args.workflow_chains = 3, 10
    if not shutil.which("wrk"):
        log("wrk is required: apt-get install wrk")
        return 2
    bench = Bench(args)
    started = time.time()
    try:
        log(f"setting up (logs in {bench.logs})")
        bench.setup()
        bench.start_web()
        for phase in args.phases.split(","):
            log(f"phase: {phase}")
            getattr(bench, f"phase_{phase.strip()}")()
    finally:
        bench.stop_all()
    table = report(bench.results, args)
    print(table)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "command": "python bench/run.py " + " ".join(sys.argv[1:]),
        "seconds": round(time.time() - started),
        "machine": machine(),
        "settings": vars(args),
        "results": bench.results,
    }
    (out / "latest.json").write_text(json.dumps(record, indent=2))
    log(f"results: {out / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
