"""Fixtures of the real-browser tests: one Chromium for the session, a live server (pytest-django's
``live_server``, in this process, on the test database) and a real Celery worker consuming the
job queue and the maintenance queue (the bulk actions' step)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.broker import empty_test_broker
from tests.support.browser import chromium_path, launch_args


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Chromium for the session (each test gets its own context: cookies and storage apart).
    Playwright's sync API keeps an event loop running in this thread, where Django refuses
    database calls unless told they are safe: they are (the loop only drives the browser),
    so the browser tests run with DJANGO_ALLOW_ASYNC_UNSAFE set."""
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - a dev dependency
        from tests.support.prerequisites import missing

        missing("playwright is not installed: make install-dev")
        raise
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=launch_args())
            yield browser
            browser.close()


@pytest.fixture(scope="module")
def console_worker(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """A worker for jobs (default queue) and for the maintenance steps the console starts."""
    from tests.support.processes import start_worker

    empty_test_broker()
    with django_db_blocker.unblock():
        process = start_worker(
            tmp_path_factory.mktemp("console-worker"), queues="default,maintenance"
        )
    yield process
    process.stop()


@pytest.fixture
def page(chromium: Any, live_server: Any) -> Iterator[Any]:
    context = chromium.new_context(base_url=live_server.url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()
