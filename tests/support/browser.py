"""Real-browser tests: Playwright (the pip package) driving Debian's Chromium.

Playwright's own browser download cannot run here, so the tests launch the system Chromium by
``executable_path`` (``CHROMIUM`` overrides /usr/bin/chromium). .ci/run installs it when
missing; without it a browser test fails under CI and skips on a developer's machine
(tests/support/prerequisites.py).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from apps.staff.roles import ROLE_GROUPS
from tests.support.prerequisites import missing

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str:
    """The Chromium binary to drive; fails (CI) or skips (elsewhere) when there is none."""
    configured = os.environ.get("CHROMIUM")
    for candidate in ([configured] if configured else []) + list(CANDIDATES):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("chromium")
    if found:
        return found
    missing("Chromium is not installed (apt-get install chromium, or set CHROMIUM)")
    raise AssertionError("unreachable")


def launch_args() -> list[str]:
    # Root (CI, containers) cannot use Chromium's sandbox; /dev/shm is small in containers.
    return ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]


# Staff users for the console's browser tests, and logging one in.
PASSWORD = "a-long-test-password-1"


def staff(role: str) -> str:
    user = get_user_model().objects.create_user(f"{role}-1", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=ROLE_GROUPS[role]))
    return user.username


def log_in(page: Any, username: str) -> None:
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r".*/admin/$"))
