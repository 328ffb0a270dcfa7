"""``POST /api/video-processing/upload``: start processing a video or an audio recording.

Two forms:

- JSON ``{"attachment_id": "..."}``: an attachment already in storage under the
  caller's uploads (``<owner>/uploads/<attachment_id>``, where multipart
  uploads put theirs); 404 if there is no such object;
- ``multipart/form-data`` with a ``file`` part: the video or audio recording,
  streamed to storage in chunks (413 beyond ``VIDPIPE_MAX_UPLOAD_BYTES``, 415
  for anything that is neither by name, declared type and leading bytes).

An audio recording (an audio extension such as ``.mp3``/``.m4a``/``.wav``/
``.flac``/``.ogg``/``.opus``, or an ``audio/*`` type) is also probed with
ffprobe once stored: sound without picture starts a queue with the option
``media: "audio"`` (no compress step: audio-convert → transcribe → embed; the
original is what the player plays); a file that turns out to have a picture
is processed as a video; one that cannot be read or has no sound is 422 and
nothing of it is kept.

Either way the answer is ``202 {"queue_id", "status", "attachment_id", "reused"}``.
``Idempotency-Key`` and re-uploads of the same file: see :mod:`api.uploads`.
A key is bound to its request: the same key with another request (other file
bytes, another ``attachment_id``, other options such as ``language`` or
``skip_compress``) is 422 naming the key and what differs, as Stripe answers,
never the first request's queue. Options compare as the queue gets them
(``language=ES`` is ``es``; an absent ``skip_compress`` is ``false``; no
``language`` is the tutor's default). A retry's file is read and hashed to
tell (not stored).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.auth import Caller, CurrentTutor
from api.errors import BadRequest, NotFound, PayloadTooLarge, UnsupportedMediaType, Unprocessable, shorten
from api.media import Media, declared_media, declared_type_problem, probed_media
from api.multipart import PartStart, boundary_of, multipart_events
from api.routes.queues import AUTH_RESPONSES, PREFIX
from api.schemas import ErrorResponse, QueueAccepted
from api.services import Services
from api.uploads import (
    CLAIM_RENEW_SECONDS,
    FileStream,
    ReceivedFile,
    UploadLedger,
    new_attachment_id,
    queue_id_for,
    store_file,
)
from domain import InvalidGraph
from handlers.errors import MediaError
from handlers.failpoints import failpoint
from handlers.storage import upload_key

logger = logging.getLogger(__name__)

MAX_JSON_BYTES = 16 * 1024
LANGUAGE_PATTERN = r"^([A-Za-z]{2,3}|auto)$"
"""The ``language`` option: an ISO 639-1 code (Whisper's; ``haw`` has three letters) or ``auto``."""
MULTIPART_OVERHEAD = 64 * 1024
"""Bytes a multipart body may carry beyond the file itself (boundaries, headers, small fields)."""

REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["attachment_id"],
                "properties": {"attachment_id": {"type": "string", "minLength": 1, "maxLength": 200}},
            }
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        },
    },
}


def uploads_router(services: Services) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["video processing"])
    ledger = services.uploads

    @router.post(
        "/upload",
        status_code=202,
        response_model=QueueAccepted,
        openapi_extra={"requestBody": REQUEST_BODY},
        responses={
            **AUTH_RESPONSES,
            400: {"model": ErrorResponse, "description": "malformed body"},
            404: {"model": ErrorResponse, "description": "no such attachment in the caller's storage"},
            409: {"model": ErrorResponse, "description": "a request with this Idempotency-Key is running"},
            422: {"model": ErrorResponse, "description": "malformed JSON fields, an Idempotency-Key "
                  "already used with a different request, or an audio file that cannot be read or has no sound"},
            413: {"model": ErrorResponse, "description": "the video is over the size limit"},
            415: {"model": ErrorResponse, "description": "neither a video nor an audio recording, "
                  "or neither JSON nor multipart"},
        },
    )
    async def upload(
        request: Request,
        caller: CurrentTutor,
        language: Annotated[
            str | None,
            Query(pattern=LANGUAGE_PATTERN,
                  description="the lecture's language (ISO 639-1, e.g. es), or auto to have it detected; "
                  "default: the tutor's (VIDPIPE_TUTOR_LANGUAGES), else detected"),
        ] = None,
        skip_compress: Annotated[
            bool,
            Query(description="leave the compress step out (an already small video): the queue extracts "
                  "audio, transcribes and embeds; the original stays the video to watch. An audio "
                  "recording never has the compress step"),
        ] = False,
        idempotency_key: Annotated[
            str | None,
            Header(alias="Idempotency-Key", min_length=1, max_length=200,
                   description="the same key from the same user answers with the same queue"),
        ] = None,
    ) -> JSONResponse:
        """Start processing an uploaded attachment, or a video or audio recording sent as multipart."""
        owner = caller.owner_id
        claim = ""
        extra = {**_language(services, caller, language), **({"skip_compress": True} if skip_compress else {})}
        if idempotency_key is not None:
            earlier, claim = await run_in_threadpool(ledger.claim, owner, idempotency_key)
            if earlier is not None:
                await _same_request(services, request, idempotency_key, earlier, extra)
                return await _accepted(services, caller, earlier, reused=True)
        try:
            async with _renewing(ledger, owner, idempotency_key, claim):
                derived = None if idempotency_key is None else queue_id_for(owner, idempotency_key)
                queue_id, reused = await _start(services, caller, request, derived, extra)
        except BaseException:
            if claim:
                await run_in_threadpool(ledger.release, owner, idempotency_key, claim)
            raise
        if claim:
            await run_in_threadpool(ledger.settle, owner, idempotency_key, claim, queue_id)
        return await _accepted(services, caller, queue_id, reused=reused)

    return router


