"""Project-level checks: migrations in sync, production settings refuse insecure defaults."""

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
    clean = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "config.settings", **env}
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


def test_production_starts_with_secure_settings() -> None:
    result = _import_settings(SECRET_KEY=GOOD_KEY)
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


def test_development_runs_on_embedded_defaults_with_nothing_set() -> None:
    result = _import_settings(CONVEYOR_ENV="development")
    assert result.returncode == 0, result.stderr
