"""Fixtures for the storage tests: the fake MEGA server on a loopback port, storages on it.

One server per test session (deriving its account's keys costs a fraction of a
second); every test gets its own root folder in that account, so tests do not
see each other's files.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from handlers.storage.mega import MegaStorage
from local.mega import FakeMega, Settings, create_app

EMAIL = "tutor-storage@example.org"
PASSWORD = "correct horse battery staple"


class FakeMegaServer:
    """``local.mega`` served by uvicorn in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self._socket = socket.socket()
        # Accepted connections inherit this; without it every answer waits ~40 ms for a delayed ACK.
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(self.app, log_config=None, ws="none", lifespan="on", log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self._server.started, "fake MEGA server failed to start"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mega(self) -> FakeMega:
        fake: FakeMega = self.app.state.mega
        return fake

    def blobs(self) -> dict[str, bytes]:
        """What the server stores: handle to encrypted bytes."""
        return {path.name: path.read_bytes() for path in (self.settings.data_dir / "blobs").iterdir()}

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()


@pytest.fixture(scope="session")
def mega_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeMegaServer]:
    server = FakeMegaServer(
        Settings(data_dir=tmp_path_factory.mktemp("mega"), email=EMAIL, password=PASSWORD)
    )
    yield server
    server.stop()


@pytest.fixture
def mega_storage_factory(mega_server: FakeMegaServer, tmp_path: Path) -> Iterator[Any]:
    """MegaStorage instances on the fake server, each test in its own root folder; closed after."""
    storages: list[MegaStorage] = []
    root = f"vidpipe-test-{uuid.uuid4().hex[:10]}"

    def make(**options: Any) -> MegaStorage:
        fields: dict[str, Any] = {
            "email": EMAIL,
            "password": PASSWORD,
            "root": root,
            "api_url": mega_server.url,
            "retry_wait_s": 0.0,
            "timeout_s": 10.0,
            "spool_dir": tmp_path,
        }
        fields.update(options)
        storage = MegaStorage(**fields)
        storages.append(storage)
        return storage

    yield make
    mega_server.mega.fail_next(0)
    for storage in storages:
        storage.close()
