"""Status, queue list, cancellation, audit trail, live stream and transcript download."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.auth import Caller, CurrentTutor
from api.errors import NotFound, shorten
from api.queues import is_terminal
from api.schemas import (
    Cancellation,
    ErrorResponse,
    QueuePage,
    QueueState,
    QueueStatus,
    Timeline,
    TimelineEvent,
    TranscriptFormat,
)
from api.services import Services
from api.stream_slots import SlottedEventSourceResponse
from handlers.partial_transcripts import partial_document, read_partial
from handlers.storage import ArtifactNotFound, artifact_key
from handlers.transcripts import WRITERS, Transcript, encoded, parse_json

PREFIX = "/api/video-processing"
QueueId = Annotated[str, Path(alias="queueId", description="the queue id returned by the upload")]

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "missing, expired or invalid bearer token"},
    403: {"model": ErrorResponse, "description": "the token's role is not tutor"},
    422: {"model": ErrorResponse, "description": "invalid parameters"},
    503: {"model": ErrorResponse, "description": "the token signing keys (JWKS) are unreachable"},
}
QUEUE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    404: {"model": ErrorResponse, "description": "no such queue, or not the caller's"},
}
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "one server-sent event; `data` is JSON: a TimelineEvent or a QueueStatus",
    "required": ["data"],
    "properties": {
        "event": {"type": "string", "enum": ["timeline", "status"]},
        "id": {"type": "string", "description": "the queue version (send it back as Last-Event-ID)"},
        "data": {"type": "string"},
    },
}
STREAM_WAKE_SECONDS = 30.0
"""Longest an idle stream sleeps without news (its queue's poller wakes it on any change)."""
TRANSCRIPT_MEDIA_TYPES = {
    "json": "application/json",
    "srt": "application/x-subrip",
    "vtt": "text/vtt",
    "txt": "text/plain",
}
SO_FAR_STATES = frozenset({"running", "retrying"})
"""Transcribe step states in which ``?partial=true`` answers the transcript so far."""


def queues_router(services: Services) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["video processing"])
    access = services.queues

    @router.get("/status/{queueId}", response_model=QueueStatus, responses=QUEUE_RESPONSES)
    async def get_status(queue_id: QueueId, caller: CurrentTutor) -> dict[str, Any]:
        """The queue's status: overall and per step, with progress and errors."""
        return await access.status_async(caller, queue_id)

    @router.delete("/status/{queueId}", response_model=Cancellation, responses={
        **QUEUE_RESPONSES,
        409: {"model": ErrorResponse, "description": "the queue already completed or failed"},
    })
    def cancel(queue_id: QueueId, caller: CurrentTutor) -> Cancellation:
        """Cancel the queue. Cancelling twice is fine; a finished queue answers 409."""
        changed = access.cancel(caller, queue_id)
        return Cancellation(queue_id=queue_id, status="cancelled", changed=changed)

    @router.get("/queue", response_model=QueuePage, responses=AUTH_RESPONSES)
    async def list_queues(
        caller: CurrentTutor,
        status: Annotated[QueueState | None, Query(description="only queues in this status")] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> QueuePage:
        """The caller's queues, newest first."""
        rows, has_more = await access.list_async(caller, status, limit, offset)
        return QueuePage(
            items=[QueueStatus.model_validate(r) for r in rows],
            limit=limit, offset=offset, has_more=has_more,
        )

    @router.get("/status/{queueId}/events", response_model=Timeline, responses=QUEUE_RESPONSES)
    def events(queue_id: QueueId, caller: CurrentTutor) -> Timeline:
        """The audit trail: every event of the queue, oldest first."""
        entries = access.timeline(caller, queue_id)
        return Timeline(queue_id=queue_id, events=[TimelineEvent(**e.as_dict()) for e in entries])

    @router.get(
        "/status/{queueId}/stream",
        response_class=EventSourceResponse,
        responses={
            **QUEUE_RESPONSES,
            200: {
                "description": "Server-sent events: `timeline` (one per event of the audit trail, "
                "in order) then `status` (the status view) whenever the queue changes; the stream "
                "ends after the queue's final status. `Last-Event-ID` resumes after that version.",
                "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
            },
            204: {"description": "the queue has ended and `Last-Event-ID` is its last event: nothing "
                  "more will come (a browser's EventSource stops reconnecting)"},
            429: {"model": ErrorResponse, "description": "too many live streams open for this caller "
                  "(VIDPIPE_MAX_STREAMS_PER_CALLER) or this server (VIDPIPE_MAX_STREAMS); see Retry-After"},
        },
    )
    async def stream(queue_id: QueueId, caller: CurrentTutor, request: Request) -> Response:
        """Live status changes, so clients need not poll."""
        slot = services.streams.take(caller.owner_id)  # before any database read: a flood is cheap
        try:
            row = await access.status_async(caller, queue_id)
            last = _last_event_id(request.headers.get("last-event-id"))
            if is_terminal(row["status"]) and last >= row["version"]:
                slot.release()
                return Response(status_code=204)
            return SlottedEventSourceResponse(_changes(services, caller, queue_id, last), slot, ping=15)
        except BaseException:
            slot.release()
            raise

    @router.get(
        "/status/{queueId}/transcript",
        response_class=StreamingResponse,
        responses={
            **QUEUE_RESPONSES,
            200: {
                "description": "the transcript file; with `partial=true`, the header `X-Transcript-Complete` "
                "says whether it is the final one, and the JSON carries `complete` (true or false)",
                "content": {t: {"schema": {"type": "string"}} for t in TRANSCRIPT_MEDIA_TYPES.values()},
            },
        },
    )
    def transcript(
        queue_id: QueueId,
        caller: CurrentTutor,
        format: Annotated[TranscriptFormat, Query(description="json, srt, vtt or txt")] = "json",  # noqa: A002
        partial: Annotated[bool, Query(
            description="while the transcribe step runs (or waits to retry), answer the segments transcribed "
            "so far (maybe none yet) instead of 404; once it completed, the final transcript")] = False,
    ) -> Response:
        """Download the transcript (404 with the reason until the transcribe step made it).

        With `partial=true` the transcript grows while the step runs: the segments so far, refreshed
        every few seconds (`complete: false`); the final one (`complete: true`) once the step completed;
        404 before the step starts, or when it failed or was cancelled without a transcript.
        """
        if partial:
            return _transcript_so_far(services, caller, queue_id, format)
        key, language = access.transcript(caller, queue_id, format)
        if not services.storage.exists(key):
            raise NotFound(f"the {format} transcript of queue {shorten(queue_id)} is missing from storage")
        media_type = TRANSCRIPT_MEDIA_TYPES[format]
        return StreamingResponse(
            iter(services.storage.iter_bytes(key)),
            media_type=media_type + ("; charset=utf-8" if media_type.startswith("text/") else ""),
            headers={
                "Content-Disposition": f'attachment; filename="transcript-{queue_id}.{format}"',
                **({"Content-Language": language} if language else {}),  # the speech's, as transcribed
            },
        )

    return router


def _transcript_so_far(services: Services, caller: Caller, queue_id: str, fmt: str) -> Response:
    """``?partial=true``: the final transcript once the step completed, else the segments heard so far."""
    row = services.queues.status(caller, queue_id)  # 404 unless the caller's
    step = next((s for s in row["steps"] if s["step"] == "transcribe"), None)
    if step is None:
        raise NotFound(f"processing queue {shorten(queue_id)} has no transcribe step")
    storage = services.storage
    media_type = TRANSCRIPT_MEDIA_TYPES[fmt]
    headers = {
        "Content-Disposition": f'attachment; filename="transcript-{queue_id}.{fmt}"',
        "Cache-Control": "no-store",
    }
    if (step.get("outputs") or {}).get(f"transcript_{fmt}"):
        key, language = services.queues.transcript(caller, queue_id, fmt)
        headers.update({"X-Transcript-Complete": "true", **({"Content-Language": language} if language else {})})
        try:
            if fmt == "json":  # the stored file, with complete: true in front
                final = json.loads(b"".join(storage.iter_bytes(key)))
                body: bytes = json.dumps({"complete": True, **final}, ensure_ascii=False).encode()
            else:
                body = b"".join(storage.iter_bytes(key))
        except ArtifactNotFound:
            raise NotFound(f"the {fmt} transcript of queue {shorten(queue_id)} is missing from storage") from None
        return _transcript_response(body, media_type, headers)
    if step["status"] not in SO_FAR_STATES:
        state = "is " + step["status"] if step["status"] != "completed" else "completed without it"
        raise NotFound(
            f"the {fmt} transcript of queue {shorten(queue_id)} does not exist yet: "
            f"the transcribe step {state} (queue {row['status']})"
        )
    so_far = read_partial(storage, caller.owner_id, queue_id)
    if so_far is None:  # nothing heard yet, or the final transcript is stored and its completion on the way
        final_key = artifact_key(caller.owner_id, queue_id, "transcript_json")
        try:
            so_far = parse_json(b"".join(storage.iter_bytes(final_key)))
        except (ArtifactNotFound, ValueError, KeyError, TypeError):
            so_far = Transcript()
    headers["X-Transcript-Complete"] = "false"
    if so_far.language:
        headers["Content-Language"] = so_far.language
    if fmt == "json":
        body = json.dumps(partial_document(so_far), ensure_ascii=False).encode()
    else:
        body = b"".join(encoded(WRITERS[fmt](so_far)))
    return _transcript_response(body, media_type, headers)


def _transcript_response(body: bytes, media_type: str, headers: dict[str, str]) -> Response:
    charset = "; charset=utf-8" if media_type.startswith("text/") else ""
    return Response(body, media_type=media_type + charset, headers=headers)


def _last_event_id(header: str | None) -> int:
    try:
        return max(0, int(header or 0))
    except ValueError:
        return 0


async def _changes(services: Services, caller: Caller, queue_id: str, last: int) -> AsyncIterator[ServerSentEvent]:
    """On each new version: the new audit-trail entries, then the status (one shared poller per queue)."""
    async with services.watcher.watch(queue_id) as watch:
        while not services.closing.is_set():
            if not await watch.newer_than(last, timeout=STREAM_WAKE_SECONDS):
                if watch.gone:  # the lecture was deleted: nothing more will come
                    return
                continue
            row, entries = watch.row, watch.entries
            assert row is not None
            for entry in entries:
                if last < entry.position <= row["version"]:
                    yield ServerSentEvent(json.dumps(entry.as_dict()), event="timeline", id=str(entry.position))
            status = QueueStatus.model_validate(row)
            yield ServerSentEvent(status.model_dump_json(), event="status", id=str(row["version"]))
            last = row["version"]
            if is_terminal(row["status"]):
                return