@asynccontextmanager
async def _renewing(ledger: UploadLedger, owner: str, key: str | None, claim: str) -> AsyncIterator[None]:
    """Renew the claim on ``key`` every few seconds while the request runs (nothing without a key)."""

    async def renew() -> None:
        while True:
            await asyncio.sleep(CLAIM_RENEW_SECONDS)
            try:
                await run_in_threadpool(ledger.renew, owner, key, claim)
            except Exception:  # noqa: BLE001 - the database may be restarting; the upload goes on
                logger.warning("could not renew the claim on Idempotency-Key %r", key, exc_info=True)

    task = asyncio.create_task(renew()) if key is not None and claim else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task


def _language(services: Services, caller: Caller, language: str | None) -> dict[str, str]:
    """The queue's ``language`` option: the request's, else the tutor's default; none: detected."""
    chosen = (language or services.settings.tutor_languages.get(caller.owner_id) or "").lower()
    return {"language": chosen} if chosen and chosen != "auto" else {}


async def _start(
    services: Services, caller: Caller, request: Request, queue_id: UUID | None, extra: dict[str, Any]
) -> tuple[str, bool]:
    """Start (or find) the queue for this request's video: ``(queue_id, reused)``.

    ``queue_id``, derived from the Idempotency-Key, is the id the new queue gets;
    if a queue with it exists (an earlier try of this request died before it
    could answer), that queue is the answer.
    """
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json":
        attachment_id, key = await _existing_attachment(services, caller, request)
        if queue_id is not None and await run_in_threadpool(services.core.app.queue_exists, queue_id):
            _check_same(await _fingerprint_of(services, str(queue_id)), _request(("attachment", attachment_id), extra),
                        request.headers["idempotency-key"], str(queue_id))
        media = await _media_of(services, key, attachment_id, declared_media(attachment_id, None), keep=True)
        options = {"source": key, "filename": attachment_id, **_media_option(media), **extra}
        return await _start_queue(services, caller, attachment_id, options, queue_id), False
    if media_type == "multipart/form-data":
        received, media = await _receive_file(services, caller, request)
        failpoint("upload.after_store")  # the video is stored, no queue started yet
        if queue_id is not None and await run_in_threadpool(services.core.app.queue_exists, queue_id):
            await run_in_threadpool(services.storage.delete, received.key)
            _check_same(await _fingerprint_of(services, str(queue_id)), _request(("file", received.sha256), extra),
                        request.headers["idempotency-key"], str(queue_id))
            logger.info("owner %s retried upload %s: its queue exists already", caller.owner_id, queue_id)
            return str(queue_id), True
        earlier = await run_in_threadpool(services.uploads.same_content, caller.owner_id, received.sha256)
        earlier_started = earlier is not None and await run_in_threadpool(
            services.core.app.queue_exists, UUID(earlier[0])
        )
        if earlier is not None and earlier_started:
            asked = _request(("file", received.sha256), extra)
            if (await _fingerprint_of(services, earlier[0]))[1] != asked[1]:
                # the same bytes with other options (another language, compression left out): the tutor
                # asks for another result of this recording, so it gets a queue of its own
                logger.info("owner %s uploaded %s again with other options %s: a new queue",
                            caller.owner_id, received.filename, dict(asked[1]))
                earlier = None
        if earlier is not None:
            earlier_id, earlier_file = earlier
            await run_in_threadpool(services.storage.delete, received.key)
            if not earlier_started:
                # the request that recorded it died before starting its queue: start it now, with what
                # this request asks for (the same bytes as this upload: the same media)
                logger.info("owner %s: starting queue %s a dead request recorded", caller.owner_id, earlier_id)
                await _start_queue(services, caller, earlier_file.attachment_id,
                                   {**_options(earlier_file), **_media_option(media), **extra}, UUID(earlier_id))
            logger.info("owner %s uploaded %s again: reusing queue %s", caller.owner_id, received.filename, earlier_id)
            return earlier_id, True
        new_id = queue_id or uuid4()
        # recorded first: a retry after a death between the two finds this upload and starts its queue
        await run_in_threadpool(services.uploads.record, caller.owner_id, str(new_id), received)
        options = {**_options(received), **_media_option(media), **extra}
        started = await _start_queue(services, caller, received.attachment_id, options, new_id)
        return started, False
    raise UnsupportedMediaType(
        f"send application/json with an attachment_id or multipart/form-data with a file, not {media_type or 'no Content-Type'!r}"
    )


