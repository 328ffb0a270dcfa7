"""A whole pipeline on loopback: the local QStash server, the vidpipe app (step
webhooks, dispatcher and projection runner), and the real ``qstash`` SDK and
``qstash.Receiver`` between them. Parametrised over SQLite and Postgres.

Also what most handler tests share: a local ``storage`` in the test's folder and
``placeholder_audio``, a file a fake Whisper server never decodes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from qstash import QStash

from api.app import create_app
from api.settings import Settings
from handlers.providers.simulated import SimulatedProvider
from handlers.steps import StepProvider
from handlers.storage.local import LocalStorage
from local.qstash.settings import DEV_TOKEN
from tests.conftest import Store, open_store
from tests.local.qstash_support import ThreadedServer, local_qstash
from tests.support import ServedApp, reserve_port, wait_until

TERMINAL = ("completed", "failed", "cancelled")


@dataclass
class Pipeline:
    settings: Settings
    store: Store
    api: ServedApp
    qstash: ThreadedServer
    providers: Mapping[str, StepProvider]
    _clients: list[QStash] = field(default_factory=list)

    def sdk(self) -> QStash:
        """The official SDK pointed at the local server (closed when the pipeline stops)."""
        client = QStash(DEV_TOKEN, base_url=self.qstash.url)
        self._clients.append(client)
        return client

    def start(self, owner: str = "tutor-1") -> str:
        return str(self.store.app.start_processing(owner, "attachment", max_retries=self.settings.max_retries))

    def status(self, qid: str) -> dict[str, Any]:
        self.store.follower.catch_up()
        row = self.store.reader.status(qid)
        assert row is not None
        return row

    def wait_for_status(self, qid: str, statuses: tuple[str, ...] = TERMINAL, timeout: float = 30) -> dict[str, Any]:
        return wait_until(
            lambda: (row := self.status(qid))["status"] in statuses and row,
            timeout, f"queue {qid} to reach {statuses}",
        )

    def events(self, qid: str) -> list[Any]:
        return list(self.store.app.queue_events(qid))

    def event_names(self, qid: str) -> list[str]:
        return [type(e).__name__ for e in self.events(qid)]

    def stop(self) -> None:
        for client in self._clients:
            client.http._client.close()  # noqa: SLF001
        self.api.stop()
        self.qstash.stop()
        self.store.close()


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


@pytest.fixture
def placeholder_audio(tmp_path: Path) -> Path:
    path = tmp_path / "audio.ogg"
    path.write_bytes(b"OggS not really audio")
    return path


@pytest.fixture
def pipeline_factory(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Pipeline]]:
    pipelines: list[Pipeline] = []

    def make(
        providers: Mapping[str, StepProvider] | None = None,
        *,
        wrap: Callable[[Any], Any] | None = None,
        **overrides: Any,
    ) -> Pipeline:
        """``wrap``: an ASGI app put in front of vidpipe's (a gateway that fails some paths)."""
        qstash = local_qstash(tmp_path / f"qstash-{len(pipelines)}.sqlite3", backoff_scale=0.01)
        sock = reserve_port()
        values: dict[str, Any] = {
            "DATABASE_URL": database_url,
            "PORT": sock.getsockname()[1],
            "QSTASH_URL": qstash.url,
            "VIDEO_STEP_RETRY_BASE_SECONDS": 1,
            "VIDPIPE_CANCEL_POLL_SECONDS": 0.2,
            "VIDPIPE_PROJECTION_POLL_SECONDS": 0.02,
            "VIDPIPE_QSTASH_RETRY_DELAY": "200",
        }
        values.update(overrides)
        settings = Settings(**values)
        providers = providers or {}
        all_providers = {
            step: providers.get(step) or SimulatedProvider()
            for step in ("compress", "audio-convert", "transcribe", "embed")
        }
        app = create_app(settings, providers=all_providers)
        api = ServedApp(app if wrap is None else wrap(app), sock)
        pipeline = Pipeline(settings, open_store(database_url), api, qstash, all_providers)
        pipelines.append(pipeline)
        return pipeline

    yield make
    for pipeline in pipelines:
        pipeline.stop()
