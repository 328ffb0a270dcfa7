"""Embeddings of transcript chunks on BGE, falling back to E5 when BGE is asleep or down.

:class:`EmbeddingClient` speaks OpenAI's ``POST /v1/embeddings`` and Hugging
Face TEI's ``POST /embed`` (``api="auto"`` tries OpenAI first and switches to
TEI for good when the server has no OpenAI route). :class:`Embedder` is the
embed step: it reads the transcript, cuts it into chunks, embeds them all on
one server (never mixing models within a queue) and stores them through
:class:`~handlers.embedding_store.EmbeddingStore`.

Models such as E5 are trained with an instruction in front of each text
(``"query: "`` for questions, ``"passage: "`` for what is searched); a client
built with ``query_prefix``/``passage_prefix`` puts them there, and callers say
which kind of text they send (:meth:`EmbeddingClient.embed`'s ``kind``): the
embed step sends passages, search sends its question as a query.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from handlers.embedding_store import EmbeddedChunk, EmbeddingStore
from handlers.errors import (
    PermanentError,
    ProviderError,
    ServerSleeping,
    TransientError,
)
from handlers.http_errors import RemoteServer, error_for_exception, raise_for_response
from handlers.remote import RemoteClient
from handlers.steps import StepContext, StepJob, StepResult
from handlers.storage import ArtifactNotFound, Storage
from handlers.transcripts import Chunk, chunk_segments, parse_json

logger = logging.getLogger(__name__)

BGE_URL_ENV = "BGE_HG_EMBEDDING_SERVER_API_URL"
E5_URL_ENV = "E5_HG_EMBEDDING_SERVER_API_URL"

EmbeddingApi = Literal["auto", "openai", "tei"]
TextKind = Literal["passage", "query"]
"""What a text is to the model: something to be found (a transcript chunk) or a question."""

_MISSING = object()
"""What ``_post`` answers for a route the server does not have (``missing_ok``)."""


@dataclass(frozen=True)
class Embeddings:
    """One batch's vectors, in the order of its texts."""

    vectors: list[list[float]]
    model: str
    dimension: int


