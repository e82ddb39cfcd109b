"""A throwaway PostgreSQL primary and streaming replica for the replica tests.

``initdb`` into a temporary directory, the primary on a free loopback port, the replica made
with ``pg_basebackup -R -X stream`` on another, both started with ``pg_ctl``; stopped and
deleted by ``stop()`` whatever happened. The server refuses to run as root, so when the tests
run as root every server command runs as the ``postgres`` user (``runuser``) and the directory
belongs to it. Nothing listens beyond 127.0.0.1, and the sockets live in the temporary
directory, not in the system's.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from tests.support.processes import free_port, wait_for

DATABASE = "conveyor"


def postgres_bin() -> Path | None:
    """The directory of initdb/pg_ctl/pg_basebackup (PG_BIN, else the newest installed)."""
    if configured := os.environ.get("PG_BIN"):
        return Path(configured)
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


class Server:
    def __init__(self, cluster: PgCluster, name: str, port: int) -> None:
        self.cluster = cluster
        self.name = name
        self.port = port
        self.data = cluster.root / name
        self.log = cluster.root / f"{name}.log"

    def url(self, database: str = DATABASE) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = DATABASE, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=5, **kwargs)

    def sql(self, query: str, params: Any = None, database: str = DATABASE) -> list[Any]:
        with self.connect(database) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def start(self) -> None:
        self.cluster.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self.cluster.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (
            self.cluster.run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0
        )


class PgCluster:
    """``with PgCluster() as cluster:`` a primary and its streaming replica, both running."""

    def __init__(self) -> None:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL server binaries not found (set PG_BIN)")
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="conveyor-replica-"))
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.root.chmod(0o700)
        self.primary = Server(self, "primary", free_port())
        self.replica = Server(self, "replica", free_port())

    def run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin / program), *args]
        if self.as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=self.root)
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
                + self._logs()
            )
        return result

    def _logs(self) -> str:
        text = ""
        for server in (self.primary, self.replica):
            with contextlib.suppress(OSError):
                text += f"\n--- {server.name} log ---\n" + server.log.read_text()[-3000:]
        return text

    def _configure(self, server: Server) -> None:
        # Appended last, so these win over what initdb or pg_basebackup wrote.
        settings = {
            "port": str(server.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.root}'",
            "wal_level": "replica",
            "max_wal_senders": "4",
            "hot_standby": "on",
            # Throwaway data: no need to survive a crash.
            "fsync": "off",
            "full_page_writes": "off",
            "shared_buffers": "32MB",
            "max_connections": "50",
            "autovacuum": "off",
            "log_min_messages": "warning",
        }
        conf = "\n".join(f"{name} = {value}" for name, value in settings.items())
        with (server.data / "postgresql.conf").open("a") as f:
            f.write(f"\n# conveyor tests\n{conf}\n")

    def start(self) -> PgCluster:
        primary, replica = self.primary, self.replica
        self.run(
            "initdb", "-D", str(primary.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        self._configure(primary)
        primary.start()
        primary.sql(f"CREATE DATABASE {DATABASE}", database="postgres")
        self.run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
            "-D", str(replica.data), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync",
        )  # fmt: skip
        self._configure(replica)
        replica.start()
        wait_for(self.streaming, timeout=30, interval=0.1)
        return self

    def streaming(self) -> bool:
        rows = self.primary.sql(
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
            database="postgres",
        )
        return bool(rows and rows[0][0] > 0)

    def wait_replayed(self, timeout: float = 30) -> None:
        """Until the replica has replayed everything the primary has written so far."""
        (target,) = self.primary.sql("SELECT pg_current_wal_lsn()::text", database="postgres")[0]

        def caught_up() -> bool:
            rows = self.replica.sql(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target], database="postgres"
            )
            return bool(rows[0][0])

        wait_for(caught_up, timeout=timeout, interval=0.05)

    def pause_replay(self) -> None:
        self.replica.sql("SELECT pg_wal_replay_pause()", database="postgres")
        wait_for(
            lambda: self.replica.sql(
                "SELECT pg_get_wal_replay_pause_state() = 'paused'", database="postgres"
            )[0][0],
            timeout=10,
        )

    def resume_replay(self) -> None:
        self.replica.sql("SELECT pg_wal_replay_resume()", database="postgres")

    def ensure_healthy(self) -> None:
        """Running, streaming and replaying, whatever the previous test left behind."""
        if not self.replica.running():
            self.replica.start()
        wait_for(self.streaming, timeout=30, interval=0.1)
        self.resume_replay()
        self.wait_replayed()

    def stop(self) -> None:
        for server in (self.replica, self.primary):
            with contextlib.suppress(Exception):
                if server.running():
                    server.stop("immediate")
        # A server that would not stop must not keep the directory alive either.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(
            (s.data / "postmaster.pid").exists() for s in (self.primary, self.replica)
        ):
            time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.stop()
