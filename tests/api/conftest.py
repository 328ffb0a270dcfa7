"""The public API served on loopback with the whole pipeline behind it.

``api`` starts the local QStash server and the vidpipe app (uvicorn on a
loopback port; followers inside; steps simulated unless a test passes
providers), on SQLite and on Postgres. :class:`Client` speaks HTTP to it with
tokens minted for the embedded default's development secret.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.token import mint
from local.demo import server_sent_events
from tests.handlers.conftest import Pipeline, pipeline_factory  # noqa: F401 - the fixture is used here
from tests.support import wait_until

VIDEO_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 40
"""The first bytes of an MP4 file (enough for the magic-byte check; steps are simulated)."""


def fake_video(size: int = 200_000, seed: int = 0) -> bytes:
    body = bytes((i * 31 + seed) % 251 for i in range(size - len(VIDEO_HEAD)))
    return VIDEO_HEAD + body


@dataclass
class Client:
    """An HTTP client of the served app, acting as one user."""

    pipeline: Pipeline
    user: str
    role: str = "tutor"

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.pipeline.api.url, timeout=30)

    @property
    def token(self) -> str:
        return mint(self.pipeline.settings, self.user, self.role)

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **extra}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers(), **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def upload(self, content: bytes | None = None, filename: str = "lecture.mp4",
               content_type: str = "video/mp4", **kwargs: Any) -> httpx.Response:
        content = fake_video() if content is None else content
        return self.request("POST", "/api/video-processing/upload",
                            files={"file": (filename, content, content_type)}, **kwargs)

    def status(self, queue_id: str) -> dict[str, Any]:
        response = self.get(f"/api/video-processing/status/{queue_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_for(self, queue_id: str, statuses: tuple[str, ...] = ("completed", "failed", "cancelled"),
                 timeout: float = 30) -> dict[str, Any]:
        return dict(wait_until(
            lambda: (row := self.status(queue_id))["status"] in statuses and row,
            timeout, f"queue {queue_id} to reach {statuses}",
        ))

    def sse(self, queue_id: str, **headers: str) -> list[tuple[str, dict[str, Any]]]:
        """Every (event, data) of the queue's stream, until the server ends it."""
        received: list[tuple[str, dict[str, Any]]] = []
        with self.http.stream("GET", f"/api/video-processing/status/{queue_id}/stream",
                              headers=self.headers(**headers), timeout=60) as response:
            assert response.status_code == 200, response.read()
            for event, data, _ in server_sent_events(response.iter_lines()):
                received.append((event, json.loads(data)))
        return received

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def served(pipeline_factory: Callable[..., Pipeline], tmp_path: Path) -> Iterator[Callable[..., Pipeline]]:  # noqa: F811
    """Start a pipeline whose app serves the public API; overrides are settings by env name."""

    def make(providers: dict[str, Any] | None = None, **overrides: Any) -> Pipeline:
        overrides.setdefault("VIDPIPE_STORAGE_DIR", str(tmp_path / "storage"))
        overrides.setdefault("VIDPIPE_STREAM_POLL_SECONDS", 0.05)
        return pipeline_factory(providers, **overrides)

    yield make


@pytest.fixture
def clients() -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(pipeline: Pipeline, user: str, role: str = "tutor") -> Client:
        client = Client(pipeline, user, role)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
