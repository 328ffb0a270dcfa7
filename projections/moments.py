"""The search index: a lecture's *moments* (transcript chunks with times), as a projection.

:class:`MomentsProjection` follows the event log like every other projection:

- ``Created`` records the lecture (owner, original file name) in ``search_lectures``;
- the embed step's ``StepCompleted`` replaces the queue's moments with the chunks
  that step stored (``video_embeddings``: text, start/end seconds, the vector, its
  model and dimension), and indexes their words (SQLite FTS5 / Postgres ``tsvector``);
- ``Completed``, ``Failed`` and ``Cancelled`` set the lecture's status: only
  completed lectures are searched.
- ``Deleted`` (the tutor deleted the lecture) removes the lecture and its moments;
  in a rebuild from event 0 too, so a deleted lecture never comes back.

Rows and the tracking position are written in one transaction, so the index is
built exactly once per event and resumes after a crash; ``make rebuild-projections``
rebuilds it from event 0, and processing a lecture's embeddings again replaces its
moments instead of adding to them.

Vectors are stored L2-normalised as little-endian float32 bytes, so exact search
is a dot product over batches read in id order (memory stays flat however large the
corpus). On Postgres with the ``vector`` extension (pgvector) the projection also
fills a ``vector`` column with one HNSW cosine index per dimension, and
:class:`MomentsReader` answers nearest-neighbour queries from it.

:class:`MomentsReader` is the query side: keyword candidates ranked BM25-like
(FTS5's ``bm25``; on Postgres ``ts_rank`` per term, length-normalised and weighted
by the term's inverse document frequency) and
semantic candidates ranked by cosine similarity, always among vectors of one
model and dimension (vectors of different models are never compared), always
among one owner's completed lectures.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from domain.queue import ProcessingQueue
from projections.views import ReadModelView, SqlSession

logger = logging.getLogger(__name__)

Q = ProcessingQueue
EMBED_STEP = "embed"
SCAN_BATCH = 4096
"""Rows per batch of an exact vector scan."""
HNSW_EF_SEARCH = 200
"""pgvector's ``hnsw.ef_search`` for moment queries (candidates examined; recall vs speed)."""
DISTANCE = "OPERATOR(public.<=>)"
"""pgvector's cosine distance, named with its schema (sessions set ``search_path`` to the read model's)."""


@dataclass(frozen=True)
class MomentRow:
    """One moment as stored: where it is, what is said, and which lecture it belongs to."""

    id: int
    queue_id: str
    chunk_index: int
    filename: str | None
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Ranked:
    """A moment id and its score under one retriever (higher is better)."""

    moment_id: int
    score: float


@dataclass(frozen=True)
class VectorSpace:
    """Vectors comparable with each other: one server's model at one dimension."""

    server: str
    model: str
    dimension: int


def normalised_bytes(vector: Sequence[float]) -> bytes:
    """The vector scaled to unit length, as little-endian float32 bytes."""
    array = np.asarray(vector, dtype="<f4")
    norm = float(np.linalg.norm(array))
    return (array / norm if norm else array).astype("<f4").tobytes()