def api_base(url: str) -> str:
    """The server's root, whether given as the root, ``.../v1``, or a full endpoint."""
    base = url.strip().rstrip("/")
    for suffix in ("/v1/embeddings", "/embeddings", "/embed", "/v1"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


class EmbeddingClient(RemoteClient):
    """A client of one embedding server.

    ``label`` names the server in step outputs (``"bge"``, ``"e5"``); ``name``
    in messages. ``query_prefix`` / ``passage_prefix`` go in front of each text
    of that kind (E5: ``"query: "`` / ``"passage: "``; empty for models without
    instructions). Failures are raised as :class:`ProviderError`, classified by
    :mod:`handlers.http_errors`.
    """

    ping_fallback_path = "/info"

    def __init__(
        self,
        base_url: str,
        *,
        label: str,
        name: str | None = None,
        api: EmbeddingApi = "auto",
        api_key: str | None = None,
        model: str | None = None,
        batch_size: int = 32,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        url_env: str | None = None,
        token_env: str | None = None,
        transport: httpx.BaseTransport | None = None,
        query_prefix: str = "",
        passage_prefix: str = "",
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self.base_url = api_base(base_url)
        self.label = label
        self.api: EmbeddingApi = api
        self.model = model
        self.batch_size = batch_size
        self.prefixes: dict[TextKind, str] = {"query": query_prefix, "passage": passage_prefix}
        self._connect(RemoteServer(name or f"{label.upper()} embedding server", self.base_url, url_env, token_env),
                      api_key=api_key, timeout=timeout, connect_timeout=connect_timeout, transport=transport)
        self._tei_model: str | None = None

    def embed(self, texts: Sequence[str], *, kind: TextKind = "passage") -> Embeddings:
        """Vectors of ``texts`` (each of ``kind``, prefixed accordingly) in one request (at most ``batch_size``)."""
        if not texts:
            raise ValueError("nothing to embed")
        prefix = self.prefixes[kind]
        if prefix:
            texts = [prefix + text for text in texts]
        if self.api != "tei":
            embeddings = self._openai(texts)
            if embeddings is not None:
                return embeddings
            logger.info("%s has no OpenAI embeddings route; using TEI's /embed", self.server)
            self.api = "tei"
        return self._tei(texts)

    def embed_batches(self, texts: Sequence[str], *, kind: TextKind = "passage") -> Iterator[Embeddings]:
        """Vectors of ``texts``, ``batch_size`` at a time."""
        for first in range(0, len(texts), self.batch_size):
            yield self.embed(texts[first : first + self.batch_size], kind=kind)

    # ------------------------------------------------------------------ dialects
    def _openai(self, texts: Sequence[str]) -> Embeddings | None:
        """None when the server has no such route and ``api`` is "auto" (try TEI then)."""
        body: dict[str, Any] = {"input": list(texts)}
        if self.model:
            body["model"] = self.model
        answer = self._post("/v1/embeddings", body, missing_ok=self.api == "auto")
        if answer is _MISSING:
            return None
        try:
            data = sorted(answer["data"], key=lambda item: item.get("index", 0))
            vectors = [_floats(item["embedding"]) for item in data]
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise self._malformed(error) from None
        model = answer.get("model") if isinstance(answer, dict) else None
        return self._embeddings(texts, vectors, str(model or self.model or self.label))

    def _tei(self, texts: Sequence[str]) -> Embeddings:
        answer = self._post("/embed", {"inputs": list(texts), "normalize": True, "truncate": True})
        try:
            vectors = [_floats(vector) for vector in answer]
        except (TypeError, ValueError) as error:
            raise self._malformed(error) from None
        return self._embeddings(texts, vectors, self._tei_model_name())

    def _tei_model_name(self) -> str:
        if self._tei_model is None:
            try:
                response = raise_for_response(self._http.get("/info", timeout=10.0), self.server)
                self._tei_model = str(response.json()["model_id"])
            except (httpx.HTTPError, ProviderError, ValueError, KeyError, TypeError):
                return self.model or self.label
        return self._tei_model

    def _post(self, path: str, body: dict[str, Any], *, missing_ok: bool = False) -> Any:
        try:
            response = self._http.post(path, json=body)
        except httpx.HTTPError as error:
            raise error_for_exception(error, self.server) from error
        if missing_ok and response.status_code in (404, 405):
            return _MISSING
        raise_for_response(response, self.server)
        try:
            return response.json()
        except ValueError as error:
            raise self._malformed(error) from None

    def _embeddings(self, texts: Sequence[str], vectors: list[list[float]], model: str) -> Embeddings:
        if len(vectors) != len(texts) or not vectors:
            raise TransientError(
                f"{self.server} answered {len(vectors)} vectors for {len(texts)} texts"
            )
        dimension = len(vectors[0])
        if dimension == 0 or any(len(v) != dimension for v in vectors):
            raise TransientError(f"{self.server} answered vectors of differing or zero dimension")
        return Embeddings(vectors, model, dimension)

    def _malformed(self, error: Exception) -> TransientError:
        return TransientError(f"{self.server} answered something that is not embeddings ({error!r})")


def _floats(vector: Any) -> list[float]:
    if not isinstance(vector, list):
        raise TypeError(f"expected a list of numbers, got {type(vector).__name__}")
    return [float(x) for x in vector]


class Embedder:
    """The embed step: chunks of the transcript, embedded on ``primary`` or else ``fallback``.

    All chunks of a queue come from one server: when the primary fails
    transiently (asleep, down, timing out) the fallback embeds every chunk
    again; when both fail, the error with the longer retry hint is raised
    (transient, so the step is retried). A permanent error of the primary
    (bad credentials, bad input) is raised at once; one of the fallback, after
    the primary failed transiently, is logged and the step retried.
    """

    name = "embeddings"

    def __init__(
        self,
        primary: EmbeddingClient,
        storage: Storage,
        store: EmbeddingStore,
        *,
        fallback: EmbeddingClient | None = None,
        max_chars: int = 1000,
        overlap_segments: int = 1,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.storage = storage
        self.store = store
        self.max_chars = max_chars
        self.overlap_segments = overlap_segments

    @property
    def clients(self) -> list[EmbeddingClient]:
        return [c for c in (self.primary, self.fallback) if c is not None]

    def ping(self) -> bool:
        """Wake the primary and the fallback; True if any answered healthy. Never raises."""
        return any([client.ping() for client in self.clients])

    def run(self, job: StepJob, context: StepContext) -> StepResult:
        chunks = self._chunks(job)
        context.check()
        if not chunks:
            self.store.replace(job.queue_id, [])
            return StepResult(outputs={"chunks": 0, "model": None, "dimension": None, "server": None},
                              provider=self.primary.label)
        failures: list[TransientError] = []
        for client in self.clients:
            try:
                embedded = self._embed_all(client, chunks, context)
            except TransientError as error:
                logger.warning("queue %s: %s failed (%s)", job.queue_id, client.server, error)
                failures.append(error)
                continue
            except PermanentError as error:
                if not failures:
                    raise
                # The primary is only asleep: a broken fallback must not fail the tutor's video.
                logger.error("queue %s: the fallback %s is unusable: %s", job.queue_id, client.server, error)
                failures.append(TransientError(str(error)))
                continue
            self.store.replace(job.queue_id, embedded)
            first = embedded[0]
            outputs = {"chunks": len(embedded), "model": first.model, "dimension": first.dimension,
                       "server": client.label}
            return StepResult(outputs=outputs, provider=client.label, model=first.model)
        raise _combined(failures)

    def _chunks(self, job: StepJob) -> list[Chunk]:
        key = (job.inputs.get("transcribe") or {}).get("transcript_json")
        if not key:
            raise PermanentError("there is no transcript to embed: the transcribe step recorded none")
        try:
            transcript = parse_json(b"".join(self.storage.iter_bytes(key)))
        except ArtifactNotFound:
            raise PermanentError(f"the transcript of this video ({key}) is missing from storage") from None
        return chunk_segments(transcript.segments, self.max_chars, self.overlap_segments)

    def _embed_all(self, client: EmbeddingClient, chunks: list[Chunk], context: StepContext) -> list[EmbeddedChunk]:
        embedded: list[EmbeddedChunk] = []
        model: str | None = None
        batches = range(0, len(chunks), client.batch_size)
        for number, first in enumerate(batches, start=1):
            context.check()
            batch = chunks[first : first + client.batch_size]
            result = client.embed([c.text for c in batch], kind="passage")
            if model is not None and (result.model, result.dimension) != (model, embedded[0].dimension):
                raise TransientError(f"{client.server} changed model while embedding ({model} → {result.model})")
            model = result.model
            embedded += [
                EmbeddedChunk(c.index, c.start, c.end, c.text, tuple(v), result.model, client.label)
                for c, v in zip(batch, result.vectors, strict=True)
            ]
            context.report(99 * number / len(batches), f"embedded batch {number} of {len(batches)} on {client.label}")
        return embedded


def _combined(failures: list[TransientError]) -> TransientError:
    """One error for "every server failed": the class and hint of the one that asks us to wait longest."""
    longest = max(failures, key=lambda e: e.retry_after or 0.0)
    if len(failures) == 1:
        return longest
    kind = ServerSleeping if isinstance(longest, ServerSleeping) else TransientError
    message = "no embedding server could serve: " + "; ".join(str(e) for e in failures)
    return kind(message, retry_after=longest.retry_after)
