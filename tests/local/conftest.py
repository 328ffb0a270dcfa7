"""Fixtures for the local QStash server tests (the harness is in ``qstash_support``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from qstash import QStash
from tests.local.qstash_support import TOKEN, Destination, ProcessServer, ThreadedServer

from local.qstash import Settings
from local.qstash.settings import DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY


@pytest.fixture
def destination() -> Iterator[Destination]:
    server = Destination()
    yield server
    server.close()


@pytest.fixture
def qstash_factory(tmp_path: Path) -> Iterator[Callable[..., ThreadedServer]]:
    """Start servers with test settings (fast backoff, tmp database); stops them after."""
    servers: list[ThreadedServer] = []

    def start(**overrides: Any) -> ThreadedServer:
        fields: dict[str, Any] = {
            "db_path": tmp_path / "qstash.sqlite3",
            "token": TOKEN,
            "current_signing_key": DEV_CURRENT_SIGNING_KEY,
            "next_signing_key": DEV_NEXT_SIGNING_KEY,
            "backoff_scale": 0.001,
            "poll_interval_s": 0.2,
        }
        fields.update(overrides)
        server = ThreadedServer(Settings(**fields))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def qstash_server(qstash_factory: Callable[..., ThreadedServer]) -> ThreadedServer:
    return qstash_factory()


@pytest.fixture
def sdk_factory() -> Iterator[Callable[[ThreadedServer | str], QStash]]:
    """Official SDK clients (no client-side retries) pointed at a server."""
    clients: list[QStash] = []

    def make(server: ThreadedServer | str) -> QStash:
        base_url = server if isinstance(server, str) else server.url
        client = QStash(TOKEN, retry=False, base_url=base_url)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.http._client.close()


@pytest.fixture
def sdk(sdk_factory: Callable[[ThreadedServer | str], QStash], qstash_server: ThreadedServer) -> QStash:
    return sdk_factory(qstash_server)


@pytest.fixture
def http(qstash_server: ThreadedServer) -> Iterator[httpx.Client]:
    """A raw HTTP client on the server, authorised, for what the SDK cannot send."""
    with httpx.Client(
        base_url=qstash_server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    ) as client:
        yield client


@pytest.fixture
def process_factory(tmp_path: Path) -> Iterator[Callable[..., ProcessServer]]:
    processes: list[ProcessServer] = []

    def start(port: int | None = None) -> ProcessServer:
        server = ProcessServer(tmp_path / "qstash.sqlite3", tmp_path / "server.log", port)
        processes.append(server)
        return server

    yield start
    for server in processes:
        server.terminate()
