"""Batches: several videos or audio recordings in one request, and their status together.

``POST /api/batches`` takes ``multipart/form-data`` with one or more ``file``
parts (at most :data:`MAX_BATCH_FILES`), streamed one after another into
storage exactly as ``POST /api/video-processing/upload`` streams one: each
file is checked by name, declared type, leading bytes and size
(``VIDPIPE_MAX_UPLOAD_BYTES`` per file), and an audio recording by what
ffprobe finds in it. Every accepted file starts its own queue whose ``Created``
options carry the batch id (an audio recording's also ``media: "audio"``: no
compress step), so a batch may mix videos and audio recordings.

**A broken file does not sink the batch.** A file that is neither a video nor
an audio recording, is empty, unreadable or over the size limit is refused on its own — nothing of it is
stored — and the others are processed: the answer is ``202`` listing every
file in order with its ``queue_id`` or its ``error``. Only when no file at all
could be accepted is the answer a ``4xx`` (``415``/``413`` when every file was
refused, naming each; ``422`` without a ``file`` part). Files beyond the first
:data:`MAX_BATCH_FILES` are refused the same way, each with its reason.

Each file in a batch starts a new queue (the single upload's reuse of a queue
for the same bytes does not apply, so a batch's files are all in its status);
batches take no ``Idempotency-Key``: a retried request is a new batch. When
the body breaks off midway (a malformed part, the client gone), the queues of
the files received whole keep running and stay listed under the batch id,
which ``GET /api/batches`` shows.

``GET /api/batches``: the caller's batches, newest first (``limit``,
``offset``), each with its files, accepted files and queues per status.

``GET /api/batches/{batchId}``: the caller's batch (404 for anyone else's and
unknown ids) — every file in order with its queue's status (from the status
view, or the aggregate in the moment before the projection has it), the
count of queues in each status and whether all have ended. A deleted lecture
leaves its batch.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.auth import Caller, CurrentTutor
from api.errors import ApiError, NotFound, PayloadTooLarge, UnsupportedMediaType, Unprocessable, shorten
from api.media import declared_media, declared_type_problem
from api.multipart import PART_END, Event, PartStart, boundary_of, multipart_events
from api.queues import is_terminal
from api.routes.queues import AUTH_RESPONSES
from api.routes.uploads import MULTIPART_OVERHEAD, _media_of, _media_option, _options, _start_queue
from api.schemas import ErrorResponse, QueueStatus
from api.services import Services
from api.uploads import FileStream, new_attachment_id, store_file
from handlers.storage import upload_key

logger = logging.getLogger(__name__)

PREFIX = "/api/batches"
MAX_BATCH_FILES = 20
"""Most videos one batch request may carry."""

BatchId = Annotated[str, Path(alias="batchId", description="the batch id returned by POST /api/batches")]

REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "array", "items": {"type": "string", "format": "binary"},
                             "maxItems": MAX_BATCH_FILES, "description": "the videos or audio recordings, one part each"},
                },
            }
        },
    },
}


class BatchFile(BaseModel):
    """One file of a batch: the queue it started, or why it was refused."""

    position: int = Field(description="0-based, in the order the files were sent")
    filename: str | None = None
    queue_id: str | None = None
    error: str | None = Field(default=None, description="why this file was refused (nothing of it stored)")


class BatchAccepted(BaseModel):
    """The answer to a batch upload: each file's queue or refusal."""

    batch_id: str
    accepted: int
    refused: int
    files: list[BatchFile]


class BatchEntry(BatchFile):
    status: QueueStatus | None = Field(default=None, description="the queue's status (none for a refused file)")


class BatchStatus(BaseModel):
    """A batch's files with their queues' status."""

    batch_id: str
    created_at: datetime
    done: bool = Field(description="true when every queue of the batch has completed, failed or been cancelled")
    counts: dict[str, int] = Field(description="queues per status")
    files: list[BatchEntry]


class BatchSummary(BaseModel):
    batch_id: str
    created_at: datetime
    files: int = Field(description="files sent (a deleted lecture no longer counts)")
    accepted: int = Field(description="files that started a queue (deleted lectures no longer count)")
    counts: dict[str, int] = Field(description="queues per status (as the status view has them)")


class BatchPage(BaseModel):
    """One page of the caller's batches, newest first."""

    items: list[BatchSummary]
    limit: int
    offset: int
    has_more: bool