Source = tuple[str, str]
"""What an upload request processes: ``("file", sha256)`` or ``("attachment", attachment_id)``."""

REQUEST_OPTIONS = ("language", "skip_compress")
"""The queue options an upload request chooses (its query parameters): part of what a key answers for."""

Fingerprint = tuple[Source, tuple[tuple[str, Any], ...]]
"""What an upload request asked for: its source and the options it chose, as the queue records them."""


def _request(source: Source, options: dict[str, Any]) -> Fingerprint:
    """``source`` with the :data:`REQUEST_OPTIONS` of ``options`` (an absent, false or empty one left out)."""
    chosen = tuple((name, options[name]) for name in REQUEST_OPTIONS if options.get(name) not in (None, False, ""))
    return source, chosen


async def _fingerprint_of(services: Services, queue_id: str) -> Fingerprint:
    """What the request that started ``queue_id`` asked for."""
    queue = await run_in_threadpool(services.core.app.get_queue, queue_id)
    options = queue.options or {}
    sha256 = options.get("sha256")
    return _request(("file", sha256) if sha256 else ("attachment", queue.attachment_id), options)


async def _source(services: Services, request: Request) -> Source:
    """What this request asks for, reading its body (a file is hashed, not stored)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json":
        return ("attachment", _attachment_id(await _json_body(request)))
    if media_type == "multipart/form-data":
        limit = services.settings.max_upload_bytes
        _check_length(request, limit)
        events = multipart_events(request, boundary_of(request.headers["content-type"]))
        async for event in events:
            if isinstance(event, PartStart) and event.name == "file":
                stream = FileStream(events, event, limit)
                async for _ in stream.chunks():
                    pass
                async for _ in events:
                    pass
                return ("file", stream.digest.hexdigest())
        raise Unprocessable("the multipart body has no part named 'file'")
    raise UnsupportedMediaType(
        f"send application/json with an attachment_id or multipart/form-data with a file, not {media_type or 'no Content-Type'!r}"
    )


def _source_differs(earlier: Source, this: Source) -> str:
    kinds = {"file": "a file", "attachment": "an attachment_id"}
    return (
        f"a different {'file' if this[0] == 'file' else 'attachment_id'}" if this[0] == earlier[0]
        else f"{kinds[this[0]]} where the first sent {kinds[earlier[0]]}"
    )


def _options_differ(earlier: dict[str, Any], this: dict[str, Any]) -> list[str]:
    def shown(name: str, value: Any) -> str:
        if name == "language":
            return f"language {value!r}" if value else "language auto (detected)"
        return f"{name}={'true' if value else 'false'}"

    return [
        f"{shown(name, this.get(name))} where the first asked for {shown(name, earlier.get(name))}"
        for name in REQUEST_OPTIONS if earlier.get(name) != this.get(name)
    ]


def _check_same(earlier: Fingerprint, this: Fingerprint, key: str, queue_id: str) -> None:
    """422 naming ``key`` and what differs when it was used for another request than this one."""
    if earlier == this:
        return
    differences = [] if earlier[0] == this[0] else [_source_differs(earlier[0], this[0])]
    differences += _options_differ(dict(earlier[1]), dict(this[1]))
    differs = "; ".join(differences)
    raise Unprocessable(
        f"Idempotency-Key {shorten(key)!r} was already used with a different request: this one sends "
        f"{differs}. The key answers only for the request that started queue {queue_id}; "
        "use a new key for a new upload"
    )


async def _same_request(
    services: Services, request: Request, key: str, queue_id: str, options: dict[str, Any]
) -> None:
    """The retry with ``key`` (choosing ``options``) asks for what the request that started ``queue_id`` did, or 422."""
    _check_same(await _fingerprint_of(services, queue_id), _request(await _source(services, request), options),
                key, queue_id)


def _options(received: ReceivedFile) -> dict[str, Any]:
    """The queue options of an uploaded file."""
    return {"source": received.key, "filename": received.filename, "size_bytes": received.size, "sha256": received.sha256}


def _media_option(media: Media) -> dict[str, Any]:
    """The queue option of an audio recording (``media: "audio"``: no compress step); none for a video."""
    return {"media": "audio"} if media == "audio" else {}


async def _media_of(services: Services, key: str, filename: str | None, declared: Media, *, keep: bool) -> Media:
    """What the stored file at ``key`` is: a declared video as it is (its steps check it); a declared
    audio recording by what ffprobe finds. A refused file is deleted unless ``keep`` (an attachment the
    caller stored before this request), and the refusal is 422 with the reason."""
    if declared == "video":
        return "video"
    try:
        return await run_in_threadpool(probed_media, services.storage, key, filename)
    except MediaError as error:
        refusal = Unprocessable(f"{error} ({'the attachment is left as it was' if keep else 'nothing was kept'})")
    except BaseException:
        if not keep:
            await run_in_threadpool(services.storage.delete, key)
        raise
    if not keep:
        await run_in_threadpool(services.storage.delete, key)
    logger.info("refused %s: %s", key, refusal.message)
    raise refusal


async def _json_body(request: Request) -> Any:
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_JSON_BYTES:
            raise PayloadTooLarge(f"a JSON upload request is at most {MAX_JSON_BYTES} bytes")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON") from None


def _attachment_id(data: Any) -> str:
    attachment_id = data.get("attachment_id") if isinstance(data, dict) else None
    if not isinstance(attachment_id, str) or not attachment_id:
        raise Unprocessable('the body must be {"attachment_id": "<id of an uploaded attachment>"}')
    return attachment_id


async def _existing_attachment(services: Services, caller: Caller, request: Request) -> tuple[str, str]:
    attachment_id = _attachment_id(await _json_body(request))
    try:
        key = upload_key(caller.owner_id, attachment_id)
    except ValueError as error:
        raise Unprocessable(str(error)) from None
    if not await run_in_threadpool(services.storage.exists, key):
        raise NotFound(f"attachment {shorten(attachment_id)!r} is not among your uploads; upload the video itself")
    return attachment_id, key


def _check_length(request: Request, limit: int) -> None:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit + MULTIPART_OVERHEAD:
        raise PayloadTooLarge(
            f"the upload is {int(length)} bytes; the limit is {limit} bytes (VIDPIPE_MAX_UPLOAD_BYTES)"
        )


async def _receive_file(services: Services, caller: Caller, request: Request) -> tuple[ReceivedFile, Media]:
    """The ``file`` part, stored, and what it is (an audio recording is probed; see :func:`_media_of`)."""
    limit = services.settings.max_upload_bytes
    _check_length(request, limit)
    events = multipart_events(request, boundary_of(request.headers["content-type"]))
    async for event in events:
        if isinstance(event, PartStart) and event.name == "file":
            problem = declared_type_problem(event.filename, event.content_type)
            if problem:
                raise UnsupportedMediaType(problem)
            attachment_id = new_attachment_id(event.filename)
            try:
                key = upload_key(caller.owner_id, attachment_id)
            except ValueError as error:
                raise Unprocessable(str(error)) from None
            received = await store_file(services.storage, key, attachment_id, FileStream(events, event, limit))
            async for _ in events:  # the rest of the body (small fields after the file)
                pass
            declared = declared_media(event.filename, event.content_type)
            return received, await _media_of(services, received.key, received.filename, declared, keep=False)
    raise Unprocessable("the multipart body has no part named 'file'")


async def _start_queue(
    services: Services, caller: Caller, attachment_id: str, options: dict[str, Any], queue_id: UUID | None
) -> str:
    try:
        queue_id = await run_in_threadpool(
            services.core.app.start_processing,
            caller.owner_id,
            attachment_id,
            options,
            max_retries=services.settings.max_retries,
            queue_id=queue_id,
        )
    except InvalidGraph as error:  # the options chose steps outside the safe bounds
        raise Unprocessable(str(error)) from None
    logger.info("owner %s: queue %s started for %s", caller.owner_id, queue_id, attachment_id)
    return str(queue_id)


async def _accepted(services: Services, caller: Caller, queue_id: str, *, reused: bool) -> JSONResponse:
    row = await run_in_threadpool(services.queues.status, caller, queue_id)
    body = QueueAccepted(queue_id=queue_id, status=row["status"], attachment_id=row["attachment_id"], reused=reused)
    return JSONResponse(body.model_dump(), status_code=202)

