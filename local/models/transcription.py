"""The reference Whisper server: OpenAI's ``/v1/audio/transcriptions`` on faster-whisper.

Run it with ``python -m local.models.transcription --port 9001``; configure it
with ``WHISPER_*`` and ``MODEL_SERVER_*`` (see ``local.models.settings``).

``language`` in ``verbose_json`` is the ISO 639-1 code (``"en"``), as speaches
answers; OpenAI itself writes the English name (``"english"``). The server
holds an English model and a multilingual one (:mod:`local.models.whisper`):
a request without ``language`` has it detected, and every answer says which
language and model it was transcribed with — ``verbose_json`` in its
``language``, ``language_probability`` and ``model`` fields, every format in
the ``Content-Language``, ``X-Language-Probability`` and ``X-Whisper-Model``
headers. ``model`` in the request picks one of the loaded models by name
(``GET /v1/models``); any other value (``whisper-1``) lets the language choose.

The model serves one request at a time, on its own thread, and at most
``WHISPER_MAX_QUEUED`` more wait for it (:mod:`local.models.request_queue`);
the request after those is answered 503 with ``Retry-After``. With the form
field ``stream=true`` (``json`` and ``verbose_json`` only) the answer is
server-sent events, one per segment as it is decoded, ending with the whole
result (:func:`local.models.formats.render_events`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import Response, StreamingResponse

from local.models.errors import BadInput, InputTooLarge, InvalidParameter, install_error_handlers
from local.models.formats import (
    EVENT_STREAM,
    MEDIA_TYPES,
    RESPONSE_FORMATS,
    STREAMABLE_FORMATS,
    error_event,
    render_events,
    renderer,
)
from local.models.limits import BodySizeLimit
from local.models.request_queue import RequestQueue, Ticket
from local.models.serve import serve
from local.models.settings import TranscriptionSettings
from local.models.slot import ModelSlot
from local.models.status import status_router
from local.models.whisper import Plan, Whisper, decode, load_transcriber, model_name, multilingual_name

if TYPE_CHECKING:
    from faster_whisper.transcribe import Segment, TranscriptionInfo

logger = logging.getLogger(__name__)

FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
"""Whisper's temperature fallback, used when the request's temperature is 0 (as OpenAI does)."""

GRANULARITIES = ("segment", "word")

DISCONNECT_POLL_SECONDS = 1.0
"""How often a waiting request checks whether its client is still there."""

Render = Callable[["TranscriptionInfo", Iterable["Segment"]], Iterator[str]]


def create_app(settings: TranscriptionSettings) -> FastAPI:
    """The transcription server; its model starts loading when the app starts."""
    name = model_name(settings)
    slot: ModelSlot[Whisper] = ModelSlot(name, lambda: load_transcriber(settings), settings.server)
    queue = RequestQueue(name, settings.max_queued)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        slot.start()
        yield
        slot.stop()

    app = FastAPI(title="vidpipe reference Whisper server", lifespan=lifespan)
    app.state.slot = slot
    app.state.queue = queue
    install_error_handlers(app)
    names = [name, *filter(None, [multilingual_name(settings)])]
    app.include_router(status_router(slot, owned_by="faster-whisper", details=lambda: _queue_details(queue),
                                     model_ids=names))
    app.include_router(transcription_router(slot, queue, settings))
    hint = "send a shorter recording or raise WHISPER_MAX_UPLOAD_BYTES"
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes + 64 * 1024, hint=hint)
    return app


def _queue_details(queue: RequestQueue) -> dict[str, Any]:
    status = queue.status()
    return {"queue": {"running": status.running, "waiting": status.waiting, "max_waiting": status.max_waiting}}


def transcription_router(
    slot: ModelSlot[Whisper], queue: RequestQueue, settings: TranscriptionSettings
) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/audio/transcriptions")
    async def transcriptions(
        request: Request,
        file: Annotated[UploadFile, File(description="audio or video file ffmpeg can decode")],
        model: Annotated[str | None, Form(description="a loaded model (GET /v1/models); others: chosen by language")] = None,
        language: Annotated[str | None, Form(description="ISO 639-1 code of the speech")] = None,
        prompt: Annotated[str | None, Form(description="text to condition the first window on")] = None,
        response_format: Annotated[str, Form()] = "json",
        temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
        timestamp_granularities: Annotated[list[str] | None, Form(alias="timestamp_granularities[]")] = None,
        stream: Annotated[bool, Form(description="server-sent events as segments are decoded")] = False,
    ) -> Response:
        granularities = _check_parameters(response_format, timestamp_granularities, stream)
        _check_upload(file, settings.max_upload_bytes)
        whisper = await slot.admit()
        language = _check_language(language, whisper, slot.name)
        with_words = response_format == "verbose_json" and "word" in granularities
        temperatures = list(FALLBACK_TEMPERATURES) if temperature == 0 else [temperature]

        plans: list[Plan] = []

        def transcribe(audio: BinaryIO) -> tuple[Iterable[Segment], TranscriptionInfo]:
            samples = decode(audio)
            plan = whisper.plan(samples, language=language, requested=model)
            plans.append(plan)
            return whisper.transcribe(samples, language=plan.language, prompt=prompt or None,
                                      temperatures=temperatures, word_timestamps=with_words, model=plan.model)

        def render(info: TranscriptionInfo, segments: Iterable[Segment]) -> Iterator[str]:
            facts = _facts(plans[0])
            logger.info("Transcribing %.1f s of %s audio (%s) as %s%s", info.duration, info.language,
                        plans[0].model, response_format, " (streamed)" if stream else "")
            if stream:
                return render_events(segments, verbose=response_format == "verbose_json", language=info.language,
                                     duration=info.duration, with_words=with_words, facts=facts)
            return renderer(response_format, language=info.language, duration=info.duration,
                            with_words=with_words, facts=facts)(segments)

        job = Job(queue.enter(), asyncio.get_running_loop(), file.file, transcribe, render, streamed=stream)
        slot.submit(job.run)
        if not await job.wait_started(request):
            return Response(status_code=499)  # the client left while waiting; nobody reads this
        media_type = EVENT_STREAM if stream else MEDIA_TYPES[response_format]
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"} if stream else {}
        return StreamingResponse(job.chunks(), media_type=media_type, headers={**headers, **_headers(plans[0])})

    return router


_END = object()


class Job:
    """One transcription: runs on the model's thread, hands its text to the event loop piece by piece.

    :meth:`run` (model thread) decodes and transcribes; :meth:`wait_started`
    (event loop) returns once the audio was read — or raises the request's
    error, such as :class:`BadInput`, while a status can still be sent — and
    :meth:`chunks` yields the rendered answer as segments are decoded. A job
    whose client is gone stops at its next segment (or before it starts), and
    its place in the queue is given back either way.
    """

    def __init__(
        self,
        ticket: Ticket,
        loop: asyncio.AbstractEventLoop,
        upload: BinaryIO,
        transcribe: Callable[[BinaryIO], tuple[Iterable[Segment], TranscriptionInfo]],
        render: Render,
        *,
        streamed: bool,
    ) -> None:
        self._ticket = ticket
        self._loop = loop
        self._upload = upload
        self._transcribe = transcribe
        self._render = render
        self._streamed = streamed
        self._started: asyncio.Future[None] = loop.create_future()
        self._pieces: asyncio.Queue[Any] = asyncio.Queue()
        self._abandoned = threading.Event()

    # ---------------------------------------------------------------- model thread
    def run(self) -> None:
        began = time.monotonic()
        try:
            if self._abandoned.is_set():
                return
            self._ticket.start()
            try:
                segments, info = self._transcribe(self._upload)
            except BaseException as exc:  # BadInput and the like: the handler answers it
                self._call(self._fail_start, exc)
                return
            self._call(self._start)
            for piece in self._render(info, segments):
                if self._abandoned.is_set():
                    logger.info("Client gone: stopped transcribing after %.1f s", time.monotonic() - began)
                    return
                self._call(self._pieces.put_nowait, piece)
            logger.info("Transcribed %.1f s of audio in %.1f s", info.duration, time.monotonic() - began)
            self._call(self._pieces.put_nowait, _END)
        except BaseException as exc:  # failed mid-answer: the stream says so
            logger.exception("Transcription failed while streaming")
            self._call(self._pieces.put_nowait, exc)
        finally:
            self._ticket.release()

    def _call(self, function: Callable[..., object], *args: object) -> None:
        try:
            self._loop.call_soon_threadsafe(function, *args)
        except RuntimeError:  # the server is shutting down and its loop is closed
            self._abandoned.set()

    # ------------------------------------------------------------------ event loop
    def _start(self) -> None:
        if not self._started.done():
            self._started.set_result(None)

    def _fail_start(self, error: BaseException) -> None:
        if not self._started.done():
            self._started.set_exception(error)

    async def wait_started(self, request: Request) -> bool:
        """True once the audio is being transcribed; False if the client left while waiting."""
        while True:
            done, _ = await asyncio.wait({self._started}, timeout=DISCONNECT_POLL_SECONDS)
            if done:
                self._started.result()
                return True
            if await request.is_disconnected():
                logger.info("Client gone while waiting for the model: giving its place up")
                self.abandon()
                return False

    def abandon(self) -> None:
        self._abandoned.set()
        if not self._started.done():
            self._ticket.release()  # still waiting: the place is free now, not when its turn comes

    async def chunks(self) -> AsyncIterator[str]:
        try:
            while (piece := await self._pieces.get()) is not _END:
                if isinstance(piece, BaseException):
                    if not self._streamed:
                        raise piece  # a plain answer can only be cut short
                    yield error_event(f"Transcription failed: {type(piece).__name__}: {piece}")
                    return
                yield piece
        finally:
            self._abandoned.set()


def _facts(plan: Plan) -> dict[str, Any]:
    """What ``verbose_json`` adds to OpenAI's fields: the detection's probability and the model."""
    return {"language_probability": _probability(plan), "model": plan.model}


def _probability(plan: Plan) -> float | None:
    return None if plan.probability is None else round(plan.probability, 4)


def _headers(plan: Plan) -> dict[str, str]:
    """The language and model, for every response format (SRT and plain text have nowhere else to say it)."""
    headers = {"X-Whisper-Model": plan.model}
    if plan.language:
        headers["Content-Language"] = plan.language
    if plan.probability is not None:
        headers["X-Language-Probability"] = f"{plan.probability:.4f}"
    return headers


def _check_parameters(response_format: str, granularities: list[str] | None, stream: bool) -> list[str]:
    if response_format not in RESPONSE_FORMATS:
        raise InvalidParameter(
            f"response_format {response_format!r} is not supported; use one of {', '.join(RESPONSE_FORMATS)}"
        )
    if stream and response_format not in STREAMABLE_FORMATS:
        raise InvalidParameter(
            f"stream=true works with response_format {' or '.join(STREAMABLE_FORMATS)}, not {response_format!r}"
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


def _check_language(language: str | None, whisper: Whisper, name: str) -> str | None:
    if not language:
        return None
    code = language.strip().lower()
    supported = whisper.supported_languages
    if code not in supported:
        only = f"it transcribes only {', '.join(supported)}" if len(supported) < 10 else "use an ISO 639-1 code"
        raise InvalidParameter(f"language {language!r} is not supported by this server ({name}): {only}")
    return code


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