class BatchLedger:
    """``video_processing_batch_items``: which file of which batch started which queue."""

    def __init__(self, services: Services) -> None:
        self.view = services.core.view

    def record(self, batch_id: str, owner_id: str, files: list[BatchFile]) -> None:
        at = datetime.now(timezone.utc).isoformat()
        with self.view.session() as session:
            for item in files:
                session.execute(
                    "INSERT INTO video_processing_batch_items (batch_id, position, owner_id, filename, queue_id, "
                    "error, created_at) VALUES (:batch, :position, :owner, :filename, :queue, :error, :at)",
                    {"batch": batch_id, "position": item.position, "owner": owner_id, "filename": item.filename,
                     "queue": item.queue_id, "error": item.error, "at": at},
                )

    def summaries(self, owner_id: str, limit: int, offset: int) -> list[BatchSummary]:
        """The owner's batches, newest first, with their queues counted by status."""
        batches = self.view.fetchall(
            "SELECT batch_id, MIN(created_at) AS created_at, COUNT(*) AS files, COUNT(queue_id) AS accepted "
            "FROM video_processing_batch_items WHERE owner_id = :owner GROUP BY batch_id "
            "ORDER BY MIN(created_at) DESC, batch_id LIMIT :limit OFFSET :offset",
            {"owner": owner_id, "limit": limit, "offset": offset},
        )
        summaries = []
        for batch in batches:
            counts = self.view.fetchall(
                "SELECT q.status, COUNT(*) AS n FROM video_processing_batch_items b "
                "JOIN video_processing_queue q ON q.id = b.queue_id "
                "WHERE b.batch_id = :batch AND b.owner_id = :owner GROUP BY q.status",
                {"batch": batch["batch_id"], "owner": owner_id},
            )
            created = batch["created_at"]
            summaries.append(BatchSummary(
                batch_id=batch["batch_id"], files=int(batch["files"]), accepted=int(batch["accepted"]),
                created_at=created if isinstance(created, datetime) else datetime.fromisoformat(str(created)),
                counts={row["status"]: int(row["n"]) for row in counts},
            ))
        return summaries

    def items(self, batch_id: str, owner_id: str) -> list[dict[str, Any]]:
        return self.view.fetchall(
            "SELECT position, filename, queue_id, error, created_at FROM video_processing_batch_items "
            "WHERE batch_id = :batch AND owner_id = :owner ORDER BY position",
            {"batch": batch_id, "owner": owner_id},
        )


