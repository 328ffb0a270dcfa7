"""Embeddings of a queue's transcript chunks, in the read model's database.

One row per chunk in ``video_embeddings`` (``sql/<dialect>/003_video_embeddings.sql``):
its text, times, the vector, and which model (and dimension) on which server
made it. :meth:`EmbeddingStore.replace` swaps a queue's rows in one
transaction, so writing again (a retried or redelivered embed step) never
duplicates. :meth:`EmbeddingStore.nearest` ranks by cosine similarity in
Python, comparing only vectors of the query's model and dimension.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from projections.views import ReadModelView, Row, open_view


@dataclass(frozen=True)
class EmbeddedChunk:
    """A transcript chunk and its embedding."""

    index: int
    start: float
    end: float
    text: str
    embedding: tuple[float, ...]
    model: str
    server: str
    """Which server made it: ``"bge"`` or ``"e5"``."""

    @property
    def dimension(self) -> int:
        return len(self.embedding)


@dataclass(frozen=True)
class Match:
    score: float
    """Cosine similarity with the query, in -1..1."""
    chunk: EmbeddedChunk


class EmbeddingStore:
    """Chunks and their vectors, per queue, on the event store's database."""

    def __init__(self, view: ReadModelView) -> None:
        self.view = view

    @classmethod
    def open(cls, event_store_env: Mapping[str, str]) -> EmbeddingStore:
        return cls(open_view(event_store_env))

    def replace(self, queue_id: str, chunks: Sequence[EmbeddedChunk]) -> int:
        """Make ``chunks`` the queue's only rows (atomically); returns how many."""
        with self.view.session() as session:
            session.execute("DELETE FROM video_embeddings WHERE queue_id = :queue_id", {"queue_id": queue_id})
            for chunk in chunks:
                session.execute(
                    "INSERT INTO video_embeddings (queue_id, chunk_index, start_seconds, end_seconds, text,"
                    " model, dimension, server, embedding) VALUES (:queue_id, :chunk_index, :start, :end,"
                    " :text, :model, :dimension, :server, :embedding)",
                    {
                        "queue_id": queue_id,
                        "chunk_index": chunk.index,
                        "start": chunk.start,
                        "end": chunk.end,
                        "text": chunk.text,
                        "model": chunk.model,
                        "dimension": chunk.dimension,
                        "server": chunk.server,
                        "embedding": self._vector_param(chunk.embedding),
                    },
                )
        return len(chunks)

    def chunks(self, queue_id: str, *, model: str | None = None) -> list[EmbeddedChunk]:
        """The queue's chunks in order (only ``model``'s, if given)."""
        statement = "SELECT * FROM video_embeddings WHERE queue_id = :queue_id"
        params: dict[str, Any] = {"queue_id": queue_id}
        if model is not None:
            statement += " AND model = :model"
            params["model"] = model
        rows = self.view.fetchall(statement + " ORDER BY chunk_index", params)
        return [self._chunk(row) for row in rows]

    def count(self, queue_id: str) -> int:
        row = self.view.fetchone(
            "SELECT COUNT(*) AS n FROM video_embeddings WHERE queue_id = :queue_id", {"queue_id": queue_id}
        )
        return int(row["n"]) if row else 0

    def delete(self, queue_id: str) -> None:
        with self.view.session() as session:
            session.execute("DELETE FROM video_embeddings WHERE queue_id = :queue_id", {"queue_id": queue_id})

    def nearest(self, queue_id: str, vector: Sequence[float], k: int = 5, *, model: str) -> list[Match]:
        """The ``k`` chunks most similar to ``vector``, best first, among those made by ``model``
        with the same dimension (vectors of different models are not comparable)."""
        candidates = [c for c in self.chunks(queue_id, model=model) if c.dimension == len(vector)]
        scored = [Match(cosine(vector, c.embedding), c) for c in candidates]
        scored.sort(key=lambda m: (-m.score, m.chunk.index))
        return scored[:k]

    def _vector_param(self, vector: Sequence[float]) -> Any:
        values = [float(x) for x in vector]
        return values if self.view.dialect == "postgres" else json.dumps(values)

    @staticmethod
    def _chunk(row: Row) -> EmbeddedChunk:
        raw = row["embedding"]
        vector = json.loads(raw) if isinstance(raw, str) else raw
        return EmbeddedChunk(
            index=int(row["chunk_index"]),
            start=float(row["start_seconds"]),
            end=float(row["end_seconds"]),
            text=row["text"],
            embedding=tuple(float(x) for x in vector),
            model=row["model"],
            server=row["server"],
        )


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity; 0 when either vector is all zeros."""
    if len(a) != len(b):
        raise ValueError(f"cannot compare vectors of dimension {len(a)} and {len(b)}")
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    return dot / norm if norm else 0.0
