"""The reference Whisper server: OpenAI's ``/v1/audio/transcriptions`` on faster-whisper.

Run it with ``python -m local.models.transcription --port 9001``; configure it
with ``WHISPER_*`` and ``MODEL_SERVER_*`` (see ``local.models.settings``).

``language`` in ``verbose_json`` is the ISO 639-1 code (``"en"``), as speaches
answers; OpenAI itself writes the English name (``"english"``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, FastAPI, File, Form, UploadFile
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from local.models.errors import BadInput, InputTooLarge, InvalidParameter, install_error_handlers
from local.models.formats import MEDIA_TYPES, RESPONSE_FORMATS, renderer
from local.models.limits import BodySizeLimit
from local.models.serve import serve
from local.models.settings import TranscriptionSettings
from local.models.slot import ModelSlot
from local.models.status import status_router
from local.models.whisper import decode, load_whisper, model_name

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

logger = logging.getLogger(__name__)

FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
"""Whisper's temperature fallback, used when the request's temperature is 0 (as OpenAI does)."""

GRANULARITIES = ("segment", "word")


def create_app(settings: TranscriptionSettings) -> FastAPI:
    """The transcription server; its model starts loading when the app starts."""
    slot: ModelSlot[WhisperModel] = ModelSlot(model_name(settings), lambda: load_whisper(settings), settings.server)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        slot.start()
        yield
        slot.stop()

    app = FastAPI(title="vidpipe reference Whisper server", lifespan=lifespan)
    app.state.slot = slot
    install_error_handlers(app)
    app.include_router(status_router(slot, owned_by="faster-whisper"))
    app.include_router(transcription_router(slot, settings))
    hint = "send a shorter recording or raise WHISPER_MAX_UPLOAD_BYTES"
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes + 64 * 1024, hint=hint)
    return app


def transcription_router(slot: ModelSlot[WhisperModel], settings: TranscriptionSettings) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/audio/transcriptions")
    async def transcriptions(
        file: Annotated[UploadFile, File(description="audio or video file ffmpeg can decode")],
        model: Annotated[str | None, Form(description="accepted for compatibility; the loaded model answers")] = None,
        language: Annotated[str | None, Form(description="ISO 639-1 code of the speech")] = None,
        prompt: Annotated[str | None, Form(description="text to condition the first window on")] = None,
        response_format: Annotated[str, Form()] = "json",
        temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
        timestamp_granularities: Annotated[list[str] | None, Form(alias="timestamp_granularities[]")] = None,
    ) -> StreamingResponse:
        granularities = _check_parameters(response_format, timestamp_granularities)
        _check_upload(file, settings.max_upload_bytes)
        whisper = await slot.admit()
        language = _check_language(language, whisper, slot.name)
        audio = await run_in_threadpool(decode, file.file)
        with_words = response_format == "verbose_json" and "word" in granularities
        segments, info = await run_in_threadpool(
            whisper.transcribe,
            audio,
            language=language,
            initial_prompt=prompt or None,
            temperature=list(FALLBACK_TEMPERATURES) if temperature == 0 else [temperature],
            beam_size=settings.beam_size,
            vad_filter=settings.vad_filter,
            word_timestamps=with_words,
        )
        logger.info("Transcribing %.1f s of %s audio as %s", info.duration, info.language, response_format)
        render = renderer(response_format, language=info.language, duration=info.duration, with_words=with_words)
        return StreamingResponse(_timed(render(segments), info.duration), media_type=MEDIA_TYPES[response_format])

    return router


def _check_parameters(response_format: str, granularities: list[str] | None) -> list[str]:
    if response_format not in RESPONSE_FORMATS:
        raise InvalidParameter(
            f"response_format {response_format!r} is not supported; use one of {', '.join(RESPONSE_FORMATS)}"
        )
    unknown = [g for g in granularities or () if g not in GRANULARITIES]
    if unknown:
        raise InvalidParameter(f"timestamp_granularities[] {unknown} not supported; use 'segment' and/or 'word'")
    return list(granularities or ("segment",))


def _check_upload(file: UploadFile, max_bytes: int) -> None:
    if not file.size:
        raise BadInput(f"The uploaded file {file.filename!r} is empty. Send the audio in the 'file' field.")
    if file.size > max_bytes:
        raise InputTooLarge(
            f"The upload is {file.size} bytes, over the limit of {max_bytes} (WHISPER_MAX_UPLOAD_BYTES)."
        )


def _check_language(language: str | None, whisper: WhisperModel, name: str) -> str | None:
    if not language:
        return None
    code = language.strip().lower()
    supported = whisper.supported_languages
    if code not in supported:
        only = f"it transcribes only {', '.join(supported)}" if len(supported) < 5 else "use an ISO 639-1 code"
        raise InvalidParameter(f"language {language!r} is not supported by model {name}: {only}")
    return code


def _timed(chunks: Iterable[str], duration: float) -> Iterator[str]:
    began = time.monotonic()
    try:
        yield from chunks
    except Exception:
        logger.exception("Transcription failed while streaming")
        raise
    logger.info("Transcribed %.1f s of audio in %.1f s", duration, time.monotonic() - began)


def main() -> None:
    def build() -> tuple[FastAPI, str]:
        settings = TranscriptionSettings()
        return create_app(settings), settings.server.log_level

    serve(
        build,
        program="python -m local.models.transcription",
        description="vidpipe reference Whisper transcription server",
        default_port=9001,
    )


if __name__ == "__main__":
    main()
