"""Project-level checks: migrations in sync, settings refuse what they cannot run on safely."""

from __future__ import annotations

import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.django_db
def test_migrations_are_in_sync_with_the_models() -> None:
    call_command("makemigrations", "--check", "--dry-run", stdout=StringIO())


def _import_settings(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "CONVEYOR_ENV_FILE": "",  # not the checkout's .env, which `make run` may have written
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


GOOD_KEY = "k3Jd9f0s8Hq2mZx7Lp4Wv1Nb6Tc5Ry0Ue3Ia8Oo2Sd"


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({}, "SECRET_KEY is not set"),
        ({"SECRET_KEY": "conveyor-insecure-development-key-never-use-in-production"}, "too weak"),
        ({"SECRET_KEY": "short"}, "too weak"),
        ({"SECRET_KEY": GOOD_KEY, "DEBUG": "true"}, "DEBUG is on"),
        ({"SECRET_KEY": GOOD_KEY, "ALLOWED_HOSTS": "*"}, "ALLOWED_HOSTS"),
    ],
)
def test_production_refuses_insecure_settings(env: dict[str, str], problem: str) -> None:
    result = _import_settings(**env)
    assert result.returncode != 0
    assert problem in result.stderr


SERVICES = {
    "DATABASE_URL": "postgres://conveyor@db.internal:5432/conveyor",
    "REDIS_URL": "redis://redis.internal:6379/0",
}


@pytest.mark.parametrize("missing", ["DATABASE_URL", "REDIS_URL"])
def test_production_refuses_to_start_without_its_database_or_redis(missing: str) -> None:
    """No silent fallback to the development defaults (a file cache, the filesystem broker)."""
    env = {k: v for k, v in SERVICES.items() if k != missing}
    result = _import_settings(SECRET_KEY=GOOD_KEY, **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"{missing} is not set" in result.stderr
    assert "started" not in result.stdout


def test_production_starts_with_secure_settings() -> None:
    result = _import_settings(SECRET_KEY=GOOD_KEY, **SERVICES)
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


def test_development_without_a_database_url_says_how_to_get_one() -> None:
    result = _import_settings(CONVEYOR_ENV="development")
    assert result.returncode != 0
    assert "DATABASE_URL is not set" in result.stderr
    assert "`make run` starts an embedded PostgreSQL" in result.stderr


def test_development_runs_without_redis_on_local_defaults() -> None:
    result = _import_settings(CONVEYOR_ENV="development", DATABASE_URL=SERVICES["DATABASE_URL"])
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("url", ["sqlite:///var/conveyor.sqlite3", "mysql://u@h/conveyor"])
def test_any_database_but_postgresql_is_refused(url: str) -> None:
    result = _import_settings(CONVEYOR_ENV="development", DATABASE_URL=url)
    assert result.returncode != 0
    assert "Conveyor runs on PostgreSQL only" in result.stderr


def test_a_unix_socket_url_sets_the_host() -> None:
    """The embedded server's URL form (config/devdb.py): libpq's ``?host=`` socket directory."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.conf import settings; d = settings.DATABASES['default'];"
            "print(d['HOST'], d['NAME'], 'host' in d['OPTIONS'])",
        ],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "CONVEYOR_ENV_FILE": "",
            "CONVEYOR_ENV": "development",
            "DATABASE_URL": "postgresql://postgres:@/conveyor?host=/srv/conveyor/var/postgres",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["/srv/conveyor/var/postgres", "conveyor", "False"]
