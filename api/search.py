"""Lecture search: a half-remembered question → the moments of the caller's lectures.

:class:`LectureSearch` runs keyword retrieval (the moments projection's full-text
index) and semantic retrieval (the question embedded by the same servers that
embedded the moments, compared only with vectors of the same model and
dimension), and fuses the ranked lists by reciprocal rank fusion.

A search never waits for a model server to wake: :class:`QueryEmbedder` gives
each server a short deadline (``VIDPIPE_SEARCH_EMBED_TIMEOUT_SECONDS``), and a
server that failed is not asked again for a while (``VIDPIPE_SEARCH_SERVER_BACKOFF_SECONDS``)
but pinged in the background, so it wakes for the next search. When no vector
space can be searched, the answer comes from keywords alone and says so.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal

from handlers.errors import ProviderError
from handlers.providers.embeddings import EmbeddingClient, Embeddings
from projections.moments import MomentsReader, VectorSpace
from projections.ranking import SEMANTIC_WEIGHT, fuse, fuse_scores, highlights, query_terms

logger = logging.getLogger(__name__)

SearchMode = Literal["hybrid", "keyword", "semantic"]
Fusion = Literal["relative-score", "rrf"]
CANDIDATES = 50
"""How many moments each retriever proposes before fusion."""


@dataclass(frozen=True)
class Moment:
    """One search hit: where to start playing, what is said there, and why it was found."""

    queue_id: str
    filename: str | None
    chunk_index: int
    start_seconds: float
    end_seconds: float
    text: str
    highlights: list[tuple[int, int]]
    score: float
    retriever: str
    """``keyword``, ``semantic`` or ``both``."""

    @property
    def marked(self) -> str:
        """The text as HTML (escaped), the matched words inside ``<mark>``."""
        parts, done = [], 0
        for start, end in self.highlights:
            parts += [html.escape(self.text[done:start]), "<mark>", html.escape(self.text[start:end]), "</mark>"]
            done = end
        parts.append(html.escape(self.text[done:]))
        return "".join(parts)


@dataclass
class SearchResult:
    query: str
    mode: SearchMode
    """What the answer was built from: ``hybrid`` (keywords and vectors), ``keyword`` or ``semantic``."""
    moments: list[Moment]
    notice: str | None = None
    """Why the answer is not what was asked for (e.g. keywords only: the embedding servers are asleep)."""
    unavailable: dict[str, str] = field(default_factory=dict)
    """Embedding servers that could not embed the question, with the reason."""


class QueryEmbedder:
    """Embeds questions on the servers that embedded the moments, never waiting for one to wake."""

    def __init__(
        self,
        clients: Mapping[str, EmbeddingClient],
        *,
        deadline: float = 0.8,
        backoff: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clients = dict(clients)
        self.deadline = deadline
        self.backoff = backoff
        self.clock = clock
        self._down: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(2, 2 * len(self.clients)), thread_name_prefix="query-embed")

    def embed(self, servers: Sequence[str], text: str) -> tuple[dict[str, Embeddings], dict[str, str]]:
        """The question's vectors by server label, and the reasons of those that could not answer in time."""
        vectors: dict[str, Embeddings] = {}
        failures: dict[str, str] = {}
        futures = {}
        for label in dict.fromkeys(servers):
            client = self.clients.get(label)
            if client is None:
                failures[label] = f"no embedding server named {label!r} is configured"
                continue
            skipped = self._skipped(label)
            if skipped:
                failures[label] = skipped
                continue
            futures[self._pool.submit(client.embed, [text], kind="query")] = label
        done, late = wait(futures, timeout=self.deadline)
        for future in late:
            label = futures[future]
            future.cancel()
            self._mark_down(label, f"{self.clients[label].server} did not answer within {self.deadline:g} s")
            failures[label] = self._down[label][1]
        for future in done:
            label = futures[future]
            try:
                vectors[label] = future.result()
            except ProviderError as error:
                self._mark_down(label, str(error))
                failures[label] = str(error)
            except Exception as error:  # noqa: BLE001 - a broken server must not fail a search
                logger.exception("search: embedding the question on %s failed", label)
                self._mark_down(label, f"{self.clients[label].server} failed: {error!r}")
                failures[label] = self._down[label][1]
        return vectors, failures

    def _skipped(self, label: str) -> str | None:
        with self._lock:
            down = self._down.get(label)
            if down is None:
                return None
            since, reason = down
            if self.clock() - since >= self.backoff:
                del self._down[label]
                return None
        return reason

    def _mark_down(self, label: str, reason: str) -> None:
        with self._lock:
            first = label not in self._down
            self._down[label] = (self.clock(), reason)
        if first:
            logger.warning("search: %s; answering from keywords until it is back", reason)
            self._pool.submit(self.clients[label].ping, 30.0)  # wake it for the next search

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for client in self.clients.values():
            client.close()


