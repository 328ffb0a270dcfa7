"""The embedding client (OpenAI and TEI dialects) and the embed step with its BGE → E5 fallback,
against the reference embedding server on loopback and fake servers that sleep or fail."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from handlers.embedding_store import EmbeddingStore
from handlers.errors import PermanentError, ServerSleeping, TransientError
from handlers.providers.embeddings import Embedder, EmbeddingClient, api_base
from handlers.steps import StepContext, StepJob
from handlers.storage import artifact_key
from handlers.storage.local import LocalStorage
from handlers.transcripts import Segment, Transcript, encoded, write_json
from projections.database import DatabaseUrl
from tests.handlers.model_fakes import (
    Seen,
    error,
    fake_server,
    fake_vector,
    loading,
    openai_embeddings,
    plain,
    reference_embedding_server,
    sleeping_page,
)

pytestmark = pytest.mark.timeout(120)

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
OWNER, QUEUE = "tutor-1", "queue-1"
JFK_SEGMENTS = [
    Segment(0.0, 3.0, "And so my fellow Americans,"),
    Segment(3.0, 7.5, "ask not what your country can do for you,"),
    Segment(7.5, 11.0, "ask what you can do for your country."),
]
UNRELATED = [
    "The recipe needs two cups of flour, an egg and a pinch of salt.",
    "Mitochondria produce most of the chemical energy a cell needs.",
    "Set the tent up before dark, and keep the stove away from it.",
]


@pytest.fixture(scope="module")
def minilm_url() -> Iterator[str]:
    with reference_embedding_server() as url:
        yield url


@pytest.fixture(scope="module")
def never_wakes_url() -> Iterator[str]:
    """The reference server with MODEL_SERVER_NEVER_WAKE: 503 "is currently loading" forever."""
    with reference_embedding_server(never_wake=True, estimated_time=30.0) as url:
        yield url


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddingStore]:
    embeddings = EmbeddingStore.open(DatabaseUrl.parse(f"sqlite:///{tmp_path}/vidpipe.db").event_store_env())
    yield embeddings
    embeddings.view.close()


def lecture(storage: LocalStorage, segments: list[Segment] | None = None, queue: str = QUEUE) -> StepJob:
    """A stored transcript (JFK's sentence, then unrelated ones) and the embed job that reads it."""
    if segments is None:
        segments = [*JFK_SEGMENTS, *(Segment(20.0 + 5 * i, 24.0 + 5 * i, t) for i, t in enumerate(UNRELATED))]
    key = artifact_key(OWNER, queue, "transcript_json")
    storage.put_stream(key, encoded(write_json(Transcript(tuple(segments), "en", 40.0, "tiny.en"))))
    return StepJob(queue, OWNER, "attachment-1", "embed", 1, {}, {"transcribe": {"transcript_json": key}})


class Progress:
    def __init__(self) -> None:
        self.values: list[int] = []
        self.context = StepContext(lambda percent, detail: self.values.append(percent), min_interval=0)


def answer_embeddings(model: str = "BAAI/bge-m3", dimension: int = 8):  # type: ignore[no-untyped-def]
    def answer(request: Request, seen: Seen) -> Response:
        return openai_embeddings(seen.json["input"], dimension=dimension, model=model)

    return answer


# --- the client on the reference server --------------------------------------------------


def test_openai_dialect_on_the_reference_server(minilm_url: str) -> None:
    with EmbeddingClient(minilm_url + "/v1", label="bge", api="openai") as client:
        result = client.embed(["first text", "second text"])
    assert result.model == MINILM and result.dimension == 384
    assert len(result.vectors) == 2 and all(len(v) == 384 for v in result.vectors)


def test_tei_dialect_on_the_reference_server(minilm_url: str) -> None:
    with EmbeddingClient(minilm_url, label="e5", api="tei") as tei, \
            EmbeddingClient(minilm_url, label="e5", api="openai") as openai:
        by_tei, by_openai = tei.embed(["ask not"]), openai.embed(["ask not"])
    assert by_tei.model == MINILM and by_tei.dimension == 384
    assert by_tei.vectors[0] == pytest.approx(by_openai.vectors[0], abs=1e-5)


def test_batches(minilm_url: str) -> None:
    with EmbeddingClient(minilm_url, label="bge", batch_size=2) as client:
        batches = list(client.embed_batches([f"text number {i}" for i in range(5)]))
    assert [len(b.vectors) for b in batches] == [2, 2, 1]


def test_auto_switches_to_tei_when_the_server_has_no_openai_route() -> None:
    def tei_only(request: Request, seen: Seen) -> Response:
        if seen.path == "/embed":
            return JSONResponse([fake_vector(t, 6) for t in seen.json["inputs"]])
        if seen.path == "/info":
            return JSONResponse({"model_id": "intfloat/multilingual-e5-small"})
        return JSONResponse({"error": "Not Found"}, status_code=404)

    with fake_server(tei_only) as server, EmbeddingClient(server.url, label="e5") as client:
        first = client.embed(["a", "b"])
        second = client.embed(["c"])
    assert (first.model, first.dimension, len(second.vectors)) == ("intfloat/multilingual-e5-small", 6, 1)
    assert [s.path for s in server.seen if s.method == "POST"] == ["/v1/embeddings", "/embed", "/embed"]


def test_request_shape_and_bearer_token() -> None:
    with fake_server(answer_embeddings()) as server, \
            EmbeddingClient(server.url, label="bge", api_key="hf_x", model="BAAI/bge-m3") as client:
        client.embed(["hello"])
    (seen,) = server.seen
    assert seen.headers["authorization"] == "Bearer hf_x"
    assert seen.json == {"input": ["hello"], "model": "BAAI/bge-m3"}


def test_api_base_accepts_every_spelling() -> None:
    for url in ("http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/embeddings", "http://h:1/embed"):
        assert api_base(url) == "http://h:1"


@pytest.mark.parametrize(
    ("handler", "kind", "words"),
    [
        (lambda r, s: loading(12.0), ServerSleeping, "is loading"),
        (lambda r, s: sleeping_page(), ServerSleeping, "sleeping"),
        (lambda r, s: plain(502, "Bad Gateway"), TransientError, "502"),
        (lambda r, s: plain(504), TransientError, "504"),
        (lambda r, s: error(401, "Authorization header is invalid"), PermanentError, "check HF_TOKEN"),
        (lambda r, s: error(413, "'input' has 200 texts, over the limit of 128"), PermanentError, "too large"),
        (lambda r, s: JSONResponse({"data": "nope"}), TransientError, "not embeddings"),
        (lambda r, s: openai_embeddings(["only one"]), TransientError, "1 vectors for 2 texts"),
    ],
    ids=["loading", "html", "502", "504", "401", "413", "malformed", "count"],
)
def test_failures_are_classified(handler, kind, words) -> None:  # type: ignore[no-untyped-def]
    with fake_server(handler) as server, EmbeddingClient(server.url, label="bge", token_env="HF_TOKEN") as client:
        with pytest.raises(kind) as caught:
            client.embed(["a", "b"])
    assert type(caught.value) is kind
    assert words in str(caught.value) and f"BGE embedding server ({client.server.host})" in str(caught.value)


# --- the embed step ----------------------------------------------------------------------------


def test_embed_step_on_bge(minilm_url: str, storage: LocalStorage, store: EmbeddingStore) -> None:
    progress = Progress()
    with EmbeddingClient(minilm_url, label="bge", batch_size=2) as bge:
        step = Embedder(bge, storage, store, max_chars=60, overlap_segments=1)
        result = step.run(lecture(storage), progress.context)
        again = step.run(lecture(storage), Progress().context)
        query = bge.embed(["ask what you can do for your country"])
    n = result.outputs["chunks"]
    assert result.outputs == {"chunks": n, "model": MINILM, "dimension": 384, "server": "bge"}
    assert again.outputs == result.outputs
    assert (result.provider, result.model) == ("bge", MINILM)
    rows = store.chunks(QUEUE)
    assert len(rows) == n >= 4
    assert {(c.server, c.model, c.dimension) for c in rows} == {("bge", MINILM, 384)}
    assert progress.values == sorted(progress.values) and len(progress.values) >= 2
    best = store.nearest(QUEUE, query.vectors[0], k=1, model=query.model)[0]
    assert "ask what you can do" in best.chunk.text and best.chunk.end <= 11.0


def test_bge_never_wakes_so_e5_serves_every_chunk(
    never_wakes_url: str, minilm_url: str, storage: LocalStorage, store: EmbeddingStore
) -> None:
    with EmbeddingClient(never_wakes_url, label="bge") as bge, EmbeddingClient(minilm_url, label="e5") as e5:
        result = Embedder(bge, storage, store, fallback=e5, max_chars=60).run(lecture(storage), Progress().context)
    assert result.outputs["server"] == "e5" and result.provider == "e5"
    assert result.outputs["dimension"] == 384
    rows = store.chunks(QUEUE)
    assert rows and {c.server for c in rows} == {"e5"}


def test_bge_asleep_for_two_requests_then_serves(storage: LocalStorage, store: EmbeddingStore) -> None:
    embeddings = answer_embeddings()

    def answer(request: Request, seen: Seen) -> Response:
        return loading(5.0) if len(server.seen) <= 2 else embeddings(request, seen)

    with fake_server(answer) as server, EmbeddingClient(server.url, label="bge") as bge:
        step = Embedder(bge, storage, store)
        for _ in range(2):
            with pytest.raises(ServerSleeping) as caught:
                step.run(lecture(storage), Progress().context)
            assert caught.value.retry_after == 5.0
        result = step.run(lecture(storage), Progress().context)
    assert result.outputs["server"] == "bge" and result.outputs["dimension"] == 8
    assert store.count(QUEUE) == result.outputs["chunks"]


def test_refused_bge_falls_back_to_e5(storage: LocalStorage, store: EmbeddingStore) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with fake_server(answer_embeddings("intfloat/e5-small", 4)) as e5_server, \
                EmbeddingClient(dead, label="bge") as bge, EmbeddingClient(e5_server.url, label="e5") as e5:
            result = Embedder(bge, storage, store, fallback=e5).run(lecture(storage), Progress().context)
    assert result.outputs["server"] == "e5" and result.model == "intfloat/e5-small"


def test_both_down_raises_the_longer_hint(storage: LocalStorage, store: EmbeddingStore) -> None:
    with fake_server(lambda r, s: loading(20.0)) as bge_server, \
            fake_server(lambda r, s: plain(502, "Bad Gateway", **{"Retry-After": "5"})) as e5_server, \
            EmbeddingClient(bge_server.url, label="bge") as bge, EmbeddingClient(e5_server.url, label="e5") as e5:
        with pytest.raises(ServerSleeping) as caught:
            Embedder(bge, storage, store, fallback=e5).run(lecture(storage), Progress().context)
    assert caught.value.retry_after == 20.0
    assert "BGE embedding server" in str(caught.value) and "E5 embedding server" in str(caught.value)
    assert store.count(QUEUE) == 0


def test_without_e5_there_is_no_fallback(storage: LocalStorage, store: EmbeddingStore) -> None:
    with fake_server(lambda r, s: plain(504)) as bge_server, EmbeddingClient(bge_server.url, label="bge") as bge:
        with pytest.raises(TransientError, match="504"):
            Embedder(bge, storage, store).run(lecture(storage), Progress().context)
    assert len(bge_server.seen) == 1


def test_a_permanent_failure_does_not_fall_back(storage: LocalStorage, store: EmbeddingStore) -> None:
    with fake_server(lambda r, s: error(403, "forbidden")) as bge_server, \
            fake_server(answer_embeddings()) as e5_server, \
            EmbeddingClient(bge_server.url, label="bge", token_env="HF_TOKEN") as bge, \
            EmbeddingClient(e5_server.url, label="e5") as e5:
        with pytest.raises(PermanentError, match="rejected our credentials"):
            Embedder(bge, storage, store, fallback=e5).run(lecture(storage), Progress().context)
    assert e5_server.seen == []


def test_an_empty_transcript_stores_nothing(storage: LocalStorage, store: EmbeddingStore) -> None:
    store.replace(QUEUE, [])
    with EmbeddingClient("http://127.0.0.1:9", label="bge") as bge:
        result = Embedder(bge, storage, store).run(lecture(storage, [Segment(0, 1, " ")]), Progress().context)
    assert result.outputs["chunks"] == 0 and store.count(QUEUE) == 0


def test_missing_transcript_is_permanent(storage: LocalStorage, store: EmbeddingStore) -> None:
    with EmbeddingClient("http://127.0.0.1:9", label="bge") as bge:
        step = Embedder(bge, storage, store)
        with pytest.raises(PermanentError, match="no transcript"):
            step.run(StepJob(QUEUE, OWNER, "a", "embed", 1, {}, {}), Progress().context)
        missing = StepJob(QUEUE, OWNER, "a", "embed", 1, {}, {"transcribe": {"transcript_json": "t/q/x.json"}})
        with pytest.raises(PermanentError, match="missing from storage"):
            step.run(missing, Progress().context)


def test_ping_wakes_both_servers(minilm_url: str, never_wakes_url: str, storage: LocalStorage,
                                 store: EmbeddingStore) -> None:
    with EmbeddingClient(never_wakes_url, label="bge") as bge, EmbeddingClient(minilm_url, label="e5") as e5:
        assert bge.ping() is False and e5.ping() is True
        assert Embedder(bge, storage, store, fallback=e5).ping() is True


def test_a_broken_fallback_does_not_fail_the_video_while_bge_sleeps(
    storage: LocalStorage, store: EmbeddingStore
) -> None:
    with fake_server(lambda r, s: loading(15.0)) as bge_server, \
            fake_server(lambda r, s: error(401, "bad token")) as e5_server, \
            EmbeddingClient(bge_server.url, label="bge") as bge, \
            EmbeddingClient(e5_server.url, label="e5", token_env="E5_API_KEY") as e5:
        with pytest.raises(ServerSleeping) as caught:
            Embedder(bge, storage, store, fallback=e5).run(lecture(storage), Progress().context)
    assert caught.value.retry_after == 15.0
    assert "check E5_API_KEY" in str(caught.value)
