"""Shared fixtures: an event store and read model on SQLite and on real Postgres.

``database_url`` is parametrised over both dialects, so every test that uses it
(directly or through ``store``) runs twice. Postgres tests run against the
server on 127.0.0.1:5432 (``VIDPIPE_TEST_POSTGRES`` overrides the URL), each in
a schema of its own that is dropped afterwards.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from domain import VideoProcessing  # noqa: E402
from projections.database import DatabaseUrl  # noqa: E402
from projections.follower import EventFollower  # noqa: E402
from projections.queue_status import QueueStatusProjection, QueueStatusReader  # noqa: E402
from projections.views import ReadModelView, open_view  # noqa: E402

POSTGRES_URL = os.environ.get("VIDPIPE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
SHARED_MEDIA = ROOT.parent / "shared" / "media"


@pytest.fixture(scope="session")
def postgres_available() -> None:
    try:
        psycopg.connect(DatabaseUrl.parse(POSTGRES_URL).conninfo(), connect_timeout=3).close()
    except psycopg.OperationalError as error:  # pragma: no cover - CI always has it
        pytest.fail(f"Postgres is required for the Postgres half of the suite: {error}")


def make_postgres_schema() -> tuple[str, str]:
    """A fresh schema on the test server; returns (url, schema)."""
    schema = f"vidpipe_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(DatabaseUrl.parse(POSTGRES_URL).conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{POSTGRES_URL}?schema={schema}", schema


def drop_postgres_schema(schema: str) -> None:
    with psycopg.connect(DatabaseUrl.parse(POSTGRES_URL).conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/vidpipe.db"
        return
    request.getfixturevalue("postgres_available")
    url, schema = make_postgres_schema()
    try:
        yield url
    finally:
        drop_postgres_schema(schema)


@dataclass
class Store:
    """An application, its read-model view and the queue-status follower, wired up."""

    url: str
    app: VideoProcessing
    view: ReadModelView
    follower: EventFollower
    reader: QueueStatusReader

    def close(self) -> None:
        self.follower.stop()
        self.view.close()
        self.app.close()


def open_store(url: str, **env: str) -> Store:
    store_env = {**DatabaseUrl.parse(url).event_store_env(), **env}
    app = VideoProcessing(env=store_env)
    view = open_view(store_env)
    follower = EventFollower(app, view, QueueStatusProjection(), poll_interval=0.01)
    return Store(url, app, view, follower, QueueStatusReader(view))


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = open_store(database_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def memory_app() -> Iterator[VideoProcessing]:
    app = VideoProcessing(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield app
    app.close()


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's folder of generated media (:mod:`tests.mediafiles`): each file is made once per run."""
    from tests.mediafiles import media_directory

    return media_directory(tmp_path_factory)


@pytest.fixture(scope="session")
def model_servers() -> Iterator[dict[str, str]]:
    """The reference Whisper and embedding servers, loaded once for the whole run."""
    import httpx

    from local.models import embeddings as embedding_server
    from local.models import transcription as whisper_server
    from local.models.settings import EmbeddingSettings, ModelServerSettings, TranscriptionSettings
    from tests.support import ServedApp, reserve_port, wait_until

    def loaded(url: str) -> bool:
        try:
            return bool(httpx.get(f"{url}/health", timeout=2).json()["status"] == "ready")
        except httpx.HTTPError:
            return False

    whisper = ServedApp(
        whisper_server.create_app(TranscriptionSettings(cpu_threads=2, server=ModelServerSettings())), reserve_port()
    )
    embedder = ServedApp(embedding_server.create_app(EmbeddingSettings(server=ModelServerSettings())), reserve_port())
    try:
        wait_until(lambda: loaded(whisper.url) and loaded(embedder.url), 180, "the models to load")
        yield {"whisper": whisper.url, "embeddings": embedder.url}
    finally:
        whisper.stop()
        embedder.stop()