class LectureSearch:
    """Hybrid search over one owner's completed lectures."""

    def __init__(
        self,
        reader: MomentsReader,
        embedder: QueryEmbedder | None,
        *,
        fusion: Fusion = "relative-score",
        semantic_weight: float = SEMANTIC_WEIGHT,
    ) -> None:
        self.reader = reader
        self.embedder = embedder
        self.fusion = fusion
        self.semantic_weight = semantic_weight

    def search(
        self,
        owner_id: str,
        query: str,
        *,
        limit: int = 10,
        queue_id: str | None = None,
        mode: SearchMode = "hybrid",
    ) -> SearchResult:
        terms = query_terms(query)
        if not terms:
            return SearchResult(query, mode, [], notice="the question has no words to search for")
        lists: dict[str, list[tuple[int, float]]] = {}
        if mode in ("hybrid", "keyword"):
            lists["keyword"] = [(r.moment_id, r.score)
                                for r in self.reader.keyword(owner_id, terms, limit=CANDIDATES, queue_id=queue_id)]
        unavailable: dict[str, str] = {}
        searched_vectors = False
        if mode in ("hybrid", "semantic"):
            semantic, unavailable, searched_vectors = self._semantic(owner_id, query, queue_id)
            lists.update(semantic)
        answered: SearchMode = mode
        notice = None
        if mode == "hybrid" and not searched_vectors and unavailable:
            answered, notice = "keyword", "keywords only: " + "; ".join(unavailable.values())
        elif mode == "semantic" and not searched_vectors and unavailable:
            notice = "no semantic answer: " + "; ".join(unavailable.values())
        elif unavailable:
            notice = "some lectures were searched by keywords only: " + "; ".join(unavailable.values())
        if self.fusion == "rrf":
            fused = fuse({name: [moment_id for moment_id, _ in scored] for name, scored in lists.items()})[:limit]
        else:
            fused = fuse_scores(lists, semantic_weight=self.semantic_weight)[:limit]
        rows = self.reader.moments([f.moment_id for f in fused])
        moments = [
            Moment(
                queue_id=row.queue_id, filename=row.filename, chunk_index=row.chunk_index,
                start_seconds=row.start, end_seconds=row.end, text=row.text,
                highlights=highlights(row.text, terms), score=round(f.score, 6), retriever=f.retriever,
            )
            for f in fused
            if (row := rows.get(f.moment_id)) is not None
        ]
        return SearchResult(query, answered, moments, notice=notice, unavailable=unavailable)

    def _semantic(
        self, owner_id: str, query: str, queue_id: str | None
    ) -> tuple[dict[str, list[tuple[int, float]]], dict[str, str], bool]:
        """Scored lists per vector space; the servers that could not answer; whether any space was searched."""
        spaces = self.reader.spaces(owner_id, queue_id)
        if not spaces:
            return {}, {}, False
        if self.embedder is None:
            return {}, {"embedder": "semantic search is not configured"}, False
        vectors, unavailable = self.embedder.embed([s.server for s in spaces], query)
        lists: dict[str, list[tuple[int, float]]] = {}
        for space in spaces:
            embedded = vectors.get(space.server)
            if embedded is None:
                continue
            if not _same_space(embedded, space):
                unavailable.setdefault(
                    space.server,
                    f"the {space.server} server now answers with {embedded.model} ({embedded.dimension} dimensions), "
                    f"not {space.model} ({space.dimension}) as when these lectures were embedded",
                )
                continue
            ranked = self.reader.nearest(owner_id, space, embedded.vectors[0], limit=CANDIDATES, queue_id=queue_id)
            lists[f"{space.server}:{space.model}:{space.dimension}"] = [(r.moment_id, r.score) for r in ranked]
        return lists, unavailable, bool(lists)


def _same_space(embedded: Embeddings, space: VectorSpace) -> bool:
    return embedded.model == space.model and embedded.dimension == space.dimension


def result_json(result: SearchResult) -> dict[str, Any]:
    """The response body of ``GET /api/search``."""
    return {
        "query": result.query,
        "mode": result.mode,
        "notice": result.notice,
        "unavailable": result.unavailable,
        "moments": [
            {
                "queue_id": m.queue_id, "filename": m.filename, "chunk_index": m.chunk_index,
                "start_seconds": m.start_seconds, "end_seconds": m.end_seconds, "text": m.text,
                "highlights": [list(h) for h in m.highlights], "marked": m.marked,
                "score": m.score, "retriever": m.retriever,
            }
            for m in result.moments
        ],
    }
