"""The embedding store on SQLite and Postgres: replacing never duplicates, nearest never mixes models,
and a real model's query for JFK's sentence finds the JFK chunk."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError

from handlers.embedding_store import EmbeddedChunk, EmbeddingStore, cosine
from handlers.providers.embeddings import EmbeddingClient
from projections.database import DatabaseUrl
from tests.handlers.model_fakes import reference_embedding_server

pytestmark = pytest.mark.timeout(120)

JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)
UNRELATED = [
    "The recipe needs two cups of flour, an egg and a pinch of salt.",
    "Mitochondria produce most of the chemical energy a cell needs.",
    "Set the tent up before dark, and keep the stove away from it.",
]


@pytest.fixture(scope="module")
def minilm() -> Iterator[EmbeddingClient]:
    with reference_embedding_server() as url, EmbeddingClient(url, label="bge") as client:
        yield client


@pytest.fixture
def store(database_url: str) -> Iterator[EmbeddingStore]:
    embeddings = EmbeddingStore.open(DatabaseUrl.parse(database_url).event_store_env())
    try:
        yield embeddings
    finally:
        embeddings.view.close()


def chunk(index: int, vector: list[float], *, model: str = "m", text: str | None = None,
          server: str = "bge") -> EmbeddedChunk:
    return EmbeddedChunk(index, index * 10.0, index * 10.0 + 9.5, text or f"chunk {index}", tuple(vector), model, server)


def test_replace_twice_never_duplicates(store: EmbeddingStore) -> None:
    first = [chunk(i, [1.0, float(i), 0.5]) for i in range(4)]
    assert store.replace("q1", first) == 4
    store.replace("q2", [chunk(0, [0.0, 1.0, 0.0])])
    second = [chunk(i, [0.25, 0.5, float(i)], model="m2", server="e5") for i in range(3)]
    assert store.replace("q1", second) == 3
    assert store.replace("q1", second) == 3
    assert store.count("q1") == 3 and store.count("q2") == 1
    assert store.chunks("q1") == second
    assert store.chunks("q2")[0].embedding == (0.0, 1.0, 0.0)


def test_rows_round_trip_exactly(store: EmbeddingStore) -> None:
    vector = [0.1, -0.2, 1e-9, 3.141592653589793]
    store.replace("q", [EmbeddedChunk(0, 1.25, 7.5, "héllo — wörld", tuple(vector), "BAAI/bge-m3", "bge")])
    (back,) = store.chunks("q")
    assert back.embedding == tuple(vector)
    assert (back.index, back.start, back.end, back.text, back.model, back.server, back.dimension) == (
        0, 1.25, 7.5, "héllo — wörld", "BAAI/bge-m3", "bge", 4
    )
    row = store.view.fetchone("SELECT dimension FROM video_embeddings WHERE queue_id = 'q'")
    assert row == {"dimension": 4}


def test_a_failed_replace_keeps_the_previous_rows(store: EmbeddingStore) -> None:
    store.replace("q", [chunk(0, [1.0, 0.0])])
    with pytest.raises((IntegrityError, sqlite3.IntegrityError, psycopg.IntegrityError)):
        store.replace("q", [chunk(1, [0.0, 1.0]), chunk(1, [0.0, 1.0])])
    assert [c.index for c in store.chunks("q")] == [0]


def test_nearest_compares_only_the_querys_model_and_dimension(store: EmbeddingStore) -> None:
    store.replace("q", [
        chunk(0, [1.0, 0.0, 0.0], model="a"),
        chunk(1, [0.0, 1.0, 0.0], model="a"),
        chunk(2, [0.9, 0.1, 0.0], model="a"),
        chunk(3, [1.0, 0.0, 0.0], model="b"),
        chunk(4, [1.0, 0.0], model="a"),
    ])
    matches = store.nearest("q", [1.0, 0.0, 0.0], k=2, model="a")
    assert [m.chunk.index for m in matches] == [0, 2]
    assert matches[0].score == pytest.approx(1.0)
    assert [m.chunk.index for m in store.nearest("q", [1.0, 0.0, 0.0], k=10, model="a")] == [0, 2, 1]
    assert [m.chunk.index for m in store.nearest("q", [1.0, 0.0, 0.0], k=10, model="b")] == [3]
    assert store.nearest("q", [1.0, 0.0, 0.0], model="c") == []
    assert store.nearest("other", [1.0, 0.0, 0.0], model="a") == []


def test_query_for_the_sentence_finds_the_jfk_chunk(store: EmbeddingStore, minilm: EmbeddingClient) -> None:
    texts = [UNRELATED[0], JFK_TEXT, *UNRELATED[1:]]
    result = minilm.embed(texts)
    assert result.dimension == 384
    store.replace("lecture", [chunk(i, v, model=result.model, text=t) for i, (t, v) in
                              enumerate(zip(texts, result.vectors, strict=True))])
    query = minilm.embed(["ask what you can do for your country"])
    (best, *rest) = store.nearest("lecture", query.vectors[0], k=4, model=query.model)
    assert best.chunk.text == JFK_TEXT
    assert best.score > rest[0].score + 0.2
    assert len(rest) == 3


def test_cosine() -> None:
    assert cosine([1, 0], [0, 1]) == 0
    assert cosine([1, 1], [2, 2]) == pytest.approx(1.0)
    assert cosine([0, 0], [1, 1]) == 0.0
    with pytest.raises(ValueError, match="dimension"):
        cosine([1.0], [1.0, 2.0])