def vector_literal(vector: Sequence[float]) -> str:
    """pgvector's text form ``[x,y,...]``."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


class MomentsProjection:
    """Writes ``search_lectures``, ``search_moments`` (and ``search_moments_fts`` on SQLite)."""

    name = "moments"

    def __init__(self, *, pgvector: bool = False) -> None:
        self.pgvector = pgvector

    def prepare(self, events: Sequence[Any]) -> None:
        """No side effects: everything happens in the transaction."""

    def reset(self, session: SqlSession) -> None:
        session.execute("DELETE FROM search_moments")
        session.execute("DELETE FROM search_lectures")
        if session.dialect == "sqlite":
            session.execute("DELETE FROM search_moments_fts")

    def apply(self, domain_event: Any, session: SqlSession) -> None:
        queue_id = str(domain_event.originator_id)
        if isinstance(domain_event, Q.Created):
            session.execute(
                "INSERT INTO search_lectures (queue_id, owner_id, filename, status, created_at) "
                "VALUES (:id, :owner, :filename, 'pending', :at) ON CONFLICT (queue_id) DO NOTHING",
                {"id": queue_id, "owner": domain_event.owner_id,
                 "filename": (domain_event.options or {}).get("filename"),
                 "at": domain_event.timestamp.isoformat()},
            )
        elif isinstance(domain_event, Q.StepCompleted) and domain_event.step == EMBED_STEP:
            self._replace_moments(session, queue_id)
        elif isinstance(domain_event, Q.Deleted):  # the tombstone: the lecture leaves the index
            self._delete_moments(session, queue_id)
            session.execute("DELETE FROM search_lectures WHERE queue_id = :id", {"id": queue_id})
        elif isinstance(domain_event, (Q.Completed, Q.Failed, Q.Cancelled)):
            status = {Q.Completed: "completed", Q.Failed: "failed", Q.Cancelled: "cancelled"}[type(domain_event)]
            session.execute(
                "UPDATE search_lectures SET status = :status WHERE queue_id = :id",
                {"status": status, "id": queue_id},
            )

    def _replace_moments(self, session: SqlSession, queue_id: str) -> None:
        lecture = session.fetchone("SELECT owner_id FROM search_lectures WHERE queue_id = :id", {"id": queue_id})
        if lecture is None:
            return
        self._delete_moments(session, queue_id)
        chunks = session.fetchall(
            "SELECT chunk_index, start_seconds, end_seconds, text, model, dimension, server, embedding "
            "FROM video_embeddings WHERE queue_id = :id ORDER BY chunk_index",
            {"id": queue_id},
        )
        for chunk in chunks:
            vector = _vector_of(chunk["embedding"])
            params = {
                "queue": queue_id, "index": chunk["chunk_index"], "owner": lecture["owner_id"],
                "start": chunk["start_seconds"], "end": chunk["end_seconds"], "text": chunk["text"],
                "server": chunk["server"], "model": chunk["model"], "dimension": len(vector),
                "embedding": normalised_bytes(vector),
            }
            if session.dialect == "sqlite":
                session.execute(
                    "INSERT INTO search_moments (queue_id, chunk_index, owner_id, start_seconds, end_seconds,"
                    " text, server, model, dimension, embedding) VALUES (:queue, :index, :owner, :start, :end,"
                    " :text, :server, :model, :dimension, :embedding)",
                    params,
                )
                session.execute(
                    "INSERT INTO search_moments_fts (rowid, text) VALUES (last_insert_rowid(), :text)",
                    {"text": chunk["text"]},
                )
            else:
                columns = ", embedding_vector" if self.pgvector else ""
                values = ", CAST(:vector AS public.vector)" if self.pgvector else ""
                session.execute(
                    "INSERT INTO search_moments (queue_id, chunk_index, owner_id, start_seconds, end_seconds,"
                    f" text, server, model, dimension, embedding{columns}) VALUES (:queue, :index, :owner,"
                    f" :start, :end, :text, :server, :model, :dimension, :embedding{values})",
                    {**params, "vector": vector_literal(vector)},
                )
                if self.pgvector:
                    ensure_hnsw_index(session, len(vector))

    @staticmethod
    def _delete_moments(session: SqlSession, queue_id: str) -> None:
        if session.dialect == "sqlite":
            session.execute(
                "DELETE FROM search_moments_fts WHERE rowid IN (SELECT id FROM search_moments WHERE queue_id = :id)",
                {"id": queue_id},
            )
        session.execute("DELETE FROM search_moments WHERE queue_id = :id", {"id": queue_id})


def _vector_of(raw: Any) -> list[float]:
    if isinstance(raw, str):
        return [float(x) for x in json.loads(raw)]
    return [float(x) for x in raw]


# ---------------------------------------------------------------- pgvector


def pgvector_available(view: ReadModelView) -> bool:
    """True when the Postgres server can load pgvector (``CREATE EXTENSION vector`` works)."""
    if view.dialect != "postgres":
        return False
    row = view.fetchone("SELECT 1 AS ok FROM pg_available_extensions WHERE name = 'vector'")
    return row is not None


def pgvector_version(view: ReadModelView) -> tuple[int, ...]:
    """The installed pgvector's version, ``()`` when it is not installed."""
    row = view.fetchone("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    return tuple(int(p) for p in re.findall(r"\d+", row["extversion"])) if row else ()


def enable_pgvector(view: ReadModelView) -> bool:
    """Create the extension and the ``vector`` column when pgvector is available; True if it is."""
    if not pgvector_available(view):
        return False
    with view.session() as session:
        session.execute("CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public")
        session.execute("ALTER TABLE search_moments ADD COLUMN IF NOT EXISTS embedding_vector public.vector")
    logger.info("search: pgvector is available; moments get HNSW cosine indexes")
    return True


def ensure_hnsw_index(session: SqlSession, dimension: int) -> None:
    """One HNSW cosine index per dimension (pgvector indexes need a fixed dimension)."""
    dimension = int(dimension)
    session.execute(
        f"CREATE INDEX IF NOT EXISTS search_moments_hnsw_{dimension} ON search_moments USING hnsw "
        f"((embedding_vector::public.vector({dimension})) public.vector_cosine_ops) WHERE dimension = {dimension}"
    )


# ---------------------------------------------------------------- queries


class MomentsReader:
    """Owner-scoped queries on the moments of completed lectures."""

    def __init__(self, view: ReadModelView, *, pgvector: bool = False) -> None:
        self.view = view
        self.pgvector = pgvector
        self.iterative_scan = pgvector and pgvector_version(view) >= (0, 8)
        """pgvector 0.8+ keeps scanning the HNSW graph until ``limit`` rows pass the owner filter."""

    def lecture(self, queue_id: str) -> dict[str, Any] | None:
        return self.view.fetchone(
            "SELECT queue_id, owner_id, filename, status FROM search_lectures WHERE queue_id = :id", {"id": queue_id}
        )

    def spaces(self, owner_id: str, queue_id: str | None = None) -> list[VectorSpace]:
        """The vector spaces of the owner's searchable moments (one per server, model and dimension)."""
        rows = self.view.fetchall(
            "SELECT DISTINCT m.server, m.model, m.dimension FROM search_moments m "
            "JOIN search_lectures l ON l.queue_id = m.queue_id "
            "WHERE m.owner_id = :owner AND l.status = 'completed' AND m.model IS NOT NULL"
            + (" AND m.queue_id = :queue" if queue_id else "")
            + " ORDER BY m.server, m.model, m.dimension",
            {"owner": owner_id, "queue": queue_id},
        )
        return [VectorSpace(r["server"] or "", r["model"], int(r["dimension"])) for r in rows]

    def keyword(self, owner_id: str, terms: Sequence[str], *, limit: int, queue_id: str | None = None) -> list[Ranked]:
        """Moments containing any of ``terms`` (stemmed), best first."""
        if not terms:
            return []
        scope = " AND m.queue_id = :queue" if queue_id else ""
        if self.view.dialect == "sqlite":
            match = " OR ".join(f'"{term}"' for term in terms)
            rows = self.view.fetchall(
                "SELECT m.id, bm25(search_moments_fts) AS rank FROM search_moments_fts "
                "JOIN search_moments m ON m.id = search_moments_fts.rowid "
                "JOIN search_lectures l ON l.queue_id = m.queue_id "
                "WHERE search_moments_fts MATCH :match AND m.owner_id = :owner AND l.status = 'completed'"
                f"{scope} ORDER BY rank, m.id LIMIT :limit",
                {"match": match, "owner": owner_id, "queue": queue_id, "limit": limit},
            )
            return [Ranked(int(r["id"]), -float(r["rank"])) for r in rows]
        return self._keyword_postgres(owner_id, terms, limit=limit, scope=scope, queue_id=queue_id)

    def _keyword_postgres(
        self, owner_id: str, terms: Sequence[str], *, limit: int, scope: str, queue_id: str | None
    ) -> list[Ranked]:
        """BM25-like on Postgres: each term's ``ts_rank`` weighted by its inverse document frequency.

        Postgres' ``ts_rank`` knows nothing of how rare a word is among the documents,
        so a question's common words weigh as much as its distinctive ones; the
        document frequencies are counted first (one pass over the owner's moments).
        """
        params: dict[str, Any] = {"owner": owner_id, "queue": queue_id, "limit": limit}
        queries = []
        for number, term in enumerate(terms):
            params[f"t{number}"] = term
            queries.append(f"plainto_tsquery('english', :t{number})")
        owned = (
            "FROM search_moments m JOIN search_lectures l ON l.queue_id = m.queue_id "
            f"WHERE m.owner_id = :owner AND l.status = 'completed'{scope}"
        )
        counts = self.view.fetchone(
            "SELECT COUNT(*) AS n, "
            + ", ".join(f"COUNT(*) FILTER (WHERE m.tsv @@ {q}) AS d{n}" for n, q in enumerate(queries))
            + f" {owned}",
            params,
        )
        total = int(counts["n"]) if counts else 0
        weighted = []
        for number, query in enumerate(queries):
            found = int(counts[f"d{number}"]) if counts else 0
            if found:
                params[f"w{number}"] = math.log(1 + (total - found + 0.5) / (found + 0.5))
                weighted.append(f":w{number} * ts_rank(m.tsv, {query}, 1)")
        if not weighted:
            return []
        rows = self.view.fetchall(
            f"SELECT m.id, {' + '.join(weighted)} AS rank {owned} AND m.tsv @@ ({' || '.join(queries)}) "
            "ORDER BY rank DESC, m.id LIMIT :limit",
            params,
        )
        return [Ranked(int(r["id"]), float(r["rank"])) for r in rows]

    def nearest(
        self, owner_id: str, space: VectorSpace, vector: Sequence[float], *, limit: int, queue_id: str | None = None
    ) -> list[Ranked]:
        """The moments most similar (cosine) to ``vector`` among ``space``'s vectors, best first."""
        if len(vector) != space.dimension:
            raise ValueError(f"a {len(vector)}-dimensional query cannot search {space.dimension}-dimensional vectors")
        if self.pgvector:
            return self._nearest_hnsw(owner_id, space, vector, limit=limit, queue_id=queue_id)
        return self._nearest_exact(owner_id, space, vector, limit=limit, queue_id=queue_id)

    def _nearest_exact(
        self, owner_id: str, space: VectorSpace, vector: Sequence[float], *, limit: int, queue_id: str | None
    ) -> list[Ranked]:
        query = np.frombuffer(normalised_bytes(vector), dtype="<f4")
        best: list[tuple[float, int]] = []  # a min-heap of (score, -id) of the best ``limit``
        after = 0
        scope = " AND m.queue_id = :queue" if queue_id else ""
        while True:
            rows = self.view.fetchall(
                "SELECT m.id, m.embedding FROM search_moments m JOIN search_lectures l ON l.queue_id = m.queue_id "
                "WHERE m.owner_id = :owner AND l.status = 'completed' AND m.server = :server AND m.model = :model "
                f"AND m.dimension = :dimension AND m.id > :after{scope} ORDER BY m.id LIMIT :batch",
                {"owner": owner_id, "server": space.server, "model": space.model, "dimension": space.dimension,
                 "after": after, "queue": queue_id, "batch": SCAN_BATCH},
            )
            if not rows:
                break
            ids = [int(r["id"]) for r in rows]
            matrix = np.frombuffer(b"".join(bytes(r["embedding"]) for r in rows), dtype="<f4")
            scores = matrix.reshape(len(rows), space.dimension) @ query
            for moment_id, score in zip(ids, scores.tolist(), strict=True):
                item = (score, -moment_id)
                if len(best) < limit:
                    heapq.heappush(best, item)
                elif item > best[0]:
                    heapq.heapreplace(best, item)
            after = ids[-1]
        return [Ranked(-neg_id, score) for score, neg_id in sorted(best, reverse=True)]

    def _nearest_hnsw(
        self, owner_id: str, space: VectorSpace, vector: Sequence[float], *, limit: int, queue_id: str | None
    ) -> list[Ranked]:
        dimension = int(space.dimension)
        scope = " AND m.queue_id = :queue" if queue_id else ""
        cast = f"public.vector({dimension})"
        with self.view.session(commit=False) as session:
            session.execute(f"SET LOCAL hnsw.ef_search = {HNSW_EF_SEARCH}")
            if self.iterative_scan:
                session.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            rows = session.fetchall(
                f"SELECT m.id, 1 - (m.embedding_vector::{cast} {DISTANCE} CAST(:vector AS {cast})) AS score "
                "FROM search_moments m JOIN search_lectures l ON l.queue_id = m.queue_id "
                f"WHERE m.dimension = {dimension} AND m.owner_id = :owner AND l.status = 'completed' "
                f"AND m.server = :server AND m.model = :model{scope} "
                f"ORDER BY m.embedding_vector::{cast} {DISTANCE} CAST(:vector AS {cast}) LIMIT :limit",
                {"vector": vector_literal(vector), "owner": owner_id, "server": space.server,
                 "model": space.model, "queue": queue_id, "limit": limit},
            )
        # pgvector's relaxed_order scan may return near-ties out of order: the ranking is ours to make.
        ranked = [Ranked(int(r["id"]), float(r["score"])) for r in rows]
        return sorted(ranked, key=lambda r: (-r.score, r.moment_id))

    def moments(self, ids: Sequence[int]) -> dict[int, MomentRow]:
        """The moments with these ids, with their lecture's file name."""
        if not ids:
            return {}
        params = {f"i{n}": int(moment_id) for n, moment_id in enumerate(ids)}
        rows = self.view.fetchall(
            "SELECT m.id, m.queue_id, m.chunk_index, l.filename, m.start_seconds, m.end_seconds, m.text "
            "FROM search_moments m JOIN search_lectures l ON l.queue_id = m.queue_id "
            f"WHERE m.id IN ({', '.join(':' + name for name in params)})",
            params,
        )
        return {
            int(r["id"]): MomentRow(int(r["id"]), r["queue_id"], int(r["chunk_index"]), r["filename"],
                                    float(r["start_seconds"]), float(r["end_seconds"]), r["text"])
            for r in rows
        }
