"""The live Conveyor of the client's tests (conveyor_live.py), started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conveyor_client import Client
from conveyor_live import LiveServer, running


@pytest.fixture(scope="session")
def conveyor_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with running(tmp_path_factory.mktemp("conveyor-live")) as server:
        yield server


@pytest.fixture
def client(conveyor_server: LiveServer) -> Iterator[Client]:
    with Client(conveyor_server.url, conveyor_server.tenant.api_key, timeout=10) as conveyor:
        yield conveyor