def batches_router(services: Services) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["batches"])
    ledger = BatchLedger(services)

    @router.post(
        "",
        status_code=202,
        response_model=BatchAccepted,
        openapi_extra={"requestBody": REQUEST_BODY},
        responses={
            **AUTH_RESPONSES,
            400: {"model": ErrorResponse, "description": "malformed multipart body"},
            413: {"model": ErrorResponse, "description": "every file over the size limit (or the body over all limits)"},
            415: {"model": ErrorResponse, "description": "not multipart, or no file of the batch is a video "
                  "or an audio recording"},
        },
    )
    async def upload_batch(request: Request, caller: CurrentTutor) -> JSONResponse:
        """Start one queue per video or audio recording sent; a broken file is refused alone, the others go on."""
        batch_id = str(uuid.uuid4())
        files: list[BatchFile] = []
        try:
            await _receive_batch(services, caller, request, batch_id, files)
        except BaseException:
            if any(f.queue_id for f in files):  # the body broke off: the queues started stay listed in the batch
                await run_in_threadpool(ledger.record, batch_id, caller.owner_id, files)
            raise
        accepted = [f for f in files if f.queue_id]
        if not accepted:
            raise _all_refused(files)
        await run_in_threadpool(ledger.record, batch_id, caller.owner_id, files)
        logger.info("owner %s: batch %s, %d queue(s) started, %d file(s) refused",
                    caller.owner_id, batch_id, len(accepted), len(files) - len(accepted))
        body = BatchAccepted(batch_id=batch_id, accepted=len(accepted), refused=len(files) - len(accepted), files=files)
        return JSONResponse(body.model_dump(), status_code=202)

    @router.get("", response_model=BatchPage, responses=AUTH_RESPONSES)
    def list_batches(
        caller: CurrentTutor,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> BatchPage:
        """The caller's batches, newest first, each with its queues counted by status."""
        rows = ledger.summaries(caller.owner_id, limit + 1, offset)
        return BatchPage(items=rows[:limit], limit=limit, offset=offset, has_more=len(rows) > limit)

    @router.get("/{batchId}", response_model=BatchStatus, responses={
        **AUTH_RESPONSES, 404: {"model": ErrorResponse, "description": "no such batch, or not the caller's"},
    })
    def batch_status(batch_id: BatchId, caller: CurrentTutor) -> BatchStatus:
        """The batch's files, each with its queue's status."""
        rows = ledger.items(batch_id, caller.owner_id)
        if not rows:
            raise NotFound(f"batch {shorten(batch_id)} does not exist")
        entries, counts = [], {}
        for row in rows:
            status = _queue_status(services, caller, row["queue_id"]) if row["queue_id"] else None
            if status is not None:
                counts[status.status] = counts.get(status.status, 0) + 1
            elif row["queue_id"]:
                continue  # the lecture was deleted: it left the batch
            entries.append(BatchEntry(position=row["position"], filename=row["filename"], queue_id=row["queue_id"],
                                      error=row["error"], status=status))
        created = rows[0]["created_at"]
        return BatchStatus(
            batch_id=batch_id,
            created_at=created if isinstance(created, datetime) else datetime.fromisoformat(str(created)),
            done=all(is_terminal(name) for name in counts),
            counts=counts,
            files=entries,
        )

    return router


def _queue_status(services: Services, caller: Caller, queue_id: str) -> QueueStatus | None:
    try:
        return QueueStatus.model_validate(services.queues.status(caller, queue_id))
    except NotFound:
        return None


class _Parts:
    """The multipart events, remembering whether the current part has ended (to skip a refused one)."""

    def __init__(self, events: AsyncIterator[Event]) -> None:
        self.events = events
        self.part_open = False

    def __aiter__(self) -> _Parts:
        return self

    async def __anext__(self) -> Event:
        event = await self.events.__anext__()
        if isinstance(event, PartStart):
            self.part_open = True
        elif event is PART_END:
            self.part_open = False
        return event

    async def skip_part(self) -> None:
        while self.part_open:
            try:
                await self.__anext__()
            except StopAsyncIteration:
                return


async def _receive_batch(
    services: Services, caller: Caller, request: Request, batch_id: str, files: list[BatchFile]
) -> None:
    """Each file part in turn into ``files``: its queue, or why it was refused."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "multipart/form-data":
        raise UnsupportedMediaType(
            f"send multipart/form-data with one 'file' part per video, not {media_type or 'no Content-Type'!r}"
        )
    limit = services.settings.max_upload_bytes
    length = request.headers.get("content-length")
    most = MAX_BATCH_FILES * (limit + MULTIPART_OVERHEAD)
    if length is not None and length.isdigit() and int(length) > most:
        raise PayloadTooLarge(
            f"the batch is {int(length)} bytes; at most {MAX_BATCH_FILES} videos of {limit} bytes each "
            "(VIDPIPE_MAX_UPLOAD_BYTES)"
        )
    parts = _Parts(multipart_events(request, boundary_of(request.headers["content-type"])))
    async for event in parts:
        if not isinstance(event, PartStart) or event.name != "file":
            continue
        position = len(files)
        try:
            if position >= MAX_BATCH_FILES:
                raise PayloadTooLarge(f"a batch takes at most {MAX_BATCH_FILES} videos; send this one in another batch")
            queue_id = await _one_file(services, caller, parts, event, batch_id, position)
            files.append(BatchFile(position=position, filename=event.filename, queue_id=queue_id))
        except (UnsupportedMediaType, PayloadTooLarge, Unprocessable) as refused:
            await parts.skip_part()
            logger.info("owner %s: batch %s file %d (%s) refused: %s", caller.owner_id, batch_id, position,
                        event.filename, refused.message)
            files.append(BatchFile(position=position, filename=event.filename, error=refused.message))
    if not files:
        raise Unprocessable("the multipart body has no part named 'file'")


async def _one_file(
    services: Services, caller: Caller, parts: _Parts, part: PartStart, batch_id: str, position: int
) -> str:
    problem = declared_type_problem(part.filename, part.content_type)
    if problem:
        raise UnsupportedMediaType(problem)
    attachment_id = new_attachment_id(part.filename)
    try:
        key = upload_key(caller.owner_id, attachment_id)
    except ValueError as error:
        raise Unprocessable(str(error)) from None
    limit = services.settings.max_upload_bytes
    received = await store_file(services.storage, key, attachment_id, FileStream(parts, part, limit))
    declared = declared_media(part.filename, part.content_type)
    media = await _media_of(services, received.key, received.filename, declared, keep=False)
    queue_id = uuid.uuid4()
    await run_in_threadpool(services.uploads.record, caller.owner_id, str(queue_id), received)
    options = {**_options(received), **_media_option(media), "batch_id": batch_id, "batch_position": position}
    return await _start_queue(services, caller, received.attachment_id, options, queue_id)


def _all_refused(files: list[BatchFile]) -> ApiError:
    reasons = "; ".join(f"{shorten(f.filename or f'file {f.position}')}: {f.error}" for f in files)
    message = f"no file of the batch was accepted ({reasons})"
    if all("larger than the limit" in (f.error or "") for f in files):
        return PayloadTooLarge(message)
    return UnsupportedMediaType(message)
